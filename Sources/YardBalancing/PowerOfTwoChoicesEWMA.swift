// Power of two choices over peak-EWMA latency (Finagle's and Linkerd's "p2c + peak EWMA").

/// Power of two random choices over peak-EWMA latency: draw two distinct endpoints, send to
/// the one with the lower `latency × (inFlight + 1) / weight`.
///
/// Threading: a value owned by one event loop; `pick`, `started`, `finished` and `observe`
/// are all called on that loop, which sees every request it sends.
///
/// Why this shape (Mitzenmacher; Finagle's `PeakEwma`, Linkerd's balancer): comparing two
/// random endpoints instead of all of them costs O(1) per pick and avoids the herd that
/// "always the best" causes when many loops and replicas see the same numbers. The latency
/// estimate is a *peak* EWMA: a slower sample replaces it at once, faster samples pull it down
/// with a time constant (`decayNanos`, 10 s by default), so a backend that turns slow loses
/// traffic immediately and wins it back gradually. An endpoint not picked for a while decays
/// toward 0 cost, so a backend that was slow is retried once it may have recovered.
///
/// An endpoint with no observation yet costs 0 while idle (it wins, so new endpoints are tried
/// at once) and a large penalty while its first request is outstanding, so a new backend is
/// not flooded before anything is known about it. Weights divide the cost (slow start ramps
/// them); weight 0 is never picked.
public struct PowerOfTwoChoicesEWMA: Balancer, Sendable {
    struct Endpoint: Sendable {
        var weight: Int
        var inFlight: Int32 = 0
        var observed = false
        /// Peak-EWMA latency in nanoseconds, as of `stamp`.
        var latency: Double = 0
        /// When `latency` was last updated (nanoseconds, the caller's monotonic clock).
        var stamp: UInt64 = 0
    }

    /// Cost of an unobserved endpoint with a request outstanding (Finagle: `Long.MaxValue >> 16`).
    static let unobservedPenalty: Double = 1.4e14

    private(set) var endpoints: [Endpoint]
    private var random: SplitMix64
    /// The EWMA time constant in nanoseconds.
    public let decayNanos: UInt64
    private let inverseDecayNanos: Double

    /// - Parameters:
    ///   - weights: One entry per endpoint; 0 is never picked.
    ///   - decayNanos: Time constant of the latency EWMA (Finagle and Linkerd use 10 s).
    ///   - seed: Seeds the candidate draws; give each loop its own.
    public init(weights: [Int], decayNanos: UInt64 = 10_000_000_000, seed: UInt64 = 0x5EED) {
        precondition(decayNanos > 0, "PowerOfTwoChoicesEWMA: decayNanos must be positive")
        endpoints = weights.map { Endpoint(weight: effectiveWeight($0)) }
        random = SplitMix64(seed: seed)
        self.decayNanos = decayNanos
        inverseDecayNanos = 1 / Double(decayNanos)
    }

    /// Every endpoint with weight 1.
    public init(endpointCount: Int, decayNanos: UInt64 = 10_000_000_000, seed: UInt64 = 0x5EED) {
        self.init(weights: Array(repeating: 1, count: endpointCount), decayNanos: decayNanos, seed: seed)
    }

    public var endpointCount: Int { endpoints.count }

    public var measuresLatency: Bool { true }

    /// Applies new effective weights; the same number of endpoints keeps latencies and counts,
    /// another number starts every endpoint unobserved and idle.
    public mutating func update(weights: [Int]) {
        guard weights.count == endpoints.count else {
            endpoints = weights.map { Endpoint(weight: effectiveWeight($0)) }
            return
        }
        for i in weights.indices {
            endpoints[i].weight = effectiveWeight(weights[i])
        }
    }

    // MARK: Events

    public mutating func started(_ endpoint: Int) {
        if endpoints[endpoint].inFlight < Int32.max { endpoints[endpoint].inFlight += 1 }
    }

    /// A request finished; clamped at 0 for requests started before a reset.
    public mutating func finished(_ endpoint: Int) {
        if endpoints[endpoint].inFlight > 0 { endpoints[endpoint].inFlight -= 1 }
    }

    public mutating func finished(_ endpoint: Int, latencyNanos: UInt64, now: UInt64) {
        finished(endpoint)
        observe(endpoint: endpoint, latencyNanos: latencyNanos, now: now)
    }

