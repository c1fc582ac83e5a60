// Tracking chunked framing (RFC 9112 §7.1) over body bytes the proxy forwards verbatim.

// MARK: Progress

/// What the bytes given to one `ChunkedDecoder.consume` call amounted to.
public enum ChunkedProgress: Equatable, Sendable {
    /// All given bytes belong to the body; more are to come.
    case needMore
    /// The message (last chunk, trailers and final CRLF) ends after `consumed` bytes of this
    /// call's input; any bytes after them belong to the next message.
    case done(consumed: Int)
    /// The framing is broken; the connection cannot be reused or trusted further.
    case invalid(HTTPParseError)
}

// MARK: Decoder

/// A byte-at-a-time state machine that finds where a chunked body ends, without copying or
/// rewriting it: the proxy forwards the bytes as they came and only needs to know when the
/// message is over, and that its framing is unambiguous.
///
/// Every split of the input gives the same outcome, chunk data is skipped in bulk, and nothing is
/// allocated. Strict like the head parsers: a chunk-size is 1 to 15 hex digits, extensions follow
/// the grammar exactly (`;name`, `;name=token`, `;name="quoted"`, whitespace only before `;` and
/// around `=`), chunk data is followed by exactly CRLF, and trailer fields obey the header-field
/// rules (token name, colon, no obs-fold, no control bytes, no bare CR or LF). A chunk-size line
/// is capped at `maxChunkSizeLine` bytes and the trailer section (with the final CRLF) at
/// `maxTrailerBytes`.
///
/// For request bodies (`refusingForbiddenTrailers`), a trailer field that must not be a
/// trailer (RFC 9110 §6.5.1: framing, routing, authentication, request modifiers, content
/// description, hop-by-hop and forwarding fields; `isForbiddenInTrailers`) makes the body
/// invalid: the proxy forwards trailers verbatim, so a `Content-Length` or `Host` in them
/// would reach a backend that might merge them into the head. The proxy answers 400 and
/// closes the upstream connection before the message is complete.
///
/// Errors have status 400; the proxy answers 502 when the body came from an upstream.
///
/// Threading: a value owned by one connection; `consume` is called from that connection's loop.
public struct ChunkedDecoder: Sendable {
    /// Longest chunk-size line (size, extensions and CRLF) accepted.
    public static let maxChunkSizeLine = 4_096

    private enum State: UInt8, Sendable {
        case sizeStart, size, sizeWhitespace
        case extNameStart, extName, extAfterName, extValueStart, extToken, extQuoted, extQuotedEscape
        case extAfterQuoted, extValueWhitespace, sizeLF
        case data, dataCR, dataLF
        case trailerLineStart, trailerName, trailerValue, trailerLF, finalLF
        case done, failed
    }

    private var state = State.sizeStart
    /// While reading a chunk-size: its value so far. While in chunk data: the bytes left.
    private var remaining: Int64 = 0
    private var digits = 0
    private var lineBytes = 0
    private var trailerBytes = 0
    private var failure = HTTPParseError(status: 400, reason: "invalid chunked encoding")
    private let maxTrailerBytes: Int
    private let refusesForbiddenTrailers: Bool
    /// The current trailer field's name so far, lower-cased, packed 8 bytes a word (names
    /// longer than 24 bytes are not kept: no forbidden name is that long).
    private var name: TrailerName = TrailerName()

    public init(maxTrailerBytes: Int = 32_768, refusingForbiddenTrailers: Bool = false) {
        self.maxTrailerBytes = maxTrailerBytes
        self.refusesForbiddenTrailers = refusingForbiddenTrailers
    }

    /// Whether the last chunk and trailers have been seen.
    public var isDone: Bool { state == .done }
    /// Chunk data seen so far (the body without its framing).
    public private(set) var dataBytes: Int64 = 0

