import Foundation
import Testing
import YardTestSupport

// The middlewares as an HTTP/2 client sees them, frame by frame (Python's h2 through
// Tests/Fixtures/h2_exchanges.py): the proxy's own answers are one HEADERS frame with
// END_STREAM or HEADERS + DATA, never a reset; no connection-specific field reaches the
// client (RFC 9113 §8.2.2); bodies, gzip and trailers cross between HTTP/2 and HTTP/1.1
// upstreams intact; and an answer on one stream leaves the connection and its other
// streams alone. h2c with prior knowledge, and h2 over TLS by ALPN where TLS changes the
// path (the interleaved streams and the response fields).

/// The proxy with every middleware on its own route, in front of the demo backend (`shop`),
/// the file origin (`site`, also the forward_auth service) and the framing origin below.
private final class MiddlewareH2Setup {
    static let config = """
        middlewares:
          to-https: {redirect_scheme: https}
          moved-blog: {redirect: {from: /blog, to: "https://blog.example.com/posts"}}
          staff: {basic_auth: {file: staff.htpasswd, realm: Staff only}}
          per-client: {rate_limit: {rate: 6/m, burst: 1}}
          per-key: {rate_limit: {rate: 6/m, burst: 1, header: X-API-Key}}
          office: {ip_allow: [10.0.0.0/8]}
          tidy:
            headers:
              set: {X-Env: prod}
              response:
                set: {Strict-Transport-Security: max-age=63072000}
                add: {X-Content-Type-Options: nosniff}
                remove: [Server, X-Remove-Me]
          gzip: {compress: {min_bytes: 1KiB, level: 5}}
          strip-api: {strip_prefix: [/api]}
          v2: {add_prefix: /v2}
          legacy: {replace_path: /headers}
          ids: {request_id: {}}
          sso: {forward_auth: {address: "http://site/auth/check", auth_response_headers: [X-User]}}
          html-denial: {forward_auth: {address: "http://framing/deny"}}
        routes:
          - {host: secure.example, service: shop, middlewares: [to-https]}
          - {path: /blog, service: shop, middlewares: [moved-blog]}
          - {path: /small, service: shop, max_body_bytes: 1000}
          - {path: /staff, service: shop, middlewares: [staff]}
          - {path: /limited, service: shop, middlewares: [per-client]}
          - {path: /keyed, service: shop, middlewares: [per-key]}
          - {path: /office, service: shop, middlewares: [office]}
          - {path: /hop, service: framing, middlewares: [tidy]}
          - {path: /trailers, service: framing}
          - {path: /trailers/sso, service: framing, middlewares: [sso]}
          - {path: /gz, service: site, middlewares: [gzip]}
          - {path: /traced, service: shop, middlewares: [ids]}
          - {path: /api, service: shop, middlewares: [strip-api, v2]}
          - {path: /legacy, service: shop, middlewares: [legacy]}
          - {path: /login, service: site, middlewares: [sso]}
          - {path: /sso, service: site, middlewares: [sso]}
          - {path: /slowpoke, service: site, middlewares: [sso]}
          - {path: /denied, service: site, middlewares: [html-denial]}
          - {service: shop}
        """

    let dir: ScratchDir
    let pki: TestCertificates?
    private var children: [ChildProcess] = []
    private var shop: Backend?
    private(set) var port: UInt16 = 0

    private let extraYAML: String

    /// `tls`: the listener serves a.test's certificate with ALPN h2. `extraYAML` goes at the
    /// end of the config (`trusted_proxies:`...).
    init(_ label: String, tls: Bool = false, extraYAML: String = "") throws {
        dir = try ScratchDir(label)
        pki = tls ? try TestCertificates() : nil
        self.extraYAML = extraYAML
        do {
            try start()
        } catch {
            stop()
            throw error
        }
    }

    private func start() throws {
        let made = try runCommand("/usr/bin/htpasswd", ["-cbB", dir.file("staff.htpasswd"), "alice", "s3cret"], dir: dir, label: "htpasswd")
        guard made.status == 0 else { throw HarnessError("htpasswd: \(made.stderr)") }
        try dir.write("big.txt", numberedLines(bytes: 200 * 1024))
        try dir.write("small.txt", numberedLines(bytes: 500))
        let shop = try Backend.demo("shop", dir: dir)
        self.shop = shop
        let (site, sitePort) = try startFileOrigin(dir, label: "site")
        children.append(site)
        try dir.write("framing-origin.py", framingOriginSource)
        let framing = try ChildProcess("/usr/bin/env", ["python3", dir.file("framing-origin.py")], dir: dir, label: "framing")
        children.append(framing)
        let framingPort = try framing.waitForListeningPort()
        try dir.write("services.yml", servicesYAML([
            ServiceSpec(name: "shop", instances: [.init(port: shop.port)]),
            ServiceSpec(name: "site", instances: [.init(port: sitePort)]),
            ServiceSpec(name: "framing", instances: [.init(port: framingPort)]),
        ]))
        var listener = "  - {name: web, address: 127.0.0.1:0}"
        if let pki {
            listener = """
                  - name: web
                    address: 127.0.0.1:0
                    tls:
                      certificates:
                        - {cert: \(pki.a.certificate), key: \(pki.a.key)}
                      alpn: [h2, http/1.1]
                """
        }
        try dir.write("switchyard.yml", "listeners:\n\(listener)\n\(Self.config)\ndiscovery: {provider: file, file: services.yml}\nworkers: 1\n\(extraYAML)\n")
        let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
        children.append(proxy)
        port = try proxy.waitForListeningPort()
    }

