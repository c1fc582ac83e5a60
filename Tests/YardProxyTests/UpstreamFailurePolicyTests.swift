// What happens after an upstream connection fails or times out, as a table of facts →
// decision: replays of stale pooled connections and refused HTTP/2 streams, connect
// failures tried elsewhere, retries within attempts and budget, 502/504, cuts, closes.
// No sockets: the worker only carries these decisions out (upstreamFailed, upstreamTimedOut).

import Testing
@testable import YardProxy

/// The facts of a request that failed before any response byte on a fresh connection, with
/// the default policy (2 retries, budget available): change what a case is about.
private func failure(_ kind: UpstreamFailure.Kind = .failed, _ phase: UpstreamFailure.Phase = .active,
                     _ change: (inout UpstreamFailure) -> Void = { _ in }) -> UpstreamFailureDecision {
    var facts = UpstreamFailure(kind: kind, phase: phase)
    change(&facts)
    return facts.decision
}

private func post(_ facts: inout UpstreamFailure) { facts.idempotent = false }

@Suite struct UpstreamFailurePolicyTests {
    // MARK: Stale pooled connections

    @Test func aStalePooledConnectionReplaysAGetWithoutCountingARetryOrAFailure() {
        let d = failure { $0.reusedFromPool = true }
        #expect(d == UpstreamFailureDecision(action: .reattempt(.replayStale), recordsFailure: false))
    }

    @Test func aStalePooledConnectionNeverReplaysAPost() {
        let d = failure { $0.reusedFromPool = true; $0.idempotent = false }
        #expect(d == UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true))
    }

    @Test func aStaleReplayHappensOnceThenTheFailureIsARetry() {
        let d = failure { $0.reusedFromPool = true; $0.retries = 1 }
        #expect(d.action == .reattempt(.retry) && d.recordsFailure)
    }

    @Test func aStaleConnectionWhoseSentBytesWereDroppedIsNotReplayed() {
        let d = failure { $0.reusedFromPool = true; $0.replayable = false }
        #expect(d == UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true))
    }

    @Test func aStaleConnectionThatAnsweredSomethingIsNotReplayed() {
        #expect(failure { $0.reusedFromPool = true; $0.responseBytes = 1 }.action == .answer(status: 502))
        #expect(failure { $0.reusedFromPool = true; $0.responseHeadDone = true }.action == .answer(status: 502))
    }

    @Test func aStaleReplayIgnoresTheBudgetAndTheAttempts() {
        let d = failure { $0.reusedFromPool = true; $0.budgetAvailable = false; $0.retryAttempts = 0 }
        #expect(d.action == .reattempt(.replayStale))
    }

    // MARK: Refused HTTP/2 streams

    @Test func aRefusedStreamIsReplayedForAPostToo() {
        for idempotent in [true, false] {
            let d = failure { $0.refusedStream = true; $0.idempotent = idempotent; $0.requestBodyDone = false }
            #expect(d == UpstreamFailureDecision(action: .reattempt(.replayRefused), recordsFailure: false), "idempotent \(idempotent)")
        }
    }

    @Test func aRefusedStreamIsNotReplayedOnceAResponseByteCameOrItsBytesAreGone() {
        #expect(failure { $0.refusedStream = true; $0.idempotent = false; $0.responseBytes = 9 }.action == .answer(status: 502))
        #expect(failure { $0.refusedStream = true; $0.idempotent = false; $0.replayable = false }.action == .answer(status: 502))
        #expect(failure { $0.refusedStream = true; $0.idempotent = false; $0.responseStarted = true }.action == .cut(status: 502))
    }

    // MARK: Connect failures

    @Test func aConnectFailureTriesAnotherEndpointForAnyMethod() {
        for idempotent in [true, false] {
            for bodyDone in [true, false] {
                let d = failure(.failed, .connecting) { $0.idempotent = idempotent; $0.requestBodyDone = bodyDone }
                #expect(d == UpstreamFailureDecision(action: .reattempt(.nextEndpoint), recordsFailure: true))
            }
        }
    }