    /// Consumes `bytes`, which follow the bytes of the previous call. After `.done` the decoder
    /// reports `.done(consumed: 0)` and after `.invalid` the same error, whatever it is given.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) -> ChunkedProgress {
        switch state {
        case .done: return .done(consumed: 0)
        case .failed: return .invalid(failure)
        default: break
        }
        guard let base = bytes.baseAddress else { return .needMore }
        let p = base.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        var i = 0
        while i < n {
            if state == .data {
                let take = Int(min(Int64(n &- i), remaining))
                i &+= take
                remaining &-= Int64(take)
                dataBytes &+= Int64(take)
                if remaining == 0 { state = .dataCR }
                continue
            }
            let b = p[i]
            i &+= 1
            if state.rawValue < State.data.rawValue {
                lineBytes &+= 1
                if lineBytes > Self.maxChunkSizeLine { return fail("chunk-size line too long") }
            } else if state.rawValue >= State.trailerLineStart.rawValue {
                trailerBytes &+= 1
                if trailerBytes > maxTrailerBytes { return fail("trailer section too large") }
            }
            if let failed = step(b) { return failed }
            if state == .done { return .done(consumed: i) }
        }
        return .needMore
    }

    // MARK: Transitions

    /// Advances over one byte outside chunk data; returns the outcome when it is a failure.
    @inline(__always)
    private mutating func step(_ b: UInt8) -> ChunkedProgress? {
        switch state {
        // chunk-size
        case .sizeStart:
            let v = hexValue(b)
            guard v != 0xFF else { return fail("invalid chunk size") }
            remaining = Int64(v)
            digits = 1
            state = .size
        case .size:
            let v = hexValue(b)
            if v != 0xFF {
                digits &+= 1
                guard digits <= 15, remaining <= (Int64.max / 2 - Int64(v)) / 16 else { return fail("chunk size too large") }
                remaining = remaining &* 16 &+ Int64(v)
            } else if b == asciiCR {
                state = .sizeLF
            } else if b == asciiSemicolon {
                state = .extNameStart
            } else if isWhitespace(b) {
                state = .sizeWhitespace
            } else {
                return fail("invalid chunk size")
            }
        case .sizeWhitespace:
            if b == asciiSemicolon { state = .extNameStart } else if !isWhitespace(b) { return fail("invalid chunk size") }

        // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
        case .extNameStart:
            if isTokenByte(b) { state = .extName } else if !isWhitespace(b) { return fail("invalid chunk extension") }
        case .extName:
            if isTokenByte(b) { break }
            switch b {
            case asciiEquals: state = .extValueStart
            case asciiSemicolon: state = .extNameStart
            case asciiCR: state = .sizeLF
            case asciiSP, asciiHTAB: state = .extAfterName
            default: return fail("invalid chunk extension")
            }
        case .extAfterName:
            switch b {
            case asciiEquals: state = .extValueStart
            case asciiSemicolon: state = .extNameStart
            case asciiSP, asciiHTAB: break
            default: return fail("invalid chunk extension")
            }
        case .extValueStart:
            if b == asciiQuote { state = .extQuoted }
            else if isTokenByte(b) { state = .extToken }
            else if !isWhitespace(b) { return fail("invalid chunk extension") }
        case .extToken:
            if isTokenByte(b) { break }
            switch b {
            case asciiSemicolon: state = .extNameStart
            case asciiCR: state = .sizeLF
            case asciiSP, asciiHTAB: state = .extValueWhitespace
            default: return fail("invalid chunk extension")
            }
        case .extQuoted:
            if b == asciiQuote { state = .extAfterQuoted }
            else if b == asciiBackslash { state = .extQuotedEscape }
            else if !(isVisibleOrObsText(b) || isWhitespace(b)) { return fail("control character in chunk extension") }
        case .extQuotedEscape:
            guard isVisibleOrObsText(b) || isWhitespace(b) else { return fail("control character in chunk extension") }
            state = .extQuoted
        case .extAfterQuoted:
            switch b {
            case asciiSemicolon: state = .extNameStart
            case asciiCR: state = .sizeLF
            case asciiSP, asciiHTAB: state = .extValueWhitespace
            default: return fail("invalid chunk extension")
            }
        case .extValueWhitespace:
            if b == asciiSemicolon { state = .extNameStart } else if !isWhitespace(b) { return fail("invalid chunk extension") }
        case .sizeLF:
            guard b == asciiLF else { return fail("bare CR in chunk-size line") }
            lineBytes = 0
            state = remaining == 0 ? .trailerLineStart : .data

        // chunk data is skipped in bulk by `consume`; then exactly CRLF.
        case .data:
            preconditionFailure("chunk data is consumed in bulk")
        case .dataCR:
            guard b == asciiCR else { return fail("chunk data not followed by CRLF") }
            state = .dataLF
        case .dataLF:
            guard b == asciiLF else { return fail("chunk data not followed by CRLF") }
            state = .sizeStart

        // trailer-section = *( field-line CRLF ), then the final CRLF.
        case .trailerLineStart:
            if b == asciiCR { state = .finalLF }
            else if isTokenByte(b) {
                state = .trailerName
                name = TrailerName()
                name.add(b)
            }
            else if isWhitespace(b) { return fail("obsolete line folding in trailer section") }
            else { return fail("invalid character in trailer field name") }
        case .trailerName:
            if b == asciiColon {
                if refusesForbiddenTrailers && name.isForbiddenInTrailers { return fail("field not allowed in a trailer section") }
                state = .trailerValue
            }
            else if isWhitespace(b) { return fail("whitespace between trailer field name and colon") }
            else if !isTokenByte(b) { return fail("invalid character in trailer field name") }
            else { name.add(b) }
        case .trailerValue:
            if b == asciiCR { state = .trailerLF }
            else if !(isVisibleOrObsText(b) || isWhitespace(b)) { return fail("control character in trailer field value") }
        case .trailerLF:
            guard b == asciiLF else { return fail("bare CR in trailer section") }
            state = .trailerLineStart
        case .finalLF:
            guard b == asciiLF else { return fail("bare CR in trailer section") }
            state = .done
        case .done, .failed:
            preconditionFailure("consume returns before stepping a finished decoder")
        }
        return nil
    }

    private mutating func fail(_ reason: StaticString) -> ChunkedProgress {
        failure = HTTPParseError(status: 400, reason: reason)
        state = .failed
        return .invalid(failure)
    }
}

