// The one dispatch point over the algorithms (what ServiceBalancer holds): each case answers
// every Balancer operation exactly as its algorithm does on its own, keeps the contract, and
// an end without a latency (a tunnel's) counts without being measured.

import Testing
import YardBalancing

@Suite struct BalancingAlgorithmTests {
    static let weights = [3, 0, 1, 2, 0, 5]
    static let keys = (0 ..< 6).map { HashKey.hash("endpoint-\($0)") }

    /// The same 500 picks, starts, ends and a reweighting through `wrapped` and `bare`.
    static func checkSameSequence<B: Balancer>(_ wrapped: inout BalancingAlgorithm, _ bare: inout B) {
        for i in 0 ..< 500 {
            if i == 250 {
                wrapped.update(weights: [1, 1, 4, 0, 2, 5])
                bare.update(weights: [1, 1, 4, 0, 2, 5])
            }
            let context = PickContext(excluding: i % 7 == 0 ? 0b100 : 0, now: UInt64(i) * 1_000, hash: UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
            let picked = wrapped.pick(context)
            #expect(picked == bare.pick(context), "\(B.self), pick \(i)")
            guard let picked else { continue }
            wrapped.started(picked)
            bare.started(picked)
            if i % 3 == 0 {
                wrapped.finished(picked, latencyNanos: 50_000 + UInt64(picked) * 20_000, now: UInt64(i) * 1_000 + 700)
                bare.finished(picked, latencyNanos: 50_000 + UInt64(picked) * 20_000, now: UInt64(i) * 1_000 + 700)
            } else if i % 3 == 1 {
                wrapped.finished(picked)
                bare.finished(picked)
            }
        }
        #expect(wrapped.endpointCount == bare.endpointCount)
        #expect(wrapped.measuresLatency == bare.measuresLatency)
    }

    @Test func eachCaseAnswersAsItsAlgorithm() {
        var roundRobin = SmoothWeightedRoundRobin(weights: Self.weights)
        var wrappedRoundRobin = BalancingAlgorithm.roundRobin(roundRobin)
        Self.checkSameSequence(&wrappedRoundRobin, &roundRobin)

        var leastConnections = LeastConnections(weights: Self.weights)
        var wrappedLeastConnections = BalancingAlgorithm.leastConnections(leastConnections)
        Self.checkSameSequence(&wrappedLeastConnections, &leastConnections)

        var p2c = PowerOfTwoChoicesEWMA(weights: Self.weights)
        var wrappedP2C = BalancingAlgorithm.p2cEWMA(p2c)
        Self.checkSameSequence(&wrappedP2C, &p2c)

        var maglev = MaglevTable(endpointKeys: Self.keys, weights: Self.weights)
        var wrappedMaglev = BalancingAlgorithm.consistentHash(maglev)
        Self.checkSameSequence(&wrappedMaglev, &maglev)
    }

    @Test func everyCaseKeepsTheContract() {
        for var algorithm in [BalancingAlgorithm.roundRobin(SmoothWeightedRoundRobin(weights: Self.weights)),
                              .leastConnections(LeastConnections(weights: Self.weights)),
                              .p2cEWMA(PowerOfTwoChoicesEWMA(weights: Self.weights)),
                              .consistentHash(MaglevTable(endpointKeys: Self.keys, weights: Self.weights))] {
            BalancerContractTests.checkNeverPicksZeroWeightOrExcluded(&algorithm)
            BalancerContractTests.checkAllZeroPicksNothing(&algorithm)
        }
    }

    @Test func onlyTheLatencyAwareAlgorithmReadsTheClock() {
        #expect(BalancingAlgorithm.p2cEWMA(PowerOfTwoChoicesEWMA(weights: [1])).measuresLatency)
        #expect(!BalancingAlgorithm.roundRobin(SmoothWeightedRoundRobin(weights: [1])).measuresLatency)
        #expect(!BalancingAlgorithm.leastConnections(LeastConnections(weights: [1])).measuresLatency)
        #expect(!BalancingAlgorithm.consistentHash(MaglevTable(endpointKeys: [1])).measuresLatency)
    }

    @Test func anEndWithoutLatencyCountsButIsNotMeasured() {
        var p2c = PowerOfTwoChoicesEWMA(weights: [1, 1])
        var algorithm = BalancingAlgorithm.p2cEWMA(p2c)
        algorithm.started(0)
        algorithm.finished(0)
        guard case .p2cEWMA(let after) = algorithm else {
            Issue.record("the algorithm changed kind")
            return
        }
        // Unobserved and idle again, as before the start: no latency of a tunnel's lifetime.
        #expect(after.cost(0, now: 1_000) == p2c.cost(0, now: 1_000))
        p2c.started(0)
        p2c.finished(0, latencyNanos: 5_000_000_000, now: 5_000_000_000)
        #expect(p2c.cost(0, now: 5_000_000_001) > after.cost(0, now: 5_000_000_001))
    }
}
