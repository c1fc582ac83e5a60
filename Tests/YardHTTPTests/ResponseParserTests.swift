// Response heads: framing by method and status, connection reuse, and refusals (all 502).

import Testing
import YardHTTP

@Suite struct ResponseParserTests {
    // MARK: Framing

    @Test func contentLengthFramesTheBody() {
        let r = parseResponseAtEverySplit("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
        #expect(r.status == .complete)
        #expect(r.head.status == 200)
        #expect(r.head.headLength == 64)
        #expect(r.head.headerCount == 2)
        #expect(r.head.framing == .contentLength(5))
        #expect(r.head.keepAlive)
        #expect(!r.head.isInterim)
    }

    @Test func zeroContentLengthIsAnEmptyBodyOnAReusableConnection() {
        let r = parseResponseAtEverySplit("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(r.head.framing == .contentLength(0))
        #expect(r.head.keepAlive)
    }

    @Test func finalChunkedFramesTheBodyChunked() {
        let r = parseResponseAtEverySplit("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        #expect(r.head.framing == .chunked)
        #expect(r.head.keepAlive)
    }

    @Test func transferEncodingNotEndingInChunkedReadsUntilClose() {
        let r = parseResponseAtEverySplit("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
        #expect(r.head.framing == .untilClose)
        #expect(!r.head.keepAlive)
    }

    @Test func noLengthReadsUntilCloseAndCannotBeReused() {
        let r = parseResponseAtEverySplit("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n")
        #expect(r.head.framing == .untilClose)
        #expect(!r.head.keepAlive)
    }

    @Test func headResponsesHaveNoBodyWhateverTheirFields() {
        let r = parseResponseAtEverySplit("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", method: .head)
        #expect(r.head.framing == .none)
        #expect(r.head.keepAlive)
        let chunked = parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", method: .head)
        #expect(chunked.head.framing == .none)
    }

    @Test func noContentAndNotModifiedHaveNoBody() {
        #expect(parseResponseAtEverySplit("HTTP/1.1 204 No Content\r\n\r\n").head.framing == .none)
        #expect(parseResponseAtEverySplit("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").head.framing == .none)
        #expect(parseResponse("HTTP/1.1 204 No Content\r\n\r\n").head.keepAlive)
    }

    @Test func interimResponsesHaveNoBodyAndAreInterim() {
        let r = parseResponseAtEverySplit("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        #expect(r.head.status == 100)
        #expect(r.head.framing == .none)
        #expect(r.head.isInterim)
        #expect(r.head.headLength == 25)
        #expect(parseResponse("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n").head.isInterim)
    }

    @Test func switchingProtocolsHasNoBodyAndEndsHTTP() {
        let r = parseResponseAtEverySplit("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(r.head.framing == .none)
        #expect(!r.head.keepAlive)
        #expect(!r.head.isInterim)
        #expect(r.field("upgrade")?.hopByHop == true)
    }

    @Test func successfulConnectTurnsIntoATunnel() {
        let r = parseResponse("HTTP/1.1 200 Connection Established\r\n\r\n", method: .connect)
        #expect(r.head.framing == .none)
        #expect(!r.head.keepAlive)
        #expect(parseResponse("HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", method: .connect).head.framing == .contentLength(0))
    }

    // MARK: Connection reuse

    @Test func http11IsReusableUnlessConnectionClose() {
        #expect(!parseResponse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").head.keepAlive)
    }

    @Test func http10IsReusableOnlyWithKeepAliveAndALength() {
        let plain = parseResponseAtEverySplit("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n")
        #expect(plain.head.versionMinor == 0)
        #expect(!plain.head.keepAlive)
        #expect(parseResponse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n").head.keepAlive)
        let untilClose = parseResponse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")
        #expect(untilClose.head.framing == .untilClose)
        #expect(!untilClose.head.keepAlive)
    }

    // MARK: Status line

    @Test func reasonPhraseMayBeEmptyOrMissing() {
        #expect(parseResponseAtEverySplit("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").head.status == 200)
        #expect(parseResponse("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n").head.status == 404)
        #expect(parseResponse("HTTP/1.1 500 Internal \t Error \u{E9}\r\nContent-Length: 0\r\n\r\n").head.status == 500)
    }

    // MARK: Refusals

    static let refusals: [Refusal] = [
        Refusal("Transfer-Encoding with Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 502),
        Refusal("two different Content-Length values", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 502),
        Refusal("a Content-Length that is not a number", "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n", 502),
        Refusal("chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 502),
        Refusal("Transfer-Encoding in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
        Refusal("obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", 502),
        Refusal("whitespace before a colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", 502),
        Refusal("a bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 502),
        Refusal("a bare CR in the reason", "HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n", 502),
        Refusal("a NUL in a value", "HTTP/1.1 200 OK\r\nX-A: \u{0}\r\n\r\n", 502),
        Refusal("a status under 100", "HTTP/1.1 099 Low\r\n\r\n", 502),
        Refusal("a status over 599", "HTTP/1.1 600 High\r\n\r\n", 502),
        Refusal("a two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 502),
        Refusal("a four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", 502),
        Refusal("a status with letters", "HTTP/1.1 2x0 OK\r\n\r\n", 502),
        Refusal("two spaces before the status", "HTTP/1.1  200 OK\r\n\r\n", 502),
        Refusal("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", 502),
        Refusal("a lowercase protocol name", "http/1.1 200 OK\r\n\r\n", 502),
        Refusal("an empty line before the status line", "\r\nHTTP/1.1 200 OK\r\n\r\n", 502),
        Refusal("a control byte in the reason", "HTTP/1.1 200 O\u{1}K\r\n\r\n", 502),
    ]

    @Test(arguments: refusals)
    func malformedOrAmbiguousResponsesAreRefused(_ refusal: Refusal) {
        let r = parseResponseAtEverySplit(refusal.request)
        #expect(refusedStatus(r.status) == refusal.status)
    }

    @Test func oversizedStatusLinesAndHeadsAreRefused() {
        #expect(refusedStatus(parseResponse("HTTP/1.1 200 " + String(repeating: "x", count: 100), limits: HTTPLimits(maxStartLine: 64)).status) == 502)
        let fields = String(repeating: "X-Filler: 0123456789\r\n", count: 10)
        #expect(refusedStatus(parseResponse("HTTP/1.1 200 OK\r\n" + fields, limits: HTTPLimits(maxHeadBytes: 128)).status) == 502)
        #expect(refusedStatus(parseResponse("HTTP/1.1 200 OK\r\n" + fields + "\r\n", limits: HTTPLimits(maxHeaders: 5)).status) == 502)
    }
}
