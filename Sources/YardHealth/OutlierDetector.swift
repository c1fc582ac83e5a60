// Outlier detection over traffic windows (Envoy's success-rate detection, plus a latency
// rule): which endpoints of a service stand out from their siblings, from numbers alone.

import YardModel

/// One endpoint's cumulative traffic counters, as the data plane's metrics hold them.
public struct EndpointTraffic: Sendable, Equatable {
    /// Exchanges: answers of every status class, plus connect failures.
    public var requests: UInt64
    /// Failed exchanges: 5xx answers (the proxy's own 502/504 included) and connect failures.
    public var failures: UInt64
    /// Answers per latency bucket (non-cumulative; the last bucket is +Inf).
    public var latencyBuckets: [UInt64]

    public init(requests: UInt64, failures: UInt64, latencyBuckets: [UInt64] = []) {
        self.requests = requests
        self.failures = failures
        self.latencyBuckets = latencyBuckets
    }

    /// The traffic between an earlier reading and this one. A counter that went backwards
    /// (the endpoint left and came back) counts from zero.
    public func since(_ earlier: EndpointTraffic) -> EndpointTraffic {
        guard requests >= earlier.requests, failures >= earlier.failures,
              latencyBuckets.count == earlier.latencyBuckets.count,
              zip(latencyBuckets, earlier.latencyBuckets).allSatisfy({ $0 >= $1 }) else { return self }
        return EndpointTraffic(
            requests: requests - earlier.requests, failures: failures - earlier.failures,
            latencyBuckets: zip(latencyBuckets, earlier.latencyBuckets).map { $0 - $1 })
    }
}

/// Why an endpoint was ejected.
public enum EjectionReason: String, Sendable, Equatable, CaseIterable {
    /// `consecutive_failures` failed exchanges in a row.
    case consecutiveFailures = "consecutive_failures"
    /// Success rate below the service's mean by `success_rate_stdev_factor` deviations.
    case successRate = "success_rate"
    /// p99 latency above `latency_p99_factor` times the service's median p99.
    case latency
}

/// Finds the outliers among a service's endpoints over one interval.
///
/// Threading: a pure function of its arguments.
///
/// Success rate (Envoy's `success_rate` detection): only endpoints with at least
/// `success_rate_request_volume` exchanges in the interval take part; with fewer than
/// `success_rate_minimum_hosts` of them nothing is judged. The ejection threshold is
/// `mean − success_rate_stdev_factor × stdev` of their success rates (population standard
/// deviation); an endpoint below it is an outlier.
///
/// Latency: among endpoints with at least `latency_request_volume` answers (and at least
/// `latency_minimum_hosts` of them), one whose p99 is above `latency_p99_factor` × the
/// median of their p99s is an outlier.
public enum OutlierDetector {
    public struct Verdict: Sendable, Equatable {
        public var endpointKey: Int
        public var reason: EjectionReason
        /// How far out it is: the success-rate deficit below the threshold, or the p99 over
        /// the median; larger is worse (the worst are ejected first under the cap).
        public var severity: Double
        /// For the log: "success rate 80.0 % < threshold 83.9 %", "p99 52.0 ms > 3 × median 5.0 ms".
        public var detail: String

        public init(endpointKey: Int, reason: EjectionReason, severity: Double, detail: String) {
            self.endpointKey = endpointKey
            self.reason = reason
            self.severity = severity
            self.detail = detail
        }
    }

    /// The outliers of one interval's `windows` (traffic per endpoint key), worst first;
    /// an endpoint appears once (success rate wins over latency).
    public static func outliers(_ windows: [Int: EndpointTraffic], policy: HealthPolicy, latencyBoundsMs: [Double]) -> [Verdict] {
        var verdicts = successRateOutliers(windows, policy: policy)
        let flagged = Set(verdicts.map(\.endpointKey))
        verdicts += latencyOutliers(windows, policy: policy, latencyBoundsMs: latencyBoundsMs).filter { !flagged.contains($0.endpointKey) }
        return verdicts.sorted { ($0.severity, $1.endpointKey) > ($1.severity, $0.endpointKey) }
    }

    public static func successRateOutliers(_ windows: [Int: EndpointTraffic], policy: HealthPolicy) -> [Verdict] {
        guard policy.successRateStdevFactor > 0 else { return [] }
        let volume = UInt64(max(1, policy.successRateRequestVolume))
        let rates: [(key: Int, rate: Double)] = windows.compactMap { key, traffic in
            guard traffic.requests >= volume else { return nil }
            let failed = min(traffic.failures, traffic.requests)
            return (key, Double(traffic.requests - failed) / Double(traffic.requests))
        }
        guard rates.count >= max(1, policy.successRateMinimumHosts) else { return [] }
        let mean = rates.reduce(0) { $0 + $1.rate } / Double(rates.count)
        let variance = rates.reduce(0) { $0 + ($1.rate - mean) * ($1.rate - mean) } / Double(rates.count)
        let threshold = mean - policy.successRateStdevFactor * variance.squareRoot()
        return rates.filter { $0.rate < threshold }.map { entry in
            Verdict(endpointKey: entry.key, reason: .successRate, severity: (threshold - entry.rate) * 100,
                    detail: "success rate \(percent(entry.rate)) below the service's threshold \(percent(threshold)) (mean \(percent(mean)))")
        }
    }

