#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardIO
import YardModel

// The upstream half of the worker: picking an endpoint, connecting or reusing a pooled
// connection, sending the request, relaying the response, retrying what is safe to retry.

extension Worker {
    // MARK: Choosing and connecting

    /// Binds an upstream connection to the client's exchange: a pooled one for the chosen
    /// endpoint if there is one (unless `fresh`), else a new connection. An endpoint that
    /// refuses at once is skipped for the next, up to three attempts per request.
    func connectUpstream(for c: ClientConnection, service: Service, fresh: Bool) -> UpstreamConnection? {
        // Connect attempts are not charged to the retry budget: a refused connection did no
        // work on any upstream, and retrying it elsewhere is what keeps a dead replica
        // invisible until health checks take it out.
        let maxAttempts = 1 + max(retryPolicy(c.exchange.route, service).attempts, min(2, service.activeEndpoints.count - 1))
        while c.exchange.attempts < maxAttempts && !(service.activeEndpoints.isEmpty && service.canaryEndpoints.isEmpty) {
            c.exchange.attempts += 1
            releaseEndpoint(c)
            guard let endpoint = chooseEndpoint(service, for: c) else { return nil }
            guard endpoint.poolKey < pools.count, let pool = pools[endpoint.poolKey], let address = pool.address else {
                Log.warning("endpoint \(endpoint.id) has no usable address")
                continue
            }
            if service.upstream.multiplexed {
                guard let u = openH2Stream(for: c, endpoint: endpoint, pool: pool, address: address, service: service) else { continue }
                bind(c, u)
                return u
            }
            if !fresh, let u = takeIdle(pool) {
                u.phase = .active
                u.reused = true
                bind(c, u)
                u.deadline = now + responseTimeout(c.exchange.route)
                return u
            }
            let u: UpstreamConnection
            switch Socket.connect(to: address) {
            case .connected(let fd):
                u = UpstreamConnection(fd: fd, endpoint: endpoint, connecting: false, maxHeaders: settings.maxHeaders, bufferSize: Worker.upstreamFirstBuffer)
                u.deadline = now + responseTimeout(c.exchange.route)
            case .inProgress(let fd):
                u = UpstreamConnection(fd: fd, endpoint: endpoint, connecting: true, maxHeaders: settings.maxHeaders, bufferSize: Worker.upstreamFirstBuffer)
                u.deadline = now + connectTimeout(c.exchange.route)
            case .failed(let err):
                Log.warning("connect to \(endpoint.id) failed: \(IOError(call: "connect", errno: err))")
                metrics.add(endpoint.poolKey, WorkerMetrics.Field.connectFailures)
                recordOutcome(endpoint, service: service, failed: true)
                continue
            }
            if service.upstream.tls != nil {
                guard attachUpstreamTLS(u, service: service, pool: pool) else { continue }
            }
            u.slot = upstreams.count
            upstreams.append(u)
            u.interest = Epoll.readable | Epoll.writable
            epoll.add(u.fd, events: u.interest, token: Token.upstream(u))
            bind(c, u)
            return u
        }
        return nil
    }

    /// How long one attempt waits for the response head: the route's response timeout,
    /// else the per-try timeout (the route's retries, else the service's), else the
    /// upstream response timeout.
    func responseTimeout(_ route: Route?) -> Int64 {
        if let route, route.settings.responseTimeoutMs > 0 { return Int64(route.settings.responseTimeoutMs) }
        if let perTry = (route?.settings.retry ?? route?.service?.retry)?.perTryTimeoutMs, perTry > 0 { return Int64(perTry) }
        return Int64(settings.upstreamResponseTimeoutMs)
    }

    /// How long connecting (and the TLS handshake) may take: the route's, else the proxy's.
    func connectTimeout(_ route: Route?) -> Int64 {
        if let route, route.settings.connectTimeoutMs > 0 { return Int64(route.settings.connectTimeoutMs) }
        return Int64(settings.upstreamConnectTimeoutMs)
    }

