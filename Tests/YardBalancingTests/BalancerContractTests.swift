// What every algorithm promises through the Balancer operations, checked generically.

import Testing
import YardBalancing

@Suite struct BalancerContractTests {
    static let weights = [3, 0, 1, 2, 0, 5]
    static let excluded: UInt64 = 0b001000  // endpoint 3

    static func checkNeverPicksZeroWeightOrExcluded<B: Balancer>(_ balancer: inout B) {
        for i in 0 ..< 2_000 {
            let context = PickContext(excluding: excluded, now: UInt64(i) * 1_000, hash: UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
            guard let picked = balancer.pick(context) else {
                Issue.record("\(B.self) picked nothing with eligible endpoints")
                return
            }
            #expect(picked >= 0 && picked < balancer.endpointCount)
            #expect(weights[picked] > 0 && picked != 3, "\(B.self) picked \(picked)")
            balancer.started(picked)
            balancer.finished(picked, latencyNanos: 100_000 + UInt64(picked) * 10_000, now: UInt64(i) * 1_000 + 500)
        }
    }

    static func checkAllZeroPicksNothing<B: Balancer>(_ balancer: inout B) {
        balancer.update(weights: Array(repeating: 0, count: weights.count))
        #expect(balancer.pick(PickContext(now: 1, hash: 42)) == nil, "\(B.self)")
        balancer.update(weights: weights)
        #expect(balancer.pick(PickContext(now: 1, hash: 42)) != nil, "\(B.self)")
    }

    @Test func everyAlgorithmSkipsZeroWeightAndExcludedEndpoints() {
        var roundRobin = SmoothWeightedRoundRobin(weights: Self.weights)
        var leastConnections = LeastConnections(weights: Self.weights)
        var p2c = PowerOfTwoChoicesEWMA(weights: Self.weights)
        var maglev = MaglevTable(endpointKeys: (0 ..< 6).map { HashKey.hash("endpoint-\($0)") }, weights: Self.weights)
        Self.checkNeverPicksZeroWeightOrExcluded(&roundRobin)
        Self.checkNeverPicksZeroWeightOrExcluded(&leastConnections)
        Self.checkNeverPicksZeroWeightOrExcluded(&p2c)
        Self.checkNeverPicksZeroWeightOrExcluded(&maglev)
    }

    @Test func everyAlgorithmPicksNothingWhenAllWeightsAreZero() {
        var roundRobin = SmoothWeightedRoundRobin(weights: Self.weights)
        var leastConnections = LeastConnections(weights: Self.weights)
        var p2c = PowerOfTwoChoicesEWMA(weights: Self.weights)
        var maglev = MaglevTable(endpointKeys: (0 ..< 6).map { HashKey.hash("endpoint-\($0)") }, weights: Self.weights)
        Self.checkAllZeroPicksNothing(&roundRobin)
        Self.checkAllZeroPicksNothing(&leastConnections)
        Self.checkAllZeroPicksNothing(&p2c)
        Self.checkAllZeroPicksNothing(&maglev)
    }
}
