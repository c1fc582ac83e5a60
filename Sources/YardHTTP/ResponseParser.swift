// The strict HTTP/1.1 response head parser (RFC 9112), in place and allocation-free.
//
// The same field rules as requests: an upstream that frames a response ambiguously could make
// the proxy forward part of one response as the start of the next.

// MARK: Entry point

/// Parses a response head from `buffer` (the bytes received so far from the upstream, starting
/// at the head's first byte; body bytes after the head are left alone).
///
/// - `requestMethod`: the method of the request this answers; HEAD responses have no body.
/// - `scanFrom`: opaque resume state held by the caller, 0 for a new head (also for the final
///   head after a 1xx), passed back unchanged on the next call.
/// - `fields`: storage for at least `limits.maxHeaders` fields; filled on `.complete`.
/// - `head`: written only on `.complete`.
///
/// Every error has status 502, the answer the proxy gives its client. Framing follows RFC 9112
/// §6.3: HEAD, 1xx, 204 and 304 have none (101, and 2xx to CONNECT, also clear `keepAlive`: the
/// connection becomes a tunnel);
/// Transfer-Encoding ending in `chunked` is `.chunked`; Transfer-Encoding not ending in it is
/// `.untilClose`; then Content-Length; otherwise `.untilClose`. Transfer-Encoding with
/// Content-Length, `chunked` twice, and Transfer-Encoding in HTTP/1.0 are refused as faulty
/// framing rather than guessed at.
///
/// Threading: a pure function of its arguments; call it from the connection's own event loop.
public func parseResponseHead(
    _ buffer: UnsafeRawBufferPointer, limits: HTTPLimits, requestMethod: HTTPMethod,
    head: inout ResponseHead, fields: UnsafeMutablePointer<HeaderField>, scanFrom: inout Int
) -> ParseStatus {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return .incomplete }
    let p = base.assumingMemoryBound(to: UInt8.self)
    let policy = HeadScanPolicy(
        maxStartLine: limits.maxStartLine, maxHeadBytes: limits.maxHeadBytes, maxLeadingEmptyLines: 0,
        startLineTooLong: HTTPParseError(status: 502, reason: "status line too long")
    )
    switch scanHead(p, count: buffer.count, policy: policy, state: &scanFrom) {
    case .incomplete:
        return .incomplete
    case .invalid(let error):
        return .invalid(HTTPParseError(status: 502, reason: error.reason))
    case .complete(let boundary):
        var result = ResponseHead()
        if let error = parseResponse(p, boundary, limits, requestMethod, fields, &result) {
            return .invalid(HTTPParseError(status: 502, reason: error.reason))
        }
        head = result
        return .complete
    }
}

// MARK: Status line and semantics

private func parseResponse(
    _ p: UnsafePointer<UInt8>, _ boundary: HeadBoundary, _ limits: HTTPLimits, _ requestMethod: HTTPMethod,
    _ fields: UnsafeMutablePointer<HeaderField>, _ head: inout ResponseHead
) -> HTTPParseError? {
    if let error = parseStatusLine(p, boundary.startLineStart, boundary.startLineEnd, &head) { return error }
    var facts = FieldFacts()
    if let error = parseFieldLines(
        p, from: boundary.startLineEnd &+ 2, headLength: boundary.headLength,
        maxHeaders: limits.maxHeaders, fields: fields, facts: &facts
    ) { return error }
    return applyResponseSemantics(facts, headLength: boundary.headLength, requestMethod, &head)
}

