#if canImport(Glibc)
import Glibc
#endif
internal import CYardZlib
import YardHTTP
import YardHTTP2
import YardIO
import YardModel

// The `compress` middleware on the response path: gzip as the body arrives, re-framed as
// chunks for an HTTP/1.1 client or DATA for an HTTP/2 stream. The decisions (Accept-Encoding,
// media types, Cache-Control) are YardModel/Compress.swift's; this file owns the z_stream.
//
// Routes without compress pay one Bool test per response (`c.exchange.acceptsGzip`, set at dispatch
// only when the route has the middleware and the client takes gzip).

/// One gzip stream for one response: a z_stream (~256 KiB of zlib state at window 15,
/// memLevel 8; less for a small body of known length, `DeflateSize.forBody`) and, for a chunked upstream body, the dechunker that feeds it data only.
/// Freed with the exchange (`deinit` ends the stream).
/// Threading: owned by one client exchange on its worker's loop.
final class GzipStream {
    private let stream: UnsafeMutablePointer<z_stream>
    /// The upstream body is chunked: its framing is removed before deflating.
    private(set) var dechunks: Bool
    var dechunker = Dechunker()
    private(set) var ended = false
    /// Body bytes went in since the last flush.
    var unflushed = false
    private var level: Int32
    /// The zlib state's size, fixed for the stream's life (reused only for bodies it covers).
    let size: DeflateSize

    /// nil when zlib cannot start a stream (out of memory): the response goes uncompressed.
    init?(level: Int32, size: DeflateSize, dechunks: Bool) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        self.dechunks = dechunks
        self.level = level
        self.size = size
        guard yard_deflate_init_gzip(stream, level, size.windowBits, size.memLevel) == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
    }

    /// Starts a new gzip stream in this one's memory (deflateReset keeps zlib's windows and
    /// tables: no allocation, no page faults). False if zlib refuses.
    func restart(level: Int32, dechunks: Bool) -> Bool {
        guard deflateReset(stream) == Z_OK else { return false }
        if level != self.level {
            guard deflateParams(stream, level, Z_DEFAULT_STRATEGY) == Z_OK else { return false }
            self.level = level
        }
        self.dechunks = dechunks
        dechunker = Dechunker()
        ended = false
        unflushed = false
        return true
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Deflates `input` (all of it) into `out`, calling `frame` around each run of output
    /// `out` gets: `frame(true)` before (room for a chunk header), `frame(false)` after.
    /// `flush` pushes everything given so far out (a sync flush), `finish` ends the stream.
    func deflate(_ input: UnsafeRawBufferPointer, flush: Bool, finish: Bool, into out: inout ByteBuffer,
                 frame: (inout ByteBuffer, _ opening: Bool, _ produced: Int) -> Void) {
        guard !ended else { return }
        let mode = finish ? Z_FINISH : (flush ? Z_SYNC_FLUSH : Z_NO_FLUSH)
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        while true {
            let room = 16 * 1024
            guard out.reserve(room + 16) else { return }
            frame(&out, true, 0)
            let start = out.writerIndex
            guard let base = out.base else { return }
            stream.pointee.next_out = (base + start).assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(room)
            let status = CYardZlib.deflate(stream, mode)
            let produced = room - Int(truncatingIfNeeded: stream.pointee.avail_out)
            out.writerIndex = start + produced
            frame(&out, false, produced)
            if status == Z_STREAM_END { ended = true; return }
            // Z_BUF_ERROR: nothing more to do with this input; an unused output room means done.
            if status != Z_OK || (stream.pointee.avail_out > 0 && stream.pointee.avail_in == 0) { return }
        }
    }
}

extension Worker {
    // MARK: Deciding

    /// At dispatch: whether the route compresses and the client takes gzip (its Accept-Encoding
    /// fields). HEAD, and HTTP/1.0 clients (no chunked framing), never get gzip.
    func clientAcceptsGzip(_ c: ClientConnection, base: UnsafeRawBufferPointer) -> Bool {
        guard c.head.method != .head, c.h2 != nil || c.head.versionMinor >= 1 else { return false }
        var accept = AcceptEncoding()
        for i in 0..<c.head.headerCount {
            let field = c.fields[i]
            if RouteSteps.sameName(field.name.bytes(in: base), "accept-encoding") { accept.add(field.value.bytes(in: base)) }
        }
        return accept.allowsGzip
    }