    func stop() {
        for child in children.reversed() { child.stop() }
        shop?.stop()
    }

    /// Runs `rounds` on one connection, over TLS when the listener has it.
    func exchange(_ rounds: [[H2Request]], window: Int? = nil, label: String = "h2-exchanges") throws -> H2Report {
        try runH2Exchanges(port: port, rounds, tls: pki.map { ($0.caFile, "a.test") }, window: window, dir: dir, label: label)
    }
}

/// `bytes` of numbered text lines: compresses well, and a lost or repeated piece shows.
private func numberedLines(bytes: Int) -> String {
    let lines = (0..<(bytes / 40 + 1)).map { "line \($0) of the page, \($0 * 7919 % 1000) through the gzip middleware\n" }
    return String(lines.joined().prefix(bytes))
}

/// The expectations every stream's answer meets, whoever wrote it: lower-case field names, no
/// connection-specific field, and a content-length (if any) that is the body's length.
private func expectWellFormed(_ report: H2Report, sourceLocation: SourceLocation = #_sourceLocation) {
    for (name, seen) in report.streams.sorted(by: { $0.key < $1.key }) {
        let forbidden = connectionSpecificFields(seen.headers) + connectionSpecificFields(seen.trailers)
        #expect(forbidden.isEmpty, "\(name): \(forbidden)", sourceLocation: sourceLocation)
        let upper = seen.headers.compactMap(\.first).filter { $0 != $0.lowercased() }
        #expect(upper.isEmpty, "\(name): field names must be lower case: \(upper)", sourceLocation: sourceLocation)
        for single in ["content-type", "content-length", "location", "www-authenticate"] where seen.values(single).count > 1 {
            Issue.record("\(name): \(single) \(seen.values(single)) more than once", sourceLocation: sourceLocation)
        }
        if let length = seen.header("content-length"), seen.ended, seen.method != "HEAD" {
            #expect(Int(length) == seen.bodyBytes.count, "\(name): content-length \(length), body \(seen.bodyBytes.count)",
                    sourceLocation: sourceLocation)
        }
    }
}

extension Integration {
    @Suite struct MiddlewareHTTP2ThroughTheBinary {
        /// A redirect is one HEADERS frame with END_STREAM (no DATA, no reset); the next
        /// stream on the connection is forwarded.
        @Test(.timeLimit(.minutes(1)))
        func redirectsAreOneHeadersFrameEndingTheStreamAndTheConnectionServesOn() throws {
            let setup = try MiddlewareH2Setup("mw-h2-redirects")
            defer { setup.stop() }
            let report = try setup.exchange([
                [H2Request("scheme", "/cart?id=7&x=1", authority: "secure.example"),
                 H2Request("blog", "/blog/2024/hello?ref=x")],
                [H2Request("after", "/shop")],
            ])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let scheme = try report["scheme"]
            #expect(scheme.status == "301" && scheme.header("location") == "https://secure.example/cart?id=7&x=1", "\(scheme)")
            #expect(scheme.events == ["headers+end"] && scheme.headersEndStream && scheme.reset == nil, "\(scheme.events)")
            let blog = try report["blog"]
            #expect(blog.status == "301" && blog.header("location") == "https://blog.example.com/posts/2024/hello?ref=x", "\(blog)")
            #expect(blog.events == ["headers+end"], "\(blog.events)")
            let after = try report["after"]
            #expect(after.status == "200" && after.bodyText.hasPrefix("hello from shop"), "\(after)")
        }

