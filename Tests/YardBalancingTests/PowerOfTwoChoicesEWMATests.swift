// P2C with peak EWMA: a slow endpoint loses traffic, new endpoints get tried, exclusion holds.

#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import YardBalancing

@Suite struct PowerOfTwoChoicesEWMATests {
    /// A discrete-event run on a fake clock: Poisson arrivals, each request taking its
    /// endpoint's base latency plus up to 10 % jitter, observed when it completes.
    /// Returns requests per endpoint.
    static func simulate(
        baseLatencyNanos: [UInt64], requests: Int, meanGapNanos: Double, seed: UInt64
    ) -> [Int] {
        var balancer = PowerOfTwoChoicesEWMA(endpointCount: baseLatencyNanos.count, seed: seed)
        var random = SplitMix64(seed: seed ^ 0xA5A5)
        var pending: [(done: UInt64, endpoint: Int, latency: UInt64)] = []
        var counts = Array(repeating: 0, count: baseLatencyNanos.count)
        var now: UInt64 = 1_000_000_000
        for _ in 0 ..< requests {
            // Exponential gaps (Poisson arrivals): bursts pile requests onto both endpoints.
            let uniform = (Double(random.next() >> 11) + 1) / Double(1 << 53)
            now += UInt64(-log(uniform) * meanGapNanos)
            pending.sort { $0.done < $1.done }
            while let first = pending.first, first.done <= now {
                balancer.finished(first.endpoint, latencyNanos: first.latency, now: first.done)
                pending.removeFirst()
            }
            let endpoint = balancer.pick(now: now)!
            balancer.started(endpoint)
            counts[endpoint] += 1
            let base = baseLatencyNanos[endpoint]
            let latency = base + UInt64(random.next(below: Int(base / 10) + 1))
            pending.append((now + latency, endpoint, latency))
        }
        return counts
    }

    @Test func slowEndpointGetsUnderThirtyPercentOfRequests() {
        for seed: UInt64 in [1, 2, 3] {
            // Fast: 0.2 ms. Slow: 0.2 ms + 5 ms. A request every 0.1 ms on average.
            let counts = Self.simulate(baseLatencyNanos: [200_000, 5_200_000], requests: 20_000, meanGapNanos: 100_000, seed: seed)
            let slowShare = Double(counts[1]) / Double(counts[0] + counts[1])
            print("P2C EWMA simulation, seed \(seed): fast \(counts[0]), slow \(counts[1]) (\((slowShare * 10_000).rounded() / 100) %)")
            #expect(slowShare < 0.30, "seed \(seed): \(counts)")
        }
    }

    @Test func slowEndpointAmongManyIsAvoided() {
        var bases: [UInt64] = Array(repeating: 300_000, count: 8)
        bases[5] = 5_300_000
        let counts = Self.simulate(baseLatencyNanos: bases, requests: 20_000, meanGapNanos: 50_000, seed: 9)
        #expect(Double(counts[5]) < 0.3 * Double(20_000 / 8), "\(counts)")
    }

    @Test func unobservedIdleEndpointIsTriedFirst() {
        var balancer = PowerOfTwoChoicesEWMA(endpointCount: 2, seed: 7)
        balancer.observe(endpoint: 0, latencyNanos: 100_000, now: 1_000)
        #expect(balancer.pick(now: 2_000) == 1)
    }