    /// At the final response head: starts a gzip stream when the response is one to
    /// compress: a body of a listed type, at least `min_bytes` when its length is known, not
    /// already encoded, not `no-transform`, not 204/206/304.
    func beginGzipIfWanted(_ c: ClientConnection, _ u: UpstreamConnection) {
        c.exchange.gzip = nil
        guard c.exchange.acceptsGzip, let rule = c.exchange.route?.steps.compress else { return }
        let head = u.head
        guard head.status >= 200, head.status != 204, head.status != 206, head.status != 304 else { return }
        switch head.framing {
        case .none: return
        case .contentLength(let length): if length < rule.minBytes || length == 0 { return }
        default: break
        }
        let base = u.inBuf.readable
        var typed = false
        for i in 0..<head.headerCount {
            let field = u.fields[i]
            let name = field.name.bytes(in: base)
            switch name.count {
            case 12 where RouteSteps.sameName(name, "content-type"):
                typed = rule.matches(contentType: field.value.bytes(in: base))
                if !typed { return }
            case 16 where RouteSteps.sameName(name, "content-encoding"):
                return
            case 13 where RouteSteps.sameName(name, "content-range"):
                return
            case 13 where RouteSteps.sameName(name, "cache-control"):
                if cacheControlForbidsTransform(field.value.bytes(in: base)) { return }
            case 17 where field.kind == .transferEncoding:
                // A transfer coding besides chunked (gzip, chunked) would be compressed twice.
                if !RouteSteps.sameName(field.value.bytes(in: base), "chunked") { return }
            default:
                continue
            }
        }
        guard typed else { return }
        let dechunks = head.framing == .chunked
        var length: Int64?
        if case .contentLength(let known) = head.framing { length = known }
        let size = DeflateSize.forBody(contentLength: length)
        // A spare at least as big as this body wants, the last such (the most recently used).
        var index = gzipSpares.count - 1
        while index >= 0 && !gzipSpares[index].size.covers(size) { index -= 1 }
        if index >= 0 {
            let spare = gzipSpares.remove(at: index)
            if spare.restart(level: rule.level, dechunks: dechunks) {
                c.exchange.gzip = spare
                return
            }
        }
        c.exchange.gzip = GzipStream(level: rule.level, size: size, dechunks: dechunks)
    }

    // MARK: Heads

    /// Whether a response field is one gzip replaces: Content-Length, Transfer-Encoding, ETag
    /// (written weakened by `appendGzipFields`).
    @inline(__always)
    func gzipReplaces(_ field: HeaderField, base: UnsafeRawBufferPointer) -> Bool {
        field.kind == .contentLength || field.kind == .transferEncoding || RouteSteps.sameName(field.name.bytes(in: base), "etag")
    }

    /// Calls `add` with the fields a gzip response carries: Content-Encoding, Vary (unless the
    /// upstream's Vary names Accept-Encoding or `*`), and the ETag made weak (W/).
    func forEachGzipField(_ u: UpstreamConnection, _ add: (StaticString, UnsafeRawBufferPointer, _ weakPrefix: Bool) -> Void) {
        let base = u.inBuf.readable
        var varies = false
        for i in 0..<u.head.headerCount {
            let field = u.fields[i]
            let name = field.name.bytes(in: base)
            let value = field.value.bytes(in: base)
            if RouteSteps.sameName(name, "etag") {
                let weak = value.count >= 2 && (value[0] | 0x20) == UInt8(ascii: "w") && value[1] == UInt8(ascii: "/")
                add("etag", value, !weak)
            } else if RouteSteps.sameName(name, "vary") {
                varies = varies || containsCaseBlind(value, "accept-encoding") || value.contains(UInt8(ascii: "*"))
            }
        }
        add("content-encoding", staticBytes("gzip"), false)
        if !varies { add("vary", staticBytes("Accept-Encoding"), false) }
    }

    /// Appends the gzip fields to an HTTP/1.1 head, with `Transfer-Encoding: chunked`.
    func appendGzipFields(_ u: UpstreamConnection, into out: inout ByteBuffer) {
        forEachGzipField(u) { name, value, weakPrefix in
            _ = out.reserve(value.count + 24)
            switch name.utf8CodeUnitCount {
            case 4 where name.utf8Start[0] == UInt8(ascii: "e"): out.append("ETag: ")
            case 4: out.append("Vary: ")
            default: out.append("Content-Encoding: ")
            }
            if weakPrefix { out.append("W/") }
            out.append(value)
            out.append("\r\n")
        }
        _ = out.reserve(28)
        out.append("Transfer-Encoding: chunked\r\n")
    }

    // MARK: Bodies

    /// Body bytes an HTTP/1.1 client's gzip may take now: up to 16 KiB, and only while the
    /// client buffer has room for their output (16 KiB runs plus framing), or is empty. A
    /// stalled client so stops the relay instead of growing its buffer.
    @inline(__always)
    func gzipRoom(_ c: ClientConnection) -> Int {
        let writable = c.outBuf.writableBytes
        if c.outBuf.isEmpty { return max(min(c.outBuf.capacity, 16 * 1024), 4_096) }
        return writable < 16 * 1024 + 64 ? 0 : 16 * 1024
    }

