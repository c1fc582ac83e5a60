// The canary gate: the canary track's error rate and p99 latency compared with the stable
// track's over one window, with a minimum request count. Pure: the runtime gathers the
// per-track counts, this decides and explains.

/// One track's traffic over a window.
public struct TrackStats: Sendable, Equatable, Codable {
    public var requests: UInt64
    /// Responses with a 5xx status.
    public var serverErrors: UInt64
    /// Upstream connections that could not be made (refused, timed out).
    public var connectFailures: UInt64
    /// Non-cumulative counts per latency bucket (upper bounds in `bucketBoundsMs`, then +Inf).
    public var latencyBuckets: [UInt64]

    enum CodingKeys: String, CodingKey {
        case requests, serverErrors = "server_errors", connectFailures = "connect_failures", latencyBuckets = "latency_buckets"
    }

    /// The keys the state stores write (replicas publish their windows in their reports).
    enum StoredKeys: String, CodingKey {
        case requests, serverErrors, connectFailures, latencyBuckets
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        requests = try keys.decode(UInt64.self, forKey: .requests)
        if keys.contains(.serverErrors) {
            serverErrors = try keys.decode(UInt64.self, forKey: .serverErrors)
            connectFailures = try keys.decode(UInt64.self, forKey: .connectFailures)
            latencyBuckets = try keys.decode([UInt64].self, forKey: .latencyBuckets)
        } else {
            let stored = try decoder.container(keyedBy: StoredKeys.self)
            serverErrors = try stored.decode(UInt64.self, forKey: .serverErrors)
            connectFailures = try stored.decode(UInt64.self, forKey: .connectFailures)
            latencyBuckets = try stored.decode([UInt64].self, forKey: .latencyBuckets)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if encoder.writesStoredDocument {
            var stored = encoder.container(keyedBy: StoredKeys.self)
            try stored.encode(requests, forKey: .requests)
            try stored.encode(serverErrors, forKey: .serverErrors)
            try stored.encode(connectFailures, forKey: .connectFailures)
            try stored.encode(latencyBuckets, forKey: .latencyBuckets)
        } else {
            var keys = encoder.container(keyedBy: CodingKeys.self)
            try keys.encode(requests, forKey: .requests)
            try keys.encode(serverErrors, forKey: .serverErrors)
            try keys.encode(connectFailures, forKey: .connectFailures)
            try keys.encode(latencyBuckets, forKey: .latencyBuckets)
        }
    }

    public init(requests: UInt64 = 0, serverErrors: UInt64 = 0, connectFailures: UInt64 = 0, latencyBuckets: [UInt64] = []) {
        self.requests = requests
        self.serverErrors = serverErrors
        self.connectFailures = connectFailures
        self.latencyBuckets = latencyBuckets
    }

    /// Failed share in percent: 5xx answers and connection failures over all attempts.
    public var errorRatePercent: Double {
        let attempts = requests + connectFailures
        guard attempts > 0 else { return 0 }
        return Double(serverErrors + connectFailures) * 100 / Double(attempts)
    }

    /// The 99th percentile as the upper bound of the bucket it falls in (nil: no requests;
    /// `.infinity` when it is beyond the last bound).
    public func p99Ms(bucketBoundsMs: [Double]) -> Double? {
        let total = latencyBuckets.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = (Double(total) * 0.99).rounded(.up)
        var seen: UInt64 = 0
        for (index, count) in latencyBuckets.enumerated() {
            seen += count
            if Double(seen) >= rank { return index < bucketBoundsMs.count ? bucketBoundsMs[index] : .infinity }
        }
        return .infinity
    }

    /// Adds another window's (or endpoint's) counts.
    public mutating func add(_ other: TrackStats) {
        requests += other.requests
        serverErrors += other.serverErrors
        connectFailures += other.connectFailures
        if latencyBuckets.count < other.latencyBuckets.count {
            latencyBuckets += Array(repeating: 0, count: other.latencyBuckets.count - latencyBuckets.count)
        }
        for (index, count) in other.latencyBuckets.enumerated() { latencyBuckets[index] += count }
    }

    /// `self - earlier`, clamped at 0 (a counter that went backwards is a restart).
    public func subtracting(_ earlier: TrackStats) -> TrackStats {
        func minus(_ a: UInt64, _ b: UInt64) -> UInt64 { a >= b ? a - b : a }
        var buckets = latencyBuckets
        for index in buckets.indices where index < earlier.latencyBuckets.count {
            buckets[index] = minus(buckets[index], earlier.latencyBuckets[index])
        }
        return TrackStats(
            requests: minus(requests, earlier.requests), serverErrors: minus(serverErrors, earlier.serverErrors),
            connectFailures: minus(connectFailures, earlier.connectFailures), latencyBuckets: buckets)
    }
}

/// What the canary must hold to go on.
public struct GatePolicy: Sendable, Equatable, Codable {
    /// The canary's error rate may exceed the stable track's by at most this many
    /// percentage points.
    public var maxErrorRateIncrease: Double
    /// The canary's p99 may exceed the stable track's by at most this share (percent)…
    public var maxP99IncreasePercent: Double
    /// …unless it is at most this many milliseconds (differences among fast answers are noise).
    public var p99FloorMs: Double
    /// Fewer canary requests than this in the window: the gate cannot judge, and fails.
    public var minRequests: UInt64

