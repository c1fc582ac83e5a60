// Value types shared by the HTTP/1.1 request and response parsers.
//
// Heads are parsed in place: every name and value is a `ByteSpan` (offset and length)
// into the buffer the head was parsed from, so parsing builds no `String` and allocates
// nothing. Header fields go into caller-owned storage (`UnsafeMutablePointer<HeaderField>`,
// one block per connection), which keeps the per-request path free of heap allocations.

/// A run of bytes in the buffer a head was parsed from: `start` is relative to the first
/// byte of the head.
public struct ByteSpan: Equatable, Sendable {
    public var start: Int32
    public var count: Int32

    @inlinable public init(start: Int32, count: Int32) {
        self.start = start
        self.count = count
    }

    @inlinable public init(start: Int, count: Int) {
        self.start = Int32(truncatingIfNeeded: start)
        self.count = Int32(truncatingIfNeeded: count)
    }

    public static let empty = ByteSpan(start: 0, count: 0)

    /// The bytes of this span in `base` (the buffer the head was parsed from).
    @inlinable public func bytes(in base: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: base[Int(start) ..< Int(start) + Int(count)])
    }
}

/// Header fields a proxy treats specially, recognised once by the parser so the forwarding
/// code compares a byte, not a name.
public enum HeaderKind: UInt8, Sendable {
    case other
    case host
    case contentLength
    case transferEncoding
    case connection
    case keepAlive
    case proxyConnection
    case te
    case trailer
    case upgrade
    case expect
    case xForwardedFor
    case xForwardedProto
    case xForwardedHost
    case forwarded
    case via
    /// `HTTP2-Settings`: only meaningful with `Upgrade: h2c`, which the proxy never forwards.
    case http2Settings
}

/// One header field: name and value (value without leading/trailing whitespace).
public struct HeaderField: Equatable, Sendable {
    public var name: ByteSpan
    public var value: ByteSpan
    public var kind: HeaderKind
    /// True for hop-by-hop fields a proxy must not forward: Connection, Keep-Alive,
    /// Proxy-Connection, TE, Trailer, Upgrade, and any field the Connection header names.
    /// (Transfer-Encoding is not marked: the proxy forwards chunked bodies as they are.)
    public var hopByHop: Bool

    @inlinable public init(name: ByteSpan, value: ByteSpan, kind: HeaderKind, hopByHop: Bool) {
        self.name = name
        self.value = value
        self.kind = kind
        self.hopByHop = hopByHop
    }

    public static let empty = HeaderField(name: .empty, value: .empty, kind: .other, hopByHop: false)
}

/// Request methods the proxy's semantics depend on; everything else is `.other`.
public enum HTTPMethod: UInt8, Sendable {
    case get, head, post, put, delete, options, patch, trace, connect, other

    /// RFC 9110 §9.2.2: safe to retry when no response byte was seen.
    @inlinable public var isIdempotent: Bool {
        switch self {
        case .get, .head, .put, .delete, .options, .trace: return true
        case .post, .patch, .connect, .other: return false
        }
    }
}

/// How the body of a message is delimited.
public enum BodyFraming: Equatable, Sendable {
    /// No body (a request without Content-Length/Transfer-Encoding, HEAD/1xx/204/304 responses).
    case none
    /// Exactly this many bytes.
    case contentLength(Int64)
    /// Transfer-Encoding ending in `chunked`: ended by the zero chunk and trailers.
    case chunked
    /// A response body ended by the upstream closing the connection.
    case untilClose
}

/// Size limits applied while parsing a head.
public struct HTTPLimits: Sendable, Equatable {
    /// Longest request line (414 beyond it) or status line (502 beyond it).
    public var maxStartLine: Int
    /// Largest head, start line and fields with their CRLFs (431 beyond it).
    public var maxHeadBytes: Int
    /// Most header fields (431 beyond it). The caller's field storage holds at least this many.
    public var maxHeaders: Int

    public init(maxStartLine: Int = 8_192, maxHeadBytes: Int = 32_768, maxHeaders: Int = 100) {
        self.maxStartLine = maxStartLine
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaders = maxHeaders
    }
}

