#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardHTTP2
import YardIO
import YardModel

// Exchanges on upstream HTTP/2 connections. The client side writes the request into the
// exchange's `UpstreamConnection.outBuf` as HTTP/1.1 (head, then the body in its HTTP/1.1
// framing); `sendH2Request` parses that head once and submits it as HEADERS, then moves the
// body into the stream's DATA buffer, dechunked, with chunked trailers as trailers. The
// response comes back the other way: HEADERS are written into `inBuf` as an HTTP/1.1 head
// (chunked when the server gave no content-length, so trailers survive), DATA as chunks,
// trailers as the chunked trailer section; the ordinary relays take it from there.
//
// Bytes stay in `outBuf` until the response head arrives (`sentIndex` marks what went into
// the session), so a stream the server refuses (REFUSED_STREAM, or beyond a GOAWAY's last
// stream) is replayed on another connection like any request that never reached an upstream.
//
// Flow control: response DATA is consumed (the server's window reopened) only as it leaves
// `inBuf` for the client, so a slow client slows its stream, not the connection.

/// What an `UpstreamConnection` carries when it is a stream of an upstream HTTP/2 connection.
///
/// Threading: owned by the connection's worker.
final class H2UpstreamStream {
    /// The connection, until the exchange ends or the connection fails (`detach`).
    var connection: H2UpstreamConnection?
    var stream: Int32 = 0
    /// The request body's DATA buffer (nil for a request without a body).
    var body: H2StreamBody?
    var headSubmitted = false
    /// The request body as written by the client side (chunked bytes are turned into DATA
    /// by `dechunker`).
    var requestBody = BodyProgress()
    var dechunker = Dechunker()
    var trailerLines = ByteBuffer()
    /// The response is framed chunked in `inBuf` (the server sent no content-length).
    var responseChunked = false
    /// The response's last byte is in `inBuf`.
    var responseEnded = false
    /// Response DATA bytes not yet consumed (given back to the server's window).
    var unconsumed = 0
    /// `inBuf.readableBytes` after the last append: what left since went to the client.
    var inLevel = 0
    /// The server did not process the request (REFUSED_STREAM, or a stream after the
    /// GOAWAY's last): safe to replay whatever the method.
    var refused = false

    init(connection: H2UpstreamConnection) {
        self.connection = connection
    }

    deinit { trailerLines.deallocate() }

    func detach() { connection = nil }

    /// Ready for a new exchange on `connection` (the stream was closed and is reused).
    func reset(connection: H2UpstreamConnection) {
        self.connection = connection
        stream = 0
        body = nil
        headSubmitted = false
        requestBody = BodyProgress()
        dechunker = Dechunker()
        trailerLines.clear()
        responseChunked = false
        responseEnded = false
        unconsumed = 0
        inLevel = 0
        refused = false
    }
}

extension Worker {
    // MARK: Opening

    /// Binds a new stream exchange with `endpoint` to the client's request: on a ready
    /// connection it is active at once; on one still connecting it waits for it.
    func openH2Stream(for c: ClientConnection, endpoint: Endpoint, pool: UpstreamPool, address: SocketAddress,
                      service: Service) -> UpstreamConnection? {
        guard let h = h2Upstream(for: endpoint, pool: pool, address: address, service: service) else { return nil }
        let u: UpstreamConnection
        if let spare = pool.spareH2Streams.popLast(), spare.endpoint === endpoint, spare.h2 != nil {
            spare.reuseAsStream(on: h, connecting: h.phase != .ready)
            u = spare
        } else {
            u = UpstreamConnection(fd: -1, endpoint: endpoint, connecting: h.phase != .ready, maxHeaders: settings.maxHeaders,
                                   bufferSize: Worker.h2StreamBufferSize)
            u.h2 = H2UpstreamStream(connection: h)
        }
        pool.h2Streams &+= 1
        if pool.h2Streams > pool.peakH2Streams { pool.peakH2Streams = pool.h2Streams }
        if h.phase == .ready {
            u.deadline = now + responseTimeout(c.exchange.route)
        } else {
            u.deadline = now + connectTimeout(c.exchange.route)
            h.waiting.append(u)
        }
        h.deadline = h.phase == .ready ? 0 : h.deadline
        u.slot = upstreams.count
        upstreams.append(u)
        return u
    }