    /// How long the response may stall between reads (once its first bytes came): the
    /// route's idle timeout, else the upstream response timeout.
    func responseIdleTimeout(_ route: Route?) -> Int64 {
        if let route, route.settings.idleTimeoutMs > 0 { return Int64(route.settings.idleTimeoutMs) }
        return Int64(settings.upstreamResponseTimeoutMs)
    }

    /// The retries of a request on `route`: the route's own, else the service's.
    func retryPolicy(_ route: Route?, _ service: Service?) -> RetryPolicy {
        route?.settings.retry ?? service?.retry ?? RetryPolicy()
    }

    private func takeIdle(_ pool: UpstreamPool) -> UpstreamConnection? {
        while let u = pool.idle.popLast() {
            if u.phase == .idle { return u }
        }
        return nil
    }

    private func bind(_ c: ClientConnection, _ u: UpstreamConnection) {
        c.upstream = u
        u.client = c
        c.exchange.lastEndpoint = u.endpoint
        metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.active)
        if u.h2 == nil, u.endpoint.poolKey < pools.count, let pool = pools[u.endpoint.poolKey] { pool.exchangeStarted(now: now) }
    }

    /// Ends the pairing of a client's exchange with its upstream connection.
    func unbind(_ c: ClientConnection, _ u: UpstreamConnection) {
        c.upstream = nil
        u.client = nil
        metrics.subtract(u.endpoint.poolKey, WorkerMetrics.Field.active)
        // A pool replaced while the exchange ran (the endpoint left and came back) never
        // counted it: saturate at zero.
        if u.h2 == nil, u.endpoint.poolKey < pools.count, let pool = pools[u.endpoint.poolKey], pool.busy > 0 { pool.busy -= 1 }
    }

    /// Parks a connection whose exchange ended cleanly in its endpoint's pool, or closes it
    /// when the pool is full, the endpoint left the table, or stray bytes arrived.
    func releaseToPool(_ u: UpstreamConnection) {
        if u.h2 != nil {
            // A stream ends with its exchange; its connection stays for the next.
            closeUpstream(u)
            return
        }
        let key = u.endpoint.poolKey
        guard key < pools.count, let pool = pools[key], pool.routable, pool.hasRoomForIdle(floor: settings.maxIdlePerEndpoint),
              u.inBuf.isEmpty, u.phase == .active, u.tls?.hasBufferedInput != true else {
            closeUpstream(u)
            return
        }
        if u.tls != nil { keepTLSSession(u, pool) }
        u.resetExchange()
        u.phase = .idle
        u.deadline = now + Int64(settings.upstreamIdleTimeoutMs)
        pool.idle.append(u)
        updateInterest(u)
    }

    // MARK: Events

    func upstreamEvent(_ u: UpstreamConnection, _ events: UInt32) {
        guard u.phase != .closed else { return }
        // TLS: a read that wanted to write, or a write that wanted to read, goes on when
        // the socket allows the other direction.
        let flags = u.tls == nil ? events : tlsEventFlags(u, events)
        let c = u.client
        defer {
            if u.phase != .closed { updateInterest(u) }
            if let c, c.phase != .closed {
                parkBuffersIfIdle(c)
                updateInterest(c)
            }
        }
        if u.phase == .idle {
            // A pooled connection has nothing to say: the upstream closed it (or misbehaved).
            // Over TLS it may still send session tickets, which are not a reason to close.
            if u.tls == nil || !idleTLSRecordsOnly(u) { closeUpstream(u) }
            return
        }
        if u.phase == .connecting {
            if !u.handshaking {
                guard flags & (Epoll.writable | Epoll.error | Epoll.hangup) != 0 else { return }
                let err = Socket.pendingError(u.fd)
                if err != 0 {
                    upstreamFailed(u, reason: "connect to \(u.endpoint.id): \(IOError(call: "connect", errno: err))")
                    return
                }
                u.handshaking = u.tls != nil
            }
            if u.handshaking {
                guard continueUpstreamHandshake(u) else { return }
            }
            u.phase = .active
            u.deadline = now + responseTimeout(u.client?.exchange.route)
        }
        if flags & Epoll.writable != 0 || u.sentIndex < u.outBuf.writerIndex {
            guard flushUpstream(u) else { return }
            if let c = u.client { pumpRequestBody(c) }
        }
        if flags & (Epoll.readable | Epoll.hangup | Epoll.error) != 0 && u.phase == .active {
            readUpstream(u)
        }
    }

    /// Sends queued request bytes. Returns false if the connection failed (and was handled).
    @discardableResult
    func flushUpstream(_ u: UpstreamConnection) -> Bool {
        if u.h2 != nil { return sendH2Request(u) }
        while u.sentIndex < u.outBuf.writerIndex {
            let pending = UnsafeRawBufferPointer(start: u.outBuf.base! + u.sentIndex, count: u.outBuf.writerIndex - u.sentIndex)
            switch sendUpstream(u, pending) {
            case .bytes(let n):
                u.sentIndex += n
                metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.bytesOut, UInt64(n))
            case .wouldBlock:
                return true
            case .closed, .failed:
                upstreamFailed(u, reason: "write to \(u.endpoint.id) failed")
                return false
            }
        }
        return true
    }

    /// Drops request bytes already sent, to make room; the request can no longer be replayed.
    func dropSentBytes(_ u: UpstreamConnection) {
        let sent = u.sentIndex - u.outBuf.readerIndex
        guard sent > 0 else { return }
        u.outBuf.consume(sent)
        u.outBuf.compact()
        u.sentIndex = u.outBuf.readerIndex
        u.replayable = false
    }

    private func readUpstream(_ u: UpstreamConnection) {
        if u.splice != nil { return spliceResponse(u) }
        if u.inBuf.writableBytes == 0 {
            if !u.headDone {
                guard u.inBuf.reserve(4096, limit: responseLimits.maxHeadBytes + 4096) else {
                    if let c = u.client { abortExchange(c, status: 502, reason: "response head from \(u.endpoint.id) too large") }
                    return
                }
            } else {
                u.inBuf.compact()
                if u.inBuf.writableBytes == 0 { return }
            }
        }
        let room = u.inBuf.writableBytes
        switch receiveUpstream(u) {
        case .bytes(let n):
            // A read that filled the buffer says more is on its way: the buffer doubles, up
            // to `bufferSize`, so connections that carry large bodies read them in large
            // steps while the rest stay at their first 4 KiB.
            if n == room && u.inBuf.capacity < bufferSize { _ = u.inBuf.reserve(u.inBuf.capacity, limit: bufferSize) }
            u.responseBytes += n
            metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.bytesIn, UInt64(n))
            u.deadline = now + responseIdleTimeout(u.client?.exchange.route)
            relayResponse(u)
        case .wouldBlock:
            return
        case .closed:
            u.eof = true
            if u.headDone && u.response.body.isCloseDelimited {
                relayResponse(u)
            } else if !u.headDone {
                upstreamFailed(u, reason: "\(u.endpoint.id) closed the connection before answering")
            } else if !u.responseDone {
                relayResponse(u)
                if u.phase != .closed, !u.responseDone, let c = u.client {
                    abortExchange(c, status: 502, reason: "\(u.endpoint.id) closed the connection mid-response")
                }
            }
        case .failed(let err):
            upstreamFailed(u, reason: "read from \(u.endpoint.id): \(IOError(call: "read", errno: err))")
        }
    }

    // MARK: Relaying the response

    /// A close-delimited body from a TLS upstream ended without close_notify: it may be
    /// truncated, so the client gets what arrived and then a cut (no Connection: close
    /// ending, no close_notify), never a clean end. Logged and counted.
    /// An HTTP/2 stream gets RST_STREAM instead of END_STREAM; the client's other streams go on.
    func responseTruncated(_ c: ClientConnection, _ u: UpstreamConnection) {
        metrics.truncatedResponses &+= 1
        recordOutcome(u.endpoint, service: c.exchange.route?.service, failed: true)
        let cut = c.h2 == nil ? "closing the client connection without a clean end" : "resetting the HTTP/2 stream"
        Log.warning("response from \(u.endpoint.id) ended without TLS close_notify: possibly truncated; \(cut)")
        if c.h2 == nil { c.abortiveClose = true }
        abortExchange(c, status: 502, reason: "response from \(u.endpoint.id) truncated (no TLS close_notify)")
    }

    /// Parses the response head and moves body bytes to the client, as far as the client's
    /// buffer allows; finishes the exchange when the response is complete. The decisions
    /// about the bytes are the ResponseReader's; this carries them out.
    func relayResponse(_ u: UpstreamConnection) {
        guard let c = u.client else {
            if u.discardMethod != nil { discardResponse(u) }
            return
        }
        if let auth = c.exchange.auth, !auth.passed { return relayAuthAnswer(u, c, auth) }
        if c.h2 != nil { return relayResponseToStream(u, c) }
        relaying: while true {
            if u.headDone && c.outBuf.writableBytes < u.inBuf.readableBytes { c.outBuf.compact() }
            let room = c.exchange.gzip == nil ? c.outBuf.writableBytes : gzipRoom(c)
            let event = u.response.next(u.inBuf.readable, room: room, close: u.closeState,
                                        limits: responseLimits, requestMethod: c.exchange.requestMethod, fields: u.fields)
            switch event {
            case .needBytes:
                if u.headDone {
                    if let gzip = c.exchange.gzip {
                        let before = c.outBuf.readableBytes
                        flushGzip(gzip, chunked: true, into: &c.outBuf)
                        c.exchange.bytesToClient &+= c.outBuf.readableBytes - before
                    }
                    break relaying
                }
                flushClient(c)
                if u.phase != .closed, u.inBuf.writableBytes == 0 { u.inBuf.compact() }
                return
            case .interimHead, .finalHead:
                let interim = u.head.isInterim
                let closeAfter = !interim && (!c.exchange.keepAlive || draining || (c.readClosed && c.inBuf.isEmpty) || !c.exchange.requestBodyDone
                    || u.head.framing == .untilClose)
                if closeAfter { c.exchange.keepAlive = false }
                let before = c.outBuf.writerIndex - c.outBuf.readerIndex
                if !interim && c.exchange.acceptsGzip { beginGzipIfWanted(c, u) }
                writeResponseHead(c, u, closeAfter: closeAfter, into: &c.outBuf)
                c.exchange.bytesToClient += c.outBuf.writerIndex - c.outBuf.readerIndex - before
                c.exchange.lastStatus = u.head.status
                u.inBuf.consume(u.head.headLength)
                c.exchange.responseStarted = true
                if interim {
                    u.response.acceptHead()
                } else {
                    startResponseBody(c, u)
                }
            case .switchingProtocols:
                guard c.exchange.upgradeRequested else {
                    responseFailed(c, u, event)
                    return
                }
                guard u.tls == nil else {
                    abortExchange(c, status: 502, reason: "\(u.endpoint.id) accepted an upgrade, but tunnels to TLS upstreams are not supported")
                    return
                }
                writeResponseHead(c, u, closeAfter: false, into: &c.outBuf)
                u.inBuf.consume(u.head.headLength)
                metrics.response(u.endpoint.poolKey, status: 101, latencyMicros: latencyMicros(c))
                recordOutcome(u.endpoint, service: c.exchange.route?.service, failed: false)
                if accessLog != nil { endLogLine(c, status: 101, endpoint: u.endpoint) }
                becomeTunnel(c, u)
                return
            case .body(let count):
                if let gzip = c.exchange.gzip {
                    let before = c.outBuf.readableBytes
                    gzipBody(gzip, u, count: count, chunked: true, into: &c.outBuf)
                    c.exchange.bytesToClient &+= c.outBuf.readableBytes - before
                } else {
                    relayBodyBytes(c, UnsafeRawBufferPointer(rebasing: u.inBuf.readable[0..<count]))
                    c.exchange.bytesToClient &+= count
                }
                u.inBuf.consume(count)
            case .complete:
                if let gzip = c.exchange.gzip {
                    let before = c.outBuf.readableBytes
                    endGzip(gzip, chunked: true, into: &c.outBuf)
                    c.exchange.bytesToClient &+= c.outBuf.readableBytes - before
                    c.exchange.gzip = nil
                }
                break relaying
            case .invalidHead, .invalidBody, .closedMidHead, .closedMidBody, .truncated:
                responseFailed(c, u, event)
                return
            }
        }
        guard flushClient(c) else { return }
        if u.responseDone {
            if c.upstream === u { finishExchange(c, u) }
            return
        }
        if c.upstream === u && startSpliceIfWorthIt(c, u) { return }
        // The flush emptied the client buffer while response bytes wait: no event will
        // come for them, so relay again now.
        if c.outBuf.isEmpty && u.inBuf.readableBytes > 0 && c.upstream === u {
            relayResponse(u)
            return
        }
        if u.inBuf.writableBytes == 0 { u.inBuf.compact() }
    }

    /// Body bytes for a plain client: a large run goes from the upstream's buffer to the socket
    /// in one writev together with what waits in the client's buffer (the head, before the
    /// first body bytes), and only what the socket does not take is copied there. The event
    /// was bounded by the client buffer's room, so the copy always fits. Any other result
    /// (would block, an error) leaves the bytes queued as before, for `flushClient` to meet.
    private func relayBodyBytes(_ c: ClientConnection, _ body: UnsafeRawBufferPointer) {
        guard c.tls == nil, body.count >= Worker.writeThroughMinimum else {
            c.outBuf.append(body)
            return
        }
        let queued = c.outBuf.readableBytes
        guard case .bytes(let n) = Socket.write(c.fd, c.outBuf.readable, body) else {
            c.outBuf.append(body)
            return
        }
        if n < queued {
            c.outBuf.consume(n)
            c.outBuf.append(body)
        } else {
            c.outBuf.clear()
            c.outBuf.append(UnsafeRawBufferPointer(rebasing: body[(n - queued)...]))
        }
    }

    /// Ends the exchange for a reader event that says the response failed: a 502 if nothing
    /// was relayed yet, else a cut (RST_STREAM for an HTTP/2 stream). Both relays.
    func responseFailed(_ c: ClientConnection, _ u: UpstreamConnection, _ event: ResponseReader.Event) {
        let reason: String
        switch event {
        case .invalidHead(let error): reason = "invalid response from \(u.endpoint.id): \(error.reason)"
        case .invalidBody(let error): reason = "invalid chunked body from \(u.endpoint.id): \(error.reason)"
        case .closedMidHead: reason = "\(u.endpoint.id) closed the connection mid-head"
        case .closedMidBody: reason = "\(u.endpoint.id) closed the connection mid-response"
        case .switchingProtocols: reason = "\(u.endpoint.id) switched protocols without an upgrade request"
        case .truncated: return responseTruncated(c, u)
        case .needBytes, .interimHead, .finalHead, .body, .complete: return
        }
        abortExchange(c, status: 502, reason: reason)
    }

    /// Microseconds from the request head to now (the response head, or the proxy's answer).
    @inline(__always)
    func latencyMicros(_ c: ClientConnection) -> Int64 {
        max(monotonicMicroseconds() &- c.exchange.requestStart, 0)
    }

    /// A final response head was parsed: counts it, tells health how the endpoint did,
    /// and sets up the body's framing. Shared by the HTTP/1.1 and HTTP/2 relays.
    @inline(__always)
    func startResponseBody(_ c: ClientConnection, _ u: UpstreamConnection) {
        u.response.acceptHead()
        metrics.response(u.endpoint.poolKey, status: u.head.status, latencyMicros: latencyMicros(c))
        recordOutcome(u.endpoint, service: c.exchange.route?.service, failed: u.head.status >= 500)
        if c.exchange.requestBodyDone { dropSentBytes(u) }
    }

    // MARK: Failures

    /// The connection failed before or while answering: what happens next is the
    /// `UpstreamFailure` policy's decision (replay, retry elsewhere, 502, cut); this carries
    /// it out.
    func upstreamFailed(_ u: UpstreamConnection, reason: String) {
        if let c = u.client, let auth = c.exchange.auth, !auth.passed { return authFailed(c, u, status: 502, reason: "forward_auth: \(reason)") }
        carryOut(failureFacts(u, .failed).decision, u, reason: reason)
    }

    func upstreamTimedOut(_ u: UpstreamConnection) {
        if let c = u.client, let auth = c.exchange.auth, !auth.passed, u.phase != .idle {
            return authFailed(c, u, status: 504, reason: "forward_auth: \(u.endpoint.id) did not answer within \(auth.step.timeoutMs) ms")
        }
        guard u.phase != .closed else { return }
        let facts = failureFacts(u, .timedOut)
        let reason: String
        switch u.phase {
        case .connecting:
            let step = u.handshaking ? "TLS handshake with" : "connect to"
            reason = "\(step) \(u.endpoint.id) timed out after \(connectTimeout(u.client?.exchange.route)) ms"
        case .active where facts.perTryTimeoutApplies:
            reason = "\(u.endpoint.id) did not answer within the per-try timeout of \(facts.perTryTimeoutMs) ms"
        case .active:
            reason = "\(u.endpoint.id) did not answer within \(u.responseBytes > 0 ? responseIdleTimeout(u.client?.exchange.route) : responseTimeout(u.client?.exchange.route)) ms"
        case .idle, .closed:
            reason = ""
        }
        carryOut(facts.decision, u, reason: reason)
    }

    /// The facts of a failed or timed-out upstream connection, for `UpstreamFailure.decision`.
    private func failureFacts(_ u: UpstreamConnection, _ kind: UpstreamFailure.Kind) -> UpstreamFailure {
        let phase: UpstreamFailure.Phase = switch u.phase {
        case .connecting: .connecting
        case .idle: .idle
        case .active, .closed: .active
        }
        var facts = UpstreamFailure(kind: kind, phase: phase)
        guard let c = u.client else {
            facts.bound = false
            return facts
        }
        let retry = retryPolicy(c.exchange.route, c.exchange.route?.service)
        facts.responseStarted = c.exchange.responseStarted
        facts.responseHeadDone = u.headDone
        facts.responseBytes = u.responseBytes
        facts.reusedFromPool = u.reused
        facts.replayable = u.replayable
        facts.idempotent = c.exchange.requestMethod.isIdempotent
        facts.requestBodyDone = c.exchange.requestBodyDone
        facts.refusedStream = u.h2?.refused == true
        facts.retries = c.exchange.retries
        facts.retryAttempts = retry.attempts
        facts.perTryTimeoutMs = retry.perTryTimeoutMs
        facts.budgetAvailable = retryTokens >= 1
        return facts
    }

    /// Carries out the failure policy's decision for `u`.
    private func carryOut(_ decision: UpstreamFailureDecision, _ u: UpstreamConnection, reason: String) {
        guard let c = u.client, decision.action != .close else {
            closeUpstream(u)
            return
        }
        let service = c.exchange.route?.service
        if decision.recordsFailure { recordOutcome(u.endpoint, service: service, failed: true) }
        if u.phase == .connecting { metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.connectFailures) }
        if decision.refusedByBudget { metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.retriesRefused) }
        switch decision.action {
        case .reattempt(let kind):
            guard let service else { return abortExchange(c, status: 502, reason: reason) }
            if kind.countsRetry {
                _ = spendRetry(failedKey: u.endpoint.poolKey)
                c.exchange.retries += 1
            }
            let failedKey = u.endpoint.poolKey
            unbind(c, u)
            Log.warning("\(reason); trying \(kind == .nextEndpoint ? "another endpoint" : "again")")
            if kind.restartsConnectAttempts { c.exchange.attempts = min(c.exchange.attempts, 1) }
            if let next = connectUpstream(for: c, service: service, fresh: true) {
                metrics.add(failedKey, WorkerMetrics.Field.retries)
                swap(&u.outBuf, &next.outBuf)
                next.sentIndex = next.outBuf.readerIndex
                next.replayable = u.replayable
                closeUpstream(u)
                if next.phase == .active { flushUpstream(next) }
                return
            }
            metrics.response(u.endpoint.poolKey, status: 502, latencyMicros: latencyMicros(c))
            closeUpstream(u)
            abortExchange(c, status: 502, reason: reason)
        case .answer(let status), .cut(let status):
            if status == 504 { metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.timeouts) }
            abortExchange(c, status: status, reason: reason)
        case .close:
            closeUpstream(u)
        }
    }
}
