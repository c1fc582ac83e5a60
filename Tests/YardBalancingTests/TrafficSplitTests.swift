// The track decision as values: override, no canary, 100 %, empty active track, sticky key, share.

import Testing
@testable import YardBalancing

@Suite struct TrafficSplitTests {
    @Test func overrideHeaderPinsItsTrackBeforeAnyCanaryRule() {
        var split = TrafficSplit(canaryPermille: 1000)
        let decision = split.decide(override: .track(2), stickyPoint: 5, activeHasEndpoints: true)
        #expect(decision == TrafficSplit.Decision(track: .pinned(2), rule: .overrideHeader))
    }

    @Test func refusedOrUnknownOverrideFallsThroughToTheCanaryRules() {
        for override in [TrafficSplit.Override.notAllowed, .unknownTrack, .absent] {
            var split = TrafficSplit(canaryPermille: 0)
            #expect(split.decide(override: override, stickyPoint: -1, activeHasEndpoints: true)
                == TrafficSplit.Decision(track: .active, rule: .noCanary))
        }
    }

    @Test func canaryAtHundredPercentTakesEveryRequestEvenStickyOnes() {
        var split = TrafficSplit(canaryPermille: 1000)
        for point in [-1, 0, 999] {
            #expect(split.decide(override: .absent, stickyPoint: point, activeHasEndpoints: true)
                == TrafficSplit.Decision(track: .canary, rule: .canaryAtFull))
        }
    }

    @Test func anEmptyActiveTrackSendsEveryRequestToTheCanary() {
        var split = TrafficSplit(canaryPermille: 100)
        #expect(split.decide(override: .absent, stickyPoint: 900, activeHasEndpoints: false)
            == TrafficSplit.Decision(track: .canary, rule: .activeTrackEmpty))
    }

    @Test func stickyPointBelowTheShareGoesToTheCanary() {
        var split = TrafficSplit(canaryPermille: 250)
        #expect(split.decide(override: .absent, stickyPoint: 249, activeHasEndpoints: true)
            == TrafficSplit.Decision(track: .canary, rule: .stickyKey(point: 249)))
        #expect(split.decide(override: .absent, stickyPoint: 250, activeHasEndpoints: true)
            == TrafficSplit.Decision(track: .active, rule: .stickyKey(point: 250)))
    }

    @Test func stickyRequestsDoNotMoveTheShareCounter() {
        var withSticky = TrafficSplit(canaryPermille: 100)
        var without = TrafficSplit(canaryPermille: 100)
        var a: [TrafficSplit.Track] = []
        var b: [TrafficSplit.Track] = []
        for i in 0..<2000 {
            if i % 3 == 0 { _ = withSticky.decide(override: .absent, stickyPoint: 5, activeHasEndpoints: true) }
            a.append(withSticky.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true).track)
            b.append(without.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true).track)
        }
        #expect(a == b)
    }

    @Test func canaryShareIsExactOverEveryWindowOfAThousand() {
        for permille in [1, 50, 100, 333, 500, 999] {
            var split = TrafficSplit(canaryPermille: permille)
            for _ in 0..<3 {
                var canary = 0
                for _ in 0..<1000 {
                    let decision = split.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true)
                    #expect(decision.rule == .canaryShare)
                    if decision.track == .canary { canary += 1 }
                }
                #expect(canary == permille)
            }
        }
    }

    @Test func updatingToTheSameShareKeepsTheRotation() {
        var kept = TrafficSplit(canaryPermille: 500)
        var fresh = TrafficSplit(canaryPermille: 500)
        _ = kept.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true)
        _ = fresh.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true)
        kept.update(canaryPermille: 500)
        #expect(kept.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true)
            == fresh.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true))
        kept.update(canaryPermille: 0)
        #expect(kept.canaryPermille == 0)
    }

    @Test func outOfRangeSharesAreClamped() {
        #expect(TrafficSplit(canaryPermille: -5).canaryPermille == 0)
        #expect(TrafficSplit(canaryPermille: 5000).canaryPermille == 1000)
    }

    @Test func stickyPointIsTheSameForBytesAndStringsAndBelowAThousand() {
        for key in ["user-1", "user-2", "", "ünïcode"] {
            let point = TrafficSplit.stickyPoint(key: key)
            let bytes = Array(key.utf8).withUnsafeBytes { TrafficSplit.stickyPoint(key: $0) }
            #expect(point == bytes)
            #expect((0..<1000).contains(point))
        }
    }

    // MARK: Slow start on every canary step

    /// Canary picks among `count` unpinned, unsticky requests at `now`.
    func canaryCount(_ split: inout TrafficSplit, _ count: Int, now: Int64) -> Int {
        (0..<count).filter { _ in split.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true, now: now).track == .canary }.count
    }

    @Test func aRisingShareRampsLinearlyOverSlowStart() {
        var split = TrafficSplit(canaryPermille: 100)
        split.update(canaryPermille: 500, slowStartMs: 10_000, now: 1_000)
        #expect(split.canaryPermille == 500)
        #expect(split.share(now: 1_000) == 100)
        #expect(split.share(now: 6_000) == 300)
        #expect(split.share(now: 10_999) == 499)
        #expect(split.share(now: 11_000) == 500)
        #expect(split.isRamping(now: 10_999) && !split.isRamping(now: 11_000))
        // A quarter of the way: 200 ‰ in force, exactly, over 1000 requests.
        #expect(canaryCount(&split, 1_000, now: 3_500) == 200)
    }

    @Test func theShareIsExactAgainOverEveryWindowOnceTheRampEnds() {
        var split = TrafficSplit(canaryPermille: 50)
        split.update(canaryPermille: 250, slowStartMs: 2_000, now: 0)
        _ = canaryCount(&split, 777, now: 1_000)
        let after = (0..<3_000).map { _ in split.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true, now: 2_000).track }
        let inexact = (0...2_000).filter { after[$0..<$0 + 1_000].filter { $0 == .canary }.count != 250 }
        #expect(inexact.isEmpty, "windows starting at \(inexact.prefix(5)) are not 250 ‰")
    }

    @Test func aCanaryThatStartsRampsFromZero() {
        var split = TrafficSplit(canaryPermille: 0)
        split.update(canaryPermille: 250, slowStartMs: 4_000, now: 1_000)
        #expect(canaryCount(&split, 500, now: 1_000) == 0, "nothing at the first instant")
        #expect(canaryCount(&split, 1_000, now: 3_000) == 125)
        #expect(canaryCount(&split, 1_000, now: 5_000) == 250)
    }

    @Test func aFallingShareAppliesAtOnce() {
        var split = TrafficSplit(canaryPermille: 500)
        split.update(canaryPermille: 100, slowStartMs: 10_000, now: 0)
        #expect(split.share(now: 0) == 100)
        #expect(!split.isRamping(now: 0))
        #expect(canaryCount(&split, 1_000, now: 0) == 100)
    }

    @Test func withoutSlowStartTheShareJumps() {
        var split = TrafficSplit(canaryPermille: 50)
        split.update(canaryPermille: 500, now: 0)
        #expect(split.share(now: 0) == 500)
        #expect(canaryCount(&split, 1_000, now: 0) == 500)
    }

    @Test func aStepDuringARampRampsOnFromTheShareInForce() {
        var split = TrafficSplit(canaryPermille: 0)
        split.update(canaryPermille: 500, slowStartMs: 10_000, now: 0)
        split.update(canaryPermille: 1_000, slowStartMs: 10_000, now: 5_000)
        #expect(split.share(now: 5_000) == 250)
        #expect(split.share(now: 10_000) == 625)
        #expect(split.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true, now: 15_000)
            == TrafficSplit.Decision(track: .canary, rule: .canaryAtFull))
    }

    @Test func stickyClientsOnlyMoveForwardDuringTheRamp() {
        var split = TrafficSplit(canaryPermille: 100)
        split.update(canaryPermille: 500, slowStartMs: 4_000, now: 0)
        // Point 300 joins the canary when the share in force passes 300 (at 2 s), never earlier.
        var tracks: [TrafficSplit.Track] = []
        for now in stride(from: Int64(0), through: 4_000, by: 250) {
            tracks.append(split.decide(override: .absent, stickyPoint: 300, activeHasEndpoints: true, now: now).track)
        }
        let firstCanary = tracks.firstIndex(of: .canary)
        #expect(firstCanary == 9, "\(tracks)")
        #expect(tracks[(firstCanary ?? 0)...].allSatisfy { $0 == .canary })
    }
}

