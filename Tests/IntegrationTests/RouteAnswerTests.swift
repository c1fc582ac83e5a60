import Foundation
import Testing

// Middlewares that answer the client themselves (redirects, 413, 429), response header
// edits, traceparent and per-route timeouts, through the real binary with curl over
// HTTP/1.1 and HTTP/2 (prior knowledge), and raw sockets where the wire matters.

/// Starts `switchyard run` on `config` (services.yml already written) and returns it with its port.
private func startProxy(_ dir: ScratchDir, _ config: String, name: String = "switchyard.yml") throws -> (ChildProcess, String, UInt16) {
    try dir.write(name, config)
    let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file(name)], dir: dir, label: "proxy")
    do {
        let port = try proxy.waitForListeningPort()
        return (proxy, "http://127.0.0.1:\(port)", port)
    } catch {
        proxy.stop()
        throw error
    }
}

/// The demo backend "shop" behind a proxy whose config is the listener, `body` (the
/// middlewares and routes), the file provider and `workers`.
private struct ShopProxy {
    let dir: ScratchDir
    let shop: Backend
    let proxy: ChildProcess
    let url: String
    let port: UInt16

    init(_ label: String, _ body: String, workers: Int = 1, prepare: (ScratchDir) throws -> Void = { _ in }) throws {
        dir = try ScratchDir(label)
        try prepare(dir)
        shop = try Backend.demo("shop", dir: dir)
        do {
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: shop.port)])]))
            (proxy, url, port) = try startProxy(dir, """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                \(body)
                discovery: {provider: file, file: services.yml}
                workers: \(workers)

                """)
        } catch {
            shop.stop()
            throw error
        }
    }

    func stop() {
        proxy.stop()
        shop.stop()
    }
}

/// The response head curl received, lower-cased, from `-D`.
private func headOf(_ path: String) -> String {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").lowercased()
}

extension Integration {
    @Suite struct RedirectMiddlewaresThroughTheBinary {
        @Test(.timeLimit(.minutes(1)))
        func redirectsAnswerHTTP1AndHTTP2ClientsWithALocationAndKeepTheConnection() throws {
            let setup = try ShopProxy("route-redirects", """
                middlewares:
                  to-https: {redirect_scheme: https}
                  to-https-8443: {redirect_scheme: {scheme: https, port: 8443, permanent: false}}
                  moved-blog: {redirect: {from: /blog, to: "https://blog.example.com/posts"}}
                  old-page: {redirect: {from: /old.html, exact: true, to: /new.html, permanent: false}}
                routes:
                  - {host: secure.example, service: shop, middlewares: [to-https]}
                  - {host: staging.example, service: shop, middlewares: [to-https-8443]}
                  - {path: /blog, service: shop, middlewares: [moved-blog]}
                  - {path: /old.html, service: shop, middlewares: [old-page]}
                  - {service: shop}
                """)
            defer { setup.stop() }
            let dir = setup.dir
            let url = setup.url
            let port = setup.port

            for h2 in [false, true] {
                let mode = h2 ? ["--http2-prior-knowledge"] : []
                let scheme = try curl(url + "/cart?id=7&x=1", mode + ["-H", "Host: secure.example:8080"], extra: ["%{redirect_url}"], dir: dir)
                #expect(scheme.httpStatus == 301, "h2 \(h2)")
                #expect(scheme.written.first == "https://secure.example/cart?id=7&x=1", "h2 \(h2): \(scheme.written)")
                let post = try curl(url + "/cart", mode + ["-H", "Host: secure.example", "-d", "a=1"], extra: ["%{redirect_url}"], dir: dir)
                #expect(post.httpStatus == 308, "a POST keeps its method: h2 \(h2)")
                let staging = try curl(url + "/", mode + ["-H", "Host: staging.example"], extra: ["%{redirect_url}"], dir: dir)
                #expect(staging.httpStatus == 302 && staging.written.first == "https://staging.example:8443/", "h2 \(h2): \(staging.written)")
                let blog = try curl(url + "/blog/2024/hello?ref=x", mode, extra: ["%{redirect_url}"], dir: dir)
                #expect(blog.httpStatus == 301 && blog.written.first == "https://blog.example.com/posts/2024/hello?ref=x", "h2 \(h2): \(blog.written)")
                let page = try curl(url + "/old.html", mode, extra: ["%{redirect_url}"], dir: dir)
                #expect(page.httpStatus == 302 && page.written.first == "http://127.0.0.1:\(port)/new.html", "h2 \(h2): \(page.written)")
                #expect(try curl(url + "/blogs", mode, dir: dir).body.hasPrefix("hello from shop"), "/blogs is not under /blog")
                #expect(try curl(url + "/old.html/x", mode, dir: dir).body.hasPrefix("hello from shop"), "exact means exact")
            }

            // nghttp: a redirect and a forwarded request on two streams of one HTTP/2 connection.
            let streams = try runCommand("/usr/bin/nghttp", ["-nv", url + "/blog/a?x=1", url + "/shop"], dir: dir, label: "nghttp")
            #expect(streams.status == 0, "\(streams.stderr)")
            #expect(streams.stdout.contains(":status: 301") && streams.stdout.contains("location: https://blog.example.com/posts/a?x=1"),
                    "\(streams.stdout)")
            #expect(streams.stdout.contains(":status: 200"), "\(streams.stdout)")

