#if canImport(Glibc)
import Glibc
#endif
import YardHTTP2
import YardIO
import YardModel
import YardTLS

// HTTP/2 connections to upstreams (services with `upstream.protocol: h2c` or `h2`): one
// nghttp2 client session per connection, many exchanges multiplexed on it as streams.
//
// Each exchange keeps its `UpstreamConnection`, without a socket of its own (`h2` set): the
// client side writes the request into it as HTTP/1.1 and reads the response from it as
// HTTP/1.1, so routing, retries, timeouts, health outcomes, metrics and both downstream
// relays (HTTP/1.1 and HTTP/2 clients) are the ordinary path's. The conversion to and from
// frames is in H2UpstreamStreams.swift; this file is the connection: connecting, reading,
// writing, the session's events, idle and GOAWAY ends.

// MARK: Connection

/// Where an upstream HTTP/2 connection is.
enum H2UpstreamPhase: UInt8 {
    /// TCP connect in progress; streams wait in `waiting`.
    case connecting
    /// TLS handshake in progress (`upstream.protocol: h2`).
    case handshaking
    /// Frames flow; new streams are submitted at once.
    case ready
    case closed
}

/// One HTTP/2 connection to one endpoint, owned by one worker (slot-indexed in its
/// `h2Upstreams`, listed in its endpoint's pool). Like `H2Connection`, generic over its
/// transport through one subclass, so reads and writes are static calls.
///
/// Threading: confined to the worker that opened it.
class H2UpstreamConnection {
    let session: H2Session
    let endpoint: Endpoint
    var slot = 0
    var phase: H2UpstreamPhase
    var interest: UInt32 = 0
    /// Connect/handshake deadline, then the idle deadline while no stream is open (0: none).
    var deadline: Int64 = 0
    var inBuf: ByteBuffer
    var outBuf: ByteBuffer
    /// Takes no new stream: its endpoint left rotation, the server sent GOAWAY, or ids ran
    /// out. Closed when its last stream ends.
    var retiring = false
    /// Queued in the worker's list of connections to flush after the event batch.
    var flushQueued = false
    /// Streams by id, once submitted.
    var streams: [Int32: UpstreamConnection] = [:]
    /// Exchanges bound before the connection was ready; submitted when it is.
    var waiting: [UpstreamConnection] = []
    /// Bodies of streams whose exchange ended before the stream closed in the session:
    /// the session's data provider may still read them until `.closed`.
    var orphanBodies: [Int32: H2StreamBody] = [:]
    /// The last stream id the server said it processes (GOAWAY); later ones were refused.
    var goawayLastStream = Int32.max
    var batch: [H2Event] = []
    var headers = H2HeaderBlock()
    /// `:scheme` of its requests.
    let secure: Bool
    /// TLS (h2 by ALPN), nil for h2c.
    let tls: TLSConnection?

    init(session: H2Session, endpoint: Endpoint, phase: H2UpstreamPhase, tls: TLSConnection?, bufferSize: Int) {
        self.session = session
        self.endpoint = endpoint
        self.phase = phase
        self.tls = tls
        self.secure = tls != nil
        inBuf = ByteBuffer(capacity: bufferSize)
        outBuf = ByteBuffer(capacity: bufferSize)
        batch.reserveCapacity(32)
    }

    deinit {
        inBuf.deallocate()
        outBuf.deallocate()
        headers.deallocate()
    }

    /// Open plus waiting exchanges: how loaded the connection is.
    var load: Int { streams.count + waiting.count }

    // Overridden by `H2UpstreamOver` with its transport's calls.
    var fd: Int32 { -1 }
    func readInput() -> IOResult { .failed(EBADF) }
    func flushOutput() -> IOResult { .failed(EBADF) }
    func closeTransport() {}
    var hasBufferedInput: Bool { false }
}

/// An upstream HTTP/2 connection over a concrete transport.
final class H2UpstreamOver<Transport: ByteTransport>: H2UpstreamConnection {
    var transport: Transport

    init(transport: Transport, session: H2Session, endpoint: Endpoint, phase: H2UpstreamPhase, tls: TLSConnection?, bufferSize: Int) {
        self.transport = transport
        super.init(session: session, endpoint: endpoint, phase: phase, tls: tls, bufferSize: bufferSize)
    }

