import Testing
import YardModel

/// The operator's verbs on a service's traffic state, as pure functions.
@Suite struct TrafficStateVerbs {
    let tracks = ["blue", "green"]
    let blue = TrafficState(activeTrack: "blue")

    func apply(_ state: TrafficState, _ action: TrafficAction, tracks: [String]? = nil) throws -> TrafficState {
        try state.applying(action, tracks: tracks ?? self.tracks, who: "ops", why: "test", timeUnix: 100)
    }

    @Test func flipWithoutATargetGoesToTheOtherTrackAndBumpsTheRevision() throws {
        let flipped = try apply(blue, .flip(to: nil))
        #expect(flipped.activeTrack == "green")
        #expect(flipped.revision == 1)
        #expect(flipped.history.last == TrafficChange(revision: 1, timeUnix: 100, who: "ops", why: "test", action: "flip blue -> green", fromTrack: "blue", toTrack: "green"))
        #expect(try apply(flipped, .flip(to: nil)).activeTrack == "blue")
    }

    /// A store may hold any revision (another writer, a hand edit): the largest one is
    /// refused with a message, never stepped past with a trap.
    @Test func aStateAtTheLargestRevisionIsRefusedNotTrapped() {
        let last = TrafficState(activeTrack: "blue", revision: Int64.max)
        #expect(throws: TrafficError.self) { try apply(last, .flip(to: "green")) }
    }

    @Test func flipClearsTheCanary() throws {
        let canary = try apply(blue, .setCanary(track: nil, permille: 100))
        let flipped = try apply(canary, .flip(to: "green"))
        #expect(flipped.canaryTrack == nil && flipped.canaryPermille == 0)
    }

    @Test func flipToAnUnknownTrackOrAmbiguousTargetIsRefused() {
        #expect(throws: TrafficError.self) { try apply(blue, .flip(to: "purple")) }
        #expect(throws: TrafficError.self) { try apply(blue, .flip(to: nil), tracks: ["blue", "green", "red"]) }
        #expect(throws: TrafficError.self) { try apply(blue, .flip(to: nil), tracks: ["blue"]) }
    }

    @Test func stepWalksThePlanAndStopsAtItsTop() throws {
        var state = blue
        var shares: [Int] = []
        for _ in 0..<4 {
            state = try apply(state, .step)
            shares.append(state.canaryPermille)
        }
        #expect(shares == [50, 250, 500, 1000])
        #expect(state.canaryTrack == "green")
        #expect(state.history.map(\.action) == ["canary green 0% -> 5%", "canary green 5% -> 25%", "canary green 25% -> 50%", "canary green 50% -> 100%"])
        #expect(throws: TrafficError.self) { try apply(state, .step) }
    }

    @Test func stepFromAShareBetweenStepsGoesToTheNextOneAbove() throws {
        let at10 = try apply(blue, .setCanary(track: "green", permille: 100))
        #expect(try apply(at10, .step).canaryPermille == 250)
    }

    @Test func promoteMakesTheCanaryActiveAndAbortKeepsItsName() throws {
        let canary = try apply(blue, .setCanary(track: "green", permille: 250))
        let aborted = try apply(canary, .abort)
        #expect(aborted.canaryTrack == "green" && aborted.canaryPermille == 0 && aborted.activeTrack == "blue")
        let promoted = try apply(canary, .promote)
        #expect(promoted.activeTrack == "green" && promoted.canaryTrack == nil)
        #expect(throws: TrafficError.self) { try apply(promoted, .promote) }
    }

    @Test func aCanaryMustBeAnotherExistingTrackAndNeedsAnActiveOne() {
        #expect(throws: TrafficError.self) { try apply(blue, .setCanary(track: "blue", permille: 10)) }
        #expect(throws: TrafficError.self) { try apply(blue, .setCanary(track: "red", permille: 10)) }
        #expect(throws: TrafficError.self) { try apply(blue, .setCanary(track: "green", permille: 1001)) }
        #expect(throws: TrafficError.self) { try apply(TrafficState(activeTrack: nil), .step) }
    }