        /// max_body_bytes over HTTP/2: a body without content-length that crosses the limit
        /// gets 413 while nothing was answered, a content-length over it gets 413 at once, a
        /// body that crosses it after the response began has its stream reset; the
        /// connection carries the next stream each time.
        @Test(.timeLimit(.minutes(1)))
        func aBodyOverTheLimitGets413OrAResetAndTheConnectionServesOn() throws {
            let setup = try MiddlewareH2Setup("mw-h2-body-limit")
            defer { setup.stop() }
            let report = try setup.exchange([
                [H2Request("streamed", "POST", "/small/echo", pieces: [.init(text: "x", count: 64 * 1024)])],
                [H2Request("declared", "POST", "/small/echo", headers: [["content-length", "5000"]], pieces: [.init(text: "y", count: 5000)])],
                [H2Request("late", "POST", "/small/echo", pieces: [.init(text: "a", count: 500), .init(text: "b", count: 1000, afterHeaders: true)])],
                [H2Request("fits", "POST", "/small/echo", pieces: [.init(text: "z", count: 1000)])],
            ])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let streamed = try report["streamed"]
            #expect(streamed.status == "413" && streamed.ended, "\(streamed)")
            #expect(streamed.bodyText.hasPrefix("content too large"), "\(streamed.bodyText)")
            let declared = try report["declared"]
            #expect(declared.status == "413" && declared.ended, "\(declared)")
            let late = try report["late"]
            #expect(late.status == "200" && late.reset != nil && !late.ended, "the response had begun: a reset, not a 413: \(late)")
            #expect(!late.bodyText.contains("b"), "no byte past the limit reached the backend: \(late.bodyText)")
            let fits = try report["fits"]
            #expect(fits.status == "200" && fits.bodyText == String(repeating: "z", count: 1000), "\(fits.status ?? "-") \(fits.bodyText.count)")
        }

        /// A client that uploads its whole body after the proxy answered (a 308 redirect, a 401,
        /// a 413 on content-length): the proxy discards it and gives the window back, so the
        /// 3 MiB, three times the connection window, pass and the next stream is served.
        @Test(.timeLimit(.minutes(1)))
        func aBodySentAfterTheAnswerIsDiscardedWithoutStallingTheConnection() throws {
            let setup = try MiddlewareH2Setup("mw-h2-discard")
            defer { setup.stop() }
            let mebibyte = [H2Request.Piece(text: "0123456789abcdef", count: 64 * 1024)]
            let echoed = String(repeating: "echo", count: 64 * 1024)
            let report = try setup.exchange([
                [H2Request("redirect", "POST", "/blog/a", pieces: mebibyte, sendAll: true),
                 H2Request("challenge", "POST", "/staff/x", pieces: mebibyte, sendAll: true),
                 H2Request("too-big", "POST", "/small/echo", headers: [["content-length", "\(1 << 20)"]], pieces: mebibyte, sendAll: true)],
                [H2Request("echo", "POST", "/echo", pieces: [.init(text: echoed)])],
            ])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            for (name, status) in [("redirect", "308"), ("challenge", "401"), ("too-big", "413")] {
                let seen = try report[name]
                #expect(seen.status == status && seen.sent == 1 << 20, "\(name): \(seen.status ?? "-"), \(seen.sent) bytes sent, \(seen.events)")
            }
            let echo = try report["echo"]
            #expect(echo.status == "200" && echo.bodyText == echoed, "\(echo.status ?? "-") \(echo.bodyBytes.count)")
        }

        /// basic_auth, rate_limit and ip_allow answer on their stream with their fields; the
        /// connection goes on.
        @Test(.timeLimit(.minutes(1)))
        func refusalsCarryTheirFieldsAndLeaveTheConnectionOpen() throws {
            let setup = try MiddlewareH2Setup("mw-h2-refusals")
            defer { setup.stop() }
            let basic = "Basic " + Data("alice:s3cret".utf8).base64EncodedString()
            let report = try setup.exchange([
                [H2Request("anonymous", "/staff/headers"), H2Request("first", "/limited")],
                [H2Request("alice", "/staff/headers", headers: [["authorization", basic]]), H2Request("second", "/limited"),
                 H2Request("office", "/office")],
                [H2Request("after", "/")],
            ])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let anonymous = try report["anonymous"]
            #expect(anonymous.status == "401", "\(anonymous)")
            #expect(anonymous.header("www-authenticate")?.lowercased() == "basic realm=\"staff only\", charset=\"utf-8\"", "\(anonymous.headers)")
            let alice = try report["alice"]
            #expect(alice.status == "200" && !alice.bodyText.lowercased().contains("authorization"), "\(alice.bodyText)")
            #expect(try report["first"].status == "200")
            let second = try report["second"]
            #expect(second.status == "429", "\(second)")
            let retryAfter = Int(second.header("retry-after") ?? "") ?? 0
            #expect(retryAfter >= 1 && retryAfter <= 10, "one token every 10 s: \(second.headers)")
            let office = try report["office"]
            #expect(office.status == "403" && office.reset == nil && office.ended, "\(office)")
            #expect(try report["after"].status == "200")
        }

