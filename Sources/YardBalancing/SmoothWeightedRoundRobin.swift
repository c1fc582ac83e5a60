// nginx's smooth weighted round robin.

/// Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): each endpoint gets its
/// share of requests by weight, interleaved rather than in bursts.
///
/// Threading: a value owned by one event loop; `pick` mutates it, so each loop keeps its own.
///
/// Every pick adds each eligible endpoint's weight to its credit, chooses the endpoint with
/// the most credit (the lowest index on a tie) and takes the eligible total back from it.
/// From a fresh state, every `sum(weights)` consecutive picks choose each endpoint exactly
/// `weight` times, and by any point no endpoint is more than one pick away from its share;
/// weights 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`, so a heavy backend never sees
/// a burst. A pick costs one pass over the endpoints and allocates nothing.
///
/// Exclusion follows nginx's handling of down and already-tried peers: an excluded endpoint
/// neither earns credit nor counts in the total, so the others run the same algorithm among
/// themselves and keep their relative proportions exactly. The excluded endpoint's credit is
/// frozen, not reset: when it comes back it neither catches up on the picks it missed nor
/// waits behind the others, and the sum of all credits stays 0, which keeps them bounded.
/// A weight of 0 behaves like permanent exclusion.
public struct SmoothWeightedRoundRobin: Balancer, Sendable {
    struct Peer: Sendable {
        var weight: Int
        /// nginx's `current_weight`: earned by every pick the endpoint takes part in.
        var credit: Int
    }

    private(set) var peers: [Peer]

    /// Starts from zero credit for every endpoint.
    ///
    /// - Parameter weights: One entry per endpoint; negative reads as 0, and values above
    ///   `Int32.max` are clamped.
    public init(weights: [Int]) {
        peers = weights.map { Peer(weight: effectiveWeight($0), credit: 0) }
    }

    public var endpointCount: Int { peers.count }

    /// The effective weights in use.
    public var weights: [Int] { peers.map(\.weight) }

    /// Applies new effective weights (slow start, drain, health).
    ///
    /// With the same number of endpoints the credits are kept, so a weight change does not
    /// restart the rotation (a slow-start ramp updates weights every few hundred ms); with a
    /// different number the indices mean different endpoints, so every credit starts at 0.
    public mutating func update(weights: [Int]) {
        guard weights.count == peers.count else {
            self = SmoothWeightedRoundRobin(weights: weights)
            return
        }
        for i in weights.indices {
            peers[i].weight = effectiveWeight(weights[i])
        }
    }

    /// Chooses the next endpoint, or nil when every eligible weight is 0.
    ///
    /// - Parameter excluding: Bit `i` skips endpoint `i` (i < 64), e.g. unhealthy or already
    ///   tried by this request.
    public mutating func pick(excluding: UInt64 = 0) -> Int? {
        peers.withUnsafeMutableBufferPointer { peers in
            var total = 0
            var best = -1
            var bestCredit = Int.min
            for i in peers.indices {
                let weight = peers[i].weight
                if weight == 0 || isExcluded(i, by: excluding) { continue }
                let credit = peers[i].credit &+ weight
                peers[i].credit = credit
                total &+= weight
                if credit > bestCredit {
                    best = i
                    bestCredit = credit
                }
            }
            guard best >= 0 else { return nil }
            peers[best].credit = bestCredit &- total
            return best
        }
    }

    public mutating func pick(_ context: PickContext) -> Int? {
        pick(excluding: context.excluding)
    }
}
