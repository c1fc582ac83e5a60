#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardHTTP2
import YardIO
import YardTLS

// The HTTP/2 connection half of the worker: switching a connection that opened with the
// client preface to HTTP/2, reading and writing its frames, acting on its session's events,
// idle timeouts and the graceful GOAWAY on drain. Streams are in H2Streams.swift.

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
enum H2Preface {
    static let bytes: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Whether `buffer` starts like the preface: `.complete` when all 24 bytes match.
    static func match(_ buffer: UnsafeRawBufferPointer) -> Match {
        let n = min(buffer.count, bytes.count)
        for i in 0..<n where buffer[i] != bytes[i] { return .no }
        return n == bytes.count ? .complete : .partial
    }

    enum Match { case no, partial, complete }
}

extension Worker {
    // MARK: Switching protocols

    /// Hands a fresh connection whose first bytes are the HTTP/2 preface to an HTTP/2
    /// connection (h2c with prior knowledge). The socket, its buffered bytes and its gate
    /// slot move over; the HTTP/1.1 connection object is retired.
    func switchToHTTP2(_ c: ClientConnection) {
        let fd = c.fd
        let ticket = c.perClientTicket
        registerClient(c, c.interest)
        retireClient(c)
        let h = startHTTP2(transport: PlainTransport(fd: fd), peerText: c.peerText, peerBytes: c.peerBytes, received: c.inBuf.readable)
        h?.perClientTicket = ticket
    }

    /// Hands a TLS connection whose ALPN chose "h2" to an HTTP/2 connection over its records.
    func switchToHTTP2(_ c: ClientConnection, tls: TLSConnection) {
        let fd = c.fd
        let ticket = c.perClientTicket
        retireClient(c)
        let h = startHTTP2(transport: TLSTransport(fd: fd, tls: tls), peerText: c.peerText, peerBytes: c.peerBytes,
                   received: c.inBuf.readable, secure: true)
        h?.perClientTicket = ticket
        // The preface may have arrived with the client's Finished, already inside OpenSSL
        // (read-ahead): no epoll event will announce it.
        if tls.hasBufferedInput, let h, !h.closed {
            readH2(h)
            queueH2Flush(h)
        }
    }

    /// Serves HTTP/2 on an accepted connection that already holds a gate slot: h2c here,
    /// and h2 over TLS once ALPN chose "h2" (the TLS transport then carries the records).
    /// `received` are bytes already read from the transport (the preface, maybe more).
    @discardableResult
    func startHTTP2<Transport: ByteTransport>(transport: Transport, peerText: [UInt8], peerBytes: [UInt8],
                                              received: UnsafeRawBufferPointer, secure: Bool = false) -> H2Connection? {
        let h = H2ConnectionOver(transport: transport, session: H2Session(settings: h2Settings, bodyCapacity: Worker.h2StreamBufferSize),
                                 peerText: peerText, peerBytes: peerBytes, bufferSize: bufferSize)
        h.secure = secure
        _ = h.inBuf.reserve(received.count)
        h.inBuf.append(received)
        h.slot = h2Connections.count
        h2Connections.append(h)
        h.interest = Epoll.readable
        epoll.modify(h.fd, events: h.interest, token: Token.h2(h))
        // Until its first request the connection has the header timeout, as an HTTP/1.1
        // connection has from accept; the idle timeout starts when its last stream ends.
        h.deadline = now + Int64(settings.clientHeaderTimeoutMs)
        if draining { beginH2Shutdown(h) }
        receiveH2(h)
        queueH2Flush(h)
        return h
    }

    /// Removes an HTTP/1.1 connection object whose socket lives on elsewhere.
    private func retireClient(_ c: ClientConnection) {
        c.phase = .closed
        removeSlot(c, from: &clients)
        graveyard.append(c)
    }

    // MARK: Events

