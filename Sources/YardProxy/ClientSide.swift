#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardIO
import YardModel

// The downstream half of the worker: reading requests, routing them, forwarding their
// bodies, and answering on the proxy's own behalf.

extension Worker {
    // MARK: Events

    func clientEvent(_ c: ClientConnection, _ flags: UInt32) {
        guard c.phase != .closed else { return }
        unparkBuffers(c)
        defer { parkBuffersIfIdle(c) }
        if c.phase == .handshaking {
            continueHandshake(c)
            return
        }
        // `tlsWant`: a TLS write that needs input, or a TLS read that needs to send, goes
        // on when the socket is ready in the other direction (always 0 on plain listeners).
        if flags & Epoll.writable != 0 || (flags & (Epoll.hangup | Epoll.error) != 0 && !c.outBuf.isEmpty)
            || (c.tlsWant & Epoll.readable != 0 && !c.outBuf.isEmpty) {
            guard flushClient(c) else { return }
            // Room was made: the upstream may relay more of the response it buffered.
            if let u = c.upstream, u.splice != nil {
                spliceResponse(u)
                guard c.phase != .closed else { return }
            } else if let u = c.upstream, u.headDone, u.inBuf.readableBytes > 0 || u.eof {
                relayResponse(u)
                guard c.phase != .closed else { return }
            }
        }
        if (flags & (Epoll.readable | Epoll.hangup | Epoll.error) != 0 || c.tlsWant & flags & Epoll.writable != 0)
            && c.phase != .closed {
            readClient(c)
        }
        if c.phase != .closed { updateInterest(c) }
        if let u = c.upstream { updateInterest(u) }
    }

    /// Reads what the client sent and moves the exchange on.
    func readClient(_ c: ClientConnection) {
        if c.phase == .lingering {
            discardInput(c)
            return
        }
        if c.inBuf.writableBytes == 0 { c.inBuf.compact() }
        if c.inBuf.writableBytes == 0 {
            // Only a head being parsed may grow the buffer (up to the head limit); body
            // bytes wait for the upstream to take what is buffered.
            if c.phase == .forwarding || !c.inBuf.reserve(4096, limit: settings.maxHeaderBytes + 4096) {
                if c.phase != .forwarding { respondError(c, status: 431, reason: "request head over the buffer limit") }
                return
            }
        }
        switch receive(c) {
        case .bytes:
            if c.phase == .forwarding { c.exchange.bodyClock.read(now: now) }
            advanceClient(c)
        case .wouldBlock:
            return
        case .closed:
            clientReadClosed(c)
        case .failed:
            closeClient(c)
        }
    }

    /// The client closed its sending side.
    private func clientReadClosed(_ c: ClientConnection) {
        switch c.phase {
        case .forwarding where c.exchange.requestBodyDone:
            // Complete request(s) followed by a half-close (`curl`, `nc -N`): answer what was
            // received, pipelined requests included, then close.
            c.readClosed = true
        case .closingAfterFlush:
            c.readClosed = true
        case .lingering:
            closeClient(c)
        default:
            if c.phase == .forwarding || c.phase == .readingHead {
                Log.debug("client \(String(decoding: c.peerText, as: UTF8.self)) closed mid-request")
            }
            closeClient(c)
        }
    }

    /// Moves the connection on with the bytes it has: parse a head, or forward body bytes.
    func advanceClient(_ c: ClientConnection) {
        switch c.phase {
        case .idle, .readingHead:
            processHead(c)
        case .forwarding:
            pumpRequestBody(c)
        case .handshaking, .closingAfterFlush, .lingering, .closed:
            return
        }
    }

    // MARK: Slow bodies

    /// Starts timing a request body: `client_body` between reads, `min_body_rate` on average
    /// once `min_body_rate_after` has passed (BodyClock.swift has the rules).
    func startBodyClock(_ c: ClientConnection) {
        c.deadline = c.exchange.bodyClock.start(now: now, limits: BodyClock.Limits(settings))
    }