    // MARK: Request

    /// Moves what the client side wrote into `outBuf` into the session: the head once,
    /// then body bytes as the stream's DATA buffer has room. Returns false if the exchange
    /// failed (and was handled).
    @discardableResult
    func sendH2Request(_ u: UpstreamConnection) -> Bool {
        guard let link = u.h2, let h = link.connection, h.phase == .ready, u.phase == .active else { return true }
        if !link.headSubmitted {
            guard submitH2Head(u, link, h) else { return false }
        }
        guard let body = link.body, !body.ended else { return true }
        var moved = false
        while u.sentIndex < u.outBuf.writerIndex && !body.ended {
            let room = max(0, Worker.h2StreamBufferSize * 4 - body.buffer.readableBytes)
            if room == 0 { break }
            let pending = UnsafeRawBufferPointer(start: u.outBuf.base! + u.sentIndex, count: u.outBuf.writerIndex - u.sentIndex)
            let count: Int
            switch link.requestBody.advance(over: UnsafeRawBufferPointer(rebasing: pending[0..<min(pending.count, room)])) {
            case .body(let taken):
                count = taken
            case .invalid(let error):
                // The client side checked these bytes already; this is not expected.
                upstreamFailed(u, reason: "request body to \(u.endpoint.id): \(error.reason)")
                return false
            }
            _ = body.buffer.reserve(count)
            let slice = UnsafeRawBufferPointer(rebasing: pending[0..<count])
            if link.requestBody.isChunked {
                H2Framing.dechunk(slice, &link.dechunker, trailers: &link.trailerLines, into: body)
                if link.requestBody.isComplete, !link.trailerLines.isEmpty {
                    H2Framing.takeTrailers(&link.trailerLines, into: &body.trailers)
                }
            } else {
                body.buffer.append(slice)
            }
            body.ended = link.requestBody.isComplete
            u.sentIndex += count
            moved = true
        }
        if moved {
            h.session.bodyGrew(body)
            queueH2UpstreamFlush(h)
        }
        return true
    }