    func h2Event(_ h: H2Connection, _ flags: UInt32) {
        guard !h.closed else { return }
        // `transportWant` (TLS only): a write that must read goes on when readable, a read
        // that must write when writable.
        let want = h.transportWant
        if flags & Epoll.writable != 0 || (flags & (Epoll.hangup | Epoll.error) != 0 && !h.outBuf.isEmpty)
            || (want & flags & Epoll.readable != 0 && !h.outBuf.isEmpty) {
            guard writeH2(h) else { return }
        }
        if flags & (Epoll.readable | Epoll.hangup | Epoll.error) != 0 || want & flags & Epoll.writable != 0 {
            readH2(h)
            guard !h.closed else { return }
        }
        queueH2Flush(h)
    }

    /// Reads and feeds the session until the transport has nothing more. Over TLS, OpenSSL
    /// may hold more decrypted input than the buffer took, which epoll will not announce:
    /// read on while a read filled the buffer and OpenSSL still holds bytes. A read that
    /// gets nothing ends the loop even if OpenSSL holds a partial record (the rest of it
    /// comes from the socket, which epoll announces), so a slow client cannot make it spin.
    func readH2(_ h: H2Connection) {
        while !h.closed {
            if h.inBuf.writableBytes == 0 { h.inBuf.compact() }
            switch h.readInput() {
            case .bytes:
                if h.lingering {
                    // The session is over: what still arrives is read only to be dropped.
                    h.inBuf.clear()
                    continue
                }
                receiveH2(h)
                if !h.hasBufferedInput { return }
            case .wouldBlock:
                return
            case .closed, .failed:
                closeH2(h)
                return
            }
        }
    }

    /// Feeds what was read to the session and acts on what it recorded.
    private func receiveH2(_ h: H2Connection) {
        guard !h.inBuf.isEmpty else { return }
        let outcome = h.session.receive(h.inBuf.readable, nowMs: now)
        h.inBuf.clear()
        switch outcome {
        case .ok:
            if h.session.floodDetected {
                Log.warning("HTTP/2 client \(String(decoding: h.peerText, as: UTF8.self)) reset streams too fast; GOAWAY ENHANCE_YOUR_CALM")
            }
        case .badPreface:
            closeH2(h)
            return
        case .protocolError(let reason):
            // The session queued GOAWAY and reads no more; the connection closes once it is out.
            Log.info("HTTP/2 client \(String(decoding: h.peerText, as: UTF8.self)): \(reason); GOAWAY")
        }
        processH2Events(h)
    }

    /// Acts on the session's recorded events until there are none (acting may record more:
    /// sending closes streams and drains bodies).
    func processH2Events(_ h: H2Connection) {
        while h.session.hasEvents && !h.closed {
            h.session.takeEvents(into: &h.batch)
            for event in h.batch {
                guard !h.closed else { return }
                switch event {
                case .request(let stream, let fields, let endStream):
                    // A stream the client already reset in the same read is not started.
                    guard h.session.isOpen(stream) else { continue }
                    startStream(h, stream: stream, fields: fields, endStream: endStream)
                case .data(let stream, let bytes):
                    streamData(h, stream: stream, bytes: bytes)
                case .endStream(let stream):
                    streamRequestEnded(h, stream: stream, trailers: nil)
                case .trailers(let stream, let fields):
                    streamRequestEnded(h, stream: stream, trailers: fields)
                case .closed(let stream, _):
                    streamClosed(h, stream: stream)
                case .bodyDrained(let stream):
                    guard let c = h.streams[stream] else { continue }
                    c.h2?.lastProgressMs = now
                    if let u = c.upstream { relayResponseToStream(u, c) }
                case .windowUpdate(let stream):
                    windowOpened(h, stream: stream)
                case .pingAck(let opaque):
                    // The client has read the shutdown notice: what it sent before is in, so
                    // the final GOAWAY refuses nothing it believed accepted.
                    if opaque == H2Session.shutdownPing && h.shutdownAnnounced && !h.shutdownFinished { finishH2Shutdown(h) }
                case .goaway, .reset, .settingsAck, .response:
                    // A server session records no response heads.
                    break
                }
            }
        }
        h.session.clearStores()
        // The idle clock starts when the last stream ends; frames without streams (PING,
        // SETTINGS) do not restart it, so a client cannot hold a connection by pinging.
        if !h.shutdownAnnounced {
            if !h.streams.isEmpty {
                h.deadline = 0
            } else if h.deadline == 0 {
                h.deadline = now + Int64(settings.clientIdleTimeoutMs)
            }
        }
    }