    override var fd: Int32 { transport.fd }
    override func readInput() -> IOResult { transport.read(into: &inBuf) }
    override func flushOutput() -> IOResult { transport.flush(&outBuf) }
    override func closeTransport() { transport.close() }
    override var hasBufferedInput: Bool { transport.hasBufferedInput }
}

extension H2UpstreamConnection: Slotted {}

extension Worker {
    /// Streams one upstream HTTP/2 connection carries before the worker opens another to
    /// the same endpoint (the server's own limit applies when lower).
    static let h2UpstreamStreamLimit = 100
    /// Connections per endpoint per worker; beyond it, streams queue in nghttp2 for the
    /// least loaded one.
    static let h2UpstreamConnectionLimit = 8

    /// The settings of upstream sessions: a 64 KiB receive window per stream (held until
    /// the bytes left for the client), room for every stream's window on the connection.
    var h2UpstreamSettings: H2Settings {
        var s = H2Settings()
        s.maxHeaderListSize = max(settings.maxHeaderBytes, 65_536)
        s.initialWindowSize = 65_535
        s.connectionWindowSize = Int32(min(Worker.h2UpstreamStreamLimit * 65_535, Int(Int32.max)))
        return s
    }

    // MARK: Choosing and opening

    /// The connection a new exchange with `endpoint` goes on: the least loaded open one
    /// under the stream limit, else a new one (nil when the connect fails at once).
    func h2Upstream(for endpoint: Endpoint, pool: UpstreamPool, address: SocketAddress, service: Service) -> H2UpstreamConnection? {
        var best: H2UpstreamConnection?
        for h in pool.h2 where !h.retiring && h.phase != .closed && h.session.acceptsNewStreams {
            if best == nil || h.load < best!.load { best = h }
        }
        if let best {
            let limit = min(Worker.h2UpstreamStreamLimit, max(1, best.session.peerMaxConcurrentStreams))
            if best.load < limit || pool.h2.count >= Worker.h2UpstreamConnectionLimit { return best }
        }
        return openH2Upstream(endpoint, pool: pool, address: address, service: service)
    }

    private func openH2Upstream(_ endpoint: Endpoint, pool: UpstreamPool, address: SocketAddress, service: Service) -> H2UpstreamConnection? {
        let fd: Int32
        let phase: H2UpstreamPhase
        switch Socket.connect(to: address) {
        case .connected(let connected):
            fd = connected
            phase = .ready
        case .inProgress(let pending):
            fd = pending
            phase = .connecting
        case .failed(let err):
            Log.warning("connect to \(endpoint.id) failed: \(IOError(call: "connect", errno: err))")
            metrics.add(endpoint.poolKey, WorkerMetrics.Field.connectFailures)
            recordOutcome(endpoint, service: service, failed: true)
            return nil
        }
        let session = H2Session(clientSettings: h2UpstreamSettings, bodyCapacity: Worker.h2StreamBufferSize)
        let h: H2UpstreamConnection
        if service.upstream.tls != nil {
            let tls: TLSConnection
            do throws(TLSError) {
                guard let context = upstreamTLS.context(for: service) else {
                    throw TLSError("TLS to \(endpoint.id)", reason: "no CA loaded for service \(service.name) (see the error at its table's publication)")
                }
                tls = try UpstreamTLSContexts.connection(fd: fd, endpoint: endpoint, service: service, context: context,
                                                         resuming: pool.tlsSession)
            } catch {
                Socket.close(fd)
                noteTLSProblem(pool, "TLS to \(endpoint.id): \(error)")
                metrics.upstreamTLSFailures &+= 1
                metrics.add(endpoint.poolKey, WorkerMetrics.Field.connectFailures)
                recordOutcome(endpoint, service: service, failed: true)
                return nil
            }
            h = H2UpstreamOver(transport: TLSTransport(fd: fd, tls: tls), session: session, endpoint: endpoint,
                               phase: phase == .ready ? .handshaking : .connecting, tls: tls, bufferSize: bufferSize)
        } else {
            h = H2UpstreamOver(transport: PlainTransport(fd: fd), session: session, endpoint: endpoint, phase: phase,
                               tls: nil, bufferSize: bufferSize)
        }
        h.deadline = now + Int64(settings.upstreamConnectTimeoutMs)
        h.slot = h2Upstreams.count
        h2Upstreams.append(h)
        pool.h2.append(h)
        h.interest = h.phase == .ready ? Epoll.readable : Epoll.readable | Epoll.writable
        epoll.add(h.fd, events: h.interest, token: Token.h2Upstream(h))
        if h.phase == .handshaking { continueH2UpstreamHandshake(h) }
        if h.phase == .ready { h2UpstreamReady(h) }
        return h
    }