        /// Behind a trusted proxy, ip_allow and rate_limit take an HTTP/2 request's client
        /// from its x-forwarded-for; a keyed rate_limit reads its (lower-case) header.
        @Test(.timeLimit(.minutes(1)))
        func addressAndKeyRulesSeeTheClientOfAnHTTP2Request() throws {
            let setup = try MiddlewareH2Setup("mw-h2-clients", extraYAML: "trusted_proxies: [127.0.0.1]")
            defer { setup.stop() }
            func from(_ address: String) -> [[String]] { [["x-forwarded-for", address]] }
            let report = try setup.exchange([
                [H2Request("office-in", "/office", headers: from("10.1.2.3")), H2Request("office-out", "/office", headers: from("192.168.1.9")),
                 H2Request("office-peer", "/office"), H2Request("a-1", "/limited", headers: from("10.0.0.1")),
                 H2Request("alice-1", "/keyed", headers: [["x-api-key", "alice"]])],
                [H2Request("a-2", "/limited", headers: from("10.0.0.1")), H2Request("b-1", "/limited", headers: from("10.0.0.2")),
                 H2Request("alice-2", "/keyed", headers: [["x-api-key", "alice"]]), H2Request("bob-1", "/keyed", headers: [["x-api-key", "bob"]])],
            ])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let expected = ["office-in": "200", "office-out": "403", "office-peer": "403", "a-1": "200", "a-2": "429", "b-1": "200",
                            "alice-1": "200", "alice-2": "429", "bob-1": "200"]
            for (name, status) in expected.sorted(by: { $0.key < $1.key }) {
                #expect(try report[name].status == status, "\(name)")
            }
        }

        /// HEAD: the proxy's own answers and a response compress leaves alone end with their
        /// HEADERS frame, no DATA.
        @Test(.timeLimit(.minutes(1)))
        func headAnswersAreOneHeadersFrame() throws {
            let setup = try MiddlewareH2Setup("mw-h2-head")
            defer { setup.stop() }
            let report = try setup.exchange([[
                H2Request("redirect", "HEAD", "/blog/a"), H2Request("challenge", "HEAD", "/staff/x"),
                H2Request("office", "HEAD", "/office"), H2Request("limited-1", "HEAD", "/limited"),
                H2Request("gzip", "HEAD", "/gz/big.txt", headers: [["accept-encoding", "gzip"]]),
                H2Request("denied", "HEAD", "/sso/x"),
            ], [H2Request("limited-2", "HEAD", "/limited")], [H2Request("after", "/")]])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let expected = ["redirect": "301", "challenge": "401", "office": "403", "limited-1": "200", "limited-2": "429", "gzip": "200",
                            "denied": "401"]
            for (name, status) in expected.sorted(by: { $0.key < $1.key }) {
                let seen = try report[name]
                #expect(seen.status == status && seen.events == ["headers+end"], "\(name): \(seen.status ?? "-") \(seen.events)")
            }
            let gzip = try report["gzip"]
            #expect(gzip.header("content-encoding") == nil && gzip.header("content-length") == "204800", "\(gzip.headers)")
            #expect(try report["after"].status == "200")
        }