    /// A window opened: streams whose response waits for it may take more from upstream.
    private func windowOpened(_ h: H2Connection, stream: Int32) {
        if stream != 0 {
            guard let c = h.streams[stream] else { return }
            c.h2?.lastProgressMs = now
            if let u = c.upstream { relayResponseToStream(u, c) }
            return
        }
        for c in h.streams.values {
            if let u = c.upstream, u.headDone { relayResponseToStream(u, c) }
        }
    }

    // MARK: Output

    /// Notes that `h` has frames to produce; the worker sends them after the current batch
    /// of epoll events, so responses finishing in one batch share one write.
    @inline(__always)
    func queueH2Flush(_ h: H2Connection) {
        guard !h.flushQueued, !h.closed else { return }
        h.flushQueued = true
        h2FlushQueue.append(h)
    }

    /// Sends what every queued connection has to send (run after each batch of events).
    func flushQueuedH2() {
        var i = 0
        while i < h2FlushQueue.count {
            let h = h2FlushQueue[i]
            h.flushQueued = false
            if !h.closed { flushH2(h) }
            i += 1
        }
        h2FlushQueue.removeAll(keepingCapacity: true)
        if !h2FlushCarry.isEmpty {
            for h in h2FlushCarry { queueH2Flush(h) }
            h2FlushCarry.removeAll(keepingCapacity: true)
        }
    }

    /// Produces frames into the output buffer and writes them; closes the connection when
    /// the session is over and everything was written.
    func flushH2(_ h: H2Connection) {
        for _ in 0..<16 {
            processH2Events(h)
            guard !h.closed else { return }
            guard h.session.send(into: &h.outBuf) else {
                closeH2(h)
                return
            }
            if !h.session.hasEvents { break }
        }
        // A send stops at 256 KiB of output. When it did, and the write below empties the
        // buffer, the session still has frames (a full body buffer, its upstream waiting for
        // room); so do events left after the rounds. Either way the connection is flushed
        // again on the next turn of the loop: left alone they would wait for the client's
        // next frame, which a client with a large window may never send, and the download
        // would stall until the upstream timeout cut it.
        let sendLimited = h.outBuf.readableBytes >= H2Session.sendLimit
        guard writeH2(h) else { return }
        if h.session.hasEvents || (sendLimited && h.outBuf.isEmpty) { h2FlushCarry.append(h) }
        // Between the two GOAWAYs nghttp2 calls a session without streams over, but the
        // client may have a stream on its way that it sent before reading the notice: the
        // connection stays open for it until the final GOAWAY (PING ACK, or the wait's end).
        if !h.session.isActive && h.outBuf.isEmpty && !h.lingering && (h.shutdownFinished || !h.shutdownAnnounced) {
            lingerH2(h)
        }
        updateInterest(h)
    }

    /// The session is over and its last frames (GOAWAY) are written: ends the sending side
    /// and drops input until the client closes, for at most `lingerMs`. Closing at once
    /// with unread input would make the kernel send RST, which can destroy the GOAWAY
    /// before the client reads it.
    private func lingerH2(_ h: H2Connection) {
        h.lingering = true
        h.shutdownAnnounced = true
        h.shutdownFinished = true
        h.finishWriting()
        h.deadline = now + Worker.lingerMs
        h.nextStreamCheck = 0
    }

    /// Writes the output buffer. Returns false if the connection was closed.
    private func writeH2(_ h: H2Connection) -> Bool {
        while !h.outBuf.isEmpty {
            switch h.flushOutput() {
            case .bytes:
                continue
            case .wouldBlock:
                if h.outBuf.writableBytes < 16 * 1024 { h.outBuf.compact() }
                return true
            case .closed, .failed:
                closeH2(h)
                return false
            }
        }
        h.outBuf.clear()
        return true
    }

