// Where a message body ends, whatever its framing.

/// The one place the relays ask "which of these bytes are body, and is it over?": request
/// and response bodies, whether they go on to an HTTP/1.1 connection or become HTTP/2 DATA
/// frames. Framing comes from the parsed head (`BodyFraming`); the bytes themselves are
/// forwarded verbatim by the caller, which only learns how many of them belong to the body.
///
/// - Content-Length: counts down, complete at zero.
/// - chunked: `ChunkedDecoder` finds the end (last chunk, trailers, final CRLF) and checks
///   the framing; for requests, trailers that must not be trailers make it invalid.
/// - close-delimited (responses only): every byte is body; complete when the sender closes
///   cleanly (`inputEnded(cleanly: false)` — TLS without close_notify — leaves it incomplete).
/// - none: complete from the start.
///
/// Threading: a value owned by one exchange; no allocation.
public struct BodyProgress: Sendable {
    /// What the bytes given to one `advance` call amounted to.
    public enum Step: Equatable, Sendable {
        /// The first `count` bytes given belong to the body: all of them unless it ended
        /// inside them (then the rest is the next message).
        case body(count: Int)
        /// The framing is broken: the connection can be neither reused nor trusted.
        case invalid(HTTPParseError)
    }

    private enum Kind: UInt8, Sendable { case length, chunked, untilClose }

    private var kind: Kind
    private var remaining: Int64
    private var decoder: ChunkedDecoder
    private var total: Int64 = 0
    private var passed: Int64 = 0
    /// The whole body has passed.
    public private(set) var isComplete: Bool

    /// A message without a body: complete from the start.
    public init() {
        kind = .length
        remaining = 0
        decoder = ChunkedDecoder()
        isComplete = true
    }

    /// The progress of a body framed as `framing`. `refusingForbiddenTrailers` is for request
    /// bodies (see `ChunkedDecoder`).
    public init(_ framing: BodyFraming, refusingForbiddenTrailers: Bool = false) {
        self.init()
        switch framing {
        case .none:
            break
        case .contentLength(let length):
            remaining = max(length, 0)
            total = remaining
            isComplete = remaining == 0
        case .chunked:
            kind = .chunked
            decoder = ChunkedDecoder(refusingForbiddenTrailers: refusingForbiddenTrailers)
            isComplete = false
        case .untilClose:
            kind = .untilClose
            isComplete = false
        }
    }

    /// The body uses chunked transfer coding.
    public var isChunked: Bool { kind == .chunked }
    /// The body ends only when the sender closes the connection: that connection cannot be
    /// reused.
    public var isCloseDelimited: Bool { kind == .untilClose }
    /// Body bytes passed so far, framing not counted (a chunked body's data only).
    public var dataBytes: Int64 {
        switch kind {
        case .length: total - remaining
        case .chunked: decoder.dataBytes
        case .untilClose: passed
        }
    }

    /// Bytes of a Content-Length body still to come (0 for other framings).
    public var remainingLength: Int64 { kind == .length ? remaining : 0 }

    /// Takes `bytes`, which follow those of the previous call, and says how many belong to the
    /// body. After completion every call takes 0 bytes.
    public mutating func advance(over bytes: UnsafeRawBufferPointer) -> Step {
        if isComplete { return .body(count: 0) }
        switch kind {
        case .length:
            let count = Int(min(Int64(bytes.count), remaining))
            remaining -= Int64(count)
            if remaining == 0 { isComplete = true }
            return .body(count: count)
        case .chunked:
            switch decoder.consume(bytes) {
            case .needMore:
                return .body(count: bytes.count)
            case .done(let consumed):
                isComplete = true
                return .body(count: consumed)
            case .invalid(let error):
                return .invalid(error)
            }
        case .untilClose:
            passed &+= Int64(bytes.count)
            return .body(count: bytes.count)
        }
    }

    /// `count` bytes of a Content-Length body passed without being looked at (spliced); the
    /// caller never passes more than `remainingLength`. Other framings are not skipped.
    public mutating func skip(_ count: Int) {
        guard kind == .length, !isComplete else { return }
        remaining -= min(Int64(count), remaining)
        if remaining == 0 { isComplete = true }
    }

    /// The sender closed its side. A close-delimited body is complete if the close was clean
    /// (`cleanly: false` for a TLS connection that ended without close_notify: the body may be
    /// truncated). Returns whether the body is complete; false means it was cut short.
    public mutating func inputEnded(cleanly: Bool = true) -> Bool {
        if kind == .untilClose && cleanly { isComplete = true }
        return isComplete
    }
}