        /// The headers middleware edits the response, and no connection-specific field of the
        /// HTTP/1.1 upstream (Connection and what it names, Keep-Alive, Proxy-Connection,
        /// Upgrade, Transfer-Encoding) reaches the client, over h2c and over TLS.
        @Test(.timeLimit(.minutes(1)), arguments: [false, true])
        func responseFieldsAreEditedAndNoConnectionSpecificFieldReachesTheClient(tls: Bool) throws {
            let setup = try MiddlewareH2Setup("mw-h2-fields", tls: tls)
            defer { setup.stop() }
            let report = try setup.exchange([[H2Request("hop", "/hop"), H2Request("env", "/hop/request-head")]])
            #expect(report.survived, "\(report)")
            if tls { #expect(report.alpn == "h2") }
            expectWellFormed(report)
            let hop = try report["hop"]
            #expect(hop.status == "200" && hop.bodyText == "hello, fields\n", "\(hop)")
            let names = hop.headers.compactMap(\.first)
            #expect(!names.contains("x-hop"), "a field named by Connection is connection-specific too: \(hop.headers)")
            #expect(!names.contains("server") && !names.contains("x-remove-me"), "removed by the middleware: \(hop.headers)")
            #expect(hop.header("strict-transport-security") == "max-age=63072000", "\(hop.headers)")
            #expect(hop.header("x-content-type-options") == "nosniff" && hop.header("x-kept") == "yes", "\(hop.headers)")
            #expect(hop.trailer("x-checksum") == "14", "the chunked body's trailer arrives as HTTP/2 trailers: \(hop.trailers)")
            let env = try report["env"]
            #expect(env.bodyText.lowercased().contains("x-env: prod\r\n"), "the request edit reached the upstream: \(env.bodyText)")
        }

        /// compress over HTTP/2: the DATA frames inflate to the origin's exact bytes, with
        /// no content-length; a body under min_bytes goes as it is with its own length.
        @Test(.timeLimit(.minutes(1)))
        func gzippedDataFramesInflateToTheOriginsExactBytes() throws {
            let setup = try MiddlewareH2Setup("mw-h2-compress")
            defer { setup.stop() }
            let gzip = [["accept-encoding", "gzip"]]
            let report = try setup.exchange([[
                H2Request("length", "/gz/big.txt", headers: gzip),
                H2Request("chunked", "/gz/big.txt?chunked=1", headers: gzip),
                H2Request("small", "/gz/small.txt", headers: gzip),
                H2Request("identity", "/gz/big.txt"),
            ]])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let big = setup.dir.read("big.txt")
            for name in ["length", "chunked"] {
                let seen = try report[name]
                #expect(seen.status == "200" && seen.header("content-encoding") == "gzip", "\(name): \(seen.headers)")
                #expect(seen.decodedText == big, "\(name): \(seen.decodedError ?? "") \(seen.decodedText?.count ?? -1) bytes")
                #expect(seen.header("content-length") == nil, "\(name): \(seen.headers)")
                #expect(seen.bodyBytes.count < big.utf8.count / 3 && seen.dataFrames >= 1, "\(name): \(seen.bodyBytes.count) bytes")
            }
            let small = try report["small"]
            #expect(small.header("content-encoding") == nil && small.header("content-length") == "500", "\(small.headers)")
            #expect(small.bodyText == setup.dir.read("small.txt"))
            let identity = try report["identity"]
            #expect(identity.header("content-encoding") == nil && identity.bodyText == big, "no accept-encoding: \(identity.headers)")
        }

        /// compress under a small client window: the gzip output waits for the window in
        /// 1 KiB steps and still inflates to the origin's bytes, for a length and a chunked body.
        @Test(.timeLimit(.minutes(1)))
        func gzipUnderASmallClientWindowStillInflatesToTheOriginsBytes() throws {
            let setup = try MiddlewareH2Setup("mw-h2-gzip-window")
            defer { setup.stop() }
            let gzip = [["accept-encoding", "gzip"]]
            let report = try setup.exchange([[H2Request("length", "/gz/big.txt", headers: gzip),
                                              H2Request("chunked", "/gz/big.txt?chunked=1", headers: gzip),
                                              H2Request("plain", "/size/100000")]], window: 1024)
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let big = setup.dir.read("big.txt")
            for name in ["length", "chunked"] {
                let seen = try report[name]
                #expect(seen.ended && seen.decodedText == big, "\(name): \(seen.decodedError ?? "") \(seen.decodedText?.count ?? -1) bytes")
            }
            #expect(try report["plain"].bodyBytes.count == 100_000)
        }

        /// compress streams over HTTP/2 too: what the origin sent before a 3 s pause reaches
        /// the client as DATA before the pause ends, and the whole inflates to both pieces.
        @Test(.timeLimit(.minutes(1)))
        func gzipOverHTTP2FlushesWhatArrivedBeforeTheOriginPauses() throws {
            let setup = try MiddlewareH2Setup("mw-h2-gzip-stream")
            defer { setup.stop() }
            let report = try setup.exchange([[H2Request("stream", "/gz/stream", headers: [["accept-encoding", "gzip"]])]])
            #expect(report.survived, "\(report)")
            let stream = try report["stream"]
            #expect(stream.status == "200" && stream.header("content-encoding") == "gzip", "\(stream.headers)")
            #expect(stream.decodedText == String(repeating: "piece-one\n", count: 300) + String(repeating: "piece-two\n", count: 300),
                    "\(stream.decodedError ?? "") \(stream.decodedText?.count ?? -1)")
            let firstData = zip(stream.events, stream.eventTimes).first { $0.0.hasPrefix("data") }?.1 ?? .infinity
            #expect(firstData < 2.0, "the first piece is not held for the pause: \(stream.events) at \(stream.eventTimes)")
            #expect((stream.eventTimes.last ?? 0) >= 2.5, "the second piece came after the pause: \(stream.eventTimes)")
        }

        /// strip_prefix, add_prefix and replace_path rewrite an HTTP/2 request's path as an
        /// HTTP/1.1 one's, with X-Forwarded-Prefix and X-Replaced-Path.
        @Test(.timeLimit(.minutes(1)))
        func pathRewritesReachTheUpstreamForHTTP2Requests() throws {
            let setup = try MiddlewareH2Setup("mw-h2-paths")
            defer { setup.stop() }
            let report = try setup.exchange([[H2Request("stripped", "/api/headers?x=1"), H2Request("replaced", "/legacy/page?q=1"),
                                               H2Request("forged", "/api/headers", headers: [["x-forwarded-prefix", "/evil"]])]])
            #expect(report.survived, "\(report)")
            let stripped = try report["stripped"].bodyText.lowercased()
            #expect(stripped.hasPrefix("get /v2/headers?x=1 http/1.1\r\n") && stripped.contains("\r\nx-forwarded-prefix: /api\r\n"), "\(stripped)")
            let replaced = try report["replaced"].bodyText.lowercased()
            #expect(replaced.hasPrefix("get /headers?q=1 http/1.1\r\n") && replaced.contains("\r\nx-replaced-path: /legacy/page\r\n"), "\(replaced)")
            let forged = try report["forged"].bodyText.lowercased()
            #expect(!forged.contains("/evil") && forged.contains("x-forwarded-prefix: /api\r\n"), "a client's own prefix is dropped: \(forged)")
        }