    /// The body's deadline passed: 408 when the client is the one holding it up (silent for
    /// `client_body`, or slower than `min_body_rate`); the upstream connection is closed
    /// with the exchange, never pooled. Time the proxy itself does not read is not the
    /// client's: the clock starts again.
    func checkBodyProgress(_ c: ClientConnection) {
        let proxyHolds = c.upstream.map {
            BodyClock.proxyHolds(upstreamConnecting: $0.phase == .connecting, unsentToUpstream: $0.sentIndex < $0.outBuf.writerIndex,
                                 clientBufferFull: c.inBuf.writableBytes == 0, expectsContinue: c.head.expectContinue,
                                 responseStarted: c.exchange.responseStarted)
        } ?? false
        switch c.exchange.bodyClock.check(now: now, limits: BodyClock.Limits(settings), proxyHolds: proxyHolds) {
        case .wait(let deadline), .restarted(let deadline):
            c.deadline = deadline
        case .silent(let silent):
            metrics.slowBodies &+= 1
            abortExchange(c, status: 408, reason: "request body: no byte for \(silent) ms (timeouts.client_body)")
        case .tooSlow(let bytes, let elapsed):
            metrics.slowBodies &+= 1
            abortExchange(c, status: 408, reason: "request body: \(bytes) bytes in \(elapsed) ms, under limits.min_body_rate")
        }
    }

    // MARK: Heads

    func processHead(_ c: ClientConnection) {
        guard !c.inBuf.isEmpty else { return }
        // h2c with prior knowledge: a new plaintext connection that opens with the HTTP/2
        // preface. (Over TLS, HTTP/2 comes by ALPN "h2", with a TLS transport: not yet.)
        if c.served == 0 && c.phase == .idle && c.inBuf.readable[0] == UInt8(ascii: "P") && c.h2 == nil && c.tls == nil {
            switch H2Preface.match(c.inBuf.readable) {
            case .complete: return switchToHTTP2(c)
            case .partial: return
            case .no: break
            }
        }
        if c.phase == .idle {
            c.phase = .readingHead
            // A keep-alive connection's next head gets the header timeout from its first
            // byte; a new connection keeps the one it got at accept.
            if c.served > 0 || c.deadline == 0 { c.deadline = now + Int64(settings.clientHeaderTimeoutMs) }
        }
        let status = parseRequestHead(c.inBuf.readable, limits: limits, head: &c.head, fields: c.fields, scanFrom: &c.scanFrom)
        switch status {
        case .incomplete:
            // The client half-closed: the rest of this head will never come.
            if c.readClosed { closeClient(c) }
            return
        case .invalid(let error):
            respondError(c, status: error.status, reason: "\(error.reason)")
        case .complete:
            dispatch(c)
        }
    }

    /// Routes a complete request head and starts forwarding it.
    func dispatch(_ c: ClientConnection) {
        let base = c.inBuf.readable
        let head = c.head
        c.exchange = ExchangeState()
        beginLogLine(c, base: base)
        c.exchange.requestMethod = head.method
        c.exchange.requestVersionMinor = head.versionMinor
        c.exchange.keepAlive = head.keepAlive && !draining
        c.exchange.clientAskedClose = !head.keepAlive
        c.exchange.requestStart = monotonicMicroseconds()
        // A request body is never delimited by the close (RFC 9112 §6.3): no framing, no body.
        c.exchange.requestBody = BodyProgress(head.framing == .untilClose ? .none : head.framing, refusingForbiddenTrailers: true)
        if head.method == .connect {
            respondError(c, status: 501, reason: "CONNECT is not supported")
            return
        }
        // Dot segments, escapes and repeated slashes are resolved before routing, so the
        // route and the backend see the same path (PathNormalizer.swift has the rule).
        if head.pathSpan.count > 1, let raw = c.inBuf.base {
            let p = (raw + c.inBuf.readerIndex).assumingMemoryBound(to: UInt8.self)
            switch normalizeRequestPath(p, start: Int(head.pathSpan.start), count: Int(head.pathSpan.count)) {
            case .unchanged:
                break
            case .rewritten(let count):
                c.head.pathSpan.count = Int32(truncatingIfNeeded: count)
                c.exchange.pathRewritten = true
            case .invalid(let error):
                respondError(c, status: error.status, reason: "\(error.reason)")
                return
            }
        }
        // An upgrade (WebSocket) without a body is forwarded with its Upgrade header; a
        // 101 answer turns the connection into a tunnel (TCPTunnel.swift; over TLS, TLSTunnel.swift).
        c.exchange.upgradeRequested = head.upgrade
        if head.upgrade && !c.exchange.requestBodyDone {
            respondError(c, status: 501, reason: "an upgrade request with a body is not supported")
            return
        }

        var path = c.head.pathSpan.bytes(in: base)
        if path.isEmpty { path = ErrorText.slash }
        guard let route = table.route(
            host: head.hostSpan.bytes(in: base), path: path, method: head.methodSpan.bytes(in: base),
            query: head.queryBytes(in: base), fields: ParsedRequestFields(base: base, fields: c.fields, count: head.headerCount)
        ) else {
            respondError(c, status: 404, reason: "no route")
            return
        }
        c.exchange.route = route
        c.exchange.acceptsGzip = route.steps.compress != nil && clientAcceptsGzip(c, base: base)
        // Middlewares that answer themselves (RouteMiddlewares.swift), a body over the route's limit.
        if !route.steps.gates.isEmpty && answeredByGates(c, route.steps, base: base) { return }
        if RequestBodyStep.refusesUpFront(head.framing, maxBodyBytes: route.settings.maxBodyBytes), case .contentLength(let length) = head.framing {
            respondError(c, status: 413, reason: "the body of \(length) bytes is over the route's max_body_bytes")
            return
        }
        // forward_auth asks its service first and comes back to `forwardToService` (ForwardAuthCheck.swift).
        if let auth = route.steps.forwardAuth { return startForwardAuth(c, auth, base: base) }
        forwardToService(c, route)
    }