    /// Submits the HTTP/1.1 head the client side wrote (`writeRequestHead`) as HEADERS. The
    /// head is the proxy's own text, so it is split (`OwnRequestHead`), not parsed again; the
    /// body's framing is the client's request's, which the head writer kept.
    private func submitH2Head(_ u: UpstreamConnection, _ link: H2UpstreamStream, _ h: H2UpstreamConnection) -> Bool {
        let pending = UnsafeRawBufferPointer(start: u.outBuf.base! + u.sentIndex, count: u.outBuf.writerIndex - u.sentIndex)
        guard let c = u.client else { return true }
        guard var head = OwnRequestHead(pending) else {
            abortExchange(c, status: 502, reason: "request for HTTP/2 upstream \(u.endpoint.id): malformed head")
            return false
        }
        h.headers.removeAll()
        h.headers.add(name: ":method", value: head.method.bytes(in: pending))
        h.headers.add(name: ":scheme", value: h.secure ? H2Text.https : H2Text.http)
        // Host becomes :authority, which goes before every regular field (RFC 9113 §8.3):
        // the head writer puts it first unless the client's target was absolute.
        var authority = H2Text.empty
        var scan = head
        while let (name, value) = scan.nextField() {
            guard HeaderKind.named(name.bytes(in: pending)) == .host else { continue }
            authority = value.bytes(in: pending)
            break
        }
        h.headers.add(name: ":authority", value: authority)
        h.headers.add(name: ":path", value: originPath(head.target.bytes(in: pending)))
        var fields = 0
        while let (nameSpan, valueSpan) = head.nextField() {
            let name = nameSpan.bytes(in: pending), value = valueSpan.bytes(in: pending)
            switch HeaderKind.named(name) {
            case .host, .transferEncoding, .connection, .keepAlive, .proxyConnection, .upgrade, .trailer, .http2Settings:
                continue
            case .te:
                // Only "trailers" may cross into HTTP/2 (RFC 9113 §8.2.2); gRPC needs it.
                guard value.count == 8, equalsLower(value, "trailers") else { continue }
            default:
                break
            }
            fields &+= 1
            guard fields <= settings.maxHeaders else {
                abortExchange(c, status: 502, reason: "request for HTTP/2 upstream \(u.endpoint.id): too many header fields")
                return false
            }
            h.headers.add(name: name, value: value)
        }
        link.requestBody = BodyProgress(c.head.framing == .untilClose ? .none : c.head.framing)
        let body: H2StreamBody? = link.requestBody.isComplete ? nil : h.session.openBody(stream: 0)
        guard let stream = h.session.submitRequest(headers: &h.headers, body: body) else {
            if let body { h.session.release(body) }
            h.retiring = true
            link.refused = true
            link.detach()
            upstreamFailed(u, reason: "HTTP/2 connection to \(u.endpoint.id) takes no new stream")
            return false
        }
        link.stream = stream
        link.body = body
        link.headSubmitted = true
        h.streams[stream] = u
        u.sentIndex += head.headLength
        u.deadline = now + responseTimeout(c.exchange.route)
        queueH2UpstreamFlush(h)
        return true
    }

    /// The request target as `:path`: origin-form and `*` as they are; absolute-form
    /// (`http://host/p?q`) reduced to its path and query.
    private func originPath(_ target: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let first = target.first, first != UInt8(ascii: "/"), first != UInt8(ascii: "*") else { return target }
        var i = 0
        while i + 2 < target.count && !(target[i] == UInt8(ascii: ":") && target[i + 1] == UInt8(ascii: "/") && target[i + 2] == UInt8(ascii: "/")) {
            i += 1
        }
        var j = i + 3
        while j < target.count && target[j] != UInt8(ascii: "/") && target[j] != UInt8(ascii: "?") { j += 1 }
        guard j < target.count else { return H2Text.slash }
        return UnsafeRawBufferPointer(rebasing: target[j...])
    }

    // MARK: Response

