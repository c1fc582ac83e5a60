#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardHTTP2
import YardIO
import YardModel

// HTTP/2 streams on the HTTP/1.1 machinery. A stream's request head is written out as an
// HTTP/1.1 head into its `ClientConnection`'s input buffer and goes through the same parser,
// router, balancer and upstream pools as any request; its body follows as the DATA arrives
// (chunked when the client gave no content-length). The response is taken from the
// upstream connection and submitted to the session: head as HEADERS, body through the
// stream's body buffer (dechunked), trailers as trailers.
//
// Flow control both ways: DATA is consumed (window reopened) only as it leaves the stream's
// buffer for the upstream, and response bytes are taken from the upstream only while the
// client's window has room for them, so the upstream socket's own window holds the rest.

/// Fixed texts of a stream's head.
enum H2StreamText {
    nonisolated(unsafe) static let chunked = UnsafeRawBufferPointer(start: ("chunked" as StaticString).utf8Start, count: 7)
    nonisolated(unsafe) static let host = UnsafeRawBufferPointer(start: ("Host" as StaticString).utf8Start, count: 4)
    nonisolated(unsafe) static let cookie = UnsafeRawBufferPointer(start: ("cookie" as StaticString).utf8Start, count: 6)
    nonisolated(unsafe) static let transferEncoding = UnsafeRawBufferPointer(start: ("Transfer-Encoding" as StaticString).utf8Start, count: 17)
}

extension Worker {
    /// Initial size of a stream's request and response buffers. Up to 100 streams share a
    /// connection, so they start small and grow (request: up to the window; response: up
    /// to `bufferSize`) only for streams that carry bodies.
    static let h2StreamBufferSize = 1_024

    // MARK: Requests

    /// Starts a stream: writes its head as HTTP/1.1 and dispatches it.
    func startStream(_ h: H2Connection, stream: Int32, fields: Range<Int>, endStream: Bool) {
        let c = h.spareStreams.popLast() ?? makeStream(h)
        c.resetForStream()
        let link = c.h2!
        link.reset(stream: stream)
        h.streams[stream] = c
        if h.streams.count > h.peakStreams { h.peakStreams = h.streams.count }
        let s = h.session

        var method: UnsafeRawBufferPointer?
        var path: UnsafeRawBufferPointer?
        var authority: UnsafeRawBufferPointer?
        var size = 64
        var hasContentLength = false
        var cookies = 0
        for i in fields {
            let field = s.field(i)
            let name = s.name(field)
            size += name.count + s.value(field).count + 4
            guard name.first == UInt8(ascii: ":") else {
                if equalsLower(name, "content-length") { hasContentLength = true }
                if equalsLower(name, "cookie") { cookies += 1 }
                continue
            }
            switch name.count {
            case 5 where equalsLower(name, ":path"): path = s.value(field)
            case 7 where equalsLower(name, ":method"): method = s.value(field)
            case 10 where equalsLower(name, ":authority"): authority = s.value(field)
            default: break
            }
        }
        guard let method, let path else {
            // CONNECT (no :path) and extended CONNECT are not supported yet.
            h2RespondError(c, status: 501, reason: "HTTP/2 request without :path (CONNECT is not supported)")
            return
        }
        // The limits an HTTP/1.1 head meets in the parser (414, 431).
        guard method.count + path.count + 10 <= limits.maxStartLine else {
            return h2RespondError(c, status: 414, reason: "request line too long")
        }
        guard size <= limits.maxHeadBytes else { return h2RespondError(c, status: 431, reason: "request head over the limit") }
        _ = c.inBuf.reserve(size + 32)
        // The head is laid out as HTTP/1.1 text (the upstream gets it in that form, and the
        // router, head writer and log read spans of it), and each field's span is recorded as
        // it is written: nghttp2 has checked the fields' bytes, so the head is completed from
        // the spans (`completeLaidOutRequestHead`) instead of being scanned and parsed again.
        c.inBuf.append(method)
        c.inBuf.append(" ")
        c.inBuf.append(path)
        c.inBuf.append(" HTTP/1.1")
        let requestLineEnd = c.inBuf.readableBytes
        c.inBuf.append("\r\n")
        var layout = LaidOutFields(fields: c.fields, capacity: limits.maxHeaders, recording: true)
        if let authority { layout.append(H2StreamText.host, authority, to: &c.inBuf) }
        for i in fields {
            let field = s.field(i)
            let name = s.name(field)
            if name.first == UInt8(ascii: ":") { continue }
            if authority != nil && equalsLower(name, "host") { continue }
            // Split cookies are joined below, each in its place in one line.
            if cookies > 1 && equalsLower(name, "cookie") { continue }
            layout.append(name, s.value(field), to: &c.inBuf)
        }
        if cookies > 1 {
            // HTTP/2 may split a cookie into several fields, anywhere among the others;
            // HTTP/1.1 wants one line, the crumbs joined by "; " (RFC 9113 §8.2.3).
            layout.append(H2StreamText.cookie, to: &c.inBuf) { out in
                var first = true
                for i in fields {
                    let field = s.field(i)
                    guard equalsLower(s.name(field), "cookie") else { continue }
                    if !first { out.append("; ") }
                    out.append(s.value(field))
                    first = false
                }
            }
        }
        if !endStream && !hasContentLength {
            link.chunked = true
            layout.append(H2StreamText.transferEncoding, H2StreamText.chunked, to: &c.inBuf)
        }
        guard !layout.overflowed else { return h2RespondError(c, status: 431, reason: "too many header fields") }
        let count = layout.count
        c.inBuf.append("\r\n")
        link.requestEnded = endStream
        c.phase = .readingHead
        if let error = completeLaidOutRequestHead(c.inBuf.readable, requestLineEnd: requestLineEnd, headLength: c.inBuf.readableBytes,
                                                  fieldCount: count, head: &c.head, fields: c.fields) {
            respondError(c, status: error.status, reason: "\(error.reason)")
        } else {
            dispatch(c)
            if !endStream && c.phase == .forwarding && !c.exchange.responseStarted {
                // The body's clock: `timeouts.client_body` between DATA, `limits.min_body_rate`.
                setStreamDeadline(link, c.exchange.bodyClock.start(now: now, limits: BodyClock.Limits(settings)))
            }
        }
        link.inLevel = c.inBuf.readableBytes
        if c.phase == .forwarding { streamForwarded(c, link) }
    }