    /// Picks the route's service and endpoint and sends the request head on.
    func forwardToService(_ c: ClientConnection, _ route: Route) {
        let base = c.inBuf.readable
        let head = c.head
        c.exchange.overrideTrack = route.service.map { overrideTrack(c, service: $0, base: base) } ?? -1
        guard let service = route.service,
              c.exchange.overrideTrack >= 0 ? !service.trackEndpoints[c.exchange.overrideTrack].endpoints.isEmpty
                  : !service.activeEndpoints.isEmpty || !service.canaryEndpoints.isEmpty else {
            respondError(c, status: 503, reason: "service '\(route.serviceName)' has no endpoint")
            return
        }
        c.phase = .forwarding
        c.deadline = 0
        if !c.exchange.requestBodyDone { startBodyClock(c) }
        c.exchange.retries = 0
        c.exchange.triedEndpoints = 0
        c.exchange.hashKey = service.balancer == .consistentHash ? requestHash(c, source: service.hashOn ?? .sourceAddress) : 0
        c.exchange.trackDecided = false
        c.exchange.onCanary = false
        c.exchange.assignsStickyCookie = false
        c.exchange.stickyCookiePoint = -1
        c.exchange.stickyPoint = service.canary?.sticky == nil ? -1 : stickyPoint(c, service: service)
        retryTokens = min(retryTokens + Double(retryPolicy(route, service).budgetPercent) / 100, 100)
        guard let u = connectUpstream(for: c, service: service, fresh: c.exchange.upgradeRequested) else {
            if c.hold.refused && service.limits.limited { return waitForSlot(c, service: service) }
            // The last attempt's claim (slot, least-connections count) ends with it.
            releaseEndpoint(c)
            c.inBuf.consume(head.headLength)
            c.scanFrom = 0
            if !c.exchange.requestBodyDone { c.exchange.keepAlive = false }
            respondError(c, status: 502, reason: "no endpoint of '\(service.name)' accepted a connection")
            return
        }

        let queued = u.outBuf.readableBytes
        writeRequestHead(c, base: base, into: &u.outBuf)
        if let mirror = route.steps.mirror {
            mirrorRequest(c, mirror, route: route, forwarded: u.outBuf, headBytes: u.outBuf.readableBytes - queued)
        }
        c.inBuf.consume(head.headLength)
        c.scanFrom = 0
        pumpRequestBody(c)
        if u.phase == .active { _ = flushUpstream(u) }
    }

    // MARK: Bodies