    /// A response head: laid out in `inBuf` as HTTP/1.1 and relayed. When `inBuf` holds
    /// nothing else, each field's span is recorded as it is written and the head completed
    /// from them (`completeLaidOutResponseHead`), so the relay takes it without a scan or a
    /// parse; otherwise (an earlier head still waits for the client) the relay parses it.
    func h2ResponseHead(_ u: UpstreamConnection, fields: Range<Int>, endStream: Bool) {
        guard let link = u.h2, let h = link.connection else { return }
        let s = h.session
        var status: UnsafeRawBufferPointer?
        var size = 32
        var hasLength = false
        var grpcStatus = false
        for i in fields {
            let field = s.field(i)
            let name = s.name(field)
            size += name.count + s.value(field).count + 4
            if name.count == 7 && equalsLower(name, ":status") { status = s.value(field) }
            else if name.count == 14 && equalsLower(name, "content-length") { hasLength = true }
            else if name.count == 11 && equalsLower(name, "grpc-status") { grpcStatus = true }
        }
        guard let status, status.count == 3 else {
            if let c = u.client { abortExchange(c, status: 502, reason: "HTTP/2 response from \(u.endpoint.id) without a valid :status") }
            return
        }
        // The limit an HTTP/1.1 upstream's head meets in the parser.
        guard size <= responseLimits.maxHeadBytes else {
            if let c = u.client { abortExchange(c, status: 502, reason: "HTTP/2 response head from \(u.endpoint.id) over the limit") }
            return
        }
        let interim = status[0] == UInt8(ascii: "1")
        let method = u.client?.exchange.requestMethod ?? .get
        let bodyless = method == .head || (status[0] == UInt8(ascii: "2") && status[1] == UInt8(ascii: "0") && status[2] == UInt8(ascii: "4"))
            || (status[0] == UInt8(ascii: "3") && status[1] == UInt8(ascii: "0") && status[2] == UInt8(ascii: "4"))
        // A gRPC "trailers-only" response (one HEADERS with END_STREAM and grpc-status):
        // its grpc-* fields go out as trailers after an empty body, which both HTTP/1.1
        // and HTTP/2 clients read as the call's status.
        let trailersOnly = endStream && grpcStatus && !interim && !bodyless
        let layOut = u.inBuf.isEmpty && u.response.takesLaidOutHead
        var layout = LaidOutFields(fields: u.fields, capacity: settings.maxHeaders, recording: layOut)
        _ = u.inBuf.reserve(size + 48)
        u.inBuf.append("HTTP/1.1 ")
        u.inBuf.append(status)
        u.inBuf.append(" ")
        let statusLineEnd = u.inBuf.readableBytes
        u.inBuf.append("\r\n")
        for i in fields {
            let field = s.field(i)
            let name = s.name(field)
            if name.first == UInt8(ascii: ":") { continue }
            if trailersOnly && name.count >= 5 && memcmp(name.baseAddress!, "grpc-", 5) == 0 { continue }
            layout.append(name, s.value(field), to: &u.inBuf)
        }
        if interim {
            u.inBuf.append("\r\n")
        } else if trailersOnly {
            layout.append(H2Text.transferEncoding, H2Text.chunked, to: &u.inBuf)
            u.inBuf.append("\r\n")
            layout.headEnds(at: u.inBuf.readableBytes)
            u.inBuf.append("0\r\n")
            for i in fields {
                let field = s.field(i)
                let name = s.name(field)
                if name.count >= 5 && memcmp(name.baseAddress!, "grpc-", 5) == 0 { appendField(&u.inBuf, name, s.value(field)) }
            }
            u.inBuf.append("\r\n")
            link.responseEnded = true
        } else if endStream {
            if !hasLength && !bodyless { layout.append(H2Text.contentLength, H2Text.zero, to: &u.inBuf) }
            u.inBuf.append("\r\n")
            link.responseEnded = true
        } else if hasLength || bodyless {
            u.inBuf.append("\r\n")
        } else {
            layout.append(H2Text.transferEncoding, H2Text.chunked, to: &u.inBuf)
            u.inBuf.append("\r\n")
            link.responseChunked = true
        }
        if layOut {
            if !layout.overflowed {
                var head = ResponseHead()
                if let error = completeLaidOutResponseHead(u.inBuf.readable, statusLineEnd: statusLineEnd,
                                                           headLength: layout.headLength ?? u.inBuf.readableBytes,
                                                           fieldCount: layout.count, requestMethod: method, head: &head, fields: u.fields) {
                    if let c = u.client { abortExchange(c, status: 502, reason: "HTTP/2 response from \(u.endpoint.id): \(error.reason)") }
                    return
                }
                u.response.layOutHead(head)
            }
            // Too many fields: the relay's parse refuses the head as it would an HTTP/1.1 one.
        }
        responseArrived(u, link)
    }