    /// The connection can carry frames: the preface and SETTINGS go out with the waiting
    /// exchanges' requests.
    private func h2UpstreamReady(_ h: H2UpstreamConnection) {
        h.phase = .ready
        h.deadline = 0
        let waiting = h.waiting
        h.waiting.removeAll(keepingCapacity: true)
        for u in waiting where u.phase == .connecting {
            u.phase = .active
            u.deadline = now + responseTimeout(u.client?.exchange.route)
            sendH2Request(u)
            if let c = u.client {
                pumpRequestBody(c)
                clientProgressed(c)
            }
        }
        h2UpstreamIdleCheck(h)
        queueH2UpstreamFlush(h)
    }

    private func continueH2UpstreamHandshake(_ h: H2UpstreamConnection) {
        guard let tls = h.tls else { return }
        let pool = h.endpoint.poolKey < pools.count ? pools[h.endpoint.poolKey] : nil
        switch tls.handshake() {
        case .done:
            metrics.upstreamTLSHandshakes &+= 1
            if tls.resumed { metrics.upstreamTLSResumed &+= 1 }
            if let pool, pool.tlsProblem != nil {
                pool.tlsProblem = nil
                Log.info("TLS to \(h.endpoint.id) works again (\(tls.protocolVersion))")
            }
            guard tls.alpn == "h2" else {
                failH2Upstream(h, reason: "\(h.endpoint.id) did not choose h2 by ALPN (\(tls.alpn ?? "no ALPN")); it is configured as protocol h2",
                               connectFailed: true)
                return
            }
            h2UpstreamReady(h)
        case .wantRead:
            setH2UpstreamInterest(h, Epoll.readable)
        case .wantWrite:
            setH2UpstreamInterest(h, Epoll.readable | Epoll.writable)
        case .closed:
            metrics.upstreamTLSFailures &+= 1
            if let pool { noteTLSProblem(pool, "TLS handshake with \(h.endpoint.id): the endpoint closed the connection (does it speak TLS?)") }
            failH2Upstream(h, reason: "TLS handshake with \(h.endpoint.id) failed: closed by the endpoint", connectFailed: true)
        case .failed(let error):
            metrics.upstreamTLSFailures &+= 1
            if let pool { noteTLSProblem(pool, "TLS handshake with \(h.endpoint.id) failed: \(error.reason.isEmpty ? error.description : error.reason)") }
            failH2Upstream(h, reason: "TLS handshake with \(h.endpoint.id) failed", connectFailed: true)
        }
    }

    // MARK: Events

    func h2UpstreamEvent(_ h: H2UpstreamConnection, _ flags: UInt32) {
        guard h.phase != .closed else { return }
        if h.phase == .connecting {
            guard flags & (Epoll.writable | Epoll.error | Epoll.hangup) != 0 else { return }
            let err = Socket.pendingError(h.fd)
            if err != 0 {
                failH2Upstream(h, reason: "connect to \(h.endpoint.id): \(IOError(call: "connect", errno: err))", connectFailed: true)
                return
            }
            if h.tls != nil {
                h.phase = .handshaking
            } else {
                h2UpstreamReady(h)
                return
            }
        }
        if h.phase == .handshaking {
            continueH2UpstreamHandshake(h)
            return
        }
        if flags & Epoll.writable != 0 || (flags & (Epoll.hangup | Epoll.error) != 0 && !h.outBuf.isEmpty) {
            guard writeH2Upstream(h) else { return }
        }
        if flags & (Epoll.readable | Epoll.hangup | Epoll.error) != 0 {
            repeat {
                if h.inBuf.writableBytes == 0 { h.inBuf.compact() }
                switch h.readInput() {
                case .bytes(let n):
                    metrics.add(h.endpoint.poolKey, WorkerMetrics.Field.bytesIn, UInt64(n))
                    receiveH2Upstream(h)
                case .wouldBlock:
                    break
                case .closed:
                    failH2Upstream(h, reason: "\(h.endpoint.id) closed the HTTP/2 connection", connectFailed: false)
                    return
                case .failed(let err):
                    failH2Upstream(h, reason: "read from \(h.endpoint.id): \(IOError(call: "read", errno: err))", connectFailed: false)
                    return
                }
            } while h.phase != .closed && h.hasBufferedInput
        }
        if h.phase != .closed { queueH2UpstreamFlush(h) }
    }