    @Test func historyKeepsTheLastTwentyChanges() throws {
        var state = blue
        for _ in 0..<25 { state = try apply(state, .flip(to: nil)) }
        #expect(state.history.count == TrafficState.historyLimit)
        #expect(state.history.first?.revision == 6 && state.revision == 25)
    }

    @Test func storedStatesWinOverDiscoveryOnlyOnceWritten() {
        var shop = ServiceDefinition(name: "shop", activeTrack: "blue", instances: [
            InstanceDefinition(address: "127.0.0.1", port: 1, track: "blue"),
            InstanceDefinition(address: "127.0.0.1", port: 2, track: "green"),
        ])
        shop.canary = CanaryConfig(track: "green", permille: 0, sticky: .header("X-User"))
        let catalog = ServiceCatalog(services: [shop])
        #expect(catalog.applying(["shop": TrafficState(activeTrack: "green", revision: 0)]) == catalog)
        let stored = TrafficState(activeTrack: "blue", canaryTrack: "green", canaryPermille: 100, revision: 3)
        let applied = catalog.applying(["shop": stored]).services[0]
        #expect(applied.canary == CanaryConfig(track: "green", permille: 100, sticky: .header("X-User")))
        #expect(TrafficState(discovered: shop).canaryTrack == "green")
    }
}

/// The canary gate: error rate and p99 against the stable track, with a floor of requests.
@Suite struct CanaryGateDecisions {
    let bounds: [Double] = [1, 5, 10, 50, 100]

    func stats(requests: UInt64, errors: UInt64 = 0, slowBucket: Int = 0, slow: UInt64 = 0) -> TrackStats {
        var buckets = [UInt64](repeating: 0, count: bounds.count + 1)
        buckets[0] = requests - slow
        buckets[slowBucket] += slow
        return TrackStats(requests: requests, serverErrors: errors, connectFailures: 0, latencyBuckets: buckets)
    }

    func verdict(_ canary: TrackStats, _ stable: TrackStats, _ policy: GatePolicy = GatePolicy(minRequests: 50)) -> GateVerdict {
        policy.evaluate(canary: canary, stable: stable, canaryTrack: "green", stableTrack: "blue", windowSeconds: 10, bucketBoundsMs: bounds)
    }

    @Test func aHealthyCanaryPasses() {
        #expect(verdict(stats(requests: 100), stats(requests: 1000)).passed)
    }

    @Test func fivePercentErrorsFailAgainstAHealthyStableTrack() {
        let result = verdict(stats(requests: 100, errors: 5), stats(requests: 1000))
        #expect(!result.passed)
        #expect(result.canary.errorRatePercent == 5)
        #expect(result.reasons.count == 1 && result.reasons[0].contains("error rate 5%"))
    }

    @Test func errorsNoWorseThanStablesPass() {
        #expect(verdict(stats(requests: 100, errors: 5), stats(requests: 1000, errors: 50)).passed)
    }

    @Test func aSlowCanaryFailsOnP99ButFastDifferencesBelowTheFloorDoNot() {
        let slow = verdict(stats(requests: 100, slowBucket: 4, slow: 5), stats(requests: 1000))
        #expect(!slow.passed && slow.reasons[0].contains("p99"))
        #expect(slow.canary.p99Ms == 100)
        let fast = verdict(stats(requests: 100, slowBucket: 1, slow: 5), stats(requests: 1000))
        #expect(fast.passed, "5 ms is under the 10 ms floor: \(fast.reasons)")
    }

    @Test func tooFewCanaryRequestsCannotPass() {
        let result = verdict(stats(requests: 10), stats(requests: 1000))
        #expect(!result.passed && result.reasons[0].contains("needs 50"))
    }

    @Test func windowsAreDifferencesOfCumulativeCounts() {
        let later = stats(requests: 300, errors: 6)
        let earlier = stats(requests: 100, errors: 1)
        let window = later.subtracting(earlier)
        #expect(window.requests == 200 && window.serverErrors == 5 && window.latencyBuckets[0] == 200)
    }
}
