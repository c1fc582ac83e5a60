#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardHTTP2
import YardIO

// Relaying an HTTP/1.1 upstream response into an HTTP/2 stream: the head becomes HEADERS
// (hop-by-hop fields and Transfer-Encoding dropped, names lower-cased), the body goes into
// the stream's body buffer (chunk framing removed, chunked trailers turned into HTTP/2
// trailers), bounded by the client's flow-control window.

extension Worker {
    /// The stream's version of `relayResponse`: parses the head, submits it, and moves body
    /// bytes as far as the stream's buffer and the client's window allow.
    func relayResponseToStream(_ u: UpstreamConnection, _ c: ClientConnection) {
        guard let link = c.h2, c.upstream === u else { return }
        let h = link.connection
        let s = h.session
        defer {
            if u.phase != .closed { updateInterest(u) }
            queueH2Flush(h)
        }
        relaying: while true {
            let room = link.body.map { min(bufferSize, s.sendWindow(stream: link.stream)) - $0.buffer.readableBytes } ?? 0
            let event = u.response.next(u.inBuf.readable, room: room, close: u.closeState,
                                        limits: responseLimits, requestMethod: c.exchange.requestMethod, fields: u.fields)
            switch event {
            case .needBytes, .complete:
                if let gzip = c.exchange.gzip, let body = link.body {
                    let before = body.buffer.readableBytes
                    flushGzip(gzip, chunked: false, into: &body.buffer)
                    c.exchange.bytesToClient &+= body.buffer.readableBytes - before
                    if body.buffer.readableBytes > before { s.bodyGrew(body) }
                }
                break relaying
            case .interimHead:
                // 1xx: not relayed (HTTP/2 clients do not need 100-continue from us).
                u.inBuf.consume(u.head.headLength)
                u.response.acceptHead()
            case .finalHead:
                if c.exchange.acceptsGzip { beginGzipIfWanted(c, u) }
                startResponseBody(c, u)
                submitStreamHead(c, link, u, hasBody: !u.responseDone)
                c.exchange.lastStatus = u.head.status
                c.exchange.responseStarted = true
                u.inBuf.consume(u.head.headLength)
            case .body(let count):
                guard let body = link.body else { break relaying }
                _ = body.buffer.reserve(count)
                let taken = UnsafeRawBufferPointer(rebasing: u.inBuf.readable[0..<count])
                if let gzip = c.exchange.gzip {
                    let before = body.buffer.readableBytes
                    gzipBody(gzip, u, count: count, chunked: false, into: &body.buffer)
                    // What went out, less the count added below for every body event.
                    c.exchange.bytesToClient &+= body.buffer.readableBytes - before - count
                } else if u.response.body.isChunked {
                    H2Framing.dechunk(taken, &link.dechunker, trailers: &link.trailerBytes, into: body)
                } else {
                    body.buffer.append(taken)
                }
                c.exchange.bytesToClient &+= count
                u.inBuf.consume(count)
                s.bodyGrew(body)
            case .switchingProtocols, .invalidHead, .invalidBody, .closedMidHead, .closedMidBody, .truncated:
                responseFailed(c, u, event)
                return
            }
        }
        guard u.responseDone else {
            if u.inBuf.writableBytes == 0 { u.inBuf.compact() }
            return
        }
        if let body = link.body {
            if let gzip = c.exchange.gzip {
                endGzip(gzip, chunked: false, into: &body.buffer)
                c.exchange.gzip = nil
            }
            if !link.trailerBytes.isEmpty { H2Framing.takeTrailers(&link.trailerBytes, into: &body.trailers) }
            body.ended = true
            s.bodyGrew(body)
        }
        finishStreamExchange(c, u)
    }

    /// Submits the response head: `:status`, then the upstream's fields minus the ones
    /// HTTP/2 forbids (connection-specific fields, Transfer-Encoding).
    private func submitStreamHead(_ c: ClientConnection, _ link: H2StreamLink, _ u: UpstreamConnection, hasBody: Bool) {
        let h = link.connection
        let base = u.inBuf.readable
        h.headers.removeAll()
        let edits = c.exchange.route.flatMap { $0.steps.editsResponse ? $0.steps : nil }
        for i in 0..<u.head.headerCount {
            let field = u.fields[i]
            if field.hopByHop || field.kind == .transferEncoding { continue }
            if c.exchange.gzip != nil && gzipReplaces(field, base: base) { continue }
            if let edits, edits.dropsFromResponse(field.name.bytes(in: base)) { continue }
            h.headers.add(name: field.name.bytes(in: base), value: field.value.bytes(in: base))
        }
        if let edits {
            edits.responseAddLines.withUnsafeBytes { lines in forEachFieldLine(lines) { h.headers.add(name: $0, value: $1) } }
        }
        if c.exchange.gzip != nil { addGzipFields(u, to: &h.headers) }
        if c.exchange.stickyCookiePoint >= 0 {
            stickyCookieLine(c).withUnsafeBytes { lines in forEachFieldLine(lines) { h.headers.add(name: $0, value: $1) } }
        }
        let body = hasBody ? h.session.openBody(stream: link.stream) : nil
        link.body = body
        link.headSubmitted = true
        if !h.session.submitResponse(stream: link.stream, status: u.head.status, headers: &h.headers, body: body) {
            h.session.resetStream(link.stream, code: 2)
        }
    }
}

/// HTTP/1.1 chunked framing to HTTP/2 DATA and trailers, both ways through the proxy:
/// responses from HTTP/1.1 upstreams to HTTP/2 clients, requests to HTTP/2 upstreams.
enum H2Framing {
    /// Moves the data of validated chunked bytes into the body buffer (which has room for
    /// all of `bytes`), trailer lines aside into `trailers`.
    static func dechunk(_ bytes: UnsafeRawBufferPointer, _ dechunker: inout Dechunker, trailers: inout ByteBuffer,
                        into body: H2StreamBody) {
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            let (count, piece) = dechunker.next(rest)
            if count == 0 { break }
            switch piece {
            case .data(let range):
                body.buffer.append(UnsafeRawBufferPointer(rebasing: rest[range]))
            case .trailer(let range):
                if trailers.reserve(range.count, limit: 64 * 1024) {
                    trailers.append(UnsafeRawBufferPointer(rebasing: rest[range]))
                }
            case .framing, .end:
                break
            }
            offset += count
        }
    }

    /// Turns trailer field lines ("name: value" CRLF) into HTTP/2 trailers, less the fields
    /// HTTP/2 forbids or a trailer cannot carry (`isDroppedFromTrailers`: a peer would take
    /// the response as malformed), and empties `lines`.
    static func takeTrailers(_ lines: inout ByteBuffer, into trailers: inout H2HeaderBlock) {
        let bytes = lines.readable
        var lineStart = 0
        for i in 0...bytes.count where i == bytes.count || bytes[i] == UInt8(ascii: "\n") {
            var end = i
            while end > lineStart && (bytes[end - 1] == 13 || bytes[end - 1] == 32 || bytes[end - 1] == 9) { end -= 1 }
            if let colon = bytes[lineStart..<end].firstIndex(of: UInt8(ascii: ":")), colon > lineStart,
               !HeaderKind.named(UnsafeRawBufferPointer(rebasing: bytes[lineStart..<colon])).isDroppedFromTrailers {
                var valueStart = colon + 1
                while valueStart < end && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
                trailers.add(name: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<colon]),
                             value: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<end]))
            }
            lineStart = i + 1
        }
        lines.clear()
    }
}