        /// Trailers both ways through an HTTP/1.1 chunked upstream: the client's request
        /// trailers reach it as chunked trailers, its chunked trailers come back as HTTP/2
        /// trailers after the last DATA.
        @Test(.timeLimit(.minutes(1)))
        func trailersCrossBetweenHTTP2AndAChunkedUpstream() throws {
            let setup = try MiddlewareH2Setup("mw-h2-trailers")
            defer { setup.stop() }
            let report = try setup.exchange([[
                H2Request("upload", "POST", "/trailers", pieces: [.init(text: "0123456789", count: 3000)],
                          trailers: [["x-client-checksum", "abc123"]]),
                H2Request("plain", "POST", "/trailers", pieces: [.init(text: "no trailers")]),
            ]])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let upload = try report["upload"]
            #expect(upload.status == "200" && upload.bodyText == String(repeating: "0123456789", count: 3000), "\(upload.status ?? "-") \(upload.bodyText.count)")
            #expect(upload.trailer("x-origin-saw") == "x-client-checksum=abc123", "\(upload.trailers)")
            #expect(upload.trailer("x-origin-length") == "30000", "\(upload.trailers)")
            #expect(upload.events.last == "trailers" && upload.ended, "trailers close the stream: \(upload.events)")
            let plain = try report["plain"]
            #expect(plain.bodyText == "no trailers" && plain.trailer("x-origin-saw") == "", "\(plain.trailers)")
        }

        /// request_id: every HTTP/2 request reaches the upstream with its own X-Request-ID and
        /// a traceparent; a client's valid traceparent goes on unchanged.
        @Test(.timeLimit(.minutes(1)))
        func requestIDAndTraceparentReachTheUpstreamForHTTP2Requests() throws {
            let setup = try MiddlewareH2Setup("mw-h2-request-id")
            defer { setup.stop() }
            let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let report = try setup.exchange([[
                H2Request("one", "/traced/headers"), H2Request("two", "/traced/headers"),
                H2Request("given", "/traced/headers", headers: [["traceparent", valid], ["x-request-id", "client-id-7"]]),
            ]])
            #expect(report.survived, "\(report)")
            func field(_ head: String, _ name: String) -> String? {
                head.lowercased().components(separatedBy: "\r\n").first { $0.hasPrefix(name + ": ") }.map { String($0.dropFirst(name.count + 2)) }
            }
            let one = try report["one"].bodyText, two = try report["two"].bodyText
            let ids = [one, two].compactMap { field($0, "x-request-id") }
            #expect(ids.count == 2 && Set(ids).count == 2 && ids.allSatisfy { $0.count == 32 }, "\(one)\n\(two)")
            for head in [one, two] {
                let parts = (field(head, "traceparent") ?? "").split(separator: "-")
                #expect(parts.count == 4 && parts[0] == "00" && parts[1].count == 32 && parts[2].count == 16, "\(head)")
            }
            let given = try report["given"].bodyText
            #expect(field(given, "traceparent") == valid && field(given, "x-request-id") == "client-id-7", "\(given)")
        }

        /// forward_auth: the auth service's denial (302 with Location, 401 with its
        /// challenge and body, 403 with an HTML page) reaches the HTTP/2 client as sent, less
        /// its connection-specific fields; an allowed request goes on with X-User.
        @Test(.timeLimit(.minutes(1)))
        func forwardAuthDenialsReachTheHTTP2ClientIntact() throws {
            let setup = try MiddlewareH2Setup("mw-h2-forward-auth")
            defer { setup.stop() }
            let report = try setup.exchange([[
                H2Request("login", "/login/next"),
                H2Request("challenge", "/sso/echo-headers"),
                H2Request("html", "/denied/page"),
                H2Request("allowed", "/sso/echo-headers", headers: [["authorization", "Bearer good"]]),
            ]])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let login = try report["login"]
            #expect(login.status == "302" && login.header("location") == "https://sso.example/login?rd=/login/next", "\(login.headers)")
            let challenge = try report["challenge"]
            #expect(challenge.status == "401" && challenge.header("www-authenticate") == "Bearer realm=\"site\"", "\(challenge.headers)")
            #expect(challenge.bodyText == "token needed\n" && challenge.values("content-type") == ["text/plain"], "\(challenge)")
            let html = try report["html"]
            #expect(html.status == "403" && html.bodyText == "<h1>members only</h1>\n", "\(html)")
            #expect(html.values("content-type") == ["text/html; charset=utf-8"], "the auth service's content-type, once: \(html.headers)")
            #expect(html.header("x-hop") == nil && html.header("x-deny-reason") == "no session", "\(html.headers)")
            let allowed = try report["allowed"]
            #expect(allowed.status == "200" && allowed.bodyText.lowercased().contains("x-user: alice"), "\(allowed.bodyText)")
        }

