// Request heads that must parse, and what they mean: every fixture is also parsed at every
// split point and byte by byte, and must give the one-shot result.

import Testing
import YardHTTP

/// A typical browser navigation request, about 400 bytes (also the benchmark's input).
let browserRequest =
    "GET /articles/2024/switchyard-ingress?ref=home&utm_source=feed HTTP/1.1\r\n" +
    "Host: www.example.com\r\n" +
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
    "Accept-Language: en-US,en;q=0.5\r\n" +
    "Accept-Encoding: gzip, deflate, br\r\n" +
    "Connection: keep-alive\r\n" +
    "Cookie: session=3f2a9c1e7b; theme=dark\r\n" +
    "Upgrade-Insecure-Requests: 1\r\n" +
    "\r\n"

@Suite struct RequestParserTests {
    // MARK: Valid heads at every split point

    @Test func browserRequestParsesIdenticallyAtEverySplitPoint() {
        let r = parseRequestAtEverySplit(browserRequest)
        #expect(r.status == .complete)
        #expect(r.head.headLength == browserRequest.utf8.count)
        #expect(r.head.method == .get)
        #expect(r.text(r.head.methodSpan) == "GET")
        #expect(r.text(r.head.targetSpan) == "/articles/2024/switchyard-ingress?ref=home&utm_source=feed")
        #expect(r.text(r.head.pathSpan) == "/articles/2024/switchyard-ingress")
        #expect(r.text(r.head.hostSpan) == "www.example.com")
        #expect(r.head.versionMinor == 1)
        #expect(r.head.headerCount == 8)
        #expect(r.head.framing == .none)
        #expect(r.head.keepAlive)
        #expect(r.value("accept-encoding") == "gzip, deflate, br")
        #expect(r.field("Host")?.kind == .host)
    }

    @Test func postWithContentLengthIsFramedByLengthAndLeavesTheBodyAlone() {
        let r = parseRequestAtEverySplit("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world")
        #expect(r.status == .complete)
        #expect(r.head.method == .post)
        #expect(r.head.headLength == 54)
        #expect(r.head.framing == .contentLength(11))
        #expect(r.field("content-length")?.kind == .contentLength)
        #expect(r.field("content-length")?.hopByHop == false)
    }

