import YardIO

// Parsing and validating the field lines of a complete head (shared by requests and responses).
//
// Runs once per head, after `scanHead` found its end, so every loop here can rely on the head
// ending in CRLF CRLF and on every LF in it following a CR: the loops stop at a CR without
// bounds checks, and a CR that is not followed by LF is a bare CR.

// MARK: Facts

/// What the framing and connection-management decisions need from the field lines.
struct FieldFacts {
    var count = 0
    /// The Content-Length value, or -1 when there is none.
    var contentLength: Int64 = -1
    var hasTransferEncoding = false
    var chunkedCount = 0
    /// Whether the last transfer coding seen so far is `chunked`.
    var chunkedIsFinal = false
    var hostCount = 0
    var host = ByteSpan.empty
    var hasConnection = false
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    /// An Upgrade field names a protocol other than `h2c`.
    var hasUpgrade = false
    var upgradeListsH2C = false
    var expectContinue = false
    /// Content-Length fields seen, and whether one of them was a list (`5, 5`).
    var contentLengthFields = 0
    var contentLengthList = false
}

/// Largest Content-Length accepted (2^62): far above any real body, and sums of two stay in Int64.
let maxContentLength: Int64 = 1 << 62

// MARK: Field lines

/// Parses the field lines in `p[from ..< headLength]` (the last two bytes being the blank line)
/// into `fields`, and gathers `facts`. Returns the error that makes the head invalid, or nil.
///
/// Threading: a pure function of its arguments; `fields` is the caller's per-connection storage.
func parseFieldLines(
    _ p: UnsafePointer<UInt8>, from: Int, headLength: Int, maxHeaders: Int,
    fields: UnsafeMutablePointer<HeaderField>, facts: inout FieldFacts
) -> HTTPParseError? {
    var i = from
    while p[i] != asciiCR {
        // Name: tchar+ immediately followed by ':'.
        let nameStart = i
        if isWhitespace(p[i]) {
            return HTTPParseError(status: 400, reason: "obsolete line folding or whitespace before a field name")
        }
        while isTokenByte(p[i]) { i &+= 1 }
        guard p[i] == asciiColon, i > nameStart else {
            if isWhitespace(p[i]), i > nameStart {
                return HTTPParseError(status: 400, reason: "whitespace between field name and colon")
            }
            return HTTPParseError(status: 400, reason: "invalid character in field name")
        }
        let nameCount = i &- nameStart
        i &+= 1

        // Value: VCHAR / obs-text with inner SP / HTAB; surrounding OWS is not part of it.
        while isWhitespace(p[i]) { i &+= 1 }
        let valueStart = i
        while i &+ 8 <= headLength, !hasControlOrDelete(loadWord(p, i)) { i &+= 8 }
        while true {
            let b = p[i]
            if b < asciiSP {
                if b == asciiCR { break }
                if b != asciiHTAB { return HTTPParseError(status: 400, reason: "control character in field value") }
            } else if b == 0x7F {
                return HTTPParseError(status: 400, reason: "control character in field value")
            }
            i &+= 1
        }
        guard p[i &+ 1] == asciiLF else { return HTTPParseError(status: 400, reason: "bare CR in head") }
        var valueEnd = i
        while valueEnd > valueStart, isWhitespace(p[valueEnd &- 1]) { valueEnd &-= 1 }
        i &+= 2

        guard facts.count < maxHeaders else {
            return HTTPParseError(status: 431, reason: "too many header fields")
        }
        let kind = HeaderKind.classify(p, nameStart, nameCount)
        let value = ByteSpan(start: valueStart, count: valueEnd &- valueStart)
        fields[facts.count] = HeaderField(
            name: ByteSpan(start: nameStart, count: nameCount), value: value,
            kind: kind, hopByHop: kind.isAlwaysHopByHop
        )
        facts.count &+= 1
        if kind != .other, let error = note(kind, value, p, &facts) { return error }
    }
    guard i &+ 2 == headLength else { return HTTPParseError(status: 400, reason: "bare CR in head") }
    if facts.hasConnection { markFieldsNamedByConnection(p, fields, facts.count) }
    return nil
}

/// Gathers `facts` from `count` fields whose spans the caller laid out itself, from a source
/// that already checked their bytes: an HTTP/2 header list, whose names nghttp2 has checked to
/// be lowercase tokens and whose values to hold no NUL, CR, LF, other control byte or DEL, and
/// no surrounding whitespace (RFC 9113 §8.2.1; invalid regular fields never reach the owner).
/// Each field gets its kind here; what a special field means is decided exactly as
/// `parseFieldLines` decides it.
func noteLaidOutFields(
    _ p: UnsafePointer<UInt8>, fields: UnsafeMutablePointer<HeaderField>, count: Int, facts: inout FieldFacts
) -> HTTPParseError? {
    for i in 0 ..< count {
        let name = fields[i].name
        let kind = HeaderKind.classify(p, Int(truncatingIfNeeded: name.start), Int(truncatingIfNeeded: name.count))
        fields[i].kind = kind
        fields[i].hopByHop = kind.isAlwaysHopByHop
        facts.count &+= 1
        if kind != .other, let error = note(kind, fields[i].value, p, &facts) { return error }
    }
    if facts.hasConnection { markFieldsNamedByConnection(p, fields, facts.count) }
    return nil
}

// MARK: Special fields

