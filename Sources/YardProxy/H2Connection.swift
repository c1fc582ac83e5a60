#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardHTTP2
import YardIO
import YardTLS

// HTTP/2 downstream connections and their streams. Confined to the worker that accepted the
// connection, like `ClientConnection`: no locks, unretained tagged pointers in epoll.

// MARK: Transport

/// How an HTTP/2 connection's bytes cross the wire: chosen once, when the connection is set
/// up (plain socket for h2c; TLS records for h2 by ALPN). `H2ConnectionOver` is generic over
/// it, so the calls are static inside the connection; the worker reaches them through one
/// class method per read or flush, never an existential per byte or frame.
protocol ByteTransport {
    /// The socket, for epoll.
    var fd: Int32 { get }
    /// Reads into `buffer`'s free space (plaintext bytes).
    mutating func read(into buffer: inout ByteBuffer) -> IOResult
    /// Writes `buffer`'s readable bytes and consumes what was written.
    mutating func flush(_ buffer: inout ByteBuffer) -> IOResult
    /// Ends the sending direction (TLS close_notify, then FIN) while input may still be read
    /// and discarded: a close with unread input would send RST and could destroy the
    /// GOAWAY that says why before the client reads it.
    mutating func finishWriting()
    /// Releases the transport's resources and closes the socket.
    mutating func close()
}

extension ByteTransport {
    /// Plaintext the transport already holds that epoll will not announce (TLS records
    /// decrypted ahead); read it after the buffer was emptied.
    var hasBufferedInput: Bool { false }
    /// Interest beyond the usual that the last read or write asked for: writable for a
    /// read that must write first, readable for a write that must read first.
    var want: UInt32 { 0 }
}

/// TLS records: h2 chosen by ALPN. A read that OpenSSL answers with "wants to write" is
/// retried when the socket is writable, a write that "wants to read" when it is readable
/// (`want`); renegotiation is off, so both are only TLS 1.3 housekeeping (tickets, key
/// updates) meeting a full or empty socket.
struct TLSTransport: ByteTransport {
    let fd: Int32
    let tls: TLSConnection
    private var readWant: UInt32 = 0
    private var writeWant: UInt32 = 0

    init(fd: Int32, tls: TLSConnection) {
        self.fd = fd
        self.tls = tls
    }

    @inline(__always) mutating func read(into buffer: inout ByteBuffer) -> IOResult {
        readWant = 0
        switch tls.read(into: &buffer) {
        case .bytes(let n): return .bytes(n)
        case .wantRead: return .wouldBlock
        case .wantWrite:
            readWant = Epoll.writable
            return .wouldBlock
        case .closed: return .closed
        case .failed: return .failed(EPROTO)
        }
    }

    @inline(__always) mutating func flush(_ buffer: inout ByteBuffer) -> IOResult {
        writeWant = 0
        switch tls.flush(&buffer) {
        case .bytes(let n): return .bytes(n)
        case .wantWrite: return .wouldBlock
        case .wantRead:
            writeWant = Epoll.readable
            return .wouldBlock
        case .closed: return .closed
        case .failed: return .failed(EPROTO)
        }
    }

    var hasBufferedInput: Bool { tls.hasBufferedInput }
    var want: UInt32 { readWant | writeWant }

    mutating func finishWriting() {
        _ = tls.shutdown()
        Socket.shutdownWrite(fd)
    }

    mutating func close() {
        _ = tls.shutdown()
        Socket.close(fd)
    }
}

/// A plain TCP socket: h2c with prior knowledge.
struct PlainTransport: ByteTransport {
    let fd: Int32

    @inline(__always) mutating func read(into buffer: inout ByteBuffer) -> IOResult { Socket.read(fd, into: &buffer) }
    @inline(__always) mutating func flush(_ buffer: inout ByteBuffer) -> IOResult { Socket.flush(fd, &buffer) }
    mutating func finishWriting() { Socket.shutdownWrite(fd) }
    mutating func close() { Socket.close(fd) }
}

// MARK: Connection

/// One HTTP/2 client connection: the nghttp2 session, its streams, and its buffers.
///
/// Each stream is a `ClientConnection` without a socket (`h2` set), so routing, balancing,
/// retries, upstream pools, metrics and access logs are the HTTP/1.1 path's own; only how
/// the request arrives and the response leaves differs (H2Streams.swift). Stream objects
/// are pooled per connection.
///
/// Threading: owned by one worker; `@unchecked`-free because it never leaves that thread.
class H2Connection {
    let session: H2Session
    /// Index in the worker's `h2Connections` array.
    var slot = 0
    var interest: UInt32 = 0
    /// Idle (no open stream) or drain deadline, monotonic ms; 0 for none.
    var deadline: Int64 = 0
    var inBuf: ByteBuffer
    var outBuf: ByteBuffer
    var closed = false
    /// Queued in the worker's list of connections to flush at the end of the event batch.
    var flushQueued = false
    /// Graceful stop: the announcing GOAWAY went out; the final one is due at `deadline`.
    var shutdownAnnounced = false
    var shutdownFinished = false
    /// The session ended and its last frames went out: input is read and discarded until
    /// the client closes or `deadline` (linger) passes.
    var lingering = false
    /// The earliest stream deadline (`H2StreamLink.deadline`), or earlier: streams are
    /// checked when it passes (0: none). Deadlines only move later, so it is kept lazily.
    var nextStreamCheck: Int64 = 0