    @Test func aConnectTimeoutIsAConnectFailure() {
        let d = failure(.timedOut, .connecting, post)
        #expect(d == UpstreamFailureDecision(action: .reattempt(.nextEndpoint), recordsFailure: true))
    }

    @Test func aConnectFailureIgnoresTheRetryBudgetAndPolicy() {
        let d = failure(.failed, .connecting) { $0.budgetAvailable = false; $0.retryAttempts = 0; $0.retries = 5 }
        #expect(d.action == .reattempt(.nextEndpoint) && !d.refusedByBudget)
    }

    // MARK: Retries

    @Test func anIdempotentRequestIsRetriedWhileAttemptsRemain() {
        #expect(failure { $0.retries = 0 }.action == .reattempt(.retry))
        #expect(failure { $0.retries = 1 }.action == .reattempt(.retry))
        #expect(failure { $0.retries = 2 } == UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true))
        #expect(failure { $0.retryAttempts = 0 }.action == .answer(status: 502))
    }

    @Test func anExhaustedBudgetAnswers502AndSaysSo() {
        let d = failure { $0.budgetAvailable = false }
        #expect(d == UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true, refusedByBudget: true))
        // The budget is only asked when a retry was otherwise allowed.
        #expect(!failure { $0.budgetAvailable = false; $0.idempotent = false }.refusedByBudget)
        #expect(!failure { $0.budgetAvailable = false; $0.retries = 2 }.refusedByBudget)
    }

    @Test func aPostOnAFreshConnectionIsNeverRetried() {
        #expect(failure(.failed, .active, post) == UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true))
    }

    @Test func aRequestWhoseBodyIsStillComingOrWasDroppedIsNotRetried() {
        #expect(failure { $0.requestBodyDone = false }.action == .answer(status: 502))
        #expect(failure { $0.replayable = false }.action == .answer(status: 502))
    }