    private func makeStream(_ h: H2Connection) -> ClientConnection {
        let c = ClientConnection(fd: -1, peerText: h.peerText, peerBytes: h.peerBytes, maxHeaders: settings.maxHeaders,
                                 bufferSize: Worker.h2StreamBufferSize, outBufferSize: 0)
        c.h2 = H2StreamLink(connection: h)
        c.secure = h.secure
        // A proxy in `trusted_proxies` speaking HTTP/2 keeps its forwarding fields too.
        c.trustedPeer = isTrustedProxy(h.peerBytes)
        return c
    }

    /// Request body bytes: into the stream's buffer (framed as the head said) and on upstream.
    func streamData(_ h: H2Connection, stream: Int32, bytes: Range<Int>) {
        guard let c = h.streams[stream], let link = c.h2, c.phase == .forwarding, c.exchangeBound else {
            // Nobody forwards this body (answered already, or the stream is gone): discard,
            // and give the window back.
            h.session.consume(stream: stream, count: bytes.count)
            return
        }
        streamForwarded(c, link)
        let data = h.session.data(bytes)
        c.exchange.bodyClock.read(now: now)
        c.exchange.bodyClock.forwarded(data.count)
        link.unconsumed += data.count
        if link.chunked {
            // Staged, and framed as one chunk when the buffer has room (`streamForwarded`).
            _ = link.staged.reserve(data.count)
            link.staged.append(data)
        } else {
            _ = c.inBuf.reserve(data.count)
            c.inBuf.append(data)
            link.inLevel = c.inBuf.readableBytes
            pumpRequestBody(c)
        }
        streamForwarded(c, link)
    }

    /// The client ended the request, maybe with trailers (sent on as chunked trailers).
    func streamRequestEnded(_ h: H2Connection, stream: Int32, trailers: Range<Int>?) {
        guard let c = h.streams[stream], let link = c.h2 else { return }
        link.requestEnded = true
        if c.phase == .forwarding {
            // Now the stream waits on the upstream, whose timeouts take over.
            link.deadline = 0
        }
        guard link.chunked, c.phase == .forwarding, c.exchangeBound else { return }
        streamForwarded(c, link)
        if !link.staged.isEmpty { frameStaged(c, link) }
        _ = c.inBuf.reserve(16)
        c.inBuf.append("0\r\n")
        if let trailers {
            for i in trailers {
                let field = h.session.field(i)
                let name = h.session.name(field), value = h.session.value(field)
                _ = c.inBuf.reserve(name.count + value.count + 8)
                c.inBuf.append(name)
                c.inBuf.append(": ")
                c.inBuf.append(value)
                c.inBuf.append("\r\n")
            }
        }
        _ = c.inBuf.reserve(2)
        c.inBuf.append("\r\n")
        link.inLevel = c.inBuf.readableBytes
        pumpRequestBody(c)
        streamForwarded(c, link)
    }

