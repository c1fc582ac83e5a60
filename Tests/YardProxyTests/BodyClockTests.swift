// The slow-request-body clock with the time passed in: client_body silence, min_body_rate
// after its grace, the restart while the proxy holds the body up, each at its boundary.

import Testing
@testable import YardProxy

private let limits = BodyClock.Limits(silenceMs: 1_000, minRate: 100, graceMs: 5_000)
private let noRate = BodyClock.Limits(silenceMs: 1_000, minRate: 0, graceMs: 5_000)
private let t0: Int64 = 10_000

@Suite struct BodyClockTests {
    // MARK: Silence

    @Test func silenceExactlyAtTheTimeoutIs408AndOneMillisecondBeforeIsNot() {
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: noRate)
        #expect(clock.check(now: t0 + 999, limits: noRate, proxyHolds: false) == .wait(deadline: t0 + 1_000))
        #expect(clock.check(now: t0 + 1_000, limits: noRate, proxyHolds: false) == .silent(silentMs: 1_000))
    }

    @Test func eachReadPushesTheSilenceDeadline() {
        var clock = BodyClock()
        #expect(clock.start(now: t0, limits: noRate) == t0 + 1_000)
        clock.read(now: t0 + 900)
        #expect(clock.check(now: t0 + 1_000, limits: noRate, proxyHolds: false) == .wait(deadline: t0 + 1_900))
        #expect(clock.check(now: t0 + 1_899, limits: noRate, proxyHolds: false) == .wait(deadline: t0 + 1_900))
        #expect(clock.check(now: t0 + 1_900, limits: noRate, proxyHolds: false) == .silent(silentMs: 1_000))
    }

    @Test func aLateCheckReportsTheWholeSilence() {
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: noRate)
        #expect(clock.check(now: t0 + 5_432, limits: noRate, proxyHolds: false) == .silent(silentMs: 5_432))
    }

    // MARK: Rate

    @Test func theFirstDeadlineIsTheSilenceOrTheEndOfTheGrace() {
        var clock = BodyClock()
        #expect(clock.start(now: t0, limits: limits) == t0 + 1_000, "silence comes first")
        let long = BodyClock.Limits(silenceMs: 60_000, minRate: 100, graceMs: 5_000)
        #expect(clock.start(now: t0, limits: long) == t0 + 5_000, "then the end of the grace")
        let noGrace = BodyClock.Limits(silenceMs: 60_000, minRate: 100, graceMs: 0)
        #expect(clock.start(now: t0, limits: noGrace) == t0 + 1_000, "at least a second between rate checks")
    }

    @Test func theRateIsNotCheckedBeforeTheGraceEnds() {
        let long = BodyClock.Limits(silenceMs: 60_000, minRate: 100, graceMs: 5_000)
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: long)
        clock.read(now: t0 + 4_999)
        #expect(clock.check(now: t0 + 4_999, limits: long, proxyHolds: false) == .wait(deadline: t0 + 5_999),
                "rate checks come at most once a second")
        #expect(clock.check(now: t0 + 5_000, limits: long, proxyHolds: false) == .tooSlow(bytes: 0, elapsedMs: 5_000))
    }

    @Test func aRateJustAtTheMinimumPassesAndOneByteUnderFails() {
        let long = BodyClock.Limits(silenceMs: 60_000, minRate: 100, graceMs: 5_000)
        // 100 B/s over 5 s is 500 bytes.
        for (bytes, slow) in [(499, true), (500, false), (501, false)] {
            var clock = BodyClock()
            _ = clock.start(now: t0, limits: long)
            clock.forwarded(bytes)
            clock.read(now: t0 + 5_000)
            let verdict = clock.check(now: t0 + 5_000, limits: long, proxyHolds: false)
            if slow {
                #expect(verdict == .tooSlow(bytes: Int64(bytes), elapsedMs: 5_000))
            } else {
                #expect(verdict == .wait(deadline: t0 + 6_000), "then once a second: \(bytes) bytes")
            }
        }
    }

    @Test func theRateIsAnAverageOverTheWholeBody() {
        let long = BodyClock.Limits(silenceMs: 60_000, minRate: 100, graceMs: 5_000)
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: long)
        clock.forwarded(600)
        clock.read(now: t0 + 1)
        #expect(clock.check(now: t0 + 5_000, limits: long, proxyHolds: false) == .wait(deadline: t0 + 6_000))
        // 600 bytes carry the body to 6 s; at 6.001 s it is under 100 B/s.
        #expect(clock.check(now: t0 + 6_000, limits: long, proxyHolds: false) == .wait(deadline: t0 + 7_000))
        #expect(clock.check(now: t0 + 6_010, limits: long, proxyHolds: false) == .tooSlow(bytes: 600, elapsedMs: 6_010))
    }

    @Test func aZeroRateChecksOnlySilence() {
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: BodyClock.Limits(silenceMs: 60_000, minRate: 0, graceMs: 0))
        #expect(clock.check(now: t0 + 59_999, limits: BodyClock.Limits(silenceMs: 60_000, minRate: 0, graceMs: 0), proxyHolds: false)
                == .wait(deadline: t0 + 60_000))
    }

    // MARK: The proxy holding the body up

    @Test func whileTheProxyHoldsTheBodyTheClockStartsAgain() {
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: limits)
        clock.forwarded(10)
        #expect(clock.check(now: t0 + 50_000, limits: limits, proxyHolds: true) == .restarted(deadline: t0 + 51_000))
        #expect(clock.bytes == 0 && clock.startedAt == t0 + 50_000 && clock.lastReadAt == t0 + 50_000)
        #expect(clock.check(now: t0 + 50_999, limits: limits, proxyHolds: false) == .wait(deadline: t0 + 51_000))
        #expect(clock.check(now: t0 + 51_000, limits: limits, proxyHolds: false) == .silent(silentMs: 1_000))
    }

    @Test func theProxyHoldsTheBodyForEachOfItsReasons() {
        func holds(connecting: Bool = false, unsent: Bool = false, full: Bool = false, expects: Bool = false, started: Bool = false) -> Bool {
            BodyClock.proxyHolds(upstreamConnecting: connecting, unsentToUpstream: unsent, clientBufferFull: full,
                                 expectsContinue: expects, responseStarted: started)
        }
        #expect(!holds(), "a client that does not send is the client")
        #expect(holds(connecting: true))
        #expect(holds(unsent: true))
        #expect(holds(full: true))
        #expect(holds(expects: true), "the client waits for 100 Continue")
        #expect(!holds(expects: true, started: true), "once 100 Continue (or the answer) went out, the wait is the client's")
    }

    // MARK: Overflow

    @Test func hugeLimitsGiveAFarDeadlineNeverAPastOne() {
        let huge = BodyClock.Limits(silenceMs: .max, minRate: 1, graceMs: .max)
        var clock = BodyClock()
        #expect(clock.start(now: t0, limits: huge) == .max)
        #expect(clock.check(now: t0 + 1_000, limits: huge, proxyHolds: false) == .wait(deadline: .max))
        let silenceOnly = BodyClock.Limits(silenceMs: .max, minRate: 0, graceMs: 0)
        #expect(clock.start(now: t0, limits: silenceOnly) == .max)
    }

    @Test func aRateThatOverflowsIsTooSlowNotATrap() {
        let absurd = BodyClock.Limits(silenceMs: .max, minRate: .max, graceMs: 0)
        var clock = BodyClock()
        _ = clock.start(now: t0, limits: absurd)
        clock.forwarded(Int.max)
        #expect(clock.check(now: t0 + 2, limits: absurd, proxyHolds: false) == .tooSlow(bytes: Int64(Int.max), elapsedMs: 2))
    }

    @Test func aClockNearTheEndOfTimeStaysOrdered() {
        var clock = BodyClock()
        let late = Int64.max - 10
        #expect(clock.start(now: late, limits: limits) == .max)
        #expect(clock.check(now: late + 5, limits: limits, proxyHolds: false) == .wait(deadline: .max))
    }
}
