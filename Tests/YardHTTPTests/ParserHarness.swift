// Test harness: runs the parsers over byte arrays one-shot and at every split point, and reads
// spans back as text so expectations read like the messages they describe.

import Testing
import YardHTTP

// MARK: Results

/// The outcome of parsing a request head, with the fields copied out of the parser's storage.
struct RequestResult: Equatable {
    var status: ParseStatus
    var head: RequestHead
    var fields: [HeaderField]
    var bytes: [UInt8]

    func text(_ span: ByteSpan) -> String { spanText(span, bytes) }
    func field(_ name: String) -> HeaderField? { fields.first { spanText($0.name, bytes).lowercased() == name.lowercased() } }
    func value(_ name: String) -> String? { field(name).map { spanText($0.value, bytes) } }
}

/// The outcome of parsing a response head.
struct ResponseResult: Equatable {
    var status: ParseStatus
    var head: ResponseHead
    var fields: [HeaderField]
    var bytes: [UInt8]

    func field(_ name: String) -> HeaderField? { fields.first { spanText($0.name, bytes).lowercased() == name.lowercased() } }
}

func spanText(_ span: ByteSpan, _ bytes: [UInt8]) -> String {
    String(decoding: bytes[Int(span.start) ..< Int(span.start + span.count)], as: UTF8.self)
}

/// `text` as bytes, for fixtures written as string literals (`\r\n` spelled out).
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

// MARK: One-shot parsing

/// Parses `bytes[0 ..< prefix]` with the given resume state (a fresh one unless carried).
func parseRequest(_ bytes: [UInt8], prefix: Int? = nil, limits: HTTPLimits = HTTPLimits(), scanFrom: inout Int) -> RequestResult {
    let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
    fields.initialize(repeating: .empty, count: limits.maxHeaders)
    defer { fields.deallocate() }
    var head = RequestHead()
    let status = bytes.withUnsafeBytes { all in
        parseRequestHead(UnsafeRawBufferPointer(rebasing: all[0 ..< (prefix ?? all.count)]), limits: limits,
                         head: &head, fields: fields, scanFrom: &scanFrom)
    }
    let count = status == .complete ? head.headerCount : 0
    return RequestResult(status: status, head: head, fields: Array(UnsafeBufferPointer(start: fields, count: count)), bytes: bytes)
}

func parseRequest(_ text: String, limits: HTTPLimits = HTTPLimits()) -> RequestResult {
    var scanFrom = 0
    return parseRequest(bytes(text), limits: limits, scanFrom: &scanFrom)
}

func parseResponse(_ bytes: [UInt8], prefix: Int? = nil, method: HTTPMethod, limits: HTTPLimits = HTTPLimits(), scanFrom: inout Int) -> ResponseResult {
    let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
    fields.initialize(repeating: .empty, count: limits.maxHeaders)
    defer { fields.deallocate() }
    var head = ResponseHead()
    let status = bytes.withUnsafeBytes { all in
        parseResponseHead(UnsafeRawBufferPointer(rebasing: all[0 ..< (prefix ?? all.count)]), limits: limits,
                          requestMethod: method, head: &head, fields: fields, scanFrom: &scanFrom)
    }
    let count = status == .complete ? head.headerCount : 0
    return ResponseResult(status: status, head: head, fields: Array(UnsafeBufferPointer(start: fields, count: count)), bytes: bytes)
}

func parseResponse(_ text: String, method: HTTPMethod = .get, limits: HTTPLimits = HTTPLimits()) -> ResponseResult {
    var scanFrom = 0
    return parseResponse(bytes(text), method: method, limits: limits, scanFrom: &scanFrom)
}

// MARK: Every split point

/// Parses `text` as it would arrive in two reads split at every point, and byte by byte, with
/// `scanFrom` carried across calls; expects `.incomplete` until the head is whole (or the same
/// refusal as the one-shot parse, possibly earlier) and the one-shot result once it is.
/// Returns the one-shot result.
@discardableResult
func parseRequestAtEverySplit(_ text: String, limits: HTTPLimits = HTTPLimits(),
                              sourceLocation: SourceLocation = #_sourceLocation) -> RequestResult {
    let all = bytes(text)
    var fresh = 0
    let oneShot = parseRequest(all, limits: limits, scanFrom: &fresh)
    for split in 0 ... all.count {
        var scanFrom = 0
        let first = parseRequest(all, prefix: split, limits: limits, scanFrom: &scanFrom)
        let final = first.status == .incomplete ? parseRequest(all, limits: limits, scanFrom: &scanFrom) : first
        checkSplit(first.status, final, oneShot, split: split, headLength: oneShot.head.headLength, sourceLocation)
    }
    var scanFrom = 0
    var dripped = parseRequest(all, prefix: 0, limits: limits, scanFrom: &scanFrom)
    for end in 1 ... all.count where dripped.status == .incomplete {
        dripped = parseRequest(all, prefix: end, limits: limits, scanFrom: &scanFrom)
    }
    #expect(dripped == oneShot, "byte at a time", sourceLocation: sourceLocation)
    return oneShot
}

/// The response counterpart of `parseRequestAtEverySplit`.
@discardableResult
func parseResponseAtEverySplit(_ text: String, method: HTTPMethod = .get, limits: HTTPLimits = HTTPLimits(),
                               sourceLocation: SourceLocation = #_sourceLocation) -> ResponseResult {
    let all = bytes(text)
    var fresh = 0
    let oneShot = parseResponse(all, method: method, limits: limits, scanFrom: &fresh)
    for split in 0 ... all.count {
        var scanFrom = 0
        let first = parseResponse(all, prefix: split, method: method, limits: limits, scanFrom: &scanFrom)
        let final = first.status == .incomplete ? parseResponse(all, method: method, limits: limits, scanFrom: &scanFrom) : first
        checkSplit(first.status, final, oneShot, split: split, headLength: oneShot.head.headLength, sourceLocation)
    }
    var scanFrom = 0
    var dripped = parseResponse(all, prefix: 0, method: method, limits: limits, scanFrom: &scanFrom)
    for end in 1 ... all.count where dripped.status == .incomplete {
        dripped = parseResponse(all, prefix: end, method: method, limits: limits, scanFrom: &scanFrom)
    }
    #expect(dripped == oneShot, "byte at a time", sourceLocation: sourceLocation)
    return oneShot
}

private func checkSplit<R: Equatable>(_ first: ParseStatus, _ final: R, _ oneShot: R, split: Int, headLength: Int,
                                      _ sourceLocation: SourceLocation) {
    #expect(final == oneShot, "split at \(split)", sourceLocation: sourceLocation)
    // A complete head is never reported before its last byte has arrived.
    if first == .complete {
        #expect(split >= headLength, "complete early at \(split)", sourceLocation: sourceLocation)
    }
}

/// The refusal `status` has, or nil when it is not a refusal.
func refusedStatus(_ status: ParseStatus) -> Int? {
    if case .invalid(let error) = status { return error.status }
    return nil
}