    /// Moves request body bytes from the client's buffer to the upstream's, as far as the
    /// framing and the upstream buffer allow.
    func pumpRequestBody(_ c: ClientConnection) {
        // While forward_auth waits, the upstream is the auth service: the body stays.
        guard let u = c.upstream, c.exchange.auth?.passed != false else { return }
        // Copy and send until nothing moves: a flush that empties the upstream buffer
        // produces no event of its own, so stopping after one copy would stall the body.
        let limit = c.exchange.route?.settings.maxBodyBytes ?? 0
        pumping: while true {
            // Sent bytes are dropped (ending replayability) only when room is needed.
            if !c.exchange.requestBodyDone, RequestBodyStep.needsSentBytesDropped(buffered: c.inBuf.readableBytes, writable: u.outBuf.writableBytes) {
                dropSentBytes(u)
            }
            // A body larger than the room grows the buffer (it starts at 2 KiB), up to `bufferSize`.
            let available = c.inBuf.readableBytes
            if !c.exchange.requestBodyDone && available > u.outBuf.writableBytes && u.outBuf.capacity < bufferSize {
                // `reserve` may compact: `sentIndex` moves with the bytes.
                let reader = u.outBuf.readerIndex
                _ = u.outBuf.reserve(min(available, bufferSize - u.outBuf.readableBytes), limit: bufferSize)
                u.sentIndex -= reader - u.outBuf.readerIndex
            }
            switch RequestBodyStep.next(&c.exchange.requestBody, buffered: c.inBuf.readable, room: u.outBuf.writableBytes, maxBodyBytes: limit) {
            case .done, .needBytes, .needRoom:
                break pumping
            case .overLimit(let limit):
                // Nothing past the limit goes upstream; the upstream exchange is cut.
                abortExchange(c, status: 413, reason: "the request body grew over the route's max_body_bytes of \(limit)")
                return
            case .invalid(let error):
                abortExchange(c, status: 400, reason: "request body: \(error.reason)")
                return
            case .forward(let count):
                u.outBuf.append(UnsafeRawBufferPointer(rebasing: c.inBuf.readable[0..<count]))
                if let copy = c.exchange.mirror { copyMirrorBody(c, copy, UnsafeRawBufferPointer(rebasing: c.inBuf.readable[0..<count])) }
                c.inBuf.consume(count)
                c.exchange.bodyClock.forwarded(count)
            }
            u.deadline = now + (u.phase == .connecting ? connectTimeout(c.exchange.route) : responseTimeout(c.exchange.route))
            guard u.phase == .active else { break }
            guard flushUpstream(u) else { return }
            if u.sentIndex < u.outBuf.writerIndex { break }
        }
        // Keep the client readable: free space at the end of its buffer.
        if c.inBuf.writableBytes == 0 { c.inBuf.compact() }
    }

    // MARK: Writing

    /// Writes queued bytes to the client. Returns false if the connection was closed.
    @discardableResult
    func flushClient(_ c: ClientConnection) -> Bool {
        while !c.outBuf.isEmpty {
            switch send(c) {
            case .bytes:
                continue
            case .wouldBlock:
                return true
            case .closed, .failed:
                closeClient(c)
                return false
            }
        }
        if c.phase == .closingAfterFlush {
            startLingering(c)
            return c.phase != .closed
        }
        return true
    }

    /// Closes after the last response without losing it: a close with unread input makes
    /// the kernel send a reset, which can destroy the response in flight (an error answer
    /// to a request whose body was not read). So: send FIN, then read and discard for a
    /// short while, and close on the client's EOF or the deadline (nginx's lingering close).
    private func startLingering(_ c: ClientConnection) {
        if c.readClosed || c.closeAfterResponse {
            closeClient(c)
            return
        }
        if c.abortiveClose {
            // No close_notify, no lingering: the client must see a cut, not an end.
            closeClient(c)
            return
        }
        if let tls = c.tls { _ = tls.shutdown() }
        Socket.shutdownWrite(c.fd)
        c.phase = .lingering
        c.inBuf.clear()
        c.deadline = now + Worker.lingerMs
    }

    private func discardInput(_ c: ClientConnection) {
        c.inBuf.clear()
        switch Socket.read(c.fd, into: &c.inBuf) {
        case .bytes:
            c.inBuf.clear()
        case .wouldBlock:
            return
        case .closed, .failed:
            closeClient(c)
        }
    }

    // MARK: Our own answers

    /// Answers the current request with an error of our own and logs it once.
    ///
    /// The connection stays open only when the request was fully read (no body pending),
    /// the client allows it, and the status does not imply broken framing.
    func respondError(_ c: ClientConnection, status: Int, reason: String) {
        if c.h2 != nil { return h2RespondError(c, status: status, reason: reason) }
        let close = ExchangeEnd.client(afterOwnAnswer: status, endFacts(c)) != .keepAlive
        Log.warning("\(status) to \(String(decoding: c.peerText, as: UTF8.self)): \(reason)")
        // The busy 503 (every endpoint full, queue full or timed out) says when to come back.
        let text = c.hold.takeBusyAnswer() ? ErrorResponse.busy(close: close) : ErrorResponse.bytes(status: status, close: close)
        var size = text.utf8CodeUnitCount
        if !close && c.exchange.requestMethod == .head {
            // A HEAD answer has no body: on a connection that stays, it would read as the next response.
            let all = UnsafeRawBufferPointer(start: text.utf8Start, count: size)
            var end = 4
            while end < all.count && !(all[end - 4] == 13 && all[end - 3] == 10 && all[end - 2] == 13 && all[end - 1] == 10) { end += 1 }
            size = end
        }
        sendOwnAnswer(c, status: status, close: close) { out in
            _ = out.reserve(size)
            out.append(UnsafeRawBufferPointer(start: text.utf8Start, count: size))
            return size
        }
    }