    /// Gives the client window back for what left the stream's buffer for the upstream, and
    /// frames the staged body bytes once that buffer is empty.
    func streamForwarded(_ c: ClientConnection, _ link: H2StreamLink) {
        accountForwarded(c, link)
        guard !link.staged.isEmpty, c.inBuf.isEmpty, c.phase == .forwarding, c.upstream != nil else { return }
        frameStaged(c, link)
        pumpRequestBody(c)
        accountForwarded(c, link)
    }

    private func accountForwarded(_ c: ClientConnection, _ link: H2StreamLink) {
        let level = c.inBuf.readableBytes
        // Payload in `c.inBuf` not consumed yet (the staged bytes have not entered it).
        let inBuffer = link.unconsumed - link.staged.readableBytes
        if inBuffer > 0 {
            // The chunk framing makes `moved` an over-count of a few bytes per chunk; an
            // empty buffer settles it.
            let moved = level == 0 ? inBuffer : min(inBuffer, link.inLevel - level)
            if moved > 0 {
                link.connection.session.consume(stream: link.stream, count: moved)
                link.unconsumed -= moved
            }
        }
        link.inLevel = level
    }

    /// Moves the staged request-body bytes into the stream's buffer as one chunk.
    private func frameStaged(_ c: ClientConnection, _ link: H2StreamLink) {
        let count = link.staged.readableBytes
        _ = c.inBuf.reserve(count + 24)
        appendHex(count, to: &c.inBuf)
        c.inBuf.append("\r\n")
        c.inBuf.append(link.staged.readable)
        c.inBuf.append("\r\n")
        link.staged.clear()
        link.inLevel = c.inBuf.readableBytes
    }

    /// After an upstream event for a stream's exchange: window accounting, and frames to send.
    func streamProgressed(_ c: ClientConnection, _ link: H2StreamLink) {
        if c.phase == .forwarding { streamForwarded(c, link) }
        queueH2Flush(link.connection)
    }

    // MARK: Ends

    /// The stream is closed in the session: end what is left of its exchange, recycle it.
    func streamClosed(_ h: H2Connection, stream: Int32) {
        guard let c = h.streams.removeValue(forKey: stream), let link = c.h2 else { return }
        if c.phase != .closingAfterFlush { abandonStream(c) }
        if let body = link.body { h.session.release(body) }
        link.body = nil
        if link.unconsumed > 0 {
            h.session.consume(stream: stream, count: link.unconsumed)
            link.unconsumed = 0
        }
        c.phase = .closed
        // Spares up to the most streams this connection has had open at once: a client that
        // keeps 32 in flight reuses its 32 instead of freeing and allocating one per request.
        if h.spareStreams.count + h.streams.count < max(h.peakStreams, 16) { h.spareStreams.append(c) }
    }

    /// Drops a stream's exchange midway (the client reset it, or the connection ended).
    func abandonStream(_ c: ClientConnection) {
        releaseEndpoint(c)
        if let u = c.upstream {
            unbind(c, u)
            orphanOrClose(u, leftBy: c)
        }
        if accessLog != nil && c.phase == .forwarding { endLogLine(c, status: c.exchange.lastStatus, endpoint: c.exchange.lastEndpoint) }
        c.phase = .closed
    }

    /// The response was taken completely from the upstream: park or close it.
    func finishStreamExchange(_ c: ClientConnection, _ u: UpstreamConnection) {
        endUpstreamExchange(c, u)
        // The stream lives on until the session has sent everything and closes it.
        c.phase = .closingAfterFlush
        if let link = c.h2 { awaitClient(link) }
    }

    // MARK: Our own answers

    /// The stream's version of `respondError`: the same short text, as an HTTP/2 response.
    func h2RespondError(_ c: ClientConnection, status: Int, reason: String) {
        guard let link = c.h2 else { return }
        Log.warning("\(status) to \(String(decoding: c.peerText, as: UTF8.self)) (HTTP/2 stream \(link.stream)): \(reason)")
        // The busy 503 (every endpoint full, queue full or timed out) says when to come back.
        let busy = c.hold.takeBusyAnswer()
        let text = busy ? ErrorResponse.busy(close: false) : ErrorResponse.bytes(status: status, close: false)
        let retryAfter: StaticString = "Retry-After: 1\r\n"
        let fieldLines = busy ? UnsafeRawBufferPointer(start: retryAfter.utf8Start, count: retryAfter.utf8CodeUnitCount)
                              : UnsafeRawBufferPointer(start: nil, count: 0)
        let all = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        var bodyStart = 0
        while bodyStart + 4 <= all.count && !(all[bodyStart] == 13 && all[bodyStart + 1] == 10 && all[bodyStart + 2] == 13 && all[bodyStart + 3] == 10) {
            bodyStart += 1
        }
        let bodyText = UnsafeRawBufferPointer(rebasing: all[min(all.count, bodyStart + 4)...])
        h2SendOwnAnswer(c, status: status, fieldLines: fieldLines, body: bodyText)
    }