/// Records what a special field means for framing and connection management.
@inline(__always)
private func note(_ kind: HeaderKind, _ value: ByteSpan, _ p: UnsafePointer<UInt8>, _ facts: inout FieldFacts) -> HTTPParseError? {
    switch kind {
    case .host:
        facts.hostCount &+= 1
        facts.host = value
    case .contentLength:
        return noteContentLength(value, p, &facts)
    case .transferEncoding:
        return noteTransferEncoding(value, p, &facts)
    case .connection:
        facts.hasConnection = true
        var options = ListElements(p, value)
        while let (start, count) = options.next() {
            guard isToken(p, start, count) else {
                return HTTPParseError(status: 400, reason: "invalid Connection option")
            }
            if bytesEqualFolded(p, start, count, "close") { facts.connectionClose = true }
            else if bytesEqualFolded(p, start, count, "keep-alive") { facts.connectionKeepAlive = true }
            else if bytesEqualFolded(p, start, count, "upgrade") { facts.connectionUpgrade = true }
        }
    case .upgrade:
        var protocols = ListElements(p, value)
        while let (start, count) = protocols.next() {
            if bytesEqualFolded(p, start, count, "h2c") { facts.upgradeListsH2C = true } else { facts.hasUpgrade = true }
        }
    case .expect:
        if bytesEqualFolded(p, Int(value.start), Int(value.count), "100-continue") { facts.expectContinue = true }
    default:
        break
    }
    return nil
}

/// Content-Length: `1*DIGIT`, possibly repeated as a list or in several fields (RFC 9112 §6.3
/// step 5); identical repeats count as one, anything else is a smuggling attempt.
private func noteContentLength(_ value: ByteSpan, _ p: UnsafePointer<UInt8>, _ facts: inout FieldFacts) -> HTTPParseError? {
    var elements = ListElements(p, value)
    var sawOne = false
    facts.contentLengthFields &+= 1
    while let (start, count) = elements.next() {
        if sawOne { facts.contentLengthList = true }
        sawOne = true
        var n: Int64 = 0
        for j in start ..< start &+ count {
            let b = p[j]
            guard isDigit(b) else { return HTTPParseError(status: 400, reason: "invalid Content-Length") }
            let digit = Int64(b &- 0x30)
            guard n <= (maxContentLength &- digit) / 10 else {
                return HTTPParseError(status: 400, reason: "Content-Length too large")
            }
            n = n &* 10 &+ digit
        }
        if facts.contentLength >= 0, facts.contentLength != n {
            return HTTPParseError(status: 400, reason: "conflicting Content-Length values")
        }
        facts.contentLength = n
    }
    return sawOne ? nil : HTTPParseError(status: 400, reason: "empty Content-Length")
}

/// Transfer-Encoding: a list of codings, each a token with optional parameters; several fields
/// form one list in order. Only whether `chunked` is final, and how often it occurs, matters here.
private func noteTransferEncoding(_ value: ByteSpan, _ p: UnsafePointer<UInt8>, _ facts: inout FieldFacts) -> HTTPParseError? {
    facts.hasTransferEncoding = true
    var codings = ListElements(p, value)
    while let (start, count) = codings.next() {
        let end = start &+ count
        var j = start
        while j < end, isTokenByte(p[j]) { j &+= 1 }
        guard j > start else { return HTTPParseError(status: 400, reason: "invalid transfer coding") }
        let isChunked = bytesEqualFolded(p, start, j &- start, "chunked")
        if j < end {
            while j < end, isWhitespace(p[j]) { j &+= 1 }
            guard p[j] == asciiSemicolon else { return HTTPParseError(status: 400, reason: "invalid transfer coding") }
            if isChunked { return HTTPParseError(status: 400, reason: "chunked transfer coding with parameters") }
        }
        if isChunked { facts.chunkedCount &+= 1 }
        facts.chunkedIsFinal = isChunked
    }
    return nil
}

// MARK: Connection-named fields

/// Marks hop-by-hop every field named by an option of a Connection header (RFC 9110 §7.6.1),
/// except the fields that frame or route the message (see `isProtectedFromConnection`).
private func markFieldsNamedByConnection(_ p: UnsafePointer<UInt8>, _ fields: UnsafeMutablePointer<HeaderField>, _ count: Int) {
    for c in 0 ..< count where fields[c].kind == .connection {
        var options = ListElements(p, fields[c].value)
        while let (start, length) = options.next() {
            for f in 0 ..< count {
                let field = fields[f]
                guard !field.hopByHop, !field.kind.isProtectedFromConnection,
                      Int(field.name.count) == length,
                      spansEqualFolded(p, Int(field.name.start), start, length) else { continue }
                fields[f].hopByHop = true
            }
        }
    }
}

// MARK: Rewriting

/// Appends `Upgrade: ` and the protocols of `value` (an Upgrade field's value) other than
/// `h2c`, then CRLF; nothing when no other protocol is listed. `h2c` through a proxy would
/// let a client talk HTTP/2 to the backend on a connection the proxy treats as HTTP/1.1.
///
/// Threading: a pure function of its arguments.
public func appendUpgradeWithoutH2C(_ value: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
    guard let base = value.baseAddress, value.count > 0 else { return }
    let p = base.assumingMemoryBound(to: UInt8.self)
    var protocols = ListElements(p, ByteSpan(start: 0, count: value.count))
    var first = true
    while let (start, count) = protocols.next() {
        if bytesEqualFolded(p, start, count, "h2c") { continue }
        out.append(first ? "Upgrade: " : ", ")
        out.append(UnsafeRawBufferPointer(start: p + start, count: count))
        first = false
    }
    if !first { out.append("\r\n") }
}
