// Smooth weighted round robin: exact shares per window, smoothness, exclusion, weight updates.

import Testing
@testable import YardBalancing

@Suite struct SmoothWeightedRoundRobinTests {
    /// Hand-picked shapes plus 300 random ones (1–12 endpoints, weights 0–20, zeros included).
    static let weightVectors: [[Int]] = {
        var vectors: [[Int]] = [[1], [3], [1, 1], [5, 1, 1], [0, 3], [3, 0, 2], [100, 1], [1, 2, 3, 4, 5], [7, 7, 7], [1, 0, 0, 0, 1]]
        var random = SplitMix64(seed: 42)
        while vectors.count < 310 {
            let count = 1 + random.next(below: 12)
            let weights = (0 ..< count).map { _ in random.next(below: 5) == 0 ? 0 : random.next(below: 21) }
            if weights.contains(where: { $0 > 0 }) { vectors.append(weights) }
        }
        return vectors
    }()

    @Test func everyWindowOfTotalWeightPicksEachEndpointExactlyWeightTimes() {
        for weights in Self.weightVectors {
            var balancer = SmoothWeightedRoundRobin(weights: weights)
            let total = weights.reduce(0, +)
            for window in 0 ..< 3 {
                var counts = Array(repeating: 0, count: weights.count)
                for _ in 0 ..< total { counts[balancer.pick()!] += 1 }
                #expect(counts == weights, "weights \(weights), window \(window)")
            }
        }
    }

    @Test func noEndpointRunsMoreThanOnePickAheadOfItsShareInAnyPrefix() {
        for weights in Self.weightVectors {
            var balancer = SmoothWeightedRoundRobin(weights: weights)
            let total = weights.reduce(0, +)
            var counts = Array(repeating: 0, count: weights.count)
            for k in 1 ... 2 * total {
                counts[balancer.pick()!] += 1
                for i in weights.indices {
                    let ceilShare = (weights[i] * k + total - 1) / total
                    let floorShare = weights[i] * k / total
                    #expect(counts[i] <= ceilShare + 1, "weights \(weights), endpoint \(i), prefix \(k)")
                    #expect(counts[i] >= floorShare - 1, "weights \(weights), endpoint \(i), prefix \(k)")
                }
            }
        }
    }

    @Test func heavyEndpointIsInterleavedNotBurst() {
        var balancer = SmoothWeightedRoundRobin(weights: [5, 1, 1])
        let sequence = (0 ..< 7).map { _ in balancer.pick()! }
        #expect(sequence == [0, 0, 1, 0, 2, 0, 0])
    }

    @Test func zeroWeightIsNeverPicked() {
        var balancer = SmoothWeightedRoundRobin(weights: [0, 2, 0, 1])
        for _ in 0 ..< 300 {
            let picked = balancer.pick()!
            #expect(picked == 1 || picked == 3)
        }
    }

    @Test func allZeroWeightsOrNoEndpointsPickNothing() {
        var zeros = SmoothWeightedRoundRobin(weights: [0, 0, 0])
        var empty = SmoothWeightedRoundRobin(weights: [])
        #expect(zeros.pick() == nil)
        #expect(empty.pick() == nil)
    }

    @Test func negativeWeightsReadAsZero() {
        var balancer = SmoothWeightedRoundRobin(weights: [-5, 1])
        #expect((0 ..< 10).allSatisfy { _ in balancer.pick() == 1 })
    }

    @Test func excludedEndpointsAreSkippedAndTheOthersKeepExactProportions() {
        for weights in Self.weightVectors where weights.count > 1 {
            let excluded = weights.indices.first { weights[$0] > 0 }!
            var remaining = weights
            remaining[excluded] = 0
            let total = remaining.reduce(0, +)
            guard total > 0 else { continue }
            var balancer = SmoothWeightedRoundRobin(weights: weights)
            var counts = Array(repeating: 0, count: weights.count)
            for _ in 0 ..< 2 * total { counts[balancer.pick(excluding: 1 << UInt64(excluded))!] += 1 }
            #expect(counts == remaining.map { 2 * $0 }, "weights \(weights) excluding \(excluded)")
        }
    }

