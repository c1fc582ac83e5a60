// Least connections: idle endpoints first, weights divide the load, ties take turns.

import Testing
@testable import YardBalancing

@Suite struct LeastConnectionsTests {
    @Test func prefersTheIdleEndpoint() {
        var balancer = LeastConnections(weights: [1, 1, 1])
        let inFlight: [Int32] = [4, 0, 2]
        for _ in 0 ..< 10 {
            #expect(inFlight.withUnsafeBufferPointer { balancer.pick(inFlight: $0) } == 1)
        }
    }

    @Test func comparesInFlightPerUnitOfWeight() {
        var balancer = LeastConnections(weights: [4, 1])
        // 6/4 = 1.5 beats 2/1 = 2.
        let inFlight: [Int32] = [6, 2]
        #expect(inFlight.withUnsafeBufferPointer { balancer.pick(inFlight: $0) } == 0)
        let heavier: [Int32] = [9, 2]
        #expect(heavier.withUnsafeBufferPointer { balancer.pick(inFlight: $0) } == 1)
    }

    @Test func equalLoadsTakeTurns() {
        var balancer = LeastConnections(weights: [1, 1, 1, 1])
        let idle: [Int32] = [0, 0, 0, 0]
        let picks = (0 ..< 8).map { _ in idle.withUnsafeBufferPointer { balancer.pick(inFlight: $0)! } }
        #expect(picks == [0, 1, 2, 3, 0, 1, 2, 3])
    }

    @Test func tiesAmongTheLeastLoadedRotateAndSkipTheBusy() {
        var balancer = LeastConnections(weights: [1, 1, 1, 1])
        let inFlight: [Int32] = [1, 0, 3, 0]
        let picks = (0 ..< 6).map { _ in inFlight.withUnsafeBufferPointer { balancer.pick(inFlight: $0)! } }
        #expect(picks == [1, 3, 1, 3, 1, 3])
    }

    @Test func spreadsShortRequestsEvenlyWithOwnCounts() {
        var balancer = LeastConnections(weights: [1, 1, 1])
        var counts = [0, 0, 0]
        for _ in 0 ..< 300 {
            let endpoint = balancer.pick()!
            balancer.started(endpoint)
            counts[endpoint] += 1
            balancer.finished(endpoint)
        }
        #expect(counts == [100, 100, 100])
    }

    @Test func fillsEndpointsUpEvenlyWhileRequestsAreOutstanding() {
        var balancer = LeastConnections(weights: [2, 1])
        for _ in 0 ..< 30 { balancer.started(balancer.pick()!) }
        #expect(balancer.inFlight(0) == 20 && balancer.inFlight(1) == 10)
    }

    @Test func zeroWeightAndExcludedAreNeverPicked() {
        var balancer = LeastConnections(weights: [0, 1, 1])
        let inFlight: [Int32] = [0, 5, 9]
        #expect(inFlight.withUnsafeBufferPointer { balancer.pick(inFlight: $0) } == 1)
        #expect(inFlight.withUnsafeBufferPointer { balancer.pick(inFlight: $0, excluding: 0b010) } == 2)
        #expect(inFlight.withUnsafeBufferPointer { balancer.pick(inFlight: $0, excluding: 0b110) } == nil)
    }

    @Test func finishedNeverGoesBelowZeroAndNewEndpointListResetsCounts() {
        var balancer = LeastConnections(weights: [1, 1])
        balancer.finished(0)
        #expect(balancer.inFlight(0) == 0)
        balancer.started(1)
        balancer.update(weights: [1, 3])
        #expect(balancer.inFlight(1) == 1)
        balancer.update(weights: [1, 1, 1])
        #expect(balancer.inFlight(1) == 0 && balancer.endpointCount == 3)
    }
}
