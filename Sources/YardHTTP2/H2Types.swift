import YardIO

// The values that cross the boundary of the HTTP/2 codec: settings, recorded events, header
// fields as spans into the session's byte store, and a response body buffer per stream.

// MARK: Settings

/// Limits and windows a server session announces and enforces.
public struct H2Settings: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (RST_STREAM).
    public var maxConcurrentStreams: UInt32 = 100
    /// SETTINGS_MAX_HEADER_LIST_SIZE, also enforced: a header block whose fields (name +
    /// value + 32 each, RFC 9113 §6.5.2) exceed it resets the stream.
    public var maxHeaderListSize: Int = 65_536
    /// SETTINGS_INITIAL_WINDOW_SIZE: how much request body a stream may send before the
    /// proxy has forwarded (consumed) it.
    public var initialWindowSize: Int32 = 65_535
    /// The connection-level receive window (sum over the streams' unforwarded bodies).
    public var connectionWindowSize: Int32 = 1 << 20
    /// CVE-2023-44487 (rapid reset): more client RST_STREAMs than this within
    /// `resetWindowMs` ends the connection with GOAWAY ENHANCE_YOUR_CALM.
    public var maxResetsPerWindow = 100
    public var resetWindowMs: Int64 = 1_000
    /// CVE-2024-27316/CVE-2024-28182 (CONTINUATION flood): CONTINUATION frames allowed after
    /// one HEADERS frame (the library's own limit, backported to Debian 12's 1.52.0-1+deb12u2).
    public var maxContinuations = 8

    public init() {}
}

// MARK: Events

/// Something the peer did, recorded by a callback while the session parsed input (or sent
/// output), acted on by the owner after the call returned.
public enum H2Event: Equatable, Sendable {
    /// A request head: `fields` indexes `H2Session.fields` (pseudo-headers first).
    case request(stream: Int32, fields: Range<Int>, endStream: Bool)
    /// A response head (client sessions): `:status` first; 1xx heads come before the final one.
    case response(stream: Int32, fields: Range<Int>, endStream: Bool)
    /// Trailers of a request body (server) or a response body (client); the stream's
    /// message ends with them.
    case trailers(stream: Int32, fields: Range<Int>)
    /// Request body bytes: `bytes` indexes `H2Session.dataBytes`.
    case data(stream: Int32, bytes: Range<Int>)
    /// The request body ended (DATA with END_STREAM).
    case endStream(stream: Int32)
    /// The client reset the stream.
    case reset(stream: Int32, code: UInt32)
    /// The stream is closed for good (sent and received END_STREAM, or reset either way).
    /// Its response body may be released now.
    case closed(stream: Int32, code: UInt32)
    /// The client sent GOAWAY.
    case goaway(lastStream: Int32, code: UInt32)
    case settingsAck
    /// The peer acknowledged a PING this session sent (`opaque`: its 8 bytes).
    case pingAck(opaque: UInt64)
    /// The client opened a window (stream 0: the connection's).
    case windowUpdate(stream: Int32)
    /// The session took bytes out of the stream's response body: room for more.
    case bodyDrained(stream: Int32)
}

/// One header field: byte ranges in `H2Session.headerBytes`.
public struct H2Field: Equatable, Sendable {
    public var nameStart: Int32
    public var nameCount: Int32
    public var valueStart: Int32
    public var valueCount: Int32
}

// MARK: Header blocks to send

/// Header fields to submit (response head or trailers), built without allocation once warm:
/// bytes in one buffer, spans beside them; names are lower-cased on the way in (HTTP/2
/// requires lower-case names, HTTP/1.1 upstreams send any case).
///
/// Threading: owned by the session's loop.
public struct H2HeaderBlock {
    var bytes = ByteBuffer()
    var spans: [(name: Int, nameCount: Int, value: Int, valueCount: Int)] = []

    public init() {}

    public var count: Int { spans.count }

    public mutating func removeAll() {
        bytes.clear()
        spans.removeAll(keepingCapacity: true)
    }

    /// Adds a field; `name` is lower-cased.
    public mutating func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        _ = bytes.reserve(name.count + value.count)
        let nameStart = bytes.writerIndex
        for byte in name {
            let lower = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            bytes.base!.storeBytes(of: lower, toByteOffset: bytes.writerIndex, as: UInt8.self)
            bytes.writerIndex &+= 1
        }
        let valueStart = bytes.writerIndex
        bytes.append(value)
        spans.append((nameStart, name.count, valueStart, value.count))
    }

    public mutating func add(name: StaticString, value: UnsafeRawBufferPointer) {
        add(name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), value: value)
    }

    public mutating func add(name: StaticString, decimal: Int) {
        var digits = ByteBuffer(capacity: 24)
        defer { digits.deallocate() }
        digits.appendDecimal(decimal)
        add(name: name, value: digits.readable)
    }

    /// Frees the block's bytes; the owner (a connection) calls it once, from its deinit.
    public mutating func deallocate() { bytes.deallocate() }
}

// MARK: Response bodies

/// The bytes of one stream's response body waiting for the peer's flow-control window.
///
/// The owner appends to `buffer` and calls `H2Session.bodyGrew`; the session's data
/// provider takes from it (deferring the stream while it is empty and not ended). Pooled by
/// the session: valid from `openBody` until the owner handles the stream's `.closed` event
/// and calls `release`.
///
/// Threading: owned by the session's loop.
public final class H2StreamBody {
    public var buffer: ByteBuffer
    /// No more bytes will be appended (trailers, if any, are in `trailers`).
    public var ended = false
    /// Trailers to send after the last DATA frame (empty: the last DATA ends the stream).
    public var trailers = H2HeaderBlock()
    public internal(set) var stream: Int32 = 0
    /// The data provider returned DEFERRED: `bodyGrew` must resume it.
    var deferred = false
    /// The last DATA frame was produced without END_STREAM; the trailers are due.
    var trailersDue = false
    /// Once the body has gone out, RST_STREAM(NO_ERROR) follows: the answer was given
    /// before the client finished its request, and the rest of it is not wanted
    /// (RFC 9113 §8.1).
    public var resetWhenSent = false

    init(capacity: Int) {
        buffer = ByteBuffer(capacity: capacity)
    }

    deinit {
        buffer.deallocate()
        trailers.deallocate()
    }

    func reset(stream: Int32) {
        self.stream = stream
        buffer.clear()
        ended = false
        deferred = false
        trailersDue = false
        resetWhenSent = false
        trailers.removeAll()
    }
}