    /// Answers the stream itself: `status`, the `Name: value` CRLF lines of `fieldLines`
    /// (names lower-cased on the way), and `body` as text/plain unless `fieldLines` carry a
    /// Content-Type (a forward_auth service's page keeps its own); no body when empty.
    func h2SendOwnAnswer(_ c: ClientConnection, status: Int, fieldLines: UnsafeRawBufferPointer, body bodyText: UnsafeRawBufferPointer) {
        guard let link = c.h2 else { return }
        let h = link.connection
        countOwnAnswer(status)
        // A busy mark left by an earlier attempt never reaches a later answer.
        _ = c.hold.takeBusyAnswer()
        if !link.headSubmitted && h.session.isOpen(link.stream) {
            h.headers.removeAll()
            var typed = false
            forEachFieldLine(fieldLines) { name, value in
                typed = typed || RouteSteps.sameName(name, "content-type")
                h.headers.add(name: name, value: value)
            }
            if !bodyText.isEmpty && !typed {
                h.headers.add(name: "content-type", value: UnsafeRawBufferPointer(start: ("text/plain" as StaticString).utf8Start, count: 10))
            }
            h.headers.add(name: "content-length", decimal: bodyText.count)
            // A HEAD answer ends with its HEADERS: DATA on it is a protocol error to the client.
            let body = bodyText.isEmpty || c.head.method == .head ? nil : h.session.openBody(stream: link.stream)
            if let body {
                _ = body.buffer.reserve(bodyText.count)
                body.buffer.append(bodyText)
                body.ended = true
            }
            link.body = body
            link.headSubmitted = true
            h.session.submitResponse(stream: link.stream, status: status, headers: &h.headers, body: body)
        }
        if accessLog != nil {
            c.exchange.bytesToClient += link.body == nil ? 0 : bodyText.count
            endLogLine(c, status: status, endpoint: c.exchange.lastEndpoint)
        }
        c.exchange.responseStarted = true
        c.served += 1
        c.exchange.route = nil
        c.phase = .closingAfterFlush
        awaitClient(link)
        queueH2Flush(h)
    }

    /// The stream's version of `abortExchange`: an error answer if nothing was sent yet,
    /// else RST_STREAM(INTERNAL_ERROR).
    func h2AbortExchange(_ c: ClientConnection, status: Int, reason: String) {
        guard let link = c.h2 else { return }
        releaseEndpoint(c)
        if let u = c.upstream {
            if !u.headDone { metrics.response(u.endpoint.poolKey, status: status, latencyMicros: latencyMicros(c)) }
            unbind(c, u)
            closeUpstream(u)
        }
        guard c.exchange.responseStarted else {
            h2RespondError(c, status: status, reason: reason)
            return
        }
        if accessLog != nil { endLogLine(c, status: c.exchange.lastStatus, endpoint: c.exchange.lastEndpoint) }
        Log.warning("resetting HTTP/2 stream \(link.stream) of \(String(decoding: c.peerText, as: UTF8.self)): \(reason)")
        link.connection.session.resetStream(link.stream, code: 2)
        c.phase = .closingAfterFlush
        awaitClient(link)
        queueH2Flush(link.connection)
    }

    // MARK: Helpers

    func appendHex(_ value: Int, to out: inout ByteBuffer) {
        var shift = 60
        while shift > 0 && (value >> shift) & 0xF == 0 { shift -= 4 }
        while shift >= 0 {
            let digit = UInt8((value >> shift) & 0xF)
            out.base!.storeBytes(of: digit < 10 ? 48 + digit : 87 + digit, toByteOffset: out.writerIndex, as: UInt8.self)
            out.writerIndex += 1
            shift -= 4
        }
    }
}

/// Whether `bytes` equal the lower-case ASCII `name` (HTTP/2 names arrive lower-case;
/// nghttp2 refuses upper case).
@inline(__always)
func equalsLower(_ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
    guard bytes.count == name.utf8CodeUnitCount else { return false }
    return memcmp(bytes.baseAddress!, name.utf8Start, bytes.count) == 0
}
