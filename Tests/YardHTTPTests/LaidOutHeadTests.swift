// A head laid out by its caller (the HTTP/2 path: spans recorded as the text is written,
// no scan and no parse of the fields) must mean exactly what the parser makes of the same
// text: the same RequestHead, the same fields with the same kinds, the same refusals.

import Testing
import YardBalancing
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

/// Random heads of the kind an HTTP/2 header list can carry (lowercase names, values without
/// control bytes or surrounding whitespace, as nghttp2 guarantees), special fields with good
/// and bad values among them: laid out, each must mean exactly what the parser makes of the
/// same text — the same head and fields, or the same refusal. Seeded, so a failure repeats.
@Suite struct LaidOutHeadEquivalence {
    static let special: [(String, [String])] = [
        ("content-length", ["0", "5", "12", "5, 5", "5,6", "x", "", "007", "99999999999999999999"]),
        ("transfer-encoding", ["chunked", "gzip, chunked", "chunked, chunked", "gzip", "identity", "chunked, gzip"]),
        ("connection", ["close", "keep-alive", "upgrade", "x-a", "close, x-a", "bad value", "Keep-Alive"]),
        ("upgrade", ["websocket", "h2c", "h2c, websocket"]),
        ("te", ["trailers", "gzip"]),
        ("keep-alive", ["timeout=5"]),
        ("expect", ["100-continue", "nothing"]),
        ("host", ["shop.test", "a b", "[::1]:80", ""]),
    ]
    static let ordinary = ["content-type", "set-cookie", "x-a", "cache-control", "x-trace"]
    static let ordinaryValues = ["text/plain", "a=1; Path=/", "v", "x y\tz", "", "no-cache, private", "\u{7e}~!#"]

    static func fields(_ random: inout SplitMix64, host: Bool) -> [(String, String)] {
        var fields: [(String, String)] = host ? [("host", "shop.test")] : []
        for _ in 0 ..< Int.random(in: 0 ..< 8, using: &random) {
            if Bool.random(using: &random), let (name, values) = special.randomElement(using: &random),
               let value = values.randomElement(using: &random) {
                fields.append((name, value))
            } else if let name = ordinary.randomElement(using: &random), let value = ordinaryValues.randomElement(using: &random) {
                fields.append((name, value))
            }
        }
        fields.shuffle(using: &random)
        return fields
    }

    /// Lays `fields` out after `firstLine` and parses the same text: the laid-out answer must
    /// be the parser's. Returns whether the parser refused the head.
    static func check<Head: Equatable>(
        _ firstLine: String, _ fields: [(String, String)], round: Int,
        complete: (UnsafeRawBufferPointer, Int, Int, UnsafeMutablePointer<HeaderField>, inout Head) -> HTTPParseError?,
        parse: (UnsafeRawBufferPointer, UnsafeMutablePointer<HeaderField>, inout Head, inout Int) -> ParseStatus,
        headerCount: (Head) -> Int, empty: Head
    ) -> Bool {
        var laidHead = empty
        let (error, laidFields) = layOut(firstLine, fields) { text, lineEnd, count, storage in
            complete(text, lineEnd, count, storage, &laidHead)
        }
        let text = Array((firstLine + "\r\n" + fields.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n").utf8)
        let storage = UnsafeMutablePointer<HeaderField>.allocate(capacity: 100)
        defer { storage.deallocate() }
        storage.initialize(repeating: .empty, count: 100)
        var parsedHead = empty
        var scanFrom = 0
        switch text.withUnsafeBytes({ parse($0, storage, &parsedHead, &scanFrom) }) {
        case .complete:
            #expect(error == nil, "round \(round): \(firstLine) \(fields) laid out refused: \(String(describing: error))")
            #expect(laidHead == parsedHead, "round \(round): \(firstLine) \(fields)")
            #expect(laidFields == (0 ..< headerCount(parsedHead)).map { storage[$0] }, "round \(round): \(firstLine) \(fields)")
            return false
        case .invalid(let parseError):
            #expect(error == parseError, "round \(round): \(firstLine) \(fields)")
            return true
        case .incomplete:
            Issue.record("round \(round): the parser wanted more of a whole head")
            return false
        }
    }

    @Test func randomResponseHeadsMeanWhatTheParserMakesOfThem() {
        var random = SplitMix64(seed: 0x5EED_0001)
        var refused = 0
        for round in 0 ..< 3_000 {
            let status = ["100", "101", "103", "200", "204", "206", "304", "404", "500", "599"].randomElement(using: &random) ?? "200"
            let method = [HTTPMethod.get, .head, .post, .connect].randomElement(using: &random) ?? .get
            let fields = Self.fields(&random, host: false)
            if Self.check("HTTP/1.1 \(status) ", fields, round: round, complete: { text, lineEnd, count, storage, head in
                completeLaidOutResponseHead(text, statusLineEnd: lineEnd, headLength: text.count, fieldCount: count,
                                            requestMethod: method, head: &head, fields: storage)
            }, parse: { text, storage, head, scanFrom in
                parseResponseHead(text, limits: HTTPLimits(), requestMethod: method, head: &head, fields: storage, scanFrom: &scanFrom)
            }, headerCount: { $0.headerCount }, empty: ResponseHead()) {
                refused += 1
            }
        }
        // The mix holds refusals as well as heads that pass.
        #expect(refused > 100 && refused < 2_900, "\(refused) refused")
    }

    @Test func randomRequestHeadsMeanWhatTheParserMakesOfThem() {
        var random = SplitMix64(seed: 0x5EED_0002)
        var refused = 0
        for round in 0 ..< 3_000 {
            let line = ["GET / HTTP/1.1", "POST /upload?x=1 HTTP/1.1", "HEAD /h HTTP/1.1", "PUT /a/b HTTP/1.1",
                        "OPTIONS * HTTP/1.1", "DELETE /%41 HTTP/1.1"].randomElement(using: &random) ?? "GET / HTTP/1.1"
            let fields = Self.fields(&random, host: Int.random(in: 0 ..< 4, using: &random) != 0)
            if Self.check(line, fields, round: round, complete: { text, lineEnd, count, storage, head in
                completeLaidOutRequestHead(text, requestLineEnd: lineEnd, headLength: text.count, fieldCount: count,
                                           head: &head, fields: storage)
            }, parse: { text, storage, head, scanFrom in
                parseRequestHead(text, limits: HTTPLimits(), head: &head, fields: storage, scanFrom: &scanFrom)
            }, headerCount: { $0.headerCount }, empty: RequestHead()) {
                refused += 1
            }
        }
        #expect(refused > 100 && refused < 2_900, "\(refused) refused")
    }
}