/// Completes a response head the caller wrote itself into `buffer` as an HTTP/1.1 head (status
/// line ending at `statusLineEnd`, its CR; field lines; the blank line ending at `headLength`),
/// with the spans of its `fieldCount` fields already in `fields`. The fields come from a source
/// that checked their bytes (an HTTP/2 header list, see `noteLaidOutFields`), so they are not
/// scanned again; the status line is parsed, and framing and keep-alive are decided, exactly as
/// `parseResponseHead` decides them. Errors have status 502, as the parser's.
///
/// The HTTP/2 upstream path: a response head costs one pass to lay out instead of a layout, a
/// scan and a parse.
public func completeLaidOutResponseHead(
    _ buffer: UnsafeRawBufferPointer, statusLineEnd: Int, headLength: Int, fieldCount: Int, requestMethod: HTTPMethod,
    head: inout ResponseHead, fields: UnsafeMutablePointer<HeaderField>
) -> HTTPParseError? {
    guard let base = buffer.baseAddress, headLength <= buffer.count, statusLineEnd < headLength else {
        return HTTPParseError(status: 502, reason: "malformed response head")
    }
    let p = base.assumingMemoryBound(to: UInt8.self)
    var result = ResponseHead()
    if let error = parseStatusLine(p, 0, statusLineEnd, &result) { return error }
    var facts = FieldFacts()
    if let error = noteLaidOutFields(p, fields: fields, count: fieldCount, facts: &facts) {
        return HTTPParseError(status: 502, reason: error.reason)
    }
    if let error = applyResponseSemantics(facts, headLength: headLength, requestMethod, &result) { return error }
    head = result
    return nil
}

/// Framing and keep-alive, from the status line in `head` and the fields' facts.
private func applyResponseSemantics(
    _ facts: FieldFacts, headLength: Int, _ requestMethod: HTTPMethod, _ head: inout ResponseHead
) -> HTTPParseError? {
    head.headLength = headLength
    head.headerCount = facts.count
    let http11 = head.versionMinor == 1

    if facts.hasTransferEncoding {
        if facts.contentLength >= 0 { return HTTPParseError(status: 502, reason: "both Transfer-Encoding and Content-Length") }
        if !http11 { return HTTPParseError(status: 502, reason: "Transfer-Encoding in an HTTP/1.0 response") }
        if facts.chunkedCount > 1 { return HTTPParseError(status: 502, reason: "chunked applied more than once") }
    }
    head.keepAlive = http11 ? !facts.connectionClose : facts.connectionKeepAlive && !facts.connectionClose
    head.contentLength = facts.contentLength
    head.contentLengthNeedsRewrite = facts.contentLengthFields > 1 || facts.contentLengthList

    let status = head.status
    if requestMethod == .head || status < 200 || status == 204 || status == 304 {
        head.framing = .none
        if status == 101 { head.keepAlive = false }
    } else if requestMethod == .connect, status < 300 {
        // A 2xx to CONNECT turns the connection into a tunnel right after the head.
        head.framing = .none
        head.keepAlive = false
    } else if facts.hasTransferEncoding {
        head.framing = facts.chunkedIsFinal ? .chunked : .untilClose
    } else if facts.contentLength >= 0 {
        head.framing = .contentLength(facts.contentLength)
    } else {
        head.framing = .untilClose
    }
    if head.framing == .untilClose { head.keepAlive = false }
    return nil
}

/// `HTTP-version SP 3DIGIT [SP reason-phrase]` in `p[start ..< end]` (end is the CR). The reason
/// and the space before it may be missing, a leniency that costs no ambiguity.
private func parseStatusLine(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ head: inout ResponseHead) -> HTTPParseError? {
    guard end &- start >= 12, p[start &+ 8] == asciiSP else {
        return HTTPParseError(status: 502, reason: "malformed status line")
    }
    switch parseVersion(p, start, start &+ 8) {
    case 0: head.versionMinor = 0
    case 1: head.versionMinor = 1
    case -2: return HTTPParseError(status: 502, reason: "HTTP version not supported")
    default: return HTTPParseError(status: 502, reason: "malformed status line")
    }
    let d0 = p[start &+ 9], d1 = p[start &+ 10], d2 = p[start &+ 11]
    guard isDigit(d0), isDigit(d1), isDigit(d2) else { return HTTPParseError(status: 502, reason: "malformed status code") }
    let status = Int(d0 &- 0x30) * 100 + Int(d1 &- 0x30) * 10 + Int(d2 &- 0x30)
    guard status >= 100, status <= 599 else { return HTTPParseError(status: 502, reason: "status code out of range") }
    head.status = status

    var i = start &+ 12
    if i < end {
        guard p[i] == asciiSP else { return HTTPParseError(status: 502, reason: "malformed status code") }
        i &+= 1
        while i < end {
            let b = p[i]
            guard isVisibleOrObsText(b) || isWhitespace(b) else {
                return HTTPParseError(status: 502, reason: b == asciiCR ? "bare CR in head" : "control character in reason phrase")
            }
            i &+= 1
        }
    }
    return nil
}