    @Test func unobservedEndpointWaitsForItsFirstAnswer() {
        var balancer = PowerOfTwoChoicesEWMA(endpointCount: 2, seed: 7)
        balancer.observe(endpoint: 0, latencyNanos: 900_000, now: 1_000)
        balancer.started(1)
        for _ in 0 ..< 20 { #expect(balancer.pick(now: 2_000) == 0) }
    }

    @Test func peakReplacesTheEstimateAtOnceAndDecaysWithTheTimeConstant() {
        let second: UInt64 = 1_000_000_000
        var balancer = PowerOfTwoChoicesEWMA(endpointCount: 1, decayNanos: 10 * second)
        balancer.observe(endpoint: 0, latencyNanos: 1_000_000, now: second)
        balancer.observe(endpoint: 0, latencyNanos: 9_000_000, now: second + 1)
        #expect(abs(balancer.cost(0, now: second + 1) - 9_000_000) < 1)
        // One time constant later with a 1 ms sample: 9 ms · e^-1 + 1 ms · (1 - e^-1).
        balancer.observe(endpoint: 0, latencyNanos: 1_000_000, now: 11 * second + 1)
        let expected = 9_000_000 * 0.367_879_441 + 1_000_000 * (1 - 0.367_879_441)
        #expect(abs(balancer.cost(0, now: 11 * second + 1) - expected) < 10)
        // Idle for another time constant: the estimate decays toward 0.
        #expect(abs(balancer.cost(0, now: 21 * second + 1) - expected * 0.367_879_441) < 10)
    }

    @Test func inFlightRequestsMultiplyTheCost() {
        var balancer = PowerOfTwoChoicesEWMA(endpointCount: 2, seed: 3)
        balancer.observe(endpoint: 0, latencyNanos: 1_000_000, now: 10)
        balancer.observe(endpoint: 1, latencyNanos: 1_500_000, now: 10)
        #expect(balancer.pick(now: 10) == 0)
        balancer.started(0)
        balancer.started(0)
        #expect(balancer.cost(0, now: 10) == 3_000_000)
        #expect(balancer.pick(now: 10) == 1)
    }

    @Test func zeroLatencySamplesStillLetInFlightDecide() {
        // A millisecond clock reports sub-millisecond backends as 0.
        var balancer = PowerOfTwoChoicesEWMA(endpointCount: 2, seed: 3)
        balancer.observe(endpoint: 0, latencyNanos: 0, now: 10)
        balancer.observe(endpoint: 1, latencyNanos: 0, now: 10)
        balancer.started(0)
        for _ in 0 ..< 10 { #expect(balancer.pick(now: 10) == 1) }
    }

    @Test func excludedAndZeroWeightAreNeverPicked() {
        var balancer = PowerOfTwoChoicesEWMA(weights: [1, 0, 1, 1, 1], seed: 11)
        for _ in 0 ..< 500 {
            let picked = balancer.pick(now: 0, excluding: 0b01001)!
            #expect(picked == 2 || picked == 4)
        }
        #expect(balancer.pick(now: 0, excluding: 0b11101) == nil)
        var single = PowerOfTwoChoicesEWMA(endpointCount: 1)
        #expect(single.pick(now: 0) == 0)
        var none = PowerOfTwoChoicesEWMA(weights: [0, 0])
        #expect(none.pick(now: 0) == nil)
    }

    @Test func equalEndpointsShareEvenlyAndTheSameSeedRepeatsTheRun() {
        let a = Self.simulate(baseLatencyNanos: [400_000, 400_000, 400_000], requests: 9_000, meanGapNanos: 100_000, seed: 5)
        let b = Self.simulate(baseLatencyNanos: [400_000, 400_000, 400_000], requests: 9_000, meanGapNanos: 100_000, seed: 5)
        #expect(a == b)
        #expect(a.allSatisfy { abs($0 - 3_000) < 600 }, "\(a)")
    }

    @Test func expOfNegativeMatchesKnownValues() {
        let cases: [(Double, Double)] = [(0, 1), (1e-9, 1 - 1e-9), (0.5, 0.606_530_659_712_633_4), (1, 0.367_879_441_171_442_3),
                                         (3.7, 0.024_723_526_470_339_388), (20, 2.061_153_622_438_557_8e-9)]
        for (x, expected) in cases {
            #expect(abs(expOfNegative(x) - expected) <= expected * 1e-7, "e^-\(x)")
        }
        #expect(expOfNegative(1_000) == 0)
    }
}
