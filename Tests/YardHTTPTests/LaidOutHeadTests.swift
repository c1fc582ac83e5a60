// A head laid out by its caller (the HTTP/2 path: spans recorded as the text is written,
// no scan and no parse of the fields) must mean exactly what the parser makes of the same
// text: the same RequestHead, the same fields with the same kinds, the same refusals.

import Testing
import YardHTTP

/// Lays `fields` out after `firstLine` as the parser would read them, recording each field's
/// spans, and hands the text, the first line's end, the field count and the spans to
/// `complete`; returns its answer and the fields as it left them.
private func layOut(_ firstLine: String, _ fields: [(String, String)],
                    complete: (UnsafeRawBufferPointer, Int, Int, UnsafeMutablePointer<HeaderField>) -> HTTPParseError?)
    -> (HTTPParseError?, [HeaderField]) {
    var text: [UInt8] = Array(firstLine.utf8)
    let lineEnd = text.count
    text += Array("\r\n".utf8)
    var spans: [HeaderField] = []
    for (name, value) in fields {
        let nameStart = text.count
        text += Array("\(name): ".utf8)
        let valueStart = text.count
        text += Array(value.utf8) + Array("\r\n".utf8)
        spans.append(HeaderField(name: ByteSpan(start: nameStart, count: name.utf8.count),
                                 value: ByteSpan(start: valueStart, count: value.utf8.count), kind: .other, hopByHop: false))
    }
    text += Array("\r\n".utf8)
    let storage = UnsafeMutablePointer<HeaderField>.allocate(capacity: max(spans.count, 1))
    defer { storage.deallocate() }
    for (i, field) in spans.enumerated() { (storage + i).initialize(to: field) }
    let error = text.withUnsafeBytes { complete($0, lineEnd, spans.count, storage) }
    return (error, (0 ..< spans.count).map { storage[$0] })
}

@Suite struct LaidOutHeadTests {
    /// Lays `fields` out after `requestLine` as `parseRequestHead` would read them, recording
    /// each field's spans, and completes the head from those spans.
    private func laidOut(_ requestLine: String, _ fields: [(String, String)]) -> (HTTPParseError?, RequestHead, [HeaderField]) {
        var head = RequestHead()
        let (error, spans) = layOut(requestLine, fields) { text, lineEnd, count, storage in
            completeLaidOutRequestHead(text, requestLineEnd: lineEnd, headLength: text.count, fieldCount: count,
                                       head: &head, fields: storage)
        }
        return (error, head, spans)
    }

