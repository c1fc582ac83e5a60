import Foundation
import Testing
import YardModel

/// Endpoint overrides as pure values: keys, verbs on the traffic state, and how they are
/// laid over the discovered catalog.
@Suite struct EndpointOverrides {
    let shop = ServiceDefinition(name: "shop", activeTrack: "blue", instances: [
        InstanceDefinition(address: "10.0.0.1", port: 80, track: "blue"),
        InstanceDefinition(address: "10.0.0.2", port: 80, track: "blue", weight: 2),
        InstanceDefinition(address: "::1", port: 8080, track: "green"),
    ])

    func apply(_ state: TrafficState, _ action: TrafficAction) throws -> TrafficState {
        try state.applying(action, tracks: ["blue", "green"], who: "ops", why: "test", timeUnix: 100)
    }

    @Test func keysAreAddressColonPortWithIPv6InBrackets() {
        #expect(endpointKey(address: "10.0.0.1", port: 80) == "10.0.0.1:80")
        #expect(endpointKey(address: "::1", port: 8080) == "[::1]:8080")
        #expect(parseEndpointKey("10.0.0.1:80")! == ("10.0.0.1", 80))
        #expect(parseEndpointKey("[::1]:8080")! == ("::1", 8080))
        #expect(parseEndpointKey("web-1.internal:443")! == ("web-1.internal", 443))
        for bad in ["10.0.0.1", "10.0.0.1:", ":80", "10.0.0.1:0", "10.0.0.1:65536", "::1:80", "[10.0.0.1]:80", "a b:80", "a/b:80",
                    String(repeating: "a", count: 400) + ":80", "10.0.0.1:-1", "10.0.0.1:8o"] {
            #expect(parseEndpointKey(bad) == nil, "\(bad)")
        }
    }

    @Test func aChangeIsARevisionWithHistoryAndReadyWithoutWeightIsNotStored() throws {
        let discovered = TrafficState(discovered: shop)
        let maint = try apply(discovered, .endpoint("10.0.0.1:80", .state(.maint)))
        #expect(maint.revision == 1 && maint.endpoints == ["10.0.0.1:80": EndpointOverride(state: .maint)])
        #expect(maint.history.last?.action == "endpoint 10.0.0.1:80 ready -> maint")
        let weighted = try apply(maint, .endpoint("10.0.0.1:80", .weight(10)))
        #expect(weighted.endpoints["10.0.0.1:80"] == EndpointOverride(state: .maint, weight: 10))
        let ready = try apply(weighted, .endpoint("10.0.0.1:80", .state(.ready)))
        #expect(ready.endpoints["10.0.0.1:80"] == EndpointOverride(state: .ready, weight: 10))
        let reset = try apply(ready, .endpoint("10.0.0.1:80", .weight(nil)))
        #expect(reset.endpoints.isEmpty && reset.revision == 4)
        #expect(reset.history.last?.action == "endpoint 10.0.0.1:80 weight 10 -> discovered")
        #expect(throws: TrafficError.self) { try apply(discovered, .endpoint("10.0.0.1:80", .weight(257))) }
        #expect(throws: TrafficError.self) { try apply(discovered, .endpoint("10.0.0.1:80", .weight(-1))) }
    }

    /// Storing only an endpoint override must not freeze the active track discovery names.
    @Test func onlyEndpointOverridesLeaveTheTracksToDiscovery() throws {
        let stored = try apply(TrafficState(discovered: shop), .endpoint("10.0.0.1:80", .state(.drain)))
        #expect(!stored.tracksStored)
        var moved = shop
        moved.activeTrack = "green"
        let catalog = ServiceCatalog(services: [moved]).applying(["shop": stored])
        #expect(catalog.services[0].activeTrack == "green")
        #expect(catalog.services[0].instances[0].drain)
        #expect(stored.effective(discovered: moved).activeTrack == "green")
        // A flip afterwards stores the tracks, and keeps the override.
        let flipped = try apply(stored.effective(discovered: moved), .flip(to: "blue"))
        #expect(flipped.tracksStored && flipped.endpoints["10.0.0.1:80"]?.state == .drain)
        #expect(ServiceCatalog(services: [moved]).applying(["shop": flipped]).services[0].activeTrack == "blue")
    }

