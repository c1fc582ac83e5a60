/// What to do when an upstream connection fails or times out: replay the request, retry it
/// elsewhere, answer the client, cut the response, or just close — a pure decision over the
/// facts of the exchange, which the worker carries out (`upstreamFailed`, `upstreamTimedOut`).
///
/// The rules, in the order they are tried:
/// - A connection no exchange uses (pooled and idle, or orphaned) is closed.
/// - Once any byte of the response came (or reached the client), the request is never sent
///   again: the client gets a 502/504, or a cut if its response had started.
/// - A pooled connection the upstream had already closed never saw the request: an
///   idempotent one is replayed on a fresh connection, not counted as a retry.
/// - An HTTP/2 stream the upstream refused (REFUSED_STREAM, or past its GOAWAY) was not
///   processed: any request is replayed, POST included, counting as a connect attempt.
/// - A connect failure (or connect timeout) did no work anywhere: the next endpoint is
///   tried, for any method, within the connect attempts.
/// - Otherwise an idempotent request whose body was sent whole and can be sent again is
///   retried, counting a retry, within the policy's attempts and the retry budget.
/// - A response that did not come in time is a 504, unless the per-try timeout applies: then
///   the attempt counts as failed, and the rules above decide.
///
/// Threading: a value, built and used on one worker's loop.
struct UpstreamFailure: Equatable {
    /// What happened to the connection.
    enum Kind: Equatable {
        /// A read or write failed, or the upstream closed or reset before answering.
        case failed
        /// Its deadline passed (connect, response head, or between response reads).
        case timedOut
    }

    /// Where the upstream connection stood.
    enum Phase: Equatable {
        case connecting
        case active
        case idle
    }

    var kind: Kind
    var phase: Phase
    /// A client exchange is bound to the connection.
    var bound = true
    /// Some byte of the response (or of an answer of ours) was queued for the client.
    var responseStarted = false
    /// The upstream's final response head was parsed.
    var responseHeadDone = false
    /// Response bytes read from the upstream on this attempt.
    var responseBytes = 0
    /// The connection came from the pool (it was open before this request).
    var reusedFromPool = false
    /// Every request byte is still buffered: the request can be sent again.
    var replayable = true
    /// The request method is idempotent (RFC 9110 §9.2.2).
    var idempotent = true
    /// The whole request body was read from the client.
    var requestBodyDone = true
    /// The HTTP/2 upstream refused the stream (REFUSED_STREAM or past its GOAWAY).
    var refusedStream = false
    /// Retries this request already made.
    var retries = 0
    /// The retry policy: extra attempts, and the per-try timeout (0: none).
    var retryAttempts = 2
    var perTryTimeoutMs = 0
    /// The worker's retry budget has a token left.
    var budgetAvailable = true

    /// Nothing of a response came back: the request may be sent again, if it is safe.
    var nothingReceived: Bool { !responseStarted && !responseHeadDone && responseBytes == 0 }

    /// A response timeout counts as a failed attempt under the per-try timeout (and the
    /// failure rules decide), instead of answering 504.
    var perTryTimeoutApplies: Bool {
        kind == .timedOut && phase == .active && perTryTimeoutMs > 0 && !responseHeadDone && responseBytes == 0
            && idempotent && retries < retryAttempts
    }
}

/// Sending the request again, after a failure before any response byte.
enum UpstreamReattempt: Equatable {
    /// A stale pooled connection: the same request on a fresh connection, not a retry; the
    /// connect attempts start over.
    case replayStale
    /// An HTTP/2 stream the upstream refused: the same request again, not a retry; it uses
    /// one of the connect attempts.
    case replayRefused
    /// The connection could not be made: the next endpoint, using one of the connect attempts.
    case nextEndpoint
    /// A retry: spends a budget token and one of the policy's attempts; the connect attempts
    /// start over.
    case retry

    /// The retry counter and the budget are charged.
    var countsRetry: Bool { self == .retry }
    /// The connect attempts start over (the previous connection had been made).
    var restartsConnectAttempts: Bool { self == .replayStale || self == .retry }
}

/// What the worker does with a failed or timed-out upstream connection.
enum UpstreamFailureAction: Equatable {
    /// Send the request again on a fresh connection (moving its buffered bytes over).
    case reattempt(UpstreamReattempt)
    /// Answer the client with an error of our own (nothing of the response was sent).
    case answer(status: Int)
    /// The client's response had started: close its connection (RST_STREAM for HTTP/2).
    /// `status` is what the log and the endpoint's metrics count.
    case cut(status: Int)
    /// No exchange uses the connection: close it.
    case close
}

struct UpstreamFailureDecision: Equatable {
    var action: UpstreamFailureAction
    /// Tell health (passive checks, outlier detection) that the endpoint failed. A stale
    /// pooled connection or a refused stream says nothing about the endpoint.
    var recordsFailure: Bool
    /// A retry was allowed but for the budget (counted as `retries_refused`).
    var refusedByBudget = false
}

extension UpstreamFailure {
    /// The decision for these facts.
    var decision: UpstreamFailureDecision {
        guard bound, phase != .idle else { return UpstreamFailureDecision(action: .close, recordsFailure: false) }
        if kind == .timedOut && phase == .active && !perTryTimeoutApplies {
            return UpstreamFailureDecision(action: ending(status: 504), recordsFailure: true)
        }
        let stale = reusedFromPool && nothingReceived && replayable && idempotent && retries == 0
        let refused = refusedStream && nothingReceived && replayable
        let recordsFailure = !stale && !refused
        if nothingReceived {
            if stale { return UpstreamFailureDecision(action: .reattempt(.replayStale), recordsFailure: false) }
            if refused { return UpstreamFailureDecision(action: .reattempt(.replayRefused), recordsFailure: false) }
            if phase == .connecting { return UpstreamFailureDecision(action: .reattempt(.nextEndpoint), recordsFailure: true) }
            if replayable && idempotent && requestBodyDone && retries < retryAttempts {
                if budgetAvailable { return UpstreamFailureDecision(action: .reattempt(.retry), recordsFailure: true) }
                return UpstreamFailureDecision(action: .answer(status: 502), recordsFailure: true, refusedByBudget: true)
            }
        }
        return UpstreamFailureDecision(action: ending(status: 502), recordsFailure: recordsFailure)
    }

    private func ending(status: Int) -> UpstreamFailureAction {
        responseStarted ? .cut(status: status) : .answer(status: status)
    }
}