    private func parsed(_ requestLine: String, _ fields: [(String, String)]) -> (ParseStatus, RequestHead, [HeaderField]) {
        let text = Array((requestLine + "\r\n" + fields.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n").utf8)
        let storage = UnsafeMutablePointer<HeaderField>.allocate(capacity: 100)
        defer { storage.deallocate() }
        storage.initialize(repeating: .empty, count: 100)
        var head = RequestHead()
        var scanFrom = 0
        let status = text.withUnsafeBytes { parseRequestHead($0, limits: HTTPLimits(), head: &head, fields: storage, scanFrom: &scanFrom) }
        return (status, head, (0 ..< head.headerCount).map { storage[$0] })
    }

    static let cases: [(String, [(String, String)])] = [
        ("GET /a/b?x=1 HTTP/1.1", [("Host", "shop.example.com"), ("user-agent", "h2load"), ("accept", "*/*")]),
        ("POST /upload HTTP/1.1", [("Host", "h"), ("content-length", "12"), ("content-type", "text/plain")]),
        ("POST /stream HTTP/1.1", [("Host", "h"), ("Transfer-Encoding", "chunked")]),
        ("PUT /x HTTP/1.1", [("Host", "h"), ("expect", "100-continue"), ("content-length", "5")]),
        ("GET / HTTP/1.1", [("Host", "h"), ("cookie", "a=1; b=2"), ("x-forwarded-for", "1.2.3.4"), ("te", "trailers")]),
        ("HEAD /h HTTP/1.1", [("Host", "[::1]:8443")]),
        ("OPTIONS * HTTP/1.1", [("Host", "h")]),
    ]

    @Test(arguments: 0 ..< cases.count)
    func aLaidOutHeadMeansWhatTheParserMakesOfTheSameText(index: Int) {
        let (line, fields) = Self.cases[index]
        let (error, head, laid) = laidOut(line, fields)
        let (status, expected, parsedFields) = parsed(line, fields)
        #expect(status == .complete)
        #expect(error == nil)
        #expect(head == expected)
        #expect(laid == parsedFields)
    }

    @Test func refusalsAreTheParsers() {
        // Framing conflicts, a broken Content-Length, a bad Host, a missing Host, a bad target.
        #expect(laidOut("POST / HTTP/1.1", [("Host", "h"), ("content-length", "5"), ("content-length", "6")]).0?.status == 400)
        #expect(laidOut("POST / HTTP/1.1", [("Host", "h"), ("content-length", "5x")]).0?.status == 400)
        #expect(laidOut("POST / HTTP/1.1", [("Host", "h"), ("content-length", "5"), ("Transfer-Encoding", "chunked")]).0?.status == 400)
        #expect(laidOut("GET / HTTP/1.1", [("Host", "a b")]).0?.status == 400)
        #expect(laidOut("GET / HTTP/1.1", [("user-agent", "x")]).0?.status == 400)
        #expect(laidOut("GET /a b HTTP/1.1", [("Host", "h")]).0?.status == 400)
        #expect(laidOut("GET /\u{7f} HTTP/1.1", [("Host", "h")]).0?.status == 400)
        #expect(laidOut("GET / HTTP/1.1", [("Host", "h"), ("Host", "h")]).0?.status == 400)
    }
}

/// The same contract for response heads (the HTTP/2 upstream path: `completeLaidOutResponseHead`).
@Suite struct LaidOutResponseHeadTests {
    private func laidOut(_ statusLine: String, _ fields: [(String, String)], method: HTTPMethod = .get)
        -> (HTTPParseError?, ResponseHead, [HeaderField]) {
        var head = ResponseHead()
        let (error, spans) = layOut(statusLine, fields) { text, lineEnd, count, storage in
            completeLaidOutResponseHead(text, statusLineEnd: lineEnd, headLength: text.count, fieldCount: count,
                                        requestMethod: method, head: &head, fields: storage)
        }
        return (error, head, spans)
    }

    private func parsed(_ statusLine: String, _ fields: [(String, String)], method: HTTPMethod = .get)
        -> (ParseStatus, ResponseHead, [HeaderField]) {
        let text = Array((statusLine + "\r\n" + fields.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n").utf8)
        let storage = UnsafeMutablePointer<HeaderField>.allocate(capacity: 100)
        defer { storage.deallocate() }
        storage.initialize(repeating: .empty, count: 100)
        var head = ResponseHead()
        var scanFrom = 0
        let status = text.withUnsafeBytes {
            parseResponseHead($0, limits: HTTPLimits(), requestMethod: method, head: &head, fields: storage, scanFrom: &scanFrom)
        }
        return (status, head, (0 ..< head.headerCount).map { storage[$0] })
    }

    /// As the HTTP/2 upstream path writes them: `HTTP/1.1 <status> ` and lowercase names.
    static let cases: [(String, [(String, String)], HTTPMethod)] = [
        ("HTTP/1.1 200 ", [("content-type", "text/plain"), ("content-length", "12")], .get),
        ("HTTP/1.1 200 ", [("content-type", "application/grpc"), ("transfer-encoding", "chunked")], .post),
        ("HTTP/1.1 204 ", [("server", "h2o")], .delete),
        ("HTTP/1.1 304 ", [("etag", "\"x\""), ("content-length", "0")], .get),
        ("HTTP/1.1 200 ", [("content-length", "5")], .head),
        ("HTTP/1.1 103 ", [("link", "</a.css>; rel=preload")], .get),
        ("HTTP/1.1 100 ", [], .put),
        ("HTTP/1.1 404 ", [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("content-length", "0")], .get),
        ("HTTP/1.1 200 ", [("connection", "close"), ("content-length", "1")], .get),
        ("HTTP/1.1 502 ", [("content-length", "7"), ("content-length", "7")], .get),
    ]

    @Test(arguments: 0 ..< cases.count)
    func aLaidOutResponseHeadMeansWhatTheParserMakesOfTheSameText(index: Int) {
        let (line, fields, method) = Self.cases[index]
        let (error, head, laid) = laidOut(line, fields, method: method)
        let (status, expected, parsedFields) = parsed(line, fields, method: method)
        #expect(status == .complete)
        #expect(error == nil)
        #expect(head == expected)
        #expect(laid == parsedFields)
    }

    @Test func refusalsAreTheParsers() {
        // Conflicting framing, a broken Content-Length, a status out of range: 502, as parsed.
        for (line, fields) in [("HTTP/1.1 200 ", [("content-length", "5"), ("content-length", "6")]),
                               ("HTTP/1.1 200 ", [("content-length", "x")]),
                               ("HTTP/1.1 200 ", [("content-length", "5"), ("transfer-encoding", "chunked")]),
                               ("HTTP/1.1 200 ", [("transfer-encoding", "chunked, chunked")]),
                               ("HTTP/1.1 700 ", []), ("HTTP/1.1 2x0 ", [])] {
            let error = laidOut(line, fields).0
            #expect(error?.status == 502)
            guard case .invalid(let parsedError) = parsed(line, fields).0 else {
                Issue.record("the parser took \(line) \(fields)")
                continue
            }
            #expect(error == parsedError)
        }
    }
}