    /// Open streams by id.
    var streams: [Int32: ClientConnection] = [:]
    var spareStreams: [ClientConnection] = []
    /// The most streams open at once on this connection (bounded by the advertised
    /// SETTINGS_MAX_CONCURRENT_STREAMS): how many spares are worth keeping.
    var peakStreams = 0
    /// Scratch for one batch of events.
    var batch: [H2Event] = []
    /// Scratch for response and trailer headers.
    var headers = H2HeaderBlock()

    let peerText: [UInt8]
    let peerBytes: [UInt8]
    /// Over TLS (ALPN h2): its streams forward `X-Forwarded-Proto: https`.
    var secure = false
    /// The connection's place in `limits.max_connections_per_client`, carried over from the
    /// HTTP/1.1 connection it started as (released when this connection closes).
    var perClientTicket: PerClientTicket?

    init(session: H2Session, peerText: [UInt8], peerBytes: [UInt8], bufferSize: Int) {
        self.session = session
        self.peerText = peerText
        self.peerBytes = peerBytes
        inBuf = ByteBuffer(capacity: bufferSize)
        outBuf = ByteBuffer(capacity: bufferSize)
        streams.reserveCapacity(Int(session.settings.maxConcurrentStreams))
        batch.reserveCapacity(64)
    }

    deinit {
        inBuf.deallocate()
        outBuf.deallocate()
        headers.deallocate()
    }

    // Overridden by `H2ConnectionOver` with its transport's calls.
    var fd: Int32 { -1 }
    func readInput() -> IOResult { .failed(EBADF) }
    func flushOutput() -> IOResult { .failed(EBADF) }
    func closeTransport() {}
    func finishWriting() {}
    var hasBufferedInput: Bool { false }
    /// The transport's `want` after its last read or flush (0 on plain sockets).
    var transportWant: UInt32 = 0
}

/// An HTTP/2 connection over a concrete transport.
final class H2ConnectionOver<Transport: ByteTransport>: H2Connection {
    var transport: Transport

    init(transport: Transport, session: H2Session, peerText: [UInt8], peerBytes: [UInt8], bufferSize: Int) {
        self.transport = transport
        super.init(session: session, peerText: peerText, peerBytes: peerBytes, bufferSize: bufferSize)
    }

    override var fd: Int32 { transport.fd }
    override func readInput() -> IOResult {
        let result = transport.read(into: &inBuf)
        transportWant = transport.want
        return result
    }
    override func flushOutput() -> IOResult {
        let result = transport.flush(&outBuf)
        transportWant = transport.want
        return result
    }
    override func closeTransport() { transport.close() }
    override func finishWriting() { transport.finishWriting() }
    override var hasBufferedInput: Bool { transport.hasBufferedInput }
}

// MARK: Streams

/// What a `ClientConnection` carries when it is an HTTP/2 stream.
///
/// Threading: owned by the connection's worker.
final class H2StreamLink {
    unowned(unsafe) let connection: H2Connection
    var stream: Int32 = 0
    /// The response body buffer, from `submitResponse` until the stream closes.
    var body: H2StreamBody?
    /// The request head was synthesised with chunked framing (no content-length).
    var chunked = false
    /// The client ended the request (END_STREAM, or trailers).
    var requestEnded = false
    /// Request-body bytes received but not yet consumed (forwarded).
    var unconsumed = 0
    /// `c.inBuf.readableBytes` after the last append: what left since was forwarded.
    var inLevel = 0
    /// The response head was submitted.
    var headSubmitted = false
    /// Response framing from an HTTP/1.1 chunked body, turned into DATA and trailers.
    var dechunker = Dechunker()
    var trailerBytes = ByteBuffer()
    /// Payload of a chunked request body received but not framed into `c.inBuf` yet: it
    /// goes as one chunk once the buffer has emptied, so a client sending 1-byte DATA frames
    /// makes the proxy hold no more than its window twice over, not six times (chunk
    /// framing per frame).
    var staged = ByteBuffer()

    // MARK: Waiting on the client
    /// When this stream gives up on the client, monotonic ms (0: it waits on the upstream).
    /// Checked by the connection's stream scan; may be earlier than the real deadline.
    var deadline: Int64 = 0
    /// The client's last progress on this stream once it is answered: response bytes it
    /// made room for. (The request body's own clock is the exchange's `bodyClock`.)
    var lastProgressMs: Int64 = 0

    init(connection: H2Connection) {
        self.connection = connection
    }

    deinit {
        trailerBytes.deallocate()
        staged.deallocate()
    }

    func reset(stream: Int32) {
        self.stream = stream
        body = nil
        chunked = false
        requestEnded = false
        unconsumed = 0
        inLevel = 0
        headSubmitted = false
        dechunker = Dechunker()
        trailerBytes.clear()
        staged.clear()
        deadline = 0
        lastProgressMs = 0
    }
}

extension ClientConnection {
    /// Gets a stream object ready for a new stream (pooled ones keep their buffers).
    func resetForStream() {
        phase = .idle
        deadline = 0
        inBuf.clear()
        outBuf.clear()
        head = RequestHead()
        scanFrom = 0
        upstream = nil
        logHead.clear()
        readClosed = false
        served = 0
        exchange = ExchangeState()
    }
}