        /// forward_auth holds an HTTP/2 request body (no content-length, larger than the
        /// stream's window, with trailers) while the check runs, then the backend gets all of
        /// it and the trailers; a content-length body too.
        @Test(.timeLimit(.minutes(1)))
        func aStreamedBodyWithTrailersWaitsForForwardAuthAndArrivesWhole() throws {
            let setup = try MiddlewareH2Setup("mw-h2-auth-body")
            defer { setup.stop() }
            let good = [["authorization", "Bearer good"]]
            let report = try setup.exchange([[
                H2Request("streamed", "POST", "/trailers/sso", headers: good, pieces: [.init(text: "0123456789", count: 20_000)],
                          trailers: [["x-client-checksum", "big"]]),
                H2Request("declared", "POST", "/trailers/sso", headers: good + [["content-length", "5000"]], pieces: [.init(text: "d", count: 5000)]),
                H2Request("denied", "POST", "/trailers/sso", pieces: [.init(text: "never", count: 20_000)], trailers: [["x-client-checksum", "no"]]),
            ], [H2Request("after", "/")]])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            let streamed = try report["streamed"]
            #expect(streamed.status == "200" && streamed.bodyBytes.count == 200_000, "\(streamed.status ?? "-") \(streamed.bodyBytes.count)")
            #expect(streamed.bodyText == String(repeating: "0123456789", count: 20_000))
            #expect(streamed.trailer("x-origin-saw") == "x-client-checksum=big" && streamed.trailer("x-origin-length") == "200000",
                    "\(streamed.trailers)")
            let declared = try report["declared"]
            #expect(declared.status == "200" && declared.bodyText == String(repeating: "d", count: 5000), "\(declared.status ?? "-")")
            let denied = try report["denied"]
            #expect(denied.status == "401" && denied.bodyText == "token needed\n", "\(denied)")
            #expect(try report["after"].status == "200")
        }

        /// Streams the client cancels while their forward_auth check runs, or while their
        /// body is on its way to the backend, end there: the check's late answer and the cut
        /// upstream harm nothing, and the connection serves the next streams.
        @Test(.timeLimit(.minutes(1)))
        func streamsCancelledMidCheckOrMidBodyLeaveTheConnectionServing() throws {
            let setup = try MiddlewareH2Setup("mw-h2-cancel")
            defer { setup.stop() }
            let good = [["authorization", "Bearer good"]]
            let report = try setup.exchange([
                [H2Request("mid-check", "/slowpoke/echo-headers", headers: good, cancelAfter: 0.3),
                 H2Request("mid-body", "POST", "/trailers/sso", headers: good,
                           pieces: [.init(text: "x", count: 1000), .init(text: "y", afterHeaders: true)], cancelAfter: 0.5),
                 H2Request("mid-upload", "POST", "/trailers", pieces: [.init(text: "a", count: 500), .init(text: "b", afterHeaders: true)],
                           cancelAfter: 0.5),
                 H2Request("beside", "/")],
                [H2Request("next", "/sso/echo-headers", headers: good),
                 H2Request("trailers", "POST", "/trailers", pieces: [.init(text: "t")], trailers: [["x-client-checksum", "1"]])],
                // The check of mid-check answers 3 s after it started: by the end of this one.
                [H2Request("slow-check", "/slowpoke/echo-headers", headers: good)],
                [H2Request("last", "/")],
            ])
            #expect(report.survived, "\(report)")
            expectWellFormed(report)
            for name in ["mid-check", "mid-body"] {
                let seen = try report[name]
                #expect(seen.cancelled && seen.status == nil, "\(name): \(seen)")
            }
            #expect(try report["mid-upload"].cancelled)
            #expect(try report["beside"].status == "200")
            let next = try report["next"]
            #expect(next.status == "200" && next.bodyText.lowercased().contains("x-user: alice"), "\(next)")
            #expect(try report["trailers"].trailer("x-origin-saw") == "x-client-checksum=1")
            let slow = try report["slow-check"]
            #expect(slow.status == "200" && slow.bodyText.lowercased().contains("x-user: alice"), "\(slow)")
            #expect(try report["last"].status == "200")
        }

