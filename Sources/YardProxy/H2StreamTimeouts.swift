import YardHTTP
import YardHTTP2
import YardIO

// How long an HTTP/2 stream may wait on its client. A stream waits on the client while it
// receives the request body before any answer began (`timeouts.client_body` between DATA
// frames, and an average of at least `limits.min_body_rate` once `limits.min_body_rate_after`
// has passed) and once it is answered, until the client has read the answer and ended its
// side (`timeouts.client_idle` without progress). While it waits on the upstream, or the
// upstream's answer streams while the request does (gRPC), the upstream's timeouts apply.
//
// Each stream keeps its own deadline; the connection keeps the earliest (lazily: deadlines
// only move later, so a stale earlier one just means a scan that finds nothing due). Progress
// on the hot path is one store of `now`; the deadline is reconsidered only when it passes.

extension Worker {
    /// Sets `link`'s deadline and brings the connection's scan forward to it if needed.
    @inline(__always)
    func setStreamDeadline(_ link: H2StreamLink, _ deadline: Int64) {
        link.deadline = deadline
        let h = link.connection
        if h.nextStreamCheck == 0 || deadline < h.nextStreamCheck { h.nextStreamCheck = deadline }
    }

    /// The stream is answered (or being answered): from now on it waits on the client to
    /// read the answer and end its side.
    func awaitClient(_ link: H2StreamLink) {
        link.lastProgressMs = now
        setStreamDeadline(link, now + Int64(settings.clientIdleTimeoutMs))
    }

    /// Runs when the connection's earliest stream deadline passed: handles the streams that
    /// are due and finds the next deadline. When every stream of the connection was reset
    /// for want of progress at once, the connection is ended too (GOAWAY): nothing on it
    /// progresses. (A cut request body is not counted: its 408 must still reach the client.)
    func checkStreamDeadlines(_ h: H2Connection) {
        h.nextStreamCheck = 0
        var due = 0
        for c in h.streams.values {
            guard let link = c.h2, link.deadline != 0 else { continue }
            if now >= link.deadline {
                if streamTimedOut(c, link) { due += 1 }
            }
            if link.deadline != 0 && (h.nextStreamCheck == 0 || link.deadline < h.nextStreamCheck) {
                h.nextStreamCheck = link.deadline
            }
        }
        if due > 0 && due == h.streams.count && !h.shutdownFinished {
            Log.info("HTTP/2 client \(String(decoding: h.peerText, as: UTF8.self)): no stream progressed; GOAWAY")
            h.shutdownAnnounced = true
            h.shutdownFinished = true
            h.session.finishShutdown()
            h.deadline = now + Worker.lingerMs
        }
        queueH2Flush(h)
    }

    /// One stream's deadline passed: resets an answered stream the client left (true), cuts
    /// a request body that stalled or crawls, or moves the deadline to where the client's
    /// last progress puts it.
    private func streamTimedOut(_ c: ClientConnection, _ link: H2StreamLink) -> Bool {
        let h = link.connection
        if c.phase == .closingAfterFlush {
            let idle = Int64(settings.clientIdleTimeoutMs)
            if now - link.lastProgressMs < idle {
                link.deadline = link.lastProgressMs + idle
                return false
            }
            // Answered, and the client neither reads the rest nor ends the stream.
            link.deadline = 0
            Log.info("HTTP/2 client \(String(decoding: c.peerText, as: UTF8.self)) left stream \(link.stream) open \(idle) ms after its answer; RST_STREAM")
            h.session.resetStream(link.stream, code: 8)
            return true
        }
        // Once the upstream answered, the exchange is the upstream's to pace (a gRPC
        // bidirectional stream sends when it has something to say): its timeouts apply.
        guard c.phase == .forwarding, !link.requestEnded, !c.exchange.responseStarted else {
            link.deadline = 0
            return false
        }
        // The request body's clock is the HTTP/1.1 one (BodyClock.swift). Bytes waiting for
        // the upstream to take them hold the client by its window: the proxy is the slow one.
        switch c.exchange.bodyClock.check(now: now, limits: BodyClock.Limits(settings), proxyHolds: link.unconsumed > 0) {
        case .wait(let deadline), .restarted(let deadline):
            link.deadline = deadline
        case .silent(let silent):
            cutRequestBody(c, link, reason: "request body: no DATA for \(silent) ms (timeouts.client_body)")
        case .tooSlow(let bytes, let elapsed):
            cutRequestBody(c, link, reason: "request body: \(bytes) bytes in \(elapsed) ms, under limits.min_body_rate")
        }
        return false
    }

    /// Ends a request body that came too slowly: 408 if nothing was answered yet (then
    /// RST_STREAM(NO_ERROR), the rest of the body is not wanted), else RST_STREAM; the
    /// upstream connection, which holds part of a request, is closed.
    private func cutRequestBody(_ c: ClientConnection, _ link: H2StreamLink, reason: String) {
        metrics.slowBodies &+= 1
        h2AbortExchange(c, status: 408, reason: reason)
        link.body?.resetWhenSent = true
    }
}
