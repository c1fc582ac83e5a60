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
}