    /// Response DATA: appended (as a chunk when the head said chunked) and relayed.
    func h2ResponseData(_ u: UpstreamConnection, _ data: UnsafeRawBufferPointer) {
        guard let link = u.h2, let h = link.connection else { return }
        link.unconsumed += data.count
        guard !link.responseEnded, data.count > 0 else {
            h.session.consume(stream: link.stream, count: data.count)
            link.unconsumed -= data.count
            return
        }
        _ = u.inBuf.reserve(data.count + 24)
        if link.responseChunked {
            appendHex(data.count, to: &u.inBuf)
            u.inBuf.append("\r\n")
            u.inBuf.append(data)
            u.inBuf.append("\r\n")
        } else {
            u.inBuf.append(data)
        }
        responseArrived(u, link)
    }

    /// The response ended (DATA with END_STREAM, or trailers).
    func h2ResponseEnded(_ u: UpstreamConnection, trailers: Range<Int>?) {
        guard let link = u.h2, let h = link.connection, !link.responseEnded else { return }
        link.responseEnded = true
        guard link.responseChunked else {
            responseArrived(u, link)
            return
        }
        _ = u.inBuf.reserve(8)
        u.inBuf.append("0\r\n")
        if let trailers {
            for i in trailers {
                let field = h.session.field(i)
                appendField(&u.inBuf, h.session.name(field), h.session.value(field))
            }
        }
        _ = u.inBuf.reserve(2)
        u.inBuf.append("\r\n")
        responseArrived(u, link)
    }

    private func appendField(_ out: inout ByteBuffer, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        _ = out.reserve(name.count + value.count + 4)
        out.append(name)
        out.append(": ")
        out.append(value)
        out.append("\r\n")
    }

    private func responseArrived(_ u: UpstreamConnection, _ link: H2UpstreamStream) {
        u.responseBytes = max(u.responseBytes, 1)
        u.deadline = now + responseIdleTimeout(u.client?.exchange.route)
        link.inLevel = u.inBuf.readableBytes
        let c = u.client
        relayResponse(u)
        if u.phase != .closed { settleH2Stream(u) }
        clientProgressed(c)
    }

    /// After the upstream side moved a client's exchange on (outside the client's own
    /// event): what the client connection now waits for.
    @inline(__always)
    func clientProgressed(_ c: ClientConnection?) {
        if let c, c.phase != .closed { updateInterest(c) }
    }

    /// The stream closed in the session. Before the response ended, that is a failure:
    /// a refused stream is replayed elsewhere; any other reset fails the exchange.
    func h2StreamClosed(_ u: UpstreamConnection, code: UInt32) {
        guard let link = u.h2, let h = link.connection else { return }
        h.streams.removeValue(forKey: link.stream)
        if let body = link.body {
            h.session.release(body)
            link.body = nil
        }
        if link.unconsumed > 0 {
            h.session.consume(stream: link.stream, count: link.unconsumed)
            link.unconsumed = 0
        }
        link.detach()
        guard !link.responseEnded, u.phase != .closed else { return }
        link.refused = code == 7 || link.stream > h.goawayLastStream
        let c = u.client
        upstreamFailed(u, reason: "\(u.endpoint.id) reset HTTP/2 stream \(link.stream) (code \(code))")
        clientProgressed(c)
    }

    // MARK: Settling

    /// After a relay: gives the server's window back for what left `inBuf`, moves more of
    /// the request into the session, and has the connection's frames sent.
    func settleH2Stream(_ u: UpstreamConnection) {
        guard let link = u.h2, let h = link.connection else { return }
        let level = u.inBuf.readableBytes
        if link.unconsumed > 0 && link.stream != 0 {
            // Framing bytes make `moved` a slight over-count; an empty buffer settles it.
            let moved = level == 0 ? link.unconsumed : min(link.unconsumed, link.inLevel - level)
            if moved > 0 {
                h.session.consume(stream: link.stream, count: moved)
                link.unconsumed -= moved
            }
        }
        link.inLevel = level
        if u.sentIndex < u.outBuf.writerIndex { sendH2Request(u) }
        queueH2UpstreamFlush(h)
    }