            // The answer keeps an HTTP/1.1 connection open, and the next request is served on it.
            let connection = try RawConnection(port: port)
            try connection.send("GET /blog/a HTTP/1.1\r\nHost: x\r\n\r\nGET /shop HTTP/1.1\r\nHost: x\r\n\r\n")
            let first = try connection.readResponse()
            #expect(first.status == 301 && first.header("Location") == "https://blog.example.com/posts/a" && first.header("Content-Length") == "0")
            let second = try connection.readResponse()
            #expect(second.status == 200 && second.bodyText.hasPrefix("hello from shop"))
            // HEAD gets no body; an HTTP/1.0 keep-alive client is told the connection stays.
            try connection.send("HEAD /blog/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /shop HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try connection.readResponse(method: "HEAD")
            #expect(head.status == 301 && head.body.isEmpty && head.header("Connection")?.lowercased() == "keep-alive")
            #expect(try connection.readResponse().status == 200, "nothing of the HEAD answer spilled into the next")
        }
    }

    @Suite struct RoutingBodyLimitThroughTheBinary {
        /// A Content-Length over the limit is answered before any upstream contact (the
        /// route's only endpoint is a closed port: no 502); a chunked or HTTP/2 body that
        /// grows past it is cut, and the client gets 413.
        @Test(.timeLimit(.minutes(1)))
        func bodiesOverTheRoutesLimitGet413() throws {
            let dir = try ScratchDir("route-body-limit")
            let shop = try Backend.recording("shop", dir: dir)
            defer { shop.stop() }
            let nowhere = try closedPort()
            try dir.write("services.yml", servicesYAML([
                ServiceSpec(name: "shop", instances: [.init(port: shop.port)]),
                ServiceSpec(name: "gone", instances: [.init(port: nowhere)]),
            ]))
            let (proxy, url, _) = try startProxy(dir, """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                routes:
                  - {path: /gone, service: gone, max_body_bytes: 1000}
                  - {path: /small, service: shop, max_body_bytes: 1000}
                  - {service: shop}
                discovery: {provider: file, file: services.yml}
                workers: 1

                """)
            defer { proxy.stop() }
            try dir.write("big.bin", String(repeating: "x", count: 64 * 1024))
            try dir.write("fits.bin", String(repeating: "y", count: 1000))

            #expect(try curl(url + "/gone", ["--data-binary", "@" + dir.file("big.bin")], dir: dir).httpStatus == 413,
                    "answered before the (closed) upstream is tried")
            #expect(try curl(url + "/gone", ["--http2-prior-knowledge", "--data-binary", "@" + dir.file("big.bin")], dir: dir).httpStatus == 413)
            #expect(try curl(url + "/small/echo", ["--data-binary", "@" + dir.file("fits.bin")], dir: dir).httpStatus == 200)
            #expect(try curl(url + "/echo", ["--data-binary", "@" + dir.file("big.bin")], dir: dir).httpStatus == 200, "other routes have no limit")
            let chunked = try curl(url + "/small/echo", ["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + dir.file("big.bin")], dir: dir)
            #expect(chunked.httpStatus == 413, "\(chunked.stderr)")
            let chunkedFits = try curl(url + "/small/echo", ["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + dir.file("fits.bin")], dir: dir)
            #expect(chunkedFits.httpStatus == 200, "1000 bytes of data fit; the chunk framing is not counted")
            // HTTP/2 without content-length: curl uploads stdin of unknown size.
            let stdin = FileHandle(forReadingAtPath: dir.file("big.bin"))
            let streamed = try BackgroundCurl(url + "/small/echo", ["--http2-prior-knowledge", "-T", "-"], dir: dir, stdin: stdin).finish(timeout: .seconds(20))
            #expect(streamed.httpStatus == 413, "\(streamed.stderr)")
            #expect(try curl(url + "/small/echo", ["--http2-prior-knowledge", "-d", "ok"], dir: dir).httpStatus == 200, "the connection serves on")
        }
    }

    @Suite struct ResponseHeaderAndTraceMiddlewaresThroughTheBinary {
        @Test(.timeLimit(.minutes(1)))
        func responseHeaderEditsAndTraceparentReachBothProtocols() throws {
            let setup = try ShopProxy("route-response-headers", """
                middlewares:
                  secure:
                    headers:
                      response:
                        set: {Strict-Transport-Security: max-age=63072000, X-Backend: hidden}
                        add: {X-Content-Type-Options: nosniff}
                        remove: [X-Backend-Port]
                  ids: {request_id: {}}
                  sampled-ids: {request_id: {sampled: true}}
                routes:
                  - {path: /secure, service: shop, middlewares: [secure]}
                  - {path: /traced, service: shop, middlewares: [ids]}
                  - {path: /sampled, service: shop, middlewares: [sampled-ids]}
                  - {service: shop}
                """)
            defer { setup.stop() }
            let dir = setup.dir
            let url = setup.url

            for (index, h2) in [false, true].enumerated() {
                let headFile = dir.file("head-\(index).txt")
                let edited = try curl(url + "/secure", (h2 ? ["--http2-prior-knowledge"] : []) + ["-D", headFile], dir: dir)
                #expect(edited.httpStatus == 200)
                let head = headOf(headFile)
                #expect(head.contains("strict-transport-security: max-age=63072000\r\n"), "h2 \(h2): \(head)")
                #expect(head.contains("x-content-type-options: nosniff\r\n"), "h2 \(h2): \(head)")
                #expect(head.contains("x-backend: hidden\r\n") && !head.contains("x-backend: shop"), "h2 \(h2): \(head)")
                #expect(!head.contains("x-backend-port"), "h2 \(h2): \(head)")
            }
            let plainFile = dir.file("plain.txt")
            _ = try curl(url + "/", ["-D", plainFile], dir: dir)
            #expect(headOf(plainFile).contains("x-backend-port"), "routes without the middleware are untouched")

            func seen(_ path: String, _ headers: [String] = [], h2: Bool = false) throws -> String {
                try curl(url + path, (h2 ? ["--http2-prior-knowledge"] : []) + headers.flatMap { ["-H", $0] }, dir: dir).body.lowercased()
            }
            func traceparent(_ head: String) -> String {
                head.components(separatedBy: "traceparent: ").dropFirst().first?.components(separatedBy: "\r\n").first ?? ""
            }
            let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let kept = try seen("/traced/headers", ["traceparent: \(valid)", "tracestate: vendor=1"])
            #expect(traceparent(kept) == valid && kept.contains("tracestate: vendor=1"), "\(kept)")
            for h2 in [false, true] {
                let started = traceparent(try seen("/traced/headers", h2: h2))
                let parts = started.split(separator: "-")
                #expect(parts.count == 4 && parts[0] == "00" && parts[1].count == 32 && parts[2].count == 16 && parts[3] == "00", "\(started)")
            }
            let replaced = try seen("/traced/headers", ["traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "tracestate: vendor=1"])
            #expect(!replaced.contains("4bf92f3577b34da6a3ce929d0e0e4736") && !replaced.contains("tracestate"), "an invalid one starts a new trace: \(replaced)")
            #expect(traceparent(replaced).count == 55)
            #expect(traceparent(try seen("/sampled/headers")).hasSuffix("-01"))
            #expect(!(try seen("/headers", ["traceparent: junk"])).contains("traceparent: 00-"), "no request_id: nothing is touched")
        }
    }

    @Suite struct RoutingTimeoutsThroughTheBinary {
        /// A route's response timeout ends a slow answer with 504 while another route to the
        /// same service waits for it.
        @Test(.timeLimit(.minutes(1)))
        func aRoutesResponseTimeoutOverridesTheProxys() throws {
            let setup = try ShopProxy("route-timeouts", """
                routes:
                  - {path: /quick, service: shop, timeouts: {response: 300ms}, retries: {attempts: 0}}
                  - {service: shop}
                """)
            defer { setup.stop() }
            let dir = setup.dir
            let url = setup.url
            let start = ContinuousClock.now
            let cut = try curl(url + "/quick/slow?ms=3000", dir: dir)
            #expect(cut.httpStatus == 504)
            #expect(ContinuousClock.now - start < .seconds(2), "cut at the route's 300 ms")
            #expect(try curl(url + "/quick/slow?ms=3000", ["--http2-prior-knowledge"], dir: dir).httpStatus == 504)
            #expect(try curl(url + "/slow?ms=800", dir: dir).httpStatus == 200, "the proxy's own timeout elsewhere")
        }
    }

    @Suite struct RoutingIdleTimeoutAndRetriesThroughTheBinary {
        /// A route's idle timeout cuts a response that stalls after its head; a route with
        /// `retries: {attempts: 0}` does not retry a request whose endpoint hung up, where the
        /// service's own retries do.
        @Test(.timeLimit(.minutes(1)))
        func aRoutesIdleTimeoutCutsAStalledBodyAndItsRetriesReplaceTheServices() throws {
            let dir = try ScratchDir("route-idle-retries")
            try dir.write("odd-origin.py", oddOriginSource)
            let odd = try ChildProcess("/usr/bin/env", ["python3", dir.file("odd-origin.py")], dir: dir, label: "odd-origin")
            defer { odd.stop() }
            let oddPort = try odd.waitForListeningPort()
            let shop = try Backend.demo("shop", dir: dir)
            defer { shop.stop() }
            try dir.write("services.yml", servicesYAML([
                ServiceSpec(name: "odd", instances: [.init(port: oddPort)]),
                ServiceSpec(name: "pair", instances: [.init(port: oddPort), .init(port: shop.port)], extraYAML: "retries: {attempts: 2}"),
            ]))
            let (proxy, url, port) = try startProxy(dir, """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                routes:
                  - {path: /stall, service: odd, timeouts: {idle: 300ms}}
                  - {path: /early, service: odd, max_body_bytes: 1000}
                  - {path: /hangup/once, service: pair, retries: {attempts: 0}}
                  - {path: /hangup, service: pair}
                discovery: {provider: file, file: services.yml}
                workers: 1

                """)
            defer { proxy.stop() }

            let start = ContinuousClock.now
            let stalled = try curl(url + "/stall", dir: dir)
            #expect(stalled.exitStatus == 18 || stalled.exitStatus == 56, "curl saw the body cut: \(stalled.exitStatus.map(String.init) ?? "killed") \(stalled.stderr)")
            #expect(ContinuousClock.now - start < .seconds(3), "cut after the route's 300 ms idle, not the origin's 10 s stall")

            // A body that crosses the limit after the response began: the exchange is cut
            // (the client sees its 200 end early), never completed with a body over the limit.
            let upload = try RawConnection(port: port)
            try upload.send("POST /early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n\(String(repeating: "a", count: 500))\r\n")
            #expect(upload.readUntil(contains: "0123456789", timeout: .seconds(5)), "the response began")
            try upload.send("3e8\r\n\(String(repeating: "b", count: 1000))\r\n")
            #expect(upload.readUntilClosed(timeout: .seconds(5)), "the exchange is cut: the connection closes before 100000 bytes")

            // Round robin over the hanging origin and the demo: every other first attempt hangs up.
            let withRetries = try (0..<4).map { _ in try curl(url + "/hangup", dir: dir).httpStatus }
            #expect(withRetries.allSatisfy { $0 == 200 }, "the service's retries: \(withRetries)")
            let withoutRetries = try (0..<4).map { _ in try curl(url + "/hangup/once", dir: dir).httpStatus }
            #expect(withoutRetries.contains(502) && withoutRetries.contains(200), "the route's attempts: 0: \(withoutRetries)")
        }
    }

    @Suite struct RateLimitMiddlewareThroughTheBinary {
        @Test(.timeLimit(.minutes(1)))
        func aClientOverItsBucketGets429WithRetryAfter() throws {
            let setup = try ShopProxy("route-rate-limit", """
                middlewares:
                  per-address: {rate_limit: {rate: 6/m, burst: 2}}
                  per-key: {rate_limit: {rate: 6/m, burst: 1, header: X-API-Key}}
                routes:
                  - {path: /address, service: shop, middlewares: [per-address]}
                  - {path: /key, service: shop, middlewares: [per-key]}
                """, workers: 2)
            defer { setup.stop() }
            let dir = setup.dir
            let url = setup.url
            #expect(try curl(url + "/address", dir: dir).httpStatus == 200)
            #expect(try curl(url + "/address", ["--http2-prior-knowledge"], dir: dir).httpStatus == 200, "one bucket across protocols and workers")
            let headFile = dir.file("limited.txt")
            let limited = try curl(url + "/address", ["-D", headFile], dir: dir)
            #expect(limited.httpStatus == 429)
            let retryAfter = headOf(headFile).components(separatedBy: "retry-after: ").dropFirst().first?.prefix { $0.isNumber } ?? ""
            #expect((Int(retryAfter) ?? 0) >= 1 && (Int(retryAfter) ?? 0) <= 10, "one token every 10 s: \(headOf(headFile))")
            #expect(limited.body.contains("too many requests"))
            #expect(try curl(url + "/address", ["--http2-prior-knowledge"], dir: dir).httpStatus == 429)

            #expect(try curl(url + "/key", ["-H", "X-API-Key: alice"], dir: dir).httpStatus == 200)
            #expect(try curl(url + "/key", ["-H", "X-API-Key: alice"], dir: dir).httpStatus == 429)
            #expect(try curl(url + "/key", ["-H", "X-API-Key: bob"], dir: dir).httpStatus == 200, "each key its own bucket")

            // HEAD answers of the proxy's own (429 here, 404 from respondError) carry no body.
            let connection = try RawConnection(port: setup.port)
            try connection.send("HEAD /address HTTP/1.1\r\nHost: x\r\n\r\nHEAD /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse(method: "HEAD").status == 429)
            #expect(try connection.readResponse(method: "HEAD").status == 404)
            let afterHeads = try connection.readResponse()
            #expect(afterHeads.status == 404 && afterHeads.bodyText.hasPrefix("no route"), "\(afterHeads.bodyText)")
            // Over HTTP/2 a body on a HEAD answer is a protocol error to the client.
            for path in ["/address", "/nothing"] {
                let head = try curl(url + path, ["--http2-prior-knowledge", "-I"], dir: dir)
                #expect(head.exitStatus == 0 && [429, 404].contains(head.httpStatus), "\(path): \(head.stderr)")
            }
        }

        /// The attack: one peer (a trusted proxy) claims a new client address per request.
        /// The table is fixed: memory does not grow, and a client being limited stays limited.
        @Test(.timeLimit(.minutes(2)))
        func sprayingClientAddressesCostsNoMemoryAndFreesNoLimitedClient() throws {
            let setup = try ShopProxy("route-rate-limit-spray", """
                middlewares:
                  limit: {rate_limit: {rate: 1/m, burst: 1, table_size: 4096}}
                routes:
                  - {service: shop, middlewares: [limit]}
                trusted_proxies: [127.0.0.1]
                """)
            defer { setup.stop() }
            let port = setup.port
            let connection = try RawConnection(port: port)
            func ask(_ client: String) throws -> Int {
                try connection.send("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: \(client)\r\n\r\n")
                return try connection.readResponse().status
            }
            #expect(try ask("10.99.99.99") == 200)
            #expect(try ask("10.99.99.99") == 429)
            // Warm up, then measure while 30 000 new addresses arrive.
            for i in 0..<2_000 { _ = try ask("172.16.\(i / 256).\(i % 256)") }
            let before = residentBytes(pid: setup.proxy.pid) ?? 0
            var answered = [Int: Int]()
            for i in 0..<30_000 {
                answered[try ask("10.\(i / 65_536).\((i / 256) % 256).\(i % 256)"), default: 0] += 1
            }
            let after = residentBytes(pid: setup.proxy.pid) ?? 0
            #expect(after - before < 4 << 20, "RSS grew from \(before) to \(after)")
            #expect(answered[200, default: 0] <= 2 * 4096, "the spray as a whole is held to about a token per slot: \(answered)")
            #expect(try ask("10.99.99.99") == 429, "the limited client is still limited")
        }
    }

    @Suite struct BasicAuthMiddlewareThroughTheBinary {
        /// htpasswd users get through over HTTP/1.1 and HTTP/2; anyone else gets 401 with
        /// the realm; the Authorization header stays at the proxy unless configured; a
        /// changed file is picked up without a reload.
        @Test(.timeLimit(.minutes(1)))
        func usersOfTheFileGetThroughOthersGet401AndTheFileReloads() throws {
            let setup = try ShopProxy("route-basic-auth", """
                middlewares:
                  staff: {basic_auth: {file: staff.htpasswd, realm: Staff only}}
                  staff-forwarded: {basic_auth: {file: staff.htpasswd, forward_authorization: true}}
                routes:
                  - {path: /staff, service: shop, middlewares: [staff]}
                  - {path: /passthrough, service: shop, middlewares: [staff-forwarded]}
                  - {service: shop}
                """, prepare: { dir in
                    let made = try runCommand("/usr/bin/htpasswd", ["-cbB", dir.file("staff.htpasswd"), "alice", "s3cret"], dir: dir, label: "htpasswd")
                    #expect(made.status == 0, "\(made.stderr)")
                    let sha = try runCommand("/usr/bin/openssl", ["passwd", "-6", "s3cret"], dir: dir, label: "openssl-passwd")
                    try dir.write("staff.htpasswd", dir.read("staff.htpasswd") + "carol:\(sha.stdout.trimmingCharacters(in: .whitespacesAndNewlines))\n")
                })
            defer { setup.stop() }
            let (dir, url) = (setup.dir, setup.url)

            // HEAD answers carry no body, so the next response on the connection is read right.
            let connection = try RawConnection(port: setup.port)
            try connection.send("HEAD /staff HTTP/1.1\r\nHost: x\r\n\r\nHEAD /staff HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse(method: "HEAD").status == 401)
            #expect(try connection.readResponse(method: "HEAD").status == 401)

            for h2 in [false, true] {
                let mode = h2 ? ["--http2-prior-knowledge"] : []
                let headFile = dir.file("challenge-\(h2).txt")
                let anonymous = try curl(url + "/staff/headers", mode + ["-D", headFile], dir: dir)
                #expect(anonymous.httpStatus == 401, "h2 \(h2)")
                #expect(headOf(headFile).contains("www-authenticate: basic realm=\"staff only\", charset=\"utf-8\""), "h2 \(h2): \(headOf(headFile))")
                #expect(try curl(url + "/staff/headers", mode + ["-u", "alice:wrong"], dir: dir).httpStatus == 401)
                #expect(try curl(url + "/staff/headers", mode + ["-u", "mallory:s3cret"], dir: dir).httpStatus == 401)
                let alice = try curl(url + "/staff/headers", mode + ["-u", "alice:s3cret"], dir: dir)
                #expect(alice.httpStatus == 200, "h2 \(h2)")
                #expect(!alice.body.lowercased().contains("authorization"), "the credentials stay at the proxy: \(alice.body)")
                #expect(try curl(url + "/staff/headers", mode + ["-u", "carol:s3cret"], dir: dir).httpStatus == 200, "SHA-crypt $6$")
            }
            let forwarded = try curl(url + "/passthrough/headers", ["-u", "alice:s3cret"], dir: dir)
            #expect(forwarded.httpStatus == 200 && forwarded.body.lowercased().contains("authorization: basic "), "\(forwarded.body)")
            #expect(try curl(url + "/", dir: dir).httpStatus == 200, "other routes are open")

            // A new user: the watcher picks the changed file up.
            let added = try runCommand("/usr/bin/htpasswd", ["-bB", dir.file("staff.htpasswd"), "bob", "hunter2"], dir: dir, label: "htpasswd-bob")
            #expect(added.status == 0)
            try waitFor("bob to be let in", timeout: .seconds(10)) {
                (try? curl(url + "/staff/", ["-u", "bob:hunter2"], dir: dir).httpStatus) == 200
            }
            // A file broken on disk keeps the users that were loaded.
            try dir.writeInPlace("staff.htpasswd", "alice:plain-text\n")
            pause(.milliseconds(1_500))
            #expect(try curl(url + "/staff/", ["-u", "bob:hunter2"], dir: dir).httpStatus == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func checkRefusesAPlainTextPassword() throws {
            let dir = try ScratchDir("basic-auth-check")
            try dir.write("users.htpasswd", "alice:s3cret\n")
            try dir.write("switchyard.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                middlewares:
                  staff: {basic_auth: {file: users.htpasswd}}
                routes:
                  - {service: shop, middlewares: [staff]}

                """)
            let result = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("switchyard.yml")], dir: dir, label: "check")
            #expect(result.status != 0)
            #expect((result.stdout + result.stderr).contains("users.htpasswd:1: user 'alice' has no bcrypt"), "\(result.stdout) \(result.stderr)")
        }
    }
}

/// An origin that misbehaves on purpose: `/stall` sends its head and half its body, then
/// waits 10 s; `/hangup...` closes without answering; anything else is answered.
private let oddOriginSource = #"""
import socket, socketserver, time

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while True:
                line = self.rfile.readline(65536)
                if not line.strip():
                    return
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                target = line.split()[1]
                if target.startswith(b"/stall"):
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                    self.wfile.flush()
                    time.sleep(10)
                    return
                if target.startswith(b"/hangup"):
                    return
                if target.startswith(b"/early"):
                    # Answers at once, before the body, then reads whatever comes until the close.
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
                    self.wfile.flush()
                    while self.rfile.read1(65536):
                        pass
                    return
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        except OSError:
            pass

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#
