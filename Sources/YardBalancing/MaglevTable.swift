// Consistent hashing with a Maglev lookup table (Eisenbud et al., NSDI 2016).

/// A Maglev lookup table: consistent hashing with O(1) lookups and an even spread.
///
/// Threading: built anywhere (building allocates and costs a few milliseconds), then owned
/// by one event loop, or shared read-only: `lookup` never mutates, so loops may hold copies
/// of one table (the storage is shared until someone calls `update`).
///
/// Each endpoint walks its own permutation of the `tableSize` slots, derived from its key
/// alone (`offset` and `skip` from two hashes of the key; `tableSize` is prime so every skip
/// visits every slot), and the endpoints take turns claiming the next free slot of their
/// walk until the table is full. A lookup is `table[hash % tableSize]`. Because each walk
/// depends only on its own key, removing one endpoint of N moves its keys plus a little
/// more (the paper measures a few percent): about 1/N of all keys. Adding one, likewise.
/// Every endpoint owns `tableSize / N` slots, ±1, so the split is even; `tableSize` should
/// be well above 100 × N.
///
/// Weights (Envoy's weighted Maglev): an endpoint takes a turn in a round only once its
/// claimed share has fallen behind `weight / maxWeight`, so slots are owned in proportion
/// to weight. Weight 0 removes the endpoint from the table without disturbing the others'
/// walks, which is how health and drain take an endpoint out.
public struct MaglevTable: Balancer, Sendable {
    /// Number of slots; a prime.
    public let tableSize: Int
    private let endpointKeys: [UInt64]
    private var weights: [Int]
    /// Slot → endpoint index; empty when no endpoint has a weight.
    private var slots: [Int32]
    /// Bit i set when endpoint i (< 64) owns slots; with `ownersBeyondMask`, tells in O(1)
    /// whether an exclusion mask leaves anyone to fall back to.
    private var ownersMask: UInt64 = 0
    private var ownersBeyondMask = false

    /// Builds the table.
    ///
    /// - Parameters:
    ///   - endpointKeys: A stable identity per endpoint, e.g. `HashKey.hash("10.0.0.7:8080")`:
    ///     the same key gets the same slots on every replica and after every rebuild.
    ///   - weights: One per endpoint (0 leaves it out); nil means all 1.
    ///   - tableSize: A prime; the default 65537 suits up to a few hundred endpoints.
    public init(endpointKeys: [UInt64], weights: [Int]? = nil, tableSize: Int = 65537) {
        precondition(Self.isPrime(tableSize), "MaglevTable: tableSize \(tableSize) is not a prime")
        precondition(weights == nil || weights!.count == endpointKeys.count,
                     "MaglevTable: \(weights!.count) weights for \(endpointKeys.count) endpoint keys")
        self.tableSize = tableSize
        self.endpointKeys = endpointKeys
        self.weights = (weights ?? Array(repeating: 1, count: endpointKeys.count)).map(effectiveWeight)
        slots = []
        rebuild()
    }

    public var endpointCount: Int { endpointKeys.count }

    /// The endpoint owning `hash`, or nil when no endpoint has a weight.
    public func lookup(_ hash: UInt64) -> Int? {
        guard !slots.isEmpty else { return nil }
        return Int(slots[Int(hash % UInt64(tableSize))])
    }

    /// The endpoint owning `hash`, or, when that one is excluded, the owner of the next slot
    /// that is not excluded.
    ///
    /// The fallback walks the table from the key's slot, so it is as consistent as the table:
    /// every replica retries a given key on the same second choice, and neighbouring slots
    /// belong to endpoints in proportion to their weights.
    public func lookup(_ hash: UInt64, excluding: UInt64) -> Int? {
        guard !slots.isEmpty else { return nil }
        guard excluding & ownersMask != 0 else { return lookup(hash) }
        guard ownersBeyondMask || ownersMask & ~excluding != 0 else { return nil }
        return slots.withUnsafeBufferPointer { slots in
            var slot = Int(hash % UInt64(tableSize))
            while true {
                let owner = Int(slots[slot])
                if !isExcluded(owner, by: excluding) { return owner }
                slot += 1
                if slot == slots.count { slot = 0 }
            }
        }
    }

    public mutating func pick(_ context: PickContext) -> Int? {
        lookup(context.hash, excluding: context.excluding)
    }

    /// Rebuilds the table for new weights (allocates; O(tableSize)). The endpoint keys are
    /// fixed: a new endpoint list is a new table.
    public mutating func update(weights: [Int]) {
        precondition(weights.count == endpointKeys.count,
                     "MaglevTable: \(weights.count) weights for \(endpointKeys.count) endpoint keys; build a new table for a new endpoint list")
        self.weights = weights.map(effectiveWeight)
        rebuild()
    }

    /// Slots owned per endpoint (for tests and `switchyard explain`).
    public func slotCounts() -> [Int] {
        var counts = Array(repeating: 0, count: endpointKeys.count)
        for owner in slots { counts[Int(owner)] += 1 }
        return counts
    }

    // MARK: Building

    /// Where an endpoint's walk is, and how far ahead it is of its weighted share.
    private struct Walk {
        let endpoint: Int32
        let weight: UInt64
        let skip: Int
        var position: Int
        /// The round at which this endpoint may claim again (Envoy's `target_weight_`).
        var nextTurn: UInt64 = 0
    }

    private mutating func rebuild() {
        let size = tableSize
        var walks: [Walk] = []
        var maxWeight: UInt64 = 0
        ownersMask = 0
        ownersBeyondMask = false
        for (i, key) in endpointKeys.enumerated() where weights[i] > 0 {
            // Two independent hashes of the key, as the paper prescribes.
            let offset = Int(HashKey.mix(key ^ 0x6D61_676C_6576_6F66) % UInt64(size))
            let skip = Int(HashKey.mix(key ^ 0x6D61_676C_7365_6B70) % UInt64(size - 1)) + 1
            walks.append(Walk(endpoint: Int32(i), weight: UInt64(weights[i]), skip: skip, position: offset))
            maxWeight = max(maxWeight, UInt64(weights[i]))
            if i < 64 { ownersMask |= 1 << UInt64(i) } else { ownersBeyondMask = true }
        }
        guard !walks.isEmpty else {
            slots = []
            return
        }
        var table = [Int32](repeating: -1, count: size)
        var filled = 0
        var round: UInt64 = 0
        fill: while true {
            for w in walks.indices {
                // An endpoint of weight maxWeight / 3 claims once every 3 rounds.
                if round * walks[w].weight < walks[w].nextTurn { continue }
                walks[w].nextTurn += maxWeight
                var slot = walks[w].position
                while table[slot] >= 0 {
                    slot += walks[w].skip
                    if slot >= size { slot -= size }
                }
                table[slot] = walks[w].endpoint
                var next = slot + walks[w].skip
                if next >= size { next -= size }
                walks[w].position = next
                filled += 1
                if filled == size { break fill }
            }
            round += 1
        }
        slots = table
    }

    private static func isPrime(_ n: Int) -> Bool {
        guard n >= 2 else { return false }
        var d = 2
        while d * d <= n {
            if n % d == 0 { return false }
            d += 1
        }
        return true
    }
}