        /// Many middlewares at once on one connection, their streams interleaved: each gets
        /// its own answer, over h2c and over TLS.
        @Test(.timeLimit(.minutes(1)), arguments: [false, true])
        func interleavedStreamsEachGetTheirOwnAnswer(tls: Bool) throws {
            let setup = try MiddlewareH2Setup("mw-h2-interleaved", tls: tls)
            defer { setup.stop() }
            let echoed = String(repeating: "0123456789abcdef", count: 8 * 1024)
            let report = try setup.exchange([
                [H2Request("first", "/limited")],
                [H2Request("slow", "/slow?ms=300"),
                 H2Request("blog", "/blog/a"),
                 H2Request("anonymous", "/staff/x"),
                 H2Request("limited", "/limited"),
                 H2Request("office", "/office"),
                 H2Request("too-big", "POST", "/small/echo", pieces: [.init(text: "x", count: 20_000)]),
                 H2Request("echo", "POST", "/echo", pieces: [.init(text: echoed)]),
                 H2Request("gzip", "/gz/big.txt", headers: [["accept-encoding", "gzip"]]),
                 H2Request("login", "/login/x"),
                 H2Request("traced", "/traced/headers"),
                 H2Request("hop", "/hop"),
                 H2Request("size", "/size/100000")],
            ])
            #expect(report.survived, "\(report)")
            if tls { #expect(report.alpn == "h2") }
            expectWellFormed(report)
            let expected = ["slow": "200", "blog": "301", "anonymous": "401", "limited": "429", "office": "403", "too-big": "413",
                            "echo": "200", "gzip": "200", "login": "302", "traced": "200", "hop": "200", "size": "200"]
            for (name, status) in expected {
                let seen = try report[name]
                #expect(seen.status == status && seen.ended && seen.reset == nil, "\(name): \(seen.status ?? "-") \(seen.events)")
            }
            #expect(try report["slow"].bodyText.hasPrefix("hello from shop"))
            #expect(try report["echo"].bodyText == echoed)
            #expect(try report["gzip"].decodedText == setup.dir.read("big.txt"))
            #expect(try report["traced"].bodyText.lowercased().contains("x-request-id: "))
            #expect(try report["hop"].trailer("x-checksum") == "14")
            #expect(try report["size"].bodyBytes.count == 100_000)
            #expect(try report["blog"].header("location") == "https://blog.example.com/posts/a")
        }
    }
}

/// An HTTP/1.1 origin for framing cases (keep-alive, one thread per connection):
/// - `/hop...`: a chunked answer full of connection-specific fields (Connection naming
///   X-Hop, Keep-Alive, Proxy-Connection, Upgrade, Trailer) and the trailer `x-checksum: 14`
///   among connection-specific trailer fields;
///   `/hop/request-head` answers with the request head it received instead of a greeting;
/// - `/trailers`: the request body back, chunked, with trailers `x-origin-length` (the
///   body's length) and `x-origin-saw` (the request trailers as `name=value`, `; `-joined);
/// - `/deny`: a forward_auth denial: 403, an HTML page, connection-specific fields and X-Deny-Reason.
private let framingOriginSource = #"""
import socketserver

def chunked(body, trailers):
    out = b""
    if body:
        out += b"%x\r\n%s\r\n" % (len(body), body)
    out += b"0\r\n" + b"".join(b"%s: %s\r\n" % t for t in trailers) + b"\r\n"
    return out

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while self.exchange():
                pass
        except (OSError, ValueError):
            pass

    def body(self, headers):
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            return self.rfile.read(int(headers.get(b"content-length", b"0"))), []
        data, trailers = b"", []
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                break
            data += self.rfile.read(size)
            self.rfile.readline(8)
        while True:
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n", b""):
                return data, trailers
            name, _, value = line.partition(b":")
            trailers.append((name.strip().lower(), value.strip()))

    def exchange(self):
        line = self.rfile.readline(65536)
        if not line.strip():
            return False
        raw, headers = line, {}
        while True:
            field = self.rfile.readline(65536)
            raw += field
            if field in (b"\r\n", b"\n", b""):
                break
            name, _, value = field.partition(b":")
            headers[name.strip().lower()] = value.strip()
        target = line.split()[1]
        body, trailers = self.body(headers)
        if target.startswith(b"/hop"):
            answer = raw if target.startswith(b"/hop/request-head") else b"hello, fields\n"
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: secret\r\n"
                             b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nServer: framing-origin\r\nX-Remove-Me: 1\r\n"
                             b"X-Kept: yes\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                             + chunked(answer, [(b"x-checksum", b"14"), (b"Connection", b"close"), (b"Keep-Alive", b"timeout=1"),
                                                (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c")]))
        elif target.startswith(b"/trailers"):
            saw = b"; ".join(b"%s=%s" % t for t in trailers)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
                             b"Trailer: x-origin-length, x-origin-saw\r\n\r\n"
                             + chunked(body, [(b"x-origin-length", b"%d" % len(body)), (b"x-origin-saw", saw)]))
        elif target.startswith(b"/deny"):
            page = b"<h1>members only</h1>\n"
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nConnection: keep-alive, X-Hop\r\n"
                             b"Keep-Alive: timeout=5\r\nX-Hop: secret\r\nX-Deny-Reason: no session\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(page), page))
        else:
            self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        self.wfile.flush()
        return b"close" not in headers.get(b"connection", b"").lower()

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#