    /// Deflates `count` upstream body bytes (at the start of `u.inBuf`) into `out`, framing
    /// each run as an HTTP/1.1 chunk when `chunked`. zlib may hold the output back until
    /// `flushGzip`, which the relays call when they run out of upstream bytes.
    func gzipBody(_ gzip: GzipStream, _ u: UpstreamConnection, count: Int, chunked: Bool, into out: inout ByteBuffer) {
        let taken = UnsafeRawBufferPointer(rebasing: u.inBuf.readable[0..<count])
        gzip.unflushed = true
        guard gzip.dechunks else {
            gzip.deflate(taken, flush: false, finish: false, into: &out) { chunkFrame(&$0, opening: $1, produced: $2, chunked: chunked) }
            return
        }
        var offset = 0
        while offset < taken.count {
            let rest = UnsafeRawBufferPointer(rebasing: taken[offset...])
            let (used, piece) = gzip.dechunker.next(rest)
            if used == 0 { break }
            if case .data(let range) = piece {
                // Trailers of a chunked upstream body are dropped: they would describe the
                // uncompressed bytes.
                gzip.deflate(UnsafeRawBufferPointer(rebasing: rest[range]), flush: false, finish: false, into: &out) {
                    chunkFrame(&$0, opening: $1, produced: $2, chunked: chunked)
                }
            }
            offset += used
        }
    }

    /// Pushes out what zlib holds (a sync flush) when body bytes went in since the last one:
    /// the relay has nothing more from the backend for now, so a slow or streaming backend's
    /// pieces are not held back.
    func flushGzip(_ gzip: GzipStream, chunked: Bool, into out: inout ByteBuffer) {
        guard gzip.unflushed else { return }
        gzip.unflushed = false
        gzip.deflate(UnsafeRawBufferPointer(start: nil, count: 0), flush: true, finish: false, into: &out) {
            chunkFrame(&$0, opening: $1, produced: $2, chunked: chunked)
        }
    }

    /// A worker keeps this many finished streams for reuse (up to about 256 KiB each).
    static let gzipSpareCount = 4

    /// Ends the gzip stream into `out` (and the chunked body with its last chunk); the
    /// stream is kept for the next response (the caller drops its reference).
    func endGzip(_ gzip: GzipStream, chunked: Bool, into out: inout ByteBuffer) {
        defer { keepSpare(gzip) }
        gzip.deflate(UnsafeRawBufferPointer(start: nil, count: 0), flush: false, finish: true, into: &out) {
            chunkFrame(&$0, opening: $1, produced: $2, chunked: chunked)
        }
        if chunked {
            _ = out.reserve(5)
            out.append("0\r\n\r\n")
        }
    }
}

extension Worker {
    /// Keeps a finished stream for reuse; when the spares are full, a bigger stream takes the
    /// place of the smallest (a big one serves every body, a small one only small bodies).
    func keepSpare(_ gzip: GzipStream) {
        guard gzipSpares.count >= Worker.gzipSpareCount else { return gzipSpares.append(gzip) }
        var smallest = 0
        for i in gzipSpares.indices where gzipSpares[i].size.stateBytes < gzipSpares[smallest].size.stateBytes { smallest = i }
        if gzipSpares[smallest].size.stateBytes < gzip.size.stateBytes { gzipSpares[smallest] = gzip }
    }
}

/// HTTP/1.1 chunk framing around deflate output: a fixed-width size line is written before
/// (`opening`) and filled in after, or taken back when nothing was produced. Chunk sizes
/// may have leading zeros (RFC 9112 §7.1), so the output never moves.
private func chunkFrame(_ out: inout ByteBuffer, opening: Bool, produced: Int, chunked: Bool) {
    guard chunked else { return }
    if opening {
        out.append("00000000\r\n")
        return
    }
    guard produced > 0 else {
        out.writerIndex -= 10
        return
    }
    let digits: StaticString = "0123456789abcdef"
    guard let base = out.base else { return }
    let line = base + (out.writerIndex - produced - 10)
    var value = produced
    for i in stride(from: 7, through: 0, by: -1) {
        line.storeBytes(of: digits.utf8Start[value & 0xf], toByteOffset: i, as: UInt8.self)
        value >>= 4
    }
    out.append("\r\n")
}

private func staticBytes(_ text: StaticString) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
}

/// Whether `value` contains `lowered` (lower-case ASCII) in any case.
private func containsCaseBlind(_ value: UnsafeRawBufferPointer, _ lowered: StaticString) -> Bool {
    let n = lowered.utf8CodeUnitCount
    guard value.count >= n else { return false }
    for start in 0...(value.count - n) {
        var same = true
        for j in 0..<n {
            var c = value[start + j]
            if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
            if c != lowered.utf8Start[j] { same = false; break }
        }
        if same { return true }
    }
    return false
}

extension Worker {
    /// Adds the gzip fields to an HTTP/2 response's header block.
    func addGzipFields(_ u: UpstreamConnection, to headers: inout H2HeaderBlock) {
        forEachGzipField(u) { name, value, weakPrefix in
            guard weakPrefix else { return headers.add(name: name, value: value) }
            // One small array per compressed response with a strong ETag.
            let weak = [UInt8(ascii: "W"), UInt8(ascii: "/")] + Array(value)
            weak.withUnsafeBytes { headers.add(name: name, value: $0) }
        }
    }
}