    private func receiveH2Upstream(_ h: H2UpstreamConnection) {
        guard !h.inBuf.isEmpty else { return }
        let outcome = h.session.receive(h.inBuf.readable, nowMs: now)
        h.inBuf.clear()
        if case .protocolError(let reason) = outcome {
            // The session queued GOAWAY; the streams end with errors through `.closed`.
            Log.warning("HTTP/2 upstream \(h.endpoint.id) broke the protocol: \(reason)")
            h.retiring = true
        }
        processH2UpstreamEvents(h)
    }

    /// Acts on the session's recorded events until there are none.
    func processH2UpstreamEvents(_ h: H2UpstreamConnection) {
        while h.session.hasEvents && h.phase != .closed {
            h.session.takeEvents(into: &h.batch)
            let batch = h.batch
            var i = 0
            while i < batch.count {
                let event = batch[i]
                i += 1
                guard h.phase != .closed else { return }
                switch event {
                case .response(let stream, let fields, let endStream):
                    if let u = h.streams[stream] { h2ResponseHead(u, fields: fields, endStream: endStream) }
                case .data(let stream, var bytes):
                    // The stream's next DATA frames of this read, adjacent in the store, go on
                    // as one piece: one chunk when the response is chunked, not one per frame
                    // (a server sending 1-byte frames would cost six bytes per byte).
                    while i < batch.count, case .data(stream, let next) = batch[i], next.lowerBound == bytes.upperBound {
                        bytes = bytes.lowerBound..<next.upperBound
                        i += 1
                    }
                    if let u = h.streams[stream] {
                        h2ResponseData(u, h.session.data(bytes))
                    } else {
                        h.session.consume(stream: stream, count: bytes.count)
                    }
                case .trailers(let stream, let fields):
                    if let u = h.streams[stream] { h2ResponseEnded(u, trailers: fields) }
                case .endStream(let stream):
                    if let u = h.streams[stream] { h2ResponseEnded(u, trailers: nil) }
                case .closed(let stream, let code):
                    if let body = h.orphanBodies.removeValue(forKey: stream) { h.session.release(body) }
                    if let u = h.streams[stream] { h2StreamClosed(u, code: code) }
                case .bodyDrained(let stream):
                    if let u = h.streams[stream], u.phase == .active {
                        sendH2Request(u)
                        if let c = u.client {
                            pumpRequestBody(c)
                            clientProgressed(c)
                        }
                    }
                case .goaway(let lastStream, let code):
                    h.retiring = true
                    h.goawayLastStream = lastStream
                    if code != 0 { Log.warning("HTTP/2 upstream \(h.endpoint.id) sent GOAWAY (code \(code), last stream \(lastStream))") }
                case .request, .reset, .windowUpdate, .settingsAck, .pingAck:
                    break
                }
            }
        }
        h.session.clearStores()
        h2UpstreamIdleCheck(h)
    }

    // MARK: Output

    @inline(__always)
    func queueH2UpstreamFlush(_ h: H2UpstreamConnection) {
        guard !h.flushQueued, h.phase != .closed else { return }
        h.flushQueued = true
        h2UpstreamFlushQueue.append(h)
    }

    /// Sends what every queued connection has to send (run after each batch of events).
    func flushQueuedH2Upstreams() {
        var i = 0
        while i < h2UpstreamFlushQueue.count {
            let h = h2UpstreamFlushQueue[i]
            h.flushQueued = false
            if h.phase == .ready { writeH2Upstream(h) }
            i += 1
        }
        h2UpstreamFlushQueue.removeAll(keepingCapacity: true)
    }

    /// Serialises frames and writes them; returns false if the connection ended.
    @discardableResult
    func writeH2Upstream(_ h: H2UpstreamConnection) -> Bool {
        guard h.phase == .ready else { return true }
        while true {
            if h.outBuf.isEmpty {
                guard h.session.send(into: &h.outBuf) else {
                    failH2Upstream(h, reason: "HTTP/2 session with \(h.endpoint.id) failed", connectFailed: false)
                    return false
                }
                // Sending may record events (bodies drained, streams closed by our resets).
                if h.session.hasEvents { processH2UpstreamEvents(h) }
                guard h.phase != .closed else { return false }
                if h.outBuf.isEmpty { break }
            }
            let before = h.outBuf.readableBytes
            switch h.flushOutput() {
            case .bytes:
                metrics.add(h.endpoint.poolKey, WorkerMetrics.Field.bytesOut, UInt64(before - h.outBuf.readableBytes))
                continue
            case .wouldBlock:
                setH2UpstreamInterest(h, Epoll.readable | Epoll.writable)
                return true
            case .closed, .failed:
                failH2Upstream(h, reason: "write to \(h.endpoint.id) failed", connectFailed: false)
                return false
            }
        }
        if h.retiring && h.load == 0 && !h.session.wantsWrite {
            closeH2Upstream(h)
            return false
        }
        setH2UpstreamInterest(h, Epoll.readable)
        return true
    }