    /// Folds one measured latency into the endpoint's peak EWMA.
    ///
    /// A sample of 0 (a clock coarser than the backend is fast) counts as 1 ns: a zero
    /// estimate would make the cost 0 whatever the in-flight count, and the load would stop
    /// mattering.
    public mutating func observe(endpoint: Int, latencyNanos: UInt64, now: UInt64) {
        let sample = Double(max(latencyNanos, 1))
        let e = endpoints[endpoint]
        if !e.observed || sample > e.latency {
            endpoints[endpoint].latency = sample
        } else {
            let w = decayFactor(elapsed: now &- min(now, e.stamp))
            endpoints[endpoint].latency = e.latency * w + sample * (1 - w)
        }
        endpoints[endpoint].observed = true
        endpoints[endpoint].stamp = now
    }

    // MARK: Picking

    /// Draws two distinct eligible endpoints and returns the cheaper; nil when none is eligible.
    ///
    /// Draws are rejected when they land on an excluded or zero-weight endpoint, up to a few
    /// times; when most endpoints are ineligible (or only one is left) it scans all of them
    /// for the cheapest instead, which is exact and rare.
    public mutating func pick(now: UInt64, excluding: UInt64 = 0) -> Int? {
        let count = endpoints.count
        guard count > 1 else { return cheapest(now: now, excluding: excluding) }
        var first = -1
        for _ in 0 ..< 4 {
            let i = random.next(below: count)
            if isEligible(i, excluding) { first = i; break }
        }
        guard first >= 0 else { return cheapest(now: now, excluding: excluding) }
        var second = -1
        for _ in 0 ..< 4 {
            // Uniform over the other count - 1 endpoints.
            var j = random.next(below: count - 1)
            if j >= first { j += 1 }
            if isEligible(j, excluding) { second = j; break }
        }
        guard second >= 0 else { return cheapest(now: now, excluding: excluding) }
        return cost(second, now: now) < cost(first, now: now) ? second : first
    }

    public mutating func pick(_ context: PickContext) -> Int? {
        pick(now: context.now, excluding: context.excluding)
    }

    /// The load `pick` compares: decayed peak-EWMA latency × (in-flight + 1) / weight.
    public func cost(_ endpoint: Int, now: UInt64) -> Double {
        let e = endpoints[endpoint]
        guard e.observed else {
            return e.inFlight == 0 ? 0 : Self.unobservedPenalty + Double(e.inFlight)
        }
        let latency = e.latency * decayFactor(elapsed: now &- min(now, e.stamp))
        return latency * (Double(e.inFlight) + 1) / Double(max(e.weight, 1))
    }

    @inline(__always)
    private func isEligible(_ endpoint: Int, _ excluding: UInt64) -> Bool {
        endpoints[endpoint].weight != 0 && !isExcluded(endpoint, by: excluding)
    }

    private func cheapest(now: UInt64, excluding: UInt64) -> Int? {
        var best = -1
        var bestCost = Double.infinity
        for i in endpoints.indices where isEligible(i, excluding) {
            let c = cost(i, now: now)
            if best < 0 || c < bestCost { best = i; bestCost = c }
        }
        return best < 0 ? nil : best
    }

    /// `exp(-elapsed / decayNanos)`.
    @inline(__always)
    private func decayFactor(elapsed: UInt64) -> Double {
        elapsed == 0 ? 1 : expOfNegative(Double(elapsed) * inverseDecayNanos)
    }
}

/// `e^-x` for `x >= 0`, to about 1e-8 relative, without importing the C math library.
///
/// The module stays free of platform imports (it is pure arithmetic), and the EWMA needs only
/// a weight in [0, 1]. Range reduction: `e^-x = 2^-k · e^r` with `k = round(x / ln 2)` and
/// `r = k·ln 2 - x ∈ [-ln 2 / 2, ln 2 / 2]`, then a degree-7 Taylor polynomial for `e^r` in
/// Horner form (no divisions: two are on every pick, so they must be cheap).
@inline(__always)
func expOfNegative(_ x: Double) -> Double {
    guard x > 0 else { return 1 }
    guard x < 700 else { return 0 }
    let ln2 = 0.693_147_180_559_945_3
    // Truncating x / ln 2 + 0.5 rounds (x > 0) in one instruction; `rounded()` calls libm.
    let k = Int(x * 1.442_695_040_888_963_4 + 0.5)
    let r = Double(k) * ln2 - x
    var p = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // 2^-k, built from its exponent bits; k <= 1010, so it stays a normal number.
    let scale = Double(bitPattern: UInt64(1023 - k) << 52)
    return p * scale
}