    @Test func chunkedPostIsFramedChunked() {
        let r = parseRequestAtEverySplit("PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        #expect(r.head.method == .put)
        #expect(r.head.framing == .chunked)
        #expect(r.field("transfer-encoding")?.hopByHop == false)
    }

    @Test func transferEncodingListsSpreadOverFieldsCountInOrder() {
        let r = parseRequestAtEverySplit("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: ,CHUNKED ,\r\n\r\n")
        #expect(r.head.framing == .chunked)
    }

    @Test func zeroContentLengthMeansNoBody() {
        let r = parseRequestAtEverySplit("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        #expect(r.head.framing == .none)
    }

    @Test func repeatedIdenticalContentLengthsCountAsOne() {
        let r = parseRequestAtEverySplit("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n")
        #expect(r.head.framing == .contentLength(5))
    }

    @Test func largestContentLengthIsTwoToTheSixtySecond() {
        let r = parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387904\r\n\r\n")
        #expect(r.head.framing == .contentLength(1 << 62))
    }

    @Test func fieldValuesExcludeSurroundingWhitespaceButKeepInnerWhitespaceAndObsText() {
        let r = parseRequestAtEverySplit("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t a \t b \t\r\nX-Empty:\r\nX-Blank:   \r\nX-Obs: caf\u{E9}\r\n\r\n")
        #expect(r.status == .complete)
        #expect(r.value("host") == "a")
        #expect(r.value("x-a") == "a \t b")
        #expect(r.value("x-empty") == "")
        #expect(r.value("x-blank") == "")
        #expect(r.value("x-obs") == "caf\u{E9}")
    }

    @Test func leadingEmptyLinesBeforeTheRequestLineAreIgnored() {
        let r = parseRequestAtEverySplit("\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(r.status == .complete)
        #expect(r.text(r.head.methodSpan) == "GET")
        #expect(r.text(r.head.pathSpan) == "/a")
        #expect(r.head.headLength == 32)
    }

    @Test func headWithoutFieldsIsCompleteForHTTP10() {
        let r = parseRequestAtEverySplit("GET / HTTP/1.0\r\n\r\n")
        #expect(r.status == .complete)
        #expect(r.head.versionMinor == 0)
        #expect(r.head.headerCount == 0)
        #expect(r.head.hostSpan == .empty)
    }

    @Test func unknownMethodsAreTokensMappedToOther() {
        let r = parseRequestAtEverySplit("PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(r.head.method == .other)
        #expect(r.text(r.head.methodSpan) == "PROPFIND")
        let known: [(String, HTTPMethod)] = [("GET", .get), ("HEAD", .head), ("POST", .post), ("PUT", .put),
                                             ("DELETE", .delete), ("OPTIONS", .options), ("PATCH", .patch),
                                             ("TRACE", .trace), ("get", .other)]
        for (name, method) in known {
            #expect(parseRequest("\(name) / HTTP/1.1\r\nHost: a\r\n\r\n").head.method == method, "\(name)")
        }
    }

    // MARK: Request targets

    @Test func absoluteFormTargetGivesHostAndPathOverTheHostHeader() {
        let r = parseRequestAtEverySplit("GET http://Origin.example:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        #expect(r.text(r.head.hostSpan) == "Origin.example:8080")
        #expect(r.text(r.head.pathSpan) == "/p/q")
        #expect(r.text(r.head.targetSpan) == "http://Origin.example:8080/p/q?x=1")
    }

    @Test func absoluteFormWithoutPathHasAnEmptyPathMeaningSlash() {
        let r = parseRequestAtEverySplit("GET HTTPS://h.example?x HTTP/1.1\r\nHost: h.example\r\n\r\n")
        #expect(r.text(r.head.hostSpan) == "h.example")
        #expect(r.head.pathSpan.count == 0)
    }

    @Test func hostMayBeAnIPLiteralWithPort() {
        let r = parseRequestAtEverySplit("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n")
        #expect(r.text(r.head.hostSpan) == "[2001:db8::1]:8443")
    }

    @Test func asteriskFormIsForOptions() {
        let r = parseRequestAtEverySplit("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(r.head.method == .options)
        #expect(r.text(r.head.pathSpan) == "*")
    }

    @Test func authorityFormIsForConnectAndKeepsTheHostHeader() {
        let r = parseRequestAtEverySplit("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
        #expect(r.head.method == .connect)
        #expect(r.text(r.head.pathSpan) == "db.internal:5432")
        #expect(r.text(r.head.hostSpan) == "db.internal:5432")
    }

    // MARK: Header kinds and hop-by-hop

    @Test func specialFieldsAreRecognisedWhateverTheirCase() {
        let names: [(String, HeaderKind)] = [
            ("HOST", .host), ("content-LENGTH", .contentLength), ("Transfer-encoding", .transferEncoding),
            ("Connection", .connection), ("keep-alive", .keepAlive), ("Proxy-Connection", .proxyConnection),
            ("TE", .te), ("Trailer", .trailer), ("upgrade", .upgrade), ("Expect", .expect),
            ("X-Forwarded-For", .xForwardedFor), ("x-forwarded-proto", .xForwardedProto),
            ("X-FORWARDED-HOST", .xForwardedHost), ("Forwarded", .forwarded), ("Via", .via),
            ("Hosts", .other), ("X-Forwarded-Fox", .other), ("Content-Type", .other),
        ]
        for (name, kind) in names {
            let value = kind == .contentLength ? "1" : (kind == .transferEncoding ? "chunked" : "x")
            let request = "POST / HTTP/1.1\r\n" + (kind == .host ? "" : "Host: a\r\n") + "\(name): \(value)\r\n\r\n"
            let r = parseRequest(request)
            if kind == .contentLength || kind == .transferEncoding {
                #expect(r.status == .complete, "\(name)")
            }
            #expect(r.field(name)?.kind == kind, "\(name)")
        }
    }

    @Test func hopByHopFieldsAreMarkedIncludingThoseNamedByConnection() {
        let r = parseRequestAtEverySplit(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, x-secret ,, X-Other\r\nKeep-Alive: timeout=5\r\n" +
            "Proxy-Connection: close\r\nTE: trailers\r\nTrailer: X-T\r\nX-Secret: 1\r\nx-other: 2\r\nX-Kept: 3\r\n" +
            "Upgrade: h2c\r\n\r\n")
        for name in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "x-secret", "x-other", "upgrade"] {
            #expect(r.field(name)?.hopByHop == true, "\(name)")
        }
        #expect(r.field("x-kept")?.hopByHop == false)
        #expect(r.field("host")?.hopByHop == false)
    }

    @Test func connectionCannotStripFramingOrRoutingFields() {
        let r = parseRequestAtEverySplit(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: host, content-length, transfer-encoding\r\n\r\n")
        #expect(r.field("host")?.hopByHop == false)
        #expect(r.field("content-length")?.hopByHop == false)
        #expect(r.head.framing == .contentLength(3))
    }

    // MARK: Connection management

    @Test func http11StaysOpenUnlessConnectionClose() {
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r\n").head.keepAlive)
        #expect(!parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, CLOSE\r\n\r\n").head.keepAlive)
    }

    @Test func http10ClosesUnlessConnectionKeepAlive() {
        #expect(!parseRequest("GET / HTTP/1.0\r\n\r\n").head.keepAlive)
        #expect(parseRequest("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keepAlive)
        #expect(!parseRequest("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").head.keepAlive)
    }

    @Test func expectContinueIsRecognisedCaseInsensitivelyInHTTP11Only() {
        #expect(parseRequest("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").head.expectContinue)
        #expect(!parseRequest("PUT / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\n\r\n").head.expectContinue)
        #expect(parseRequest("PUT / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\n\r\n").status == .complete)
        #expect(!parseRequest("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").head.expectContinue)
    }

    @Test func upgradeNeedsBothTheUpgradeFieldAndTheConnectionOption() {
        #expect(parseRequest("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").head.upgrade)
        #expect(!parseRequest("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").head.upgrade)
        #expect(!parseRequest("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").head.upgrade)
        #expect(!parseRequest("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").head.upgrade)
    }

    // MARK: Incremental contract

    @Test func incompleteHeadsLeaveTheHeadUntouched() {
        var scanFrom = 0
        let r = parseRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\n"), scanFrom: &scanFrom)
        #expect(r.status == .incomplete)
        #expect(r.head == RequestHead())
    }

    @Test func parsingTheSameCompleteBytesAgainGivesTheSameHead() {
        var scanFrom = 0
        let all = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n")
        let first = parseRequest(all, scanFrom: &scanFrom)
        let again = parseRequest(all, scanFrom: &scanFrom)
        #expect(first.status == .complete)
        #expect(first.head.headLength == 27)
        #expect(again == first)
    }

    @Test func fieldStorageOfExactlyMaxHeadersIsEnough() {
        let limits = HTTPLimits(maxHeaders: 3)
        let r = parseRequestAtEverySplit("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits: limits)
        #expect(r.status == .complete)
        #expect(r.head.headerCount == 3)
    }

    @Test func limitsAreInclusive() {
        let line = "GET /" + String(repeating: "a", count: 20) + " HTTP/1.1"  // 34 bytes
        let head = line + "\r\nHost: a\r\n\r\n"                              // 47 bytes
        let r = parseRequestAtEverySplit(head, limits: HTTPLimits(maxStartLine: 34, maxHeadBytes: 47, maxHeaders: 1))
        #expect(r.status == .complete)
    }
}
