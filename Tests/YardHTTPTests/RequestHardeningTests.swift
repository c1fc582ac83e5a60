// What the parser tells the proxy so a client cannot steer the backend: repeated
// Content-Length, h2c upgrades, absolute-form targets, fields that must not be trailers, and
// the path normalization rule. Fed at every split point where the input is a message.

import Testing
import YardHTTP
import YardIO

@Suite struct RequestHardeningTests {
    // MARK: Content-Length

    @Test func identicalContentLengthFieldsAreOneLengthToBeForwardedOnce() {
        let r = parseRequestAtEverySplit("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
        #expect(r.status == .complete)
        #expect(r.head.framing == .contentLength(5))
        #expect(r.head.contentLengthNeedsRewrite)
    }

    @Test func aContentLengthListOfIdenticalValuesIsOneLengthToBeForwardedOnce() {
        let r = parseRequestAtEverySplit("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello")
        #expect(r.head.framing == .contentLength(5))
        #expect(r.head.contentLengthNeedsRewrite)
    }

    @Test func aSingleContentLengthIsForwardedAsSent() {
        let r = parseRequestAtEverySplit("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        #expect(!r.head.contentLengthNeedsRewrite)
    }

    @Test func differingContentLengthsAreRefused() {
        let r = parseRequest("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello")
        #expect(r.status == .invalid(HTTPParseError(status: 400, reason: "conflicting Content-Length values")))
    }

    // MARK: Upgrade

    @Test func h2cIsNeverAnUpgradeAndHTTP2SettingsIsHopByHop() {
        let r = parseRequestAtEverySplit(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        #expect(r.status == .complete)
        #expect(!r.head.upgrade)
        #expect(r.head.upgradeListsH2C)
        #expect(r.field("http2-settings")?.kind == .http2Settings)
        #expect(r.field("http2-settings")?.hopByHop == true)
        #expect(r.field("upgrade")?.hopByHop == true)
    }

    @Test func aWebSocketUpgradeListingH2cStaysAWebSocketUpgrade() {
        let r = parseRequestAtEverySplit("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: H2C, websocket\r\n\r\n")
        #expect(r.head.upgrade)
        #expect(r.head.upgradeListsH2C)
    }

    @Test func upgradeListsAreRewrittenWithoutH2c() {
        #expect(upgradeWithoutH2C("h2c , websocket,foo/2") == "Upgrade: websocket, foo/2\r\n")
        #expect(upgradeWithoutH2C("H2C") == "")
    }

    // MARK: Absolute form

    @Test func absoluteFormTargetsAreMarkedWithTheirQueryAfterThePath() {
        let r = parseRequestAtEverySplit("GET http://a.example/x/y?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n")
        #expect(r.head.absoluteForm)
        #expect(r.text(r.head.hostSpan) == "a.example")
        #expect(r.text(r.head.pathSpan) == "/x/y")
        #expect(r.text(ByteSpan(start: r.head.queryStart, count: 4)) == "?q=1")
    }

    @Test func originFormTargetsAreNotAbsolute() {
        let r = parseRequestAtEverySplit("GET /x?q HTTP/1.1\r\nHost: b.example\r\n\r\n")
        #expect(!r.head.absoluteForm)
        #expect(r.text(ByteSpan(start: r.head.queryStart, count: 2)) == "?q")
    }

    // MARK: Trailers

    static let forbiddenTrailers = ["Content-Length", "transfer-encoding", "HOST", "Authorization", "Content-Type",
                                    "Connection", "X-Forwarded-For", "Cookie", "If-Unmodified-Since", "Proxy-Authorization"]

    @Test(arguments: forbiddenTrailers)
    func requestTrailersThatFrameRouteOrAuthenticateAreRefusedAtEverySplit(_ name: String) {
        let outcome = decodeChunkedAtEverySplit("5\r\nhello\r\n0\r\nX-Ok: 1\r\n\(name): 5\r\n\r\n", request: true)
        #expect(outcome == .invalid(HTTPParseError(status: 400, reason: "field not allowed in a trailer section")))
    }

    @Test func ordinaryRequestTrailersPass() {
        let text = "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nContent-Lengthy: 1\r\ngrpc-status: 0\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(text, request: true) == .done(end: text.utf8.count))
    }

    @Test func responseTrailersAreNotFiltered() {
        let text = "0\r\nContent-Type: x\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(text) == .done(end: text.utf8.count))
    }

    // MARK: Paths

    static let normalizedPaths: [(String, String)] = [
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E./b", "/b"),
        ("/public/../admin", "/admin"),
        ("/public/..%2fadmin", "!"),
        ("//x", "/x"),
        ("/a//b///c", "/a/b/c"),
        ("/..", "/"),
        ("/../../x", "/x"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a/.b", "/a/.b"),
        ("/%61dmin", "/admin"),
        ("/a%7Eb", "/a~b"),
        ("/a%20b", "/a%20b"),
        ("/a/%2f..", "!"),
        ("/a/%2F", "!"),
        ("/a%5cb", "!"),
        ("/a\\b", "!"),
        ("/a%00", "!"),
        ("/a%zz", "!"),
        ("/a%4", "!"),
        ("/plain/path", "/plain/path"),
        ("/", "/"),
    ]

    @Test(arguments: normalizedPaths)
    func pathsAreNormalizedBeforeRouting(_ input: String, _ expected: String) {
        var bytes = Array(input.utf8)
        let outcome = bytes.withUnsafeMutableBufferPointer { normalizeRequestPath($0.baseAddress!, start: 0, count: $0.count) }
        switch outcome {
        case .unchanged:
            #expect(input == expected)
        case .rewritten(let count):
            #expect(String(decoding: bytes[0..<count], as: UTF8.self) == expected)
            #expect(count < input.utf8.count)
        case .invalid(let error):
            #expect(expected == "!", "refused: \(error)")
            #expect(error.status == 400)
        }
    }

    @Test func normalizingLeavesBytesAroundThePathAlone() {
        var bytes = Array("GET /a/../b?x=/../ HTTP/1.1".utf8)
        let outcome = bytes.withUnsafeMutableBufferPointer { normalizeRequestPath($0.baseAddress!, start: 4, count: 7) }
        #expect(outcome == .rewritten(count: 2))
        #expect(String(decoding: bytes[4..<6], as: UTF8.self) == "/b")
        #expect(String(decoding: bytes[11...], as: UTF8.self) == "?x=/../ HTTP/1.1")
    }

    @Test func normalizingAnyPathNeverTrapsOnlyShortensAndIsIdempotent() {
        // Paths from the bytes that matter to the rule, seeded so a failure reproduces.
        let alphabet = Array("/./../%2e%2E%2f%5c%41%zz%4%00a\\b?".utf8)
        var state: UInt64 = 0x5eed
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for _ in 0..<20_000 {
            var path: [UInt8] = [UInt8(ascii: "/")]
            for _ in 0..<(next() % 24) { path.append(alphabet[next() % alphabet.count]) }
            let original = path
            let outcome = path.withUnsafeMutableBufferPointer { normalizeRequestPath($0.baseAddress!, start: 0, count: $0.count) }
            guard case .rewritten(let count) = outcome else {
                if case .unchanged = outcome { #expect(path == original) }
                continue
            }
            #expect(count > 0 && count < original.count, "\(String(decoding: original, as: UTF8.self))")
            let normal = Array(path[0..<count])
            let text = String(decoding: normal, as: UTF8.self)
            #expect(normal.first == UInt8(ascii: "/"))
            #expect(!text.contains("//") && !text.contains("/./") && !text.contains("/../") && !text.hasSuffix("/.") && !text.hasSuffix("/.."),
                    "\(String(decoding: original, as: UTF8.self)) became \(text)")
            var again = normal
            let second = again.withUnsafeMutableBufferPointer { normalizeRequestPath($0.baseAddress!, start: 0, count: $0.count) }
            #expect(second == .unchanged, "\(text) normalized again: \(second)")
        }
    }
}

/// What `appendUpgradeWithoutH2C` writes for an Upgrade value.
func upgradeWithoutH2C(_ value: String) -> String {
    var buffer = ByteBuffer(capacity: 256)
    defer { buffer.deallocate() }
    Array(value.utf8).withUnsafeBytes { appendUpgradeWithoutH2C($0, into: &buffer) }
    return String(decoding: buffer.readable, as: UTF8.self)
}