    /// Ends the exchange with an answer of the proxy's own: `write` appends it to the
    /// client's output and returns its size; the connection closes after it with `close`.
    func sendOwnAnswer(_ c: ClientConnection, status: Int, close: Bool, _ write: (inout ByteBuffer) -> Int) {
        countOwnAnswer(status)
        // A busy mark left by an earlier attempt never reaches a later answer.
        _ = c.hold.takeBusyAnswer()
        if c.phase == .readingHead || c.phase == .idle || c.phase == .forwarding, close == false {
            // Drop the answered request's head; keep any pipelined bytes after it.
            if c.phase != .forwarding { c.inBuf.consume(c.head.headLength) }
        }
        let size = write(&c.outBuf)
        if accessLog != nil {
            if c.phase == .idle || (c.phase == .readingHead && c.exchange.logStartNanos == 0) { c.logHead.clear() }
            c.exchange.bytesToClient += size
            endLogLine(c, status: status, endpoint: c.exchange.lastEndpoint)
        }
        c.exchange.responseStarted = true
        c.served += 1
        c.scanFrom = 0
        c.exchange.route = nil
        if close {
            c.phase = .closingAfterFlush
            c.inBuf.clear()
        } else {
            c.phase = .idle
            c.deadline = now + Int64(settings.clientIdleTimeoutMs)
        }
        flushClient(c)
        if c.phase == .idle { processHead(c) }
    }

    /// Fails the exchange in progress: answers `status` if nothing of the response was sent
    /// yet, otherwise closes the client (its response cannot be completed).
    func abortExchange(_ c: ClientConnection, status: Int, reason: String) {
        if c.h2 != nil { return h2AbortExchange(c, status: status, reason: reason) }
        releaseEndpoint(c)
        if let u = c.upstream {
            // The client's answer for this endpoint is our error (or a cut response).
            if !u.headDone { metrics.response(u.endpoint.poolKey, status: status, latencyMicros: latencyMicros(c)) }
            unbind(c, u)
            closeUpstream(u)
        }
        if c.exchange.responseStarted {
            if accessLog != nil { endLogLine(c, status: c.exchange.lastStatus, endpoint: c.exchange.lastEndpoint) }
            Log.warning("aborting response to \(String(decoding: c.peerText, as: UTF8.self)): \(reason)")
            c.phase = .closingAfterFlush
            flushClient(c)
        } else {
            if !c.exchange.requestBodyDone { c.exchange.keepAlive = false }
            respondError(c, status: status, reason: reason)
        }
    }

    /// The response was relayed completely: park or close the upstream, and get ready for
    /// the client's next request.
    func finishExchange(_ c: ClientConnection, _ u: UpstreamConnection) {
        let closeDelimited = u.response.body.isCloseDelimited
        endUpstreamExchange(c, u)
        if case .close(let linger) = ExchangeEnd.client(afterResponse: endFacts(c), closeDelimited: closeDelimited) {
            c.phase = .closingAfterFlush
            c.closeAfterResponse = !linger
            c.inBuf.clear()
            flushClient(c)
            return
        }
        c.phase = .idle
        c.deadline = now + Int64(settings.clientIdleTimeoutMs)
        if !c.inBuf.isEmpty { processHead(c) }
    }

    func clientTimedOut(_ c: ClientConnection) {
        switch c.phase {
        case .idle, .handshaking:
            closeClient(c)
        case .readingHead:
            c.exchange.keepAlive = false
            respondError(c, status: 408, reason: "request head not complete after \(settings.clientHeaderTimeoutMs) ms")
            c.deadline = now + Int64(settings.clientIdleTimeoutMs)
        case .closingAfterFlush, .lingering:
            // The client does not read its answer, or lingering is over.
            closeClient(c)
        case .forwarding:
            if c.exchange.requestBodyDone || c.h2 != nil {
                c.deadline = 0
            } else {
                checkBodyProgress(c)
            }
        case .closed:
            c.deadline = 0
        }
    }
}

/// Static byte strings used by routing.
enum ErrorText {
    nonisolated(unsafe) static let slash = UnsafeRawBufferPointer(start: ("/" as StaticString).utf8Start, count: 1)
}
