import YardModel

/// The clock of a request body on its way in: whether the client is too slow to send it —
/// silent for `timeouts.client_body`, or under `limits.min_body_rate` on average once
/// `limits.min_body_rate_after` has passed — and when to look again. Time is passed in
/// (`now`, monotonic milliseconds), so every boundary is tested without waiting.
///
/// Time the proxy is the one holding the body up is not the client's: while the upstream is
/// still connecting, or has not taken what was sent, or the client's buffer is full, or the
/// client waits for `100 Continue`, the clock starts again (`proxyHolds`).
///
/// Threading: a value owned by one client connection, used on its worker's loop.
struct BodyClock: Equatable {
    /// The limits a body is held to (from the proxy's settings).
    struct Limits: Equatable {
        /// Longest silence between two reads, ms.
        var silenceMs: Int64
        /// Slowest average rate accepted, bytes per second; 0 turns the rate check off.
        var minRate: Int64
        /// How long the body may take before `minRate` applies, ms.
        var graceMs: Int64
    }

    /// What a deadline check found.
    enum Verdict: Equatable {
        /// The client keeps up: check again at `deadline`.
        case wait(deadline: Int64)
        /// The proxy was the one holding the body up: the clock started again; check at `deadline`.
        case restarted(deadline: Int64)
        /// No byte for `silentMs` (at least the silence limit): 408.
        case silent(silentMs: Int64)
        /// Only `bytes` in `elapsedMs`, under the minimum rate: 408.
        case tooSlow(bytes: Int64, elapsedMs: Int64)
    }

    /// When the body started (or the clock restarted), and when the last byte was read.
    private(set) var startedAt: Int64 = 0
    private(set) var lastReadAt: Int64 = 0
    /// Body bytes forwarded since the clock started.
    private(set) var bytes: Int64 = 0

    /// Starts (or restarts) timing a body at `now`; returns the first deadline.
    mutating func start(now: Int64, limits: Limits) -> Int64 {
        startedAt = now
        lastReadAt = now
        bytes = 0
        return nextCheck(now: now, limits: limits)
    }

    /// The client sent something (a read while the body is being forwarded).
    mutating func read(now: Int64) {
        lastReadAt = now
    }

    /// `count` body bytes went on to the upstream.
    mutating func forwarded(_ count: Int) {
        bytes &+= Int64(count)
    }

    /// The next deadline: the silence limit after the last read, or, when the rate is
    /// checked, the end of the grace period, then once a second.
    func nextCheck(now: Int64, limits: Limits) -> Int64 {
        let silence = BodyClock.adding(lastReadAt, limits.silenceMs)
        guard limits.minRate > 0 else { return silence }
        let graceEnd = BodyClock.adding(startedAt, limits.graceMs)
        return min(silence, max(graceEnd, BodyClock.adding(now, 1_000)))
    }

    /// The deadline came: is the client too slow? `proxyHolds` restarts the clock instead.
    mutating func check(now: Int64, limits: Limits, proxyHolds: Bool) -> Verdict {
        if proxyHolds { return .restarted(deadline: start(now: now, limits: limits)) }
        let silent = now &- lastReadAt
        if silent >= limits.silenceMs { return .silent(silentMs: silent) }
        let elapsed = now &- startedAt
        if limits.minRate > 0, elapsed >= limits.graceMs {
            let (expected, overflow) = limits.minRate.multipliedReportingOverflow(by: elapsed)
            if overflow || bytes < expected / 1_000 { return .tooSlow(bytes: bytes, elapsedMs: elapsed) }
        }
        return .wait(deadline: nextCheck(now: now, limits: limits))
    }

    /// Whether the proxy, not the client, is holding the body up: the upstream is still
    /// connecting or has not taken what was sent, the client's buffer is full (nothing more
    /// can be read), or the client waits for `100 Continue` and no response has started.
    static func proxyHolds(upstreamConnecting: Bool, unsentToUpstream: Bool, clientBufferFull: Bool,
                           expectsContinue: Bool, responseStarted: Bool) -> Bool {
        upstreamConnecting || unsentToUpstream || clientBufferFull || (expectsContinue && !responseStarted)
    }

    /// `base + ms`, saturating: a deadline past the end of time is never, not the past.
    private static func adding(_ base: Int64, _ ms: Int64) -> Int64 {
        let (sum, overflow) = base.addingReportingOverflow(ms)
        return overflow ? (ms > 0 ? .max : .min) : sum
    }
}

extension BodyClock.Limits {
    /// `timeouts.client_body`, `limits.min_body_rate` and `limits.min_body_rate_after`.
    init(_ settings: ProxySettings) {
        self.init(silenceMs: Int64(settings.clientBodyTimeoutMs), minRate: Int64(settings.minBodyRate),
                  graceMs: Int64(settings.minBodyRateGraceMs))
    }
}
