// The strict HTTP/1.1 request head parser (RFC 9112), in place and allocation-free.
//
// Strictness is the point: a proxy that reads a message differently from the server behind it
// is a request-smuggling vector, so anything ambiguous (bare CR or LF, obs-fold, whitespace before
// a colon, conflicting framing) is refused with the status a server should answer.

// MARK: Entry point

/// Parses a request head from `buffer` (the bytes received so far, starting at the head's first
/// byte; bytes after the head, such as a body or a pipelined request, are left alone).
///
/// - `scanFrom`: opaque resume state held by the caller, 0 for a new head, passed back unchanged
///   on the next call, so a client dripping one byte at a time costs linear work in total.
/// - `fields`: storage for at least `limits.maxHeaders` fields; filled on `.complete`.
/// - `head`: written only on `.complete`. Spans are relative to `buffer`'s first byte.
///
/// Choices the RFC leaves open: up to 4 empty lines before the request line are ignored (and
/// counted in `headLength`); `Content-Length: 0` is framed `.none`; an `Expect` other than
/// `100-continue` is not refused (only `expectContinue` stays false); in HTTP/1.0 `Expect` and
/// `Upgrade` are ignored (RFC 9110 §10.1.1, §7.8); an absolute-form target without a path has an
/// empty `pathSpan`, which means `/`.
///
/// Threading: a pure function of its arguments; call it from the connection's own event loop.
public func parseRequestHead(
    _ buffer: UnsafeRawBufferPointer, limits: HTTPLimits, head: inout RequestHead,
    fields: UnsafeMutablePointer<HeaderField>, scanFrom: inout Int
) -> ParseStatus {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return .incomplete }
    let p = base.assumingMemoryBound(to: UInt8.self)
    let policy = HeadScanPolicy(
        maxStartLine: limits.maxStartLine, maxHeadBytes: limits.maxHeadBytes, maxLeadingEmptyLines: 4,
        startLineTooLong: HTTPParseError(status: 414, reason: "request line too long")
    )
    switch scanHead(p, count: buffer.count, policy: policy, state: &scanFrom) {
    case .incomplete:
        return .incomplete
    case .invalid(let error):
        return .invalid(error)
    case .complete(let boundary):
        var result = RequestHead()
        if let error = parseRequest(p, boundary, limits, fields, &result) { return .invalid(error) }
        head = result
        return .complete
    }
}

/// Completes a request head the caller wrote itself into `buffer` as an HTTP/1.1 head (request
/// line ending at `requestLineEnd`, its CR; field lines; the blank line ending at `headLength`),
/// with the spans of its `fieldCount` fields already in `fields` (at most `limits.maxHeaders`).
/// The fields come from a source that checked their bytes (see `noteLaidOutFields`: an HTTP/2
/// header list), so they are not scanned again; the request line is parsed, and framing, Host
/// and connection semantics are decided, exactly as `parseRequestHead` decides them.
///
/// The HTTP/2 path: a stream's head costs one pass to lay out instead of a layout, a scan and
/// a parse.
public func completeLaidOutRequestHead(
    _ buffer: UnsafeRawBufferPointer, requestLineEnd: Int, headLength: Int, fieldCount: Int,
    head: inout RequestHead, fields: UnsafeMutablePointer<HeaderField>
) -> HTTPParseError? {
    guard let base = buffer.baseAddress, headLength <= buffer.count, requestLineEnd < headLength else {
        return HTTPParseError(status: 400, reason: "malformed request head")
    }
    let p = base.assumingMemoryBound(to: UInt8.self)
    var result = RequestHead()
    if let error = parseRequestLine(p, 0, requestLineEnd, &result) { return error }
    var facts = FieldFacts()
    if let error = noteLaidOutFields(p, fields: fields, count: fieldCount, facts: &facts) { return error }
    if let error = applyRequestSemantics(p, facts, headLength: headLength, &result) { return error }
    head = result
    return nil
}

// MARK: Request line and semantics

private func parseRequest(
    _ p: UnsafePointer<UInt8>, _ boundary: HeadBoundary, _ limits: HTTPLimits,
    _ fields: UnsafeMutablePointer<HeaderField>, _ head: inout RequestHead
) -> HTTPParseError? {
    if let error = parseRequestLine(p, boundary.startLineStart, boundary.startLineEnd, &head) { return error }
    var facts = FieldFacts()
    if let error = parseFieldLines(
        p, from: boundary.startLineEnd &+ 2, headLength: boundary.headLength,
        maxHeaders: limits.maxHeaders, fields: fields, facts: &facts
    ) { return error }
    return applyRequestSemantics(p, facts, headLength: boundary.headLength, &head)
}