    @Test func aStartedResponseIsCutAndNeverRetried() {
        let d = failure { $0.responseStarted = true }
        #expect(d == UpstreamFailureDecision(action: .cut(status: 502), recordsFailure: true))
        #expect(failure { $0.responseStarted = true; $0.reusedFromPool = true }.action == .cut(status: 502))
        #expect(failure(.failed, .active) { $0.responseHeadDone = true; $0.responseBytes = 100 }.action == .answer(status: 502),
                "a head read but not yet relayed: the client still gets an answer")
    }

    // MARK: Timeouts

    @Test func aResponseTimeoutAnswers504() {
        #expect(failure(.timedOut) == UpstreamFailureDecision(action: .answer(status: 504), recordsFailure: true))
        #expect(failure(.timedOut, .active, post).action == .answer(status: 504))
    }

    @Test func aTimeoutMidResponseCuts() {
        let d = failure(.timedOut) { $0.responseStarted = true; $0.responseHeadDone = true; $0.responseBytes = 10 }
        #expect(d == UpstreamFailureDecision(action: .cut(status: 504), recordsFailure: true))
    }

    @Test func thePerTryTimeoutRetriesAnIdempotentRequest() {
        let d = failure(.timedOut) { $0.perTryTimeoutMs = 200 }
        #expect(d == UpstreamFailureDecision(action: .reattempt(.retry), recordsFailure: true))
    }

    @Test func thePerTryTimeoutAppliesOnlyBeforeAnyResponseByteToAnIdempotentRequestWithRetriesLeft() {
        #expect(failure(.timedOut) { $0.perTryTimeoutMs = 200; $0.idempotent = false }.action == .answer(status: 504))
        #expect(failure(.timedOut) { $0.perTryTimeoutMs = 200; $0.responseBytes = 1 }.action == .answer(status: 504))
        #expect(failure(.timedOut) { $0.perTryTimeoutMs = 200; $0.responseHeadDone = true }.action == .answer(status: 504))
        #expect(failure(.timedOut) { $0.perTryTimeoutMs = 200; $0.retries = 2 }.action == .answer(status: 504))
    }

    @Test func aPerTryTimeoutWithoutBudgetAnswers502() {
        let d = failure(.timedOut) { $0.perTryTimeoutMs = 200; $0.budgetAvailable = false }
        #expect(d == UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true, refusedByBudget: true))
    }

    @Test func aPerTryTimeoutOnAPooledConnectionIsReplayedAsStale() {
        // Today's rule (kept as is): the pooled connection is taken for stale, once.
        let d = failure(.timedOut) { $0.perTryTimeoutMs = 200; $0.reusedFromPool = true }
        #expect(d == UpstreamFailureDecision(action: .reattempt(.replayStale), recordsFailure: false))
    }

    // MARK: Connections without an exchange

    @Test func anIdleOrUnboundConnectionIsJustClosed() {
        for kind in [UpstreamFailure.Kind.failed, .timedOut] {
            #expect(failure(kind, .idle) { $0.bound = false } == UpstreamFailureDecision(action: .close, recordsFailure: false))
            #expect(failure(kind, .idle).action == .close)
            for phase in [UpstreamFailure.Phase.connecting, .active] {
                #expect(failure(kind, phase) { $0.bound = false }.action == .close)
            }
        }
    }

    // MARK: What each reattempt charges

    @Test func onlyARetryChargesTheRetryCounterAndOnlyAfterAnEstablishedConnectionDoAttemptsStartOver() {
        #expect(UpstreamReattempt.retry.countsRetry && UpstreamReattempt.retry.restartsConnectAttempts)
        #expect(!UpstreamReattempt.replayStale.countsRetry && UpstreamReattempt.replayStale.restartsConnectAttempts)
        #expect(!UpstreamReattempt.replayRefused.countsRetry && !UpstreamReattempt.replayRefused.restartsConnectAttempts)
        #expect(!UpstreamReattempt.nextEndpoint.countsRetry && !UpstreamReattempt.nextEndpoint.restartsConnectAttempts)
    }

    // MARK: Every combination

    /// The safety rules hold for every combination of the facts.
    @Test func noCombinationSendsARequestAgainUnsafely() {
        var seen = 0
        for bits in 0 ..< (1 << 12) {
            func bit(_ i: Int) -> Bool { bits & (1 << i) != 0 }
            var f = UpstreamFailure(kind: bit(0) ? .timedOut : .failed, phase: bit(1) ? .connecting : .active)
            f.responseStarted = bit(2)
            f.responseHeadDone = bit(3)
            f.responseBytes = bit(4) ? 10 : 0
            f.reusedFromPool = bit(5)
            f.replayable = bit(6)
            f.idempotent = bit(7)
            f.requestBodyDone = bit(8)
            f.refusedStream = bit(9)
            f.retries = bit(10) ? 2 : 0
            f.budgetAvailable = bit(11)
            f.perTryTimeoutMs = bits % 3 == 0 ? 100 : 0
            let d = f.decision
            let context = "\(f)"
            if case .reattempt(let kind) = d.action {
                seen += 1
                #expect(f.nothingReceived, "never after a response byte: \(context)")
                switch kind {
                case .retry:
                    #expect(f.idempotent && f.requestBodyDone && f.replayable && f.budgetAvailable && f.retries < f.retryAttempts, "\(context)")
                    #expect(f.phase == .active, "\(context)")
                case .replayStale:
                    #expect(f.idempotent && f.reusedFromPool && f.replayable && f.retries == 0, "\(context)")
                case .replayRefused:
                    #expect(f.refusedStream && f.replayable, "\(context)")
                case .nextEndpoint:
                    #expect(f.phase == .connecting, "\(context)")
                }
            }
            if case .cut = d.action { #expect(f.responseStarted, "\(context)") }
            if case .answer = d.action { #expect(!f.responseStarted, "\(context)") }
            if d.action == .answer(status: 504) || d.action == .cut(status: 504) {
                #expect(f.kind == .timedOut && f.phase == .active, "\(context)")
            }
            #expect(d.action != .close, "a bound, active or connecting connection is never just closed: \(context)")
            #expect(d.recordsFailure || d.action == .reattempt(.replayStale) || d.action == .reattempt(.replayRefused), "\(context)")
        }
        #expect(seen > 0)
    }
}
