// Which endpoints a pick skips, shared by requests and TCP tunnels (ServiceBalancer.swift).

import Testing
@testable import YardProxy

@Suite struct EndpointPickTests {
    @Test func endpointsTriedAlreadyAreSkipped() {
        #expect(ServiceBalancer.excluding(tried: 0b0101, of: 4) == 0b0101)
        #expect(ServiceBalancer.excluding(tried: 0, of: 4) == 0)
    }

    @Test func onceEveryEndpointWasTriedAllMayBeTriedAgain() {
        #expect(ServiceBalancer.excluding(tried: 0b1111, of: 4) == 0)
        #expect(ServiceBalancer.excluding(tried: 0b1, of: 1) == 0)
        #expect(ServiceBalancer.excluding(tried: .max, of: 64) == 0)
    }

    @Test func pastSixtyFourEndpointsTheTriedSetIsKept() {
        // Only the first 64 are tracked: with more, "all tried" cannot be known, so the
        // tried ones stay excluded and the others remain.
        #expect(ServiceBalancer.excluding(tried: .max, of: 65) == .max)
    }
}