/// Framing, Host and connection management, from the request line in `head` and the fields' facts.
private func applyRequestSemantics(
    _ p: UnsafePointer<UInt8>, _ facts: FieldFacts, headLength: Int, _ head: inout RequestHead
) -> HTTPParseError? {
    head.headLength = headLength
    head.headerCount = facts.count
    let http11 = head.versionMinor == 1

    // Framing (RFC 9112 §6.1, §6.3): Transfer-Encoding must end in exactly one `chunked` and
    // never comes with Content-Length, and HTTP/1.0 has no Transfer-Encoding at all.
    if facts.hasTransferEncoding {
        if facts.contentLength >= 0 {
            return HTTPParseError(status: 400, reason: "both Transfer-Encoding and Content-Length")
        }
        if !http11 { return HTTPParseError(status: 400, reason: "Transfer-Encoding in an HTTP/1.0 request") }
        if facts.chunkedCount > 1 { return HTTPParseError(status: 400, reason: "chunked applied more than once") }
        if !facts.chunkedIsFinal { return HTTPParseError(status: 400, reason: "final transfer coding is not chunked") }
        head.framing = .chunked
    } else if facts.contentLength > 0 {
        head.framing = .contentLength(facts.contentLength)
    } else {
        head.framing = .none
    }

    // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0. An absolute-form
    // target's authority overrides it.
    if facts.hostCount > 1 { return HTTPParseError(status: 400, reason: "more than one Host header") }
    if http11, facts.hostCount == 0 { return HTTPParseError(status: 400, reason: "missing Host header") }
    if facts.hostCount == 1, !isHost(p, facts.host) { return HTTPParseError(status: 400, reason: "invalid Host header") }
    if head.hostSpan.count == 0 { head.hostSpan = facts.host }

    // Connection management.
    head.keepAlive = http11 ? !facts.connectionClose : facts.connectionKeepAlive && !facts.connectionClose
    head.expectContinue = http11 && facts.expectContinue
    head.upgrade = http11 && facts.hasUpgrade && facts.connectionUpgrade
    head.upgradeListsH2C = facts.upgradeListsH2C
    head.contentLengthNeedsRewrite = facts.contentLengthFields > 1 || facts.contentLengthList
    return nil
}

/// `method SP request-target SP HTTP-version`, in `p[start ..< end]` (end is the CR).
private func parseRequestLine(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ head: inout RequestHead) -> HTTPParseError? {
    var i = start
    while i < end, isTokenByte(p[i]) { i &+= 1 }
    guard i > start, i < end, p[i] == asciiSP else { return HTTPParseError(status: 400, reason: "invalid method") }
    head.methodSpan = ByteSpan(start: start, count: i &- start)
    head.method = method(p, start, i &- start)
    i &+= 1

    let targetStart = i
    while i &+ 8 <= end, !hasNonTargetByte(loadWord(p, i)) { i &+= 8 }
    while i < end, p[i] > asciiSP, p[i] < 0x7F { i &+= 1 }
    guard i > targetStart else { return HTTPParseError(status: 400, reason: "empty request target") }
    guard i < end, p[i] == asciiSP else {
        return HTTPParseError(status: 400, reason: i == end ? "missing HTTP version" : "invalid character in request target")
    }
    head.targetSpan = ByteSpan(start: targetStart, count: i &- targetStart)
    head.queryStart = Int32(truncatingIfNeeded: i)
    i &+= 1

    switch parseVersion(p, i, end) {
    case 0: head.versionMinor = 0
    case 1: head.versionMinor = 1
    case -2: return HTTPParseError(status: 505, reason: "HTTP version not supported")
    default: return HTTPParseError(status: 400, reason: "malformed HTTP version")
    }
    return parseTarget(p, targetStart, head.targetSpan, &head)
}