/// The points the proxy gives clients it sets a sticky cookie for.
@Suite struct StickyAssignmentTests {
    @Test func assignedPointsFallOnTheChosenSideOfTheShareAndSpreadOverIt() {
        var random = SplitMix64(seed: 7)
        var canarySeen = Set<Int>()
        var stableSeen = Set<Int>()
        for _ in 0..<20_000 {
            let canary = TrafficSplit.assignedPoint(canary: true, share: 300, using: &random)
            #expect(canary >= 0 && canary < 300)
            canarySeen.insert(canary)
            let stable = TrafficSplit.assignedPoint(canary: false, share: 300, using: &random)
            #expect(stable >= 300 && stable < 1000)
            stableSeen.insert(stable)
        }
        #expect(canarySeen.count == 300 && stableSeen.count == 700)
        #expect(TrafficSplit.assignedPoint(canary: true, share: 1000, using: &random) < 1000)
        #expect(TrafficSplit.assignedPoint(canary: false, share: 0, using: &random) < 1000)
    }

    @Test func assignedClientsKeepTheirTrackAndOnlyMoveForwardWhenTheShareRises() {
        var random = SplitMix64(seed: 11)
        var split = TrafficSplit(canaryPermille: 300)
        var points: [Int] = []
        for _ in 0..<1000 {
            let decision = split.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: true)
            points.append(TrafficSplit.assignedPoint(canary: decision.track == .canary, share: 300, using: &random))
        }
        // The exact split chose the tracks: 300 of 1000 on the canary.
        #expect(points.filter { $0 < 300 }.count == 300)
        // With their cookies, every client keeps its track.
        let at30 = points.map { split.decide(override: .absent, stickyPoint: $0, activeHasEndpoints: true).track }
        #expect(at30.filter { $0 == .canary }.count == 300)
        split.update(canaryPermille: 500)
        let at50 = points.map { split.decide(override: .absent, stickyPoint: $0, activeHasEndpoints: true).track }
        for (before, after) in zip(at30, at50) where before == .canary { #expect(after == .canary) }
        // About (500 − 300) / 700 of the stable clients moved forward.
        let moved = zip(at30, at50).filter { $0.0 == .active && $0.1 == .canary }.count
        #expect(abs(moved - 200) <= 45, "\(moved) of 700 stable clients moved at 50 %")
    }
}