    @Test func overridesReplaceWeightsDrainAndSkipAbsentEndpoints() {
        let overrides = [
            "10.0.0.2:80": EndpointOverride(weight: 7),
            "[::1]:8080": EndpointOverride(state: .maint),
            "10.9.9.9:80": EndpointOverride(state: .maint),
        ]
        let applied = shop.applying(endpointOverrides: overrides)
        #expect(applied.instances.map(\.weight) == [1, 7, 1])
        #expect(applied.instances.map(\.drain) == [false, false, true])
        let table = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [applied]))
        #expect(table.services[0].endpoints.map(\.effectiveWeight) == [100, 700, 0])
    }

    /// Health and slow start scale the stored weight, as HAProxy's effective weight: the
    /// table builder hands the overridden weight to the health reading.
    @Test func healthAndSlowStartScaleTheStoredWeight() {
        let applied = shop.applying(endpointOverrides: ["10.0.0.1:80": EndpointOverride(weight: 8)])
        var seen: [Int] = []
        let table = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [applied])) { _, _, weight in
            seen.append(weight)
            // Half-way through slow start.
            return EndpointState(effectiveWeight: weight * 50, health: "healthy", ejected: false)
        }
        #expect(seen == [8, 2, 1])
        #expect(table.services[0].endpoints.map(\.effectiveWeight) == [400, 100, 50])
    }

    /// A document written before overrides existed still decodes (tracks stored, none set).
    @Test func anOlderStoredDocumentDecodes() throws {
        let old = #"{"activeTrack":"blue","canaryPermille":0,"plan":[50,1000],"revision":3,"history":[]}"#
        let state = try JSONDecoder().decode(TrafficState.self, from: Data(old.utf8))
        #expect(state.revision == 3 && state.endpoints.isEmpty && state.tracksStored)
        let again = try JSONDecoder().decode(TrafficState.self, from: JSONEncoder().encode(state))
        #expect(again == state)
    }
}

/// The canary gate over several replicas' published windows.
@Suite struct FleetGateSums {
    let bounds: [Double] = [10, 100]

    @Test func aGateReadsTheShortestWindowThatCoversItsSpan() {
        let windows = [10.0, 30, 60].map { PublishedWindow(seconds: $0, tracks: [:]) }
        #expect(PublishedWindow.pick(windows, seconds: 25)?.seconds == 30)
        #expect(PublishedWindow.pick(windows, seconds: 60)?.seconds == 60)
        #expect(PublishedWindow.pick(windows, seconds: 600)?.seconds == 60)
        #expect(PublishedWindow.pick([], seconds: 5) == nil)
    }

    @Test func theFleetIsSummedAndEachReplicaListed() {
        let healthy = ["green": TrackStats(requests: 100, latencyBuckets: [100, 0, 0]), "blue": TrackStats(requests: 100, latencyBuckets: [100, 0, 0])]
        let failing = ["green": TrackStats(requests: 100, serverErrors: 20, latencyBuckets: [100, 0, 0]), "blue": TrackStats(requests: 100, latencyBuckets: [100, 0, 0])]
        let fleet = [
            ReplicaTrackStats(replica: "r1", windowSeconds: 30, reportedUnix: nil, tracks: healthy),
            ReplicaTrackStats(replica: "r2", windowSeconds: 60, reportedUnix: 5, tracks: failing),
        ]
        let policy = GatePolicy(maxErrorRateIncrease: 1, minRequests: 50)
        let alone = policy.evaluate(fleet: [fleet[0]], canaryTrack: "green", stableTrack: "blue", bucketBoundsMs: bounds)
        #expect(alone.passed)
        let verdict = policy.evaluate(fleet: fleet, canaryTrack: "green", stableTrack: "blue", bucketBoundsMs: bounds)
        #expect(!verdict.passed)
        #expect(verdict.canary.requests == 200 && verdict.canary.serverErrors == 20 && verdict.windowSeconds == 60)
        #expect(verdict.replicas?.map(\.replica) == ["r1", "r2"])
        #expect(verdict.replicas?[1].canary.serverErrors == 20)
    }
}