    /// The exchange is over (finished, abandoned or failed): the stream is cancelled if
    /// still open, its window given back, and the object dropped.
    func closeH2Stream(_ u: UpstreamConnection, _ link: H2UpstreamStream) {
        u.phase = .closed
        u.client = nil
        if u.endpoint.poolKey < pools.count, let pool = pools[u.endpoint.poolKey], pool.h2Streams > 0 { pool.h2Streams -= 1 }
        if let h = link.connection {
            if link.stream != 0 {
                if h.streams.removeValue(forKey: link.stream) != nil && h.session.isOpen(link.stream) {
                    h.session.resetStream(link.stream, code: 8)
                    if let body = link.body { h.orphanBodies[link.stream] = body }
                } else if let body = link.body {
                    h.session.release(body)
                }
                if link.unconsumed > 0 { h.session.consume(stream: link.stream, count: link.unconsumed) }
            } else if let index = h.waiting.firstIndex(where: { $0 === u }) {
                h.waiting.remove(at: index)
            }
            link.body = nil
            link.unconsumed = 0
            link.detach()
            h2UpstreamIdleCheck(h)
            queueH2UpstreamFlush(h)
        }
        removeSlot(u, from: &upstreams)
        retiredH2Streams.append(u)
    }

    /// Most spare stream exchanges a pool keeps, whatever its peak.
    static let maxSpareH2Streams = 1_024

    /// The HTTP/2 upstream streams closed during this turn of the loop become spares of
    /// their endpoint's pool — only now, when nothing of the turn can reach them any more
    /// — up to the pool's recent peak of concurrent exchanges (a stream whose buffers grew
    /// for a large body is freed instead, so spares stay small).
    func recycleH2Streams() {
        for u in retiredH2Streams {
            guard u.endpoint.poolKey < pools.count, let pool = pools[u.endpoint.poolKey],
                  pool.spareH2Streams.count < min(Worker.maxSpareH2Streams, max(pool.peakH2Streams, 16)),
                  u.inBuf.capacity <= Worker.h2StreamBufferSize * 4, u.outBuf.capacity <= Worker.h2StreamBufferSize * 4 else { continue }
            pool.spareH2Streams.append(u)
        }
        retiredH2Streams.removeAll(keepingCapacity: true)
    }

    /// A burst has ended: each pool keeps at most `count` spare streams, and its peak starts
    /// again from the streams open now.
    func shrinkSpareH2Streams(keeping count: Int) {
        for pool in pools.compactMap({ $0 }) where !pool.spareH2Streams.isEmpty {
            if pool.spareH2Streams.count > count { pool.spareH2Streams.removeLast(pool.spareH2Streams.count - count) }
            pool.peakH2Streams = pool.h2Streams
        }
    }
}

/// Byte strings of the HTTP/2 upstream path.
enum H2Text {
    nonisolated(unsafe) static let http = UnsafeRawBufferPointer(start: ("http" as StaticString).utf8Start, count: 4)
    nonisolated(unsafe) static let https = UnsafeRawBufferPointer(start: ("https" as StaticString).utf8Start, count: 5)
    nonisolated(unsafe) static let slash = UnsafeRawBufferPointer(start: ("/" as StaticString).utf8Start, count: 1)
    nonisolated(unsafe) static let empty = UnsafeRawBufferPointer(start: ("/" as StaticString).utf8Start, count: 0)
    nonisolated(unsafe) static let transferEncoding = UnsafeRawBufferPointer(start: ("transfer-encoding" as StaticString).utf8Start, count: 17)
    nonisolated(unsafe) static let chunked = UnsafeRawBufferPointer(start: ("chunked" as StaticString).utf8Start, count: 7)
    nonisolated(unsafe) static let contentLength = UnsafeRawBufferPointer(start: ("content-length" as StaticString).utf8Start, count: 14)
    nonisolated(unsafe) static let zero = UnsafeRawBufferPointer(start: ("0" as StaticString).utf8Start, count: 1)
}