    @Test func excludingEveryEligibleEndpointPicksNothing() {
        var balancer = SmoothWeightedRoundRobin(weights: [1, 0, 4])
        #expect(balancer.pick(excluding: 0b101) == nil)
        #expect(balancer.pick(excluding: 0b100) == 0)
    }

    @Test func endpointReturningFromExclusionNeitherCatchesUpNorStarves() {
        var balancer = SmoothWeightedRoundRobin(weights: [1, 1, 1])
        for _ in 0 ..< 50 { _ = balancer.pick(excluding: 0b001) }
        // Back in: over the next 30 picks endpoint 0 gets its third, not a catch-up burst.
        var counts = [0, 0, 0]
        var longestRunOfZero = 0, run = 0
        for _ in 0 ..< 30 {
            let picked = balancer.pick()!
            counts[picked] += 1
            run = picked == 0 ? run + 1 : 0
            longestRunOfZero = max(longestRunOfZero, run)
        }
        #expect((9 ... 11).contains(counts[0]))
        #expect(longestRunOfZero <= 1)
    }

    @Test func retryExcludingTriedEndpointsVisitsEachEligibleEndpointOnce() {
        var balancer = SmoothWeightedRoundRobin(weights: [3, 1, 0, 2])
        var tried: UInt64 = 0
        var visited: [Int] = []
        while let next = balancer.pick(excluding: tried) {
            visited.append(next)
            tried |= 1 << UInt64(next)
        }
        #expect(visited.sorted() == [0, 1, 3])
    }

    @Test func endpointsBeyondSixtyFourCannotBeExcludedButArePicked() {
        var balancer = SmoothWeightedRoundRobin(weights: Array(repeating: 1, count: 70))
        var counts = Array(repeating: 0, count: 70)
        for _ in 0 ..< 70 { counts[balancer.pick(excluding: .max)!] += 1 }
        #expect(counts[..<64].allSatisfy { $0 == 0 })
        #expect(counts[64...].reduce(0, +) == 70)
    }

    @Test func updateWithTheSameCountKeepsTheRotationGoing() {
        var updated = SmoothWeightedRoundRobin(weights: [5, 1, 1])
        var untouched = SmoothWeightedRoundRobin(weights: [5, 1, 1])
        for _ in 0 ..< 3 { _ = updated.pick(); _ = untouched.pick() }
        updated.update(weights: [5, 1, 1])
        #expect((0 ..< 20).map { _ in updated.pick() } == (0 ..< 20).map { _ in untouched.pick() })
    }

    @Test func updateWithNewWeightsMovesTheSharesWithoutReset() {
        var balancer = SmoothWeightedRoundRobin(weights: [1, 1])
        for _ in 0 ..< 5 { _ = balancer.pick() }
        balancer.update(weights: [3, 1])
        var counts = [0, 0]
        for _ in 0 ..< 400 { counts[balancer.pick()!] += 1 }
        #expect(abs(counts[0] - 300) <= 2 && abs(counts[1] - 100) <= 2, "\(counts)")
        #expect(balancer.weights == [3, 1])
    }

    @Test func updateToZeroDrainsAndBackToWeightResumes() {
        var balancer = SmoothWeightedRoundRobin(weights: [2, 2])
        balancer.update(weights: [0, 2])
        #expect((0 ..< 10).allSatisfy { _ in balancer.pick() == 1 })
        balancer.update(weights: [2, 2])
        var counts = [0, 0]
        for _ in 0 ..< 100 { counts[balancer.pick()!] += 1 }
        #expect(abs(counts[0] - 50) <= 1, "\(counts)")
    }

    @Test func updateWithAnotherCountStartsFresh() {
        var balancer = SmoothWeightedRoundRobin(weights: [1, 1])
        _ = balancer.pick()
        balancer.update(weights: [5, 1, 1])
        var fresh = SmoothWeightedRoundRobin(weights: [5, 1, 1])
        #expect((0 ..< 14).map { _ in balancer.pick() } == (0 ..< 14).map { _ in fresh.pick() })
        #expect(balancer.endpointCount == 3)
    }
}
