import Testing

/// A malformed request as sent on the wire, and the answers that are acceptable.
struct RefusalCase: CustomTestStringConvertible, Sendable {
    let name: String
    let request: String
    /// Acceptable statuses; `nil` in the set means closing without an answer is acceptable.
    let accepted: Set<Int?>
    /// Whether the proxy may have forwarded the head before finding the fault (a bad
    /// chunked body is only seen after the head went upstream).
    var headMayReachBackend = false

    var testDescription: String { name }
}

/// Appended to every malformed request: a request that must never reach the backend.
private let smuggled = "GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n"

private let refusals: [RefusalCase] = [
    RefusalCase(name: "Content-Length with Transfer-Encoding",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "Transfer-Encoding before Content-Length",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "two different Content-Lengths",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nContent-Length: 49\r\n\r\nhello" + smuggled,
                accepted: [400]),
    RefusalCase(name: "obs-fold continuation line",
                request: "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Folded: a\r\n b\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "obs-fold hiding Transfer-Encoding",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\nhello" + smuggled,
                accepted: [400]),
    RefusalCase(name: "bare CR inside a field value",
                request: "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Bare: a\rb\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "bare CR as a line ending",
                request: "GET / HTTP/1.1\rHost: shop.test\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "invalid chunk size zz",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggled,
                accepted: [400, nil], headMayReachBackend: true),
    RefusalCase(name: "chunk size overflowing 64 bits",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled,
                accepted: [400, nil], headMayReachBackend: true),
    RefusalCase(name: "chunk size wrapping to a small number",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled,
                accepted: [400, nil], headMayReachBackend: true),
    RefusalCase(name: "whitespace before the colon",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "Transfer-Encoding gzip",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled,
                accepted: [400, 501]),
    RefusalCase(name: "Transfer-Encoding chunked, gzip",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n" + smuggled,
                accepted: [400, 501]),
    RefusalCase(name: "Transfer-Encoding chunked twice",
                request: "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
                accepted: [400]),
    RefusalCase(name: "16 KiB request line",
                request: "GET /" + String(repeating: "a", count: 16 * 1024) + " HTTP/1.1\r\nHost: shop.test\r\n\r\n" + smuggled,
                accepted: [414]),
    RefusalCase(name: "200 header fields",
                request: "GET / HTTP/1.1\r\nHost: shop.test\r\n" + (0..<200).map { "X-Field-\($0): v\r\n" }.joined() + "\r\n" + smuggled,
                accepted: [431]),
    RefusalCase(name: "HTTP/2.0 in the request line",
                request: "GET / HTTP/2.0\r\nHost: shop.test\r\n\r\n" + smuggled,
                accepted: [505, 400]),
]

extension Integration {
    @Suite struct SmugglingRefusals {
        /// Each ambiguous or malformed request gets its error and the connection closed,
        /// and the request smuggled behind it never reaches the backend.
        @Test(.timeLimit(.minutes(1)), arguments: refusals)
        func refusedWithErrorAndConnectionClosed(_ refusal: RefusalCase) throws {
            let dir = try ScratchDir("refusal")
            let origin = try Backend.recording("origin", dir: dir)
            defer { origin.stop() }
            let proxy = try RunningProxy(ProxySpec(), services: [ServiceSpec(name: "shop", instances: [.init(port: origin.port)])],
                                         dir: dir)
            defer { proxy.stop() }

            let connection = try RawConnection(port: proxy.port)
            try connection.send(refusal.request)
            var status: Int?
            do {
                status = try connection.readResponse(timeout: .seconds(5)).status
            } catch {
                status = nil
            }
            #expect(refusal.accepted.contains(status), "answered \(status.map(String.init) ?? "nothing")")
            #expect(connection.readUntilClosed(timeout: .seconds(5)), "the proxy kept the connection open")

            // A request on a new connection, seen by the backend after anything the proxy forwarded before.
            let sentinel = try rawExchange(port: proxy.port, "GET /sentinel HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            #expect(sentinel.status == 200)
            try waitFor("the backend to log the sentinel", timeout: .seconds(5)) {
                origin.receivedRequestLines.contains { $0.hasPrefix("GET /sentinel") }
            }
            let received = origin.receivedRequestLines.filter { !$0.hasPrefix("GET /sentinel") }
            #expect(!received.contains { $0.contains("/smuggled") }, "the backend received: \(received)")
            #expect(received.count <= (refusal.headMayReachBackend ? 1 : 0), "the backend received: \(received)")
        }
    }
}