/// The minor version of an exact `HTTP/1.0` or `HTTP/1.1` in `p[start ..< end]`; -2 for another
/// well-formed `HTTP/d.d` (505), -1 for anything else (400).
func parseVersion(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int {
    guard end &- start == 8, bytesEqual(p, start, 5, "HTTP/"),
          isDigit(p[start &+ 5]), p[start &+ 6] == asciiDot, isDigit(p[start &+ 7]) else { return -1 }
    guard p[start &+ 5] == 0x31 else { return -2 }
    switch p[start &+ 7] {
    case 0x30: return 0
    case 0x31: return 1
    default: return -2
    }
}

private func method(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int) -> HTTPMethod {
    switch count {
    case 3:
        if bytesEqual(p, start, 3, "GET") { return .get }
        if bytesEqual(p, start, 3, "PUT") { return .put }
    case 4:
        if bytesEqual(p, start, 4, "HEAD") { return .head }
        if bytesEqual(p, start, 4, "POST") { return .post }
    case 5:
        if bytesEqual(p, start, 5, "PATCH") { return .patch }
        if bytesEqual(p, start, 5, "TRACE") { return .trace }
    case 6:
        if bytesEqual(p, start, 6, "DELETE") { return .delete }
    case 7:
        if bytesEqual(p, start, 7, "OPTIONS") { return .options }
        if bytesEqual(p, start, 7, "CONNECT") { return .connect }
    default:
        break
    }
    return .other
}

// MARK: Request target

/// Sorts the target into its form (RFC 9112 §3.2) and sets `pathSpan` (and `hostSpan` for
/// absolute-form). Bytes were already checked to be visible ASCII.
private func parseTarget(_ p: UnsafePointer<UInt8>, _ start: Int, _ target: ByteSpan, _ head: inout RequestHead) -> HTTPParseError? {
    let end = start &+ Int(target.count)
    if head.method == .connect {
        // authority-form `host:port`, and only for CONNECT.
        var i = start
        var sawColon = false
        while i < end {
            let b = p[i]
            if b == asciiSlash || b == asciiAt || b == asciiQuestion {
                return HTTPParseError(status: 400, reason: "CONNECT target is not host:port")
            }
            if b == asciiColon { sawColon = true }
            i &+= 1
        }
        guard sawColon else { return HTTPParseError(status: 400, reason: "CONNECT target is not host:port") }
        head.pathSpan = target
        return nil
    }
    if p[start] == asciiSlash {
        head.pathSpan = ByteSpan(start: start, count: pathLength(p, start, end))
        head.queryStart = head.pathSpan.start &+ head.pathSpan.count
        return nil
    }
    if p[start] == asciiStar, target.count == 1 {
        guard head.method == .options else { return HTTPParseError(status: 400, reason: "asterisk target outside OPTIONS") }
        head.pathSpan = target
        return nil
    }
    return parseAbsoluteForm(p, start, end, &head)
}

/// `http://authority/path?query` (or https): the authority becomes `hostSpan`. Userinfo is
/// refused (RFC 9110 §4.2.4) because `user@host` routes differently in different parsers.
private func parseAbsoluteForm(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ head: inout RequestHead) -> HTTPParseError? {
    var i = start
    if end &- start >= 7, bytesEqualFolded(p, start, 7, "http://") {
        i = start &+ 7
    } else if end &- start >= 8, bytesEqualFolded(p, start, 8, "https://") {
        i = start &+ 8
    } else {
        return HTTPParseError(status: 400, reason: "invalid request target")
    }
    let authorityStart = i
    while i < end, p[i] != asciiSlash, p[i] != asciiQuestion {
        if p[i] == asciiAt { return HTTPParseError(status: 400, reason: "userinfo in request target") }
        i &+= 1
    }
    guard i > authorityStart else { return HTTPParseError(status: 400, reason: "empty authority in request target") }
    head.hostSpan = ByteSpan(start: authorityStart, count: i &- authorityStart)
    guard isHost(p, head.hostSpan) else { return HTTPParseError(status: 400, reason: "invalid authority in request target") }
    // A missing path leaves an empty span (meaning `/`): no `/` byte exists to point at.
    head.pathSpan = ByteSpan(start: i, count: i < end && p[i] == asciiSlash ? pathLength(p, i, end) : 0)
    head.queryStart = head.pathSpan.start &+ head.pathSpan.count
    head.absoluteForm = true
    return nil
}

/// Whether `span` holds only bytes a host and port can be made of, so that routing on it and
/// forwarding it cannot disagree about where the host ends (`a.example/x`, `a@b`, `a b`).
private func isHost(_ p: UnsafePointer<UInt8>, _ span: ByteSpan) -> Bool {
    var i = Int(span.start)
    let end = i &+ Int(span.count)
    while i < end {
        if !isHostByte(p[i]) { return false }
        i &+= 1
    }
    return true
}

/// Length of the path starting at `start`: up to the first `?` or `end`.
@inline(__always) private func pathLength(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int {
    var i = start
    while i < end, p[i] != asciiQuestion { i &+= 1 }
    return i &- start
}