    enum CodingKeys: String, CodingKey {
        case maxErrorRateIncrease = "max_error_rate_increase", maxP99IncreasePercent = "max_p99_increase_percent"
        case p99FloorMs = "p99_floor_ms", minRequests = "min_requests"
    }

    public init(maxErrorRateIncrease: Double = 1, maxP99IncreasePercent: Double = 50, p99FloorMs: Double = 10, minRequests: UInt64 = 100) {
        self.maxErrorRateIncrease = maxErrorRateIncrease
        self.maxP99IncreasePercent = maxP99IncreasePercent
        self.p99FloorMs = p99FloorMs
        self.minRequests = minRequests
    }
}

/// The gate's decision and the numbers behind it.
public struct GateVerdict: Sendable, Equatable, Codable {
    public var passed: Bool
    /// Why it failed (empty when it passed).
    public var reasons: [String]
    public var canaryTrack: String
    public var stableTrack: String
    public var windowSeconds: Double
    public var canary: TrackSummary
    public var stable: TrackSummary
    public var policy: GatePolicy
    /// Each replica's figures when the gate summed the fleet (FleetGate.swift); the
    /// totals above are their sums.
    public var replicas: [ReplicaGateFigures]? = nil

    enum CodingKeys: String, CodingKey {
        case passed, reasons, canaryTrack = "canary_track", stableTrack = "stable_track", windowSeconds = "window_seconds"
        case canary, stable, policy, replicas
    }
}

/// A track's numbers as the gate reports them.
public struct TrackSummary: Sendable, Equatable, Codable {
    public var requests: UInt64
    public var serverErrors: UInt64
    public var connectFailures: UInt64
    public var errorRatePercent: Double
    /// nil: no requests; a very large number stands for "beyond the last bucket".
    public var p99Ms: Double?

    enum CodingKeys: String, CodingKey {
        case requests, serverErrors = "server_errors", connectFailures = "connect_failures"
        case errorRatePercent = "error_rate_percent", p99Ms = "p99_ms"
    }

    public init(_ stats: TrackStats, bucketBoundsMs: [Double]) {
        requests = stats.requests
        serverErrors = stats.serverErrors
        connectFailures = stats.connectFailures
        errorRatePercent = stats.errorRatePercent
        let p99 = stats.p99Ms(bucketBoundsMs: bucketBoundsMs)
        p99Ms = p99.map { $0.isFinite ? $0 : 1e9 }
    }
}

extension GatePolicy {
    /// Compares the canary with the stable track over one window.
    public func evaluate(
        canary: TrackStats, stable: TrackStats, canaryTrack: String, stableTrack: String,
        windowSeconds: Double, bucketBoundsMs: [Double]
    ) -> GateVerdict {
        let c = TrackSummary(canary, bucketBoundsMs: bucketBoundsMs)
        let s = TrackSummary(stable, bucketBoundsMs: bucketBoundsMs)
        var reasons: [String] = []
        if canary.requests + canary.connectFailures < minRequests {
            reasons.append("only \(canary.requests + canary.connectFailures) canary requests in the window, the gate needs \(minRequests)")
        }
        let increase = c.errorRatePercent - s.errorRatePercent
        if increase > maxErrorRateIncrease {
            reasons.append("canary error rate \(percent(c.errorRatePercent)) is \(percent(increase)) points above stable's \(percent(s.errorRatePercent)) (allowed: \(percent(maxErrorRateIncrease)))")
        }
        if let canaryP99 = c.p99Ms, canaryP99 > p99FloorMs {
            let stableP99 = s.p99Ms ?? 0
            let limit = max(stableP99 * (1 + maxP99IncreasePercent / 100), p99FloorMs)
            if canaryP99 > limit {
                reasons.append("canary p99 \(ms(canaryP99)) is above \(ms(limit)) (stable p99 \(ms(stableP99)) + \(percent(maxP99IncreasePercent)))")
            }
        }
        return GateVerdict(
            passed: reasons.isEmpty, reasons: reasons, canaryTrack: canaryTrack, stableTrack: stableTrack,
            windowSeconds: windowSeconds, canary: c, stable: s, policy: self)
    }
}

/// `12%`, `12.35%`: two decimals at most. Any Double prints (a non-finite or huge value
/// as Swift spells it), so a gate given extreme numbers still explains itself.
func percent(_ value: Double) -> String {
    "\(wholeOrDecimal((value * 100).rounded() / 100))%"
}

func ms(_ value: Double) -> String {
    value >= 1e9 ? "> 10 s" : "\(wholeOrDecimal(value)) ms"
}

/// `value` without a fraction when it is a whole number that fits an Int; otherwise the
/// Double's own text (`inf`, `nan`, `1e+300`).
private func wholeOrDecimal(_ value: Double) -> String {
    if value.isFinite, value == value.rounded(), let whole = Int(exactly: value) { return "\(whole)" }
    return "\(value)"
}