    public static func latencyOutliers(_ windows: [Int: EndpointTraffic], policy: HealthPolicy, latencyBoundsMs: [Double]) -> [Verdict] {
        guard policy.latencyP99Factor > 0 else { return [] }
        let volume = UInt64(max(1, policy.latencyRequestVolume))
        let p99s: [(key: Int, p99: Double)] = windows.compactMap { key, traffic in
            let answered = traffic.latencyBuckets.reduce(0, &+)
            guard answered >= volume, let p99 = percentile(0.99, buckets: traffic.latencyBuckets, boundsMs: latencyBoundsMs) else { return nil }
            return (key, p99)
        }
        guard p99s.count >= max(2, policy.latencyMinimumHosts) else { return [] }
        let sorted = p99s.map(\.p99).sorted()
        let middle = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        let limit = policy.latencyP99Factor * median
        return p99s.filter { $0.p99 > limit }.map { entry in
            Verdict(endpointKey: entry.key, reason: .latency, severity: median > 0 ? entry.p99 / median : entry.p99,
                    detail: "p99 \(milliseconds(entry.p99)) above \(policy.latencyP99Factor) × the service's median p99 \(milliseconds(median))")
        }
    }

    /// The `quantile` of a histogram (non-cumulative counts per bucket of `boundsMs`, then
    /// +Inf), interpolated linearly inside its bucket; the +Inf bucket counts as its lower
    /// bound. Nil when the histogram is empty or its shape does not match the bounds.
    public static func percentile(_ quantile: Double, buckets: [UInt64], boundsMs: [Double]) -> Double? {
        guard !boundsMs.isEmpty, buckets.count == boundsMs.count + 1 else { return nil }
        let total = buckets.reduce(0, &+)
        guard total > 0 else { return nil }
        let rank = quantile * Double(total)
        var seen: UInt64 = 0
        for (index, count) in buckets.enumerated() where count > 0 {
            let before = Double(seen)
            seen += count
            guard Double(seen) >= rank else { continue }
            guard index < boundsMs.count else { return boundsMs[boundsMs.count - 1] }
            let lower = index == 0 ? 0 : boundsMs[index - 1]
            let fraction = min(1, max(0, (rank - before) / Double(count)))
            return lower + (boundsMs[index] - lower) * fraction
        }
        return boundsMs[boundsMs.count - 1]
    }

    private static func percent(_ rate: Double) -> String {
        let tenths = (rate * 1000).rounded()
        guard tenths.isFinite, abs(tenths) < 1e12 else { return "\(rate * 100) %" }
        let value = Int(tenths)
        return "\(value / 10).\(abs(value % 10)) %"
    }

    private static func milliseconds(_ ms: Double) -> String {
        let tenths = (ms * 10).rounded()
        guard tenths.isFinite, abs(tenths) < 1e12 else { return "\(ms) ms" }
        let value = Int(tenths)
        return "\(value / 10).\(value % 10) ms"
    }
}

/// Turns cumulative counters into per-interval windows for one service: every
/// `outlier_interval` it hands back the traffic since the previous sweep.
///
/// Threading: a value; the health checker keeps one per service behind its lock.
public struct OutlierSweep: Sendable {
    /// Counters at the last sweep, per endpoint key.
    private var baseline: [Int: EndpointTraffic] = [:]
    /// When the last sweep ran (ms); nil before the first reading.
    public private(set) var lastSweep: Int64?

    public init() {}

    /// Feeds the current cumulative counters. Returns the windows since the last sweep when
    /// `intervalMs` has passed since it (nil otherwise; the first reading only sets the
    /// baseline). An endpoint without a baseline (it just appeared) joins the next window.
    public mutating func feed(_ cumulative: [Int: EndpointTraffic], intervalMs: Int, now: Int64) -> [Int: EndpointTraffic]? {
        guard let last = lastSweep else {
            baseline = cumulative
            lastSweep = now
            return nil
        }
        guard now - last >= Int64(max(1, intervalMs)) else { return nil }
        var windows: [Int: EndpointTraffic] = [:]
        for (key, traffic) in cumulative {
            guard let base = baseline[key] else { continue }
            windows[key] = traffic.since(base)
        }
        baseline = cumulative
        lastSweep = now
        return windows
    }
}