    private func setH2UpstreamInterest(_ h: H2UpstreamConnection, _ want: UInt32) {
        guard want != h.interest, h.phase != .closed else { return }
        h.interest = want
        epoll.modify(h.fd, events: want, token: Token.h2Upstream(h))
    }

    // MARK: Ends

    /// Starts the idle clock when no exchange uses the connection; a retiring one closes.
    func h2UpstreamIdleCheck(_ h: H2UpstreamConnection) {
        guard h.phase == .ready else { return }
        if h.load > 0 {
            h.deadline = 0
        } else if h.retiring {
            // Close after the GOAWAY or final frames are out (the flush closes it).
            queueH2UpstreamFlush(h)
        } else if h.deadline == 0 {
            h.deadline = now + Int64(settings.upstreamIdleTimeoutMs)
        }
    }

    /// Takes no new stream; closes now if idle. Used when the endpoint leaves rotation.
    func retireH2Upstream(_ h: H2UpstreamConnection) {
        guard h.phase != .closed else { return }
        h.retiring = true
        if h.load == 0 { closeH2Upstream(h) }
    }

    /// The connection failed: every exchange on it fails too (retried where safe: those
    /// that never reached the server, or that the server refused, go elsewhere).
    func failH2Upstream(_ h: H2UpstreamConnection, reason: String, connectFailed: Bool) {
        guard h.phase != .closed else { return }
        let streams = h.streams
        let waiting = h.waiting
        closeH2Upstream(h)
        for (id, u) in streams.sorted(by: { $0.key < $1.key }) where u.phase != .closed {
            u.h2?.refused = id > h.goawayLastStream
            u.h2?.detach()
            let c = u.client
            upstreamFailed(u, reason: reason)
            clientProgressed(c)
        }
        for u in waiting where u.phase != .closed {
            u.h2?.detach()
            if !connectFailed { u.h2?.refused = true }
            let c = u.client
            upstreamFailed(u, reason: reason)
            clientProgressed(c)
        }
    }

    /// Closes the socket and forgets the connection; exchanges still on it are left to the
    /// caller (`failH2Upstream`) or already ended.
    func closeH2Upstream(_ h: H2UpstreamConnection) {
        guard h.phase != .closed else { return }
        let pool = h.endpoint.poolKey < pools.count ? pools[h.endpoint.poolKey] : nil
        // The next connection to the endpoint resumes this one's TLS session (by now a
        // TLS 1.3 ticket has arrived).
        if h.phase == .ready, let tls = h.tls, let session = tls.resumableSession { pool?.tlsSession = session }
        h.phase = .closed
        epoll.remove(h.fd)
        h.closeTransport()
        removeSlot(h, from: &h2Upstreams)
        if let pool, let index = pool.h2.firstIndex(where: { $0 === h }) { pool.h2.remove(at: index) }
        h.streams.removeAll()
        h.waiting.removeAll()
        graveyard.append(h)
    }

    /// Connect, handshake and idle deadlines (run every tick).
    func expireH2UpstreamTimeouts() {
        var i = 0
        while i < h2Upstreams.count {
            let h = h2Upstreams[i]
            if h.deadline != 0 && now >= h.deadline {
                switch h.phase {
                case .connecting, .handshaking:
                    failH2Upstream(h, reason: "connect to \(h.endpoint.id) timed out after \(settings.upstreamConnectTimeoutMs) ms",
                                   connectFailed: true)
                case .ready:
                    if h.load == 0 {
                        h.session.terminate(code: 0)
                        _ = h.session.send(into: &h.outBuf)
                        _ = h.flushOutput()
                        closeH2Upstream(h)
                    } else {
                        h.deadline = 0
                    }
                case .closed:
                    break
                }
            }
            if i < h2Upstreams.count && h2Upstreams[i] === h { i += 1 }
        }
    }
}