    /// Reads while the output is not backed up (a client that does not read its responses
    /// does not get to send more requests); writes while output is pending.
    func updateInterest(_ h: H2Connection) {
        guard !h.closed else { return }
        var want: UInt32 = h.transportWant
        if h.outBuf.readableBytes < 256 * 1024 { want |= Epoll.readable }
        if !h.outBuf.isEmpty { want |= Epoll.writable }
        if want != h.interest {
            h.interest = want
            epoll.modify(h.fd, events: want, token: Token.h2(h))
        }
    }

    // MARK: Ending

    func closeH2(_ h: H2Connection) {
        guard !h.closed else { return }
        h.closed = true
        for c in h.streams.values { abandonStream(c) }
        h.streams.removeAll()
        h.spareStreams.removeAll()
        epoll.remove(h.fd)
        h.closeTransport()
        gate.leave()
        h.perClientTicket = nil
        removeSlot(h, from: &h2Connections)
        graveyard.append(h)
    }

    /// Graceful stop, step one: GOAWAY(2^31-1) so the client stops opening streams; the
    /// final GOAWAY (last stream processed) follows `shutdownNoticeMs` later, at the deadline.
    func beginH2Shutdown(_ h: H2Connection) {
        guard !h.shutdownAnnounced else { return }
        h.shutdownAnnounced = true
        h.session.announceShutdown()
        // Within the drain: the final GOAWAY goes out before the drain's end cuts anything.
        h.deadline = now + min(Worker.shutdownNoticeMs, max(Int64(truncatingIfNeeded: settings.drainTimeoutMs) / 2, 1))
        queueH2Flush(h)
    }

    /// Longest wait between the two GOAWAYs of a graceful stop. The second one follows the
    /// ACK of the PING sent with the first (the client has read the notice then, and every
    /// stream it opened before is in); this bounds the wait for a client that never answers.
    /// A stream the client opened before it read the notice would be refused by the second
    /// GOAWAY (safe to retry, RFC 9113 §6.8, but h2load and many API clients do not): a
    /// fixed wait was not enough when the client is starved of CPU (at 200 ms, a takeover on
    /// a loaded 2-core runner refused 16 streams of one h2load run; at 1 s, one stream in a
    /// full test run). Envoy waits its drain_timeout, 5 s by default. At most half of
    /// `timeouts.drain`, so the final GOAWAY precedes the drain's end.
    static let shutdownNoticeMs: Int64 = 5_000

    /// The second GOAWAY: streams after the last one processed are refused, the others finish.
    func finishH2Shutdown(_ h: H2Connection) {
        h.shutdownFinished = true
        h.session.finishShutdown()
        // In-flight streams finish within the drain; an idle connection ends now.
        h.deadline = now + Int64(truncatingIfNeeded: settings.clientIdleTimeoutMs)
        queueH2Flush(h)
    }

    func h2TimedOut(_ h: H2Connection) {
        if h.lingering {
            closeH2(h)
        } else if h.shutdownAnnounced && !h.shutdownFinished {
            finishH2Shutdown(h)
        } else if h.streams.isEmpty || h.shutdownFinished {
            if !h.shutdownAnnounced {
                // Idle: say goodbye properly.
                h.shutdownAnnounced = true
                h.shutdownFinished = true
                h.session.finishShutdown()
                h.deadline = now + Worker.lingerMs
                queueH2Flush(h)
            } else {
                closeH2(h)
            }
        } else {
            h.deadline = 0
        }
    }

    func expireH2Timeouts() {
        var i = 0
        while i < h2Connections.count {
            let h = h2Connections[i]
            if h.deadline != 0 && now >= h.deadline { h2TimedOut(h) }
            if !h.closed && h.nextStreamCheck != 0 && now >= h.nextStreamCheck { checkStreamDeadlines(h) }
            if i < h2Connections.count && h2Connections[i] === h { i += 1 }
        }
        if !h2FlushQueue.isEmpty { flushQueuedH2() }
    }
}
