// Fewest in-flight requests per unit of weight.

/// Least connections: the endpoint with the fewest in-flight requests per unit of weight,
/// ties taken in turn.
///
/// Threading: a value owned by one event loop; `pick` mutates it (the rotating start), so
/// each loop keeps its own and compares its own in-flight counts.
///
/// Loads compare as `inFlight / weight` by cross-multiplication (no division, no floating
/// point). Ties start their scan one past the previous pick, so endpoints with equal load
/// take turns instead of the lowest index taking everything: with short requests every
/// endpoint is idle at each pick, and without the rotation endpoint 0 would get them all.
/// The flip side is that idle endpoints tie whatever their weights, so at low concurrency
/// the split is even; use `SmoothWeightedRoundRobin` when exact proportions matter.
///
/// The counts can live here (`started`, `finished`, `pick(excluding:)`) or with the caller,
/// for example an upstream pool that already counts its busy connections
/// (`pick(inFlight:excluding:)`).
public struct LeastConnections: Balancer, Sendable {
    private var weights: [Int]
    private var inFlight: [Int32]
    /// Where the next scan starts: one past the last pick.
    private var nextStart = 0

    /// - Parameter weights: One entry per endpoint; negative reads as 0, values above
    ///   `Int32.max` are clamped.
    public init(weights: [Int]) {
        self.weights = weights.map(effectiveWeight)
        inFlight = Array(repeating: 0, count: weights.count)
    }

    public var endpointCount: Int { weights.count }

    /// The in-flight count this balancer holds for `endpoint` (from `started`/`finished`).
    public func inFlight(_ endpoint: Int) -> Int32 { inFlight[endpoint] }

    /// Applies new effective weights. The same number of endpoints keeps the in-flight counts;
    /// another number resets them, and a `finished` for a request started before is clamped
    /// at 0.
    public mutating func update(weights: [Int]) {
        if weights.count != self.weights.count {
            inFlight = Array(repeating: 0, count: weights.count)
            nextStart = 0
        }
        self.weights = weights.map(effectiveWeight)
    }

    public mutating func started(_ endpoint: Int) {
        if inFlight[endpoint] < Int32.max { inFlight[endpoint] += 1 }
    }

    public mutating func finished(_ endpoint: Int) {
        if inFlight[endpoint] > 0 { inFlight[endpoint] -= 1 }
    }

    public mutating func finished(_ endpoint: Int, latencyNanos: UInt64, now: UInt64) {
        finished(endpoint)
    }

    /// Chooses by the counts kept through `started` and `finished`.
    public mutating func pick(excluding: UInt64 = 0) -> Int? {
        let start = nextStart
        let best = weights.withUnsafeBufferPointer { weights in
            inFlight.withUnsafeBufferPointer { inFlight in
                Self.leastLoaded(weights: weights, inFlight: inFlight, start: start, excluding: excluding)
            }
        }
        if let best { nextStart = best + 1 == weights.count ? 0 : best + 1 }
        return best
    }

    /// Chooses by counts the caller keeps, one per endpoint.
    ///
    /// - Parameters:
    ///   - inFlight: Requests in flight per endpoint; at least `endpointCount` entries
    ///     (negative counts read as 0).
    ///   - excluding: Bit `i` skips endpoint `i` (i < 64).
    public mutating func pick(inFlight: UnsafeBufferPointer<Int32>, excluding: UInt64 = 0) -> Int? {
        precondition(inFlight.count >= weights.count, "LeastConnections: \(inFlight.count) in-flight counts for \(weights.count) endpoints")
        let start = nextStart
        let best = weights.withUnsafeBufferPointer { weights in
            Self.leastLoaded(weights: weights, inFlight: inFlight, start: start, excluding: excluding)
        }
        if let best { nextStart = best + 1 == weights.count ? 0 : best + 1 }
        return best
    }

    public mutating func pick(_ context: PickContext) -> Int? {
        pick(excluding: context.excluding)
    }

    /// The lowest `inFlight / weight`, scanning from `start` so the first of equals wins.
    private static func leastLoaded(
        weights: UnsafeBufferPointer<Int>, inFlight: UnsafeBufferPointer<Int32>, start: Int, excluding: UInt64
    ) -> Int? {
        let count = weights.count
        var best = -1
        var bestLoad = 0
        var bestWeight = 1
        var i = start < count ? start : 0
        for _ in 0 ..< count {
            let weight = weights[i]
            if weight != 0 && !isExcluded(i, by: excluding) {
                let load = Int(max(inFlight[i], 0))
                // load / weight < bestLoad / bestWeight, both weights > 0 and < 2^31.
                if best < 0 || load * bestWeight < bestLoad * weight {
                    best = i
                    bestLoad = load
                    bestWeight = weight
                }
            }
            i += 1
            if i == count { i = 0 }
        }
        return best < 0 ? nil : best
    }
}
