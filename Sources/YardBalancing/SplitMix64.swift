// The seeded random number generator behind the randomized balancers.

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit state, one add and a mix per number.
///
/// Threading: a value owned by whoever draws from it (one event loop's balancer).
///
/// Seeded rather than `SystemRandomNumberGenerator` so that a test, or a replay of a
/// production trace, draws the same sequence; and so that loops given different seeds do not
/// make the same choices in lockstep.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return HashKey.mix(state)
    }

    /// A number in `0 ..< upperBound` by multiply-high (Lemire): no division, and a bias of at
    /// most `upperBound / 2^64`, far below anything a balancer can notice.
    @inline(__always)
    public mutating func next(below upperBound: Int) -> Int {
        Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(truncatingIfNeeded: upperBound)).high)
    }
}