/// Why a message was refused. `status` is what a server answers (400, 414, 431, 501, 505);
/// a response that fails to parse is answered 502 by the proxy whatever this says.
public struct HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var reason: StaticString

    @inlinable public init(status: Int, reason: StaticString) {
        self.status = status
        self.reason = reason
    }

    public var description: String { "\(status): \(reason)" }

    public static func == (lhs: HTTPParseError, rhs: HTTPParseError) -> Bool {
        lhs.status == rhs.status && lhs.reason.description == rhs.reason.description
    }
}

/// The outcome of one parse attempt over the bytes received so far.
public enum ParseStatus: Equatable, Sendable {
    /// The head is not complete yet; call again with more bytes (and the same `scanFrom`).
    case incomplete
    /// The head is complete and valid; the result's `headLength` says where the body starts.
    case complete
    /// The message is malformed or over a limit; the connection's framing is unknown.
    case invalid(HTTPParseError)
}

/// A parsed request head. Spans are relative to the head's first byte.
public struct RequestHead: Equatable, Sendable {
    /// Bytes of the head including the blank line that ends it.
    public var headLength: Int = 0
    public var method: HTTPMethod = .get
    public var methodSpan: ByteSpan = .empty
    /// The request target as sent (origin-form `/a?b`, absolute-form, authority-form or `*`).
    public var targetSpan: ByteSpan = .empty
    /// The path of the target (without query): for routing. For absolute-form, the path part,
    /// which is an empty span (meaning `/`) when the target has no path; for `*` and
    /// authority-form, the target itself.
    public var pathSpan: ByteSpan = .empty
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    public var versionMinor: UInt8 = 1
    public var headerCount: Int = 0
    /// The Host header's value, or the authority of an absolute-form target; empty if none.
    public var hostSpan: ByteSpan = .empty
    public var framing: BodyFraming = .none
    /// Whether the client allows the connection to stay open after this exchange
    /// (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    public var keepAlive: Bool = true
    /// `Expect: 100-continue` was sent.
    public var expectContinue: Bool = false
    /// An `Upgrade` header naming a protocol other than `h2c` was sent and the Connection
    /// header lists `upgrade`. (`h2c` is never an upgrade through the proxy: forwarding it
    /// would let a client speak HTTP/2 to the backend past the proxy's checks.)
    public var upgrade: Bool = false
    /// The Upgrade field lists `h2c`: it must be removed from what is forwarded.
    public var upgradeListsH2C: Bool = false
    /// Content-Length came as several fields or as a list of (identical) values: forward one
    /// normalized `Content-Length` field instead (RFC 9112 §6.3).
    public var contentLengthNeedsRewrite: Bool = false
    /// The target is in absolute form (`http://a.example/x`): `hostSpan` is its authority,
    /// and the request goes upstream in origin form with that authority as its Host.
    public var absoluteForm: Bool = false
    /// Where the query (`?...`) starts in the target, or the target's end when there is
    /// none; the path before it may be normalized (`normalizeRequestPath`), the query never.
    public var queryStart: Int32 = 0

    public init() {}
}

/// A parsed response head. Spans are relative to the head's first byte.
public struct ResponseHead: Equatable, Sendable {
    public var headLength: Int = 0
    public var status: Int = 0
    public var versionMinor: UInt8 = 1
    public var headerCount: Int = 0
    /// Framing for this response, given the request's method (HEAD, 1xx, 204 and 304 have none).
    public var framing: BodyFraming = .none
    /// Whether the upstream allows the connection to be reused after this response.
    public var keepAlive: Bool = true
    /// The Content-Length value (also on a HEAD or 304 response, where it frames nothing),
    /// -1 when there is none.
    public var contentLength: Int64 = -1
    /// Content-Length came repeated (identical values): forward it as one field.
    public var contentLengthNeedsRewrite: Bool = false

    public init() {}

    /// 1xx (other than 101): another response head follows on the same exchange.
    @inlinable public var isInterim: Bool { status >= 100 && status < 200 && status != 101 }
}
