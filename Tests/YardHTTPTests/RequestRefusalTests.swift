// Requests that must be refused, with the status a server answers: smuggling vectors first,
// then malformed lines and limits. Every refusal is also checked at every split point (the same
// refusal, or `.incomplete` until it can be seen).

import Testing
import YardHTTP

/// One request that must be refused.
struct Refusal: Sendable, CustomTestStringConvertible {
    let why: String
    let request: String
    let status: Int
    var testDescription: String { why }

    init(_ why: String, _ request: String, _ status: Int = 400) {
        self.why = why
        self.request = request
        self.status = status
    }
}

private let h = "Host: a\r\n"

let smugglingRefusals: [Refusal] = [
    Refusal("Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\n\(h)Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Refusal("Transfer-Encoding before Content-Length", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"),
    Refusal("two different Content-Length fields", "POST / HTTP/1.1\r\n\(h)Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    Refusal("a Content-Length list with different values", "POST / HTTP/1.1\r\n\(h)Content-Length: 5, 6\r\n\r\n"),
    Refusal("a signed Content-Length", "POST / HTTP/1.1\r\n\(h)Content-Length: +5\r\n\r\n"),
    Refusal("a negative Content-Length", "POST / HTTP/1.1\r\n\(h)Content-Length: -1\r\n\r\n"),
    Refusal("a Content-Length with letters", "POST / HTTP/1.1\r\n\(h)Content-Length: 5a\r\n\r\n"),
    Refusal("an empty Content-Length", "POST / HTTP/1.1\r\n\(h)Content-Length: \r\n\r\n"),
    Refusal("a Content-Length over 2^62", "POST / HTTP/1.1\r\n\(h)Content-Length: 4611686018427387905\r\n\r\n"),
    Refusal("a Content-Length over Int64", "POST / HTTP/1.1\r\n\(h)Content-Length: 99999999999999999999999\r\n\r\n"),
    Refusal("Transfer-Encoding gzip alone", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: gzip\r\n\r\n"),
    Refusal("Transfer-Encoding chunked then gzip", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked, gzip\r\n\r\n"),
    Refusal("Transfer-Encoding chunked twice", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked, chunked\r\n\r\n"),
    Refusal("chunked twice over two fields", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Refusal("chunked with parameters", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked;x=1\r\n\r\n"),
    Refusal("an empty Transfer-Encoding", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: \r\n\r\n"),
    Refusal("a malformed transfer coding", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked x\r\n\r\n"),
    Refusal("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Refusal("obs-fold continuation line", "GET / HTTP/1.1\r\n\(h)X-A: 1\r\n  continued\r\n\r\n"),
    Refusal("obs-fold with a tab", "GET / HTTP/1.1\r\n\(h)X-A: 1\r\n\tcontinued\r\n\r\n"),
    Refusal("whitespace before the first field", "GET / HTTP/1.1\r\n \(h)\r\n"),
    Refusal("whitespace between name and colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
    Refusal("a tab between name and colon", "GET / HTTP/1.1\r\n\(h)Content-Length\t: 0\r\n\r\n"),
    Refusal("a bare CR in a field value", "GET / HTTP/1.1\r\n\(h)X-A: a\rb\r\n\r\n"),
    Refusal("a bare CR at the start of a line", "GET / HTTP/1.1\r\n\(h)\rX-A: 1\r\n\r\n"),
    Refusal("a bare CR before the blank line", "GET / HTTP/1.1\r\n\(h)\r\r\n\r\n"),
    Refusal("a bare CR in the request line", "GET /\r HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a bare CR ending the request line", "GET / HTTP/1.1\r\(h)\r\n"),
    Refusal("a bare LF ending the request line", "GET / HTTP/1.1\n\(h)\r\n"),
    Refusal("a bare LF ending a field line", "GET / HTTP/1.1\r\nHost: a\n\r\n"),
    Refusal("a bare LF as the blank line", "GET / HTTP/1.1\r\n\(h)\n"),
    Refusal("a bare LF inside a field value", "GET / HTTP/1.1\r\n\(h)X-A: a\nb\r\n\r\n"),
    Refusal("HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    Refusal("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    Refusal("two Host fields in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
    Refusal("a NUL in a field value", "GET / HTTP/1.1\r\n\(h)X-A: a\u{0}b\r\n\r\n"),
    Refusal("a DEL in a field value", "GET / HTTP/1.1\r\n\(h)X-A: a\u{7F}b\r\n\r\n"),
    Refusal("a control byte in a field value", "GET / HTTP/1.1\r\n\(h)X-A: a\u{1B}b\r\n\r\n"),
    Refusal("an empty field name", "GET / HTTP/1.1\r\n\(h): a\r\n\r\n"),
    Refusal("a separator in a field name", "GET / HTTP/1.1\r\n\(h)X(A): 1\r\n\r\n"),
    Refusal("a field line without colon", "GET / HTTP/1.1\r\n\(h)X-A\r\n\r\n"),
    Refusal("a Host with a path", "GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n"),
    Refusal("a Host with userinfo", "GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n"),
    Refusal("a Host with inner whitespace", "GET / HTTP/1.1\r\nHost: a.example b\r\n\r\n"),
    Refusal("an authority with a backslash", "GET http://a\\b/ HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a Connection option that is not a token", "GET / HTTP/1.1\r\n\(h)Connection: a b\r\n\r\n"),
]

let requestLineRefusals: [Refusal] = [
    Refusal("two spaces after the method", "GET  / HTTP/1.1\r\n\(h)\r\n"),
    Refusal("two spaces before the version", "GET /  HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a tab as separator", "GET\t/ HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a space after the version", "GET / HTTP/1.1 \r\n\(h)\r\n"),
    Refusal("a missing version", "GET /\r\n\(h)\r\n"),
    Refusal("a missing target", "GET HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a separator in the method", "GE(T / HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a lowercase protocol name", "GET / http/1.1\r\n\(h)\r\n"),
    Refusal("a two-digit minor version", "GET / HTTP/1.10\r\n\(h)\r\n"),
    Refusal("a DEL in the target", "GET /a\u{7F} HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a non-ASCII byte in the target", "GET /caf\u{E9} HTTP/1.1\r\n\(h)\r\n"),
    Refusal("HTTP/2.0", "GET / HTTP/2.0\r\n\(h)\r\n", 505),
    Refusal("HTTP/0.9", "GET / HTTP/0.9\r\n\(h)\r\n", 505),
    Refusal("HTTP/1.2", "GET / HTTP/1.2\r\n\(h)\r\n", 505),
    Refusal("five empty lines before the request line", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\(h)\r\n"),
    Refusal("an asterisk target outside OPTIONS", "GET * HTTP/1.1\r\n\(h)\r\n"),
    Refusal("CONNECT with an origin-form target", "CONNECT /x HTTP/1.1\r\n\(h)\r\n"),
    Refusal("CONNECT without a port", "CONNECT host HTTP/1.1\r\n\(h)\r\n"),
    Refusal("userinfo in an absolute-form target", "GET http://user@evil/ HTTP/1.1\r\n\(h)\r\n"),
    Refusal("an absolute-form target without authority", "GET http:///x HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a scheme other than http and https", "GET ftp://a/x HTTP/1.1\r\n\(h)\r\n"),
    Refusal("a relative target", "GET a/b HTTP/1.1\r\n\(h)\r\n"),
]

@Suite struct RequestRefusalTests {
    @Test(arguments: smugglingRefusals)
    func smugglingVectorsAreRefused(_ refusal: Refusal) {
        let r = parseRequestAtEverySplit(refusal.request)
        #expect(refusedStatus(r.status) == refusal.status)
    }

    @Test(arguments: requestLineRefusals)
    func malformedRequestLinesAreRefused(_ refusal: Refusal) {
        let r = parseRequestAtEverySplit(refusal.request)
        #expect(refusedStatus(r.status) == refusal.status)
    }

    // MARK: Limits

    @Test func requestLineOverTheLimitIs414EvenBeforeItEnds() {
        let limits = HTTPLimits(maxStartLine: 64)
        let line = "GET /" + String(repeating: "a", count: 100)
        #expect(refusedStatus(parseRequest(line, limits: limits).status) == 414)
        #expect(refusedStatus(parseRequest(line + " HTTP/1.1\r\n\(h)\r\n", limits: limits).status) == 414)
        // 64 bytes and the CR may wait for the LF; one more byte may not.
        let exact = "GET /" + String(repeating: "a", count: 50) + " HTTP/1.1"
        #expect(exact.utf8.count == 64)
        #expect(parseRequest(exact + "\r", limits: limits).status == .incomplete)
        #expect(refusedStatus(parseRequest(exact + "a\r", limits: limits).status) == 414)
        parseRequestAtEverySplit(line, limits: limits)
    }

    @Test func requestLineLimitIsMeasuredAfterIgnoredEmptyLines() {
        let limits = HTTPLimits(maxStartLine: 16)
        #expect(parseRequest("\r\n\r\nGET / HTTP/1.1\r\n\(h)\r\n", limits: limits).status == .complete)
    }

    @Test func tooManyHeaderFieldsIs431() {
        let request = "GET / HTTP/1.1\r\n\(h)A: 1\r\nB: 2\r\nC: 3\r\n\r\n"
        let r = parseRequestAtEverySplit(request, limits: HTTPLimits(maxHeaders: 3))
        #expect(refusedStatus(r.status) == 431)
    }

    @Test func headOverTheLimitIs431EvenBeforeItEnds() {
        let limits = HTTPLimits(maxHeadBytes: 128)
        let fields = String(repeating: "X-Filler: 0123456789\r\n", count: 10)
        #expect(refusedStatus(parseRequest("GET / HTTP/1.1\r\n\(h)" + fields, limits: limits).status) == 431)
        #expect(refusedStatus(parseRequest("GET / HTTP/1.1\r\n\(h)" + fields + "\r\n", limits: limits).status) == 431)
        #expect(refusedStatus(parseRequest("GET / HTTP/1.1\r\nX-Long: " + String(repeating: "v", count: 200), limits: limits).status) == 431)
        parseRequestAtEverySplit("GET / HTTP/1.1\r\n\(h)" + fields, limits: limits)
    }

    @Test func dripFeedingAHugeFieldStaysLinear() {
        // 32 KiB one byte at a time: quadratic rescanning would take seconds here.
        let head = "GET / HTTP/1.1\r\n\(h)X-Big: " + String(repeating: "v", count: 32_000) + "\r\n\r\n"
        let all = bytes(head)
        let limits = HTTPLimits(maxHeadBytes: 64 * 1024)
        var scanFrom = 0
        var last = ParseStatus.incomplete
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for end in 1 ... all.count where last == .incomplete {
                last = parseRequest(all, prefix: end, limits: limits, scanFrom: &scanFrom).status
            }
        }
        #expect(last == .complete)
        print("drip-fed \(all.count) bytes one at a time in \(elapsed)")
    }
}