// MARK: Trailer field names

/// A field name being read a byte at a time (it may be split across reads), lower-cased and
/// packed into three words, to be compared once complete.
struct TrailerName: Sendable, Equatable {
    var w0: UInt64 = 0
    var w1: UInt64 = 0
    var w2: UInt64 = 0
    var length = 0

    static let capacity = 24

    @inline(__always) mutating func add(_ byte: UInt8) {
        defer { length &+= 1 }
        guard length < Self.capacity else { return }
        let lower = UInt64(byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte)
        let shift = UInt64((length & 7) * 8)
        switch length >> 3 {
        case 0: w0 |= lower << shift
        case 1: w1 |= lower << shift
        default: w2 |= lower << shift
        }
    }

    init() {}

    init(_ text: StaticString) {
        text.withUTF8Buffer { for b in $0 { add(b) } }
    }

    /// Fields a sender must not put in a trailer section, or that a recipient must not
    /// merge into the head (RFC 9110 §6.5.1, §7.6.1): message framing, routing, request
    /// modifiers (controls, conditionals, range), authentication, content description and
    /// response control data, hop-by-hop fields, and what the proxy itself writes.
    static let forbidden: [TrailerName] = forbiddenNames.map { TrailerName($0) }

    private static let forbiddenNames: [StaticString] = [
        "content-length", "transfer-encoding", "host", "connection", "keep-alive", "proxy-connection", "te",
        "trailer", "upgrade", "http2-settings", "expect", "max-forwards", "cache-control", "pragma", "range",
        "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "authorization",
        "proxy-authorization", "proxy-authenticate", "www-authenticate", "cookie", "set-cookie", "content-type",
        "content-encoding", "content-range", "content-location", "content-language", "age", "expires", "date",
        "location", "retry-after", "vary", "forwarded", "x-forwarded-for", "x-forwarded-host",
        "x-forwarded-proto", "via",
    ]

    var isForbiddenInTrailers: Bool {
        guard length <= Self.capacity else { return false }
        for entry in Self.forbidden where entry == self { return true }
        return false
    }
}
