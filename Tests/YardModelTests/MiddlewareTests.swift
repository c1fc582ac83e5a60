// Middlewares as values: config text in, the route's steps (or a named error) out.

import Foundation
import Testing
@testable import YardModel

private func load(_ middlewares: String, routes: String) throws(ConfigError) -> SwitchyardConfig {
    try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\nmiddlewares:\n\(middlewares)routes:\n\(routes)", path: "switchyard.yml")
}

private func error(_ middlewares: String, routes: String = "  - {service: s}\n") -> String {
    do {
        _ = try load(middlewares, routes: routes)
        return "no error"
    } catch {
        return error.description
    }
}

@Suite struct MiddlewareConfig {
    @Test func aRouteListsNamedMiddlewaresInOrder() throws {
        let config = try load("""
              strip: {strip_prefix: [/shop, /store]}
              tidy: {headers: {set: {X-Env: prod}, remove: [X-Debug]}}
              ids: {request_id: {header: X-Trace-ID}}

            """, routes: "  - {path: /shop, service: s, middlewares: [tidy, strip, ids]}\n")
        #expect(config.routes[0].middlewares.map(\.name) == ["tidy", "strip", "ids"])
        #expect(config.routes[0].middlewares[1].kind == .stripPrefix(["/shop", "/store"]))
        #expect(config.routes[0].middlewares[2].kind == .requestID(header: "X-Trace-ID"))
    }

    @Test func redirectsRateLimitsAndResponseHeadersLoad() throws {
        let config = try load("""
              https: {redirect_scheme: https}
              https-8443: {redirect_scheme: {scheme: https, port: 8443, permanent: false}}
              moved: {redirect: {from: /blog, to: "https://blog.example.com/posts"}}
              limit: {rate_limit: {rate: 600/m, burst: 5, header: X-API-Key}}
              hsts: {headers: {response: {set: {Strict-Transport-Security: max-age=63072000}, remove: [Server]}}}
              ids: {request_id: {traceparent: false}}

            """, routes: "  - {service: s, middlewares: [https, moved, limit, hsts, ids]}\n")
        let kinds = config.routes[0].middlewares.map(\.kind)
        #expect(kinds[0] == .redirectScheme(RedirectScheme(scheme: "https", port: nil, permanent: true)))
        #expect(kinds[1] == .redirect(PathRedirect(from: "/blog", to: "https://blog.example.com/posts")))
        #expect(kinds[2] == .rateLimit(RateLimit(rate: 10, burst: 5, header: "X-API-Key")))
        #expect(kinds[3] == .headers(HeaderEdits(responseSet: [HeaderSetting(name: "Strict-Transport-Security", value: "max-age=63072000")],
                                                 responseRemove: ["Server"])))
        #expect(kinds[4] == .requestID(header: "X-Request-ID", traceparent: false))
    }

    @Test func routeSettingsLoadAndBadOnesAreNamed() throws {
        let config = try load("", routes: """
              - {service: s, max_body_bytes: 1MiB, timeouts: {connect: 2s, response: 30s, idle: 5s}, retries: {attempts: 0}}

            """)
        let settings = config.routes[0].settings
        #expect(settings.maxBodyBytes == 1_048_576)
        #expect(settings.connectTimeoutMs == 2_000 && settings.responseTimeoutMs == 30_000 && settings.idleTimeoutMs == 5_000)
        #expect(settings.retry?.attempts == 0)
        #expect(error("", routes: "  - {service: s, max_body_bytes: lots}\n").contains("routes[0].max_body_bytes"))
        #expect(error("", routes: "  - {service: s, timeouts: {read: 1s}}\n").contains("read"))
        #expect(error("", routes: "  - {service: s, retries: {attempts: 9}}\n").contains("out of range"))
    }

    @Test func eachBadMiddlewareIsNamedWithItsKey() {
        #expect(error("  a: {strip_prefix: shop}\n").contains("middlewares.a.strip_prefix: 'shop' must start with '/'"))
        #expect(error("  a: {strip_prefix: /}\n").contains("stripping '/' changes nothing"))
        #expect(error("  a: {add_prefix: /v2, replace_path: /x}\n").contains("exactly one type key"))
        #expect(error("  a: {strip_prefx: [/a]}\n").contains("did you mean 'strip_prefix'"))
        #expect(error("  a: {headers: {set: {Content-Length: '5'}}}\n").contains("cannot change it"))
        #expect(error("  a: {headers: {}}\n").contains("give 'set:', 'add:', 'remove:' or 'response:'"))
        #expect(error("  a: {headers: {response: {set: {Content-Length: '1'}}}}\n").contains("cannot change it"))
        #expect(error("  a: {redirect_scheme: ftp}\n").contains("the scheme is https or http"))
        #expect(error("  a: {redirect: {from: /a, to: 'b'}}\n").contains("must be a path (/new) or an http(s):// URL"))
        #expect(error("  a: {redirect: {from: /a, to: '/b/$1'}}\n").contains("redirect takes a prefix, not a regex"))
        #expect(error("  a: {redirect: {from: /a, to: /a/b}}\n").contains("every redirect would be redirected again"))
        #expect(error("  a: {redirect: {from: /a, to: /ab}}\n") == "no error")
        #expect(error("  a: {rate_limit: {rate: 10/d}}\n").contains("is not a rate"))
        #expect(error("  a: {rate_limit: {rate: -1}}\n").contains("is not a rate"))
        #expect(error("  a: {rate_limit: {rate: 1/s, table_size: 3000}}\n").contains("not a power of two"))
        #expect(error("  a: {rate_limit: {burst: 3}}\n").contains("rate"))
        #expect(error("  a: {replace_path: '/a b'}\n").contains("plain /segments"))
        #expect(error("  a: {ip_allow: [10.0.0.0/33]}\n").contains("middlewares.a.ip_allow[0]: '10.0.0.0/33' is not a network"))
        #expect(error("  a: {ip_allow: []}\n").contains("an empty list would refuse everyone"))
        #expect(error("  a: {add_prefix: /v2}\n", routes: "  - {service: s, middlewares: [b]}\n")
            .contains("routes[0].middlewares: no middleware named 'b'; defined: a"))
        #expect(error("  a: {add_prefix: /v2}\n  b: {add_prefix: /v3}\n", routes: "  - {service: s, middlewares: [a, b]}\n")
            .contains("'b' and 'a' are both add_prefix"))
        #expect(error("  a: {strip_prefix: /x}\n  b: {replace_path: /y}\n", routes: "  - {service: s, middlewares: [a, b]}\n")
            .contains("'b' (replace_path) sets the whole path"))
    }
}

@Suite struct MiddlewareSteps {
    private func steps(_ kinds: [MiddlewareKind]) -> RouteSteps {
        RouteSteps(names: kinds.map(\.typeName), kinds: kinds)
    }

    @Test func stripPrefixRemovesOnASegmentBoundaryOnly() {
        let s = steps([.stripPrefix(["/api", "/static/"])])
        func stripped(_ path: String) -> Int { Array(path.utf8).withUnsafeBytes { s.strippedLength($0) } }
        #expect(stripped("/api") == 4)
        #expect(stripped("/api/x") == 4)
        #expect(stripped("/apis") == 0)
        #expect(stripped("/static/a.css") == 8)
        #expect(stripped("/") == 0)
    }

    @Test func headersDropSetAndRemovedNamesInAnyCaseAndAddSetLines() {
        let s = steps([.headers(HeaderEdits(set: [HeaderSetting(name: "X-Env", value: "prod")], remove: ["X-Debug"]))])
        func drops(_ name: String) -> Bool { Array(name.utf8).withUnsafeBytes { s.drops($0) } }
        #expect(drops("x-debug") && drops("X-ENV") && !drops("X-Other"))
        #expect(String(decoding: s.addLines, as: UTF8.self) == "X-Env: prod\r\n")
        #expect(!s.rewritesPath && !s.isEmpty)
        #expect(RouteSteps.none.isEmpty)
    }
}

@Suite struct MiddlewareRedirectLocations {
    private func text(_ write: ((UnsafeRawBufferPointer) -> Void) -> Void) -> String {
        var bytes: [UInt8] = []
        write { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func redirectSchemeKeepsHostPathAndQueryAndDropsThePort() {
        let https = RedirectScheme()
        let host = bytes("shop.example.com:8080"), path = bytes("/cart"), query = bytes("a=1&b=2")
        let location = host.withUnsafeBytes { h in path.withUnsafeBytes { p in query.withUnsafeBytes { q in
            text { https.writeLocation(host: h, path: p, query: q, $0) } } } }
        #expect(location == "https://shop.example.com/cart?a=1&b=2")
        let withPort = RedirectScheme(scheme: "https", port: 8443)
        let noQuery = host.withUnsafeBytes { h in text { withPort.writeLocation(host: h, path: UnsafeRawBufferPointer(start: nil, count: 0), query: nil, $0) } }
        #expect(noQuery == "https://shop.example.com:8443/")
        let v6 = bytes("[::1]:80")
        #expect(v6.withUnsafeBytes { h in text { https.writeLocation(host: h, path: UnsafeRawBufferPointer(start: nil, count: 0), query: nil, $0) } }
            == "https://[::1]/")
        #expect(https.isSatisfied(secure: true) && !https.isSatisfied(secure: false))
    }

    @Test func pathRedirectTakesAPrefixOnASegmentBoundaryAndKeepsTheRest() {
        let moved = PathRedirect(from: "/blog", to: "https://blog.example.com/posts")
        func location(_ path: String, _ query: String? = nil, _ redirect: PathRedirect) -> String? {
            let p = bytes(path), q = query.map(bytes)
            return p.withUnsafeBytes { pb in
                guard let matched = redirect.matchedLength(pb) else { return nil }
                if let q { return q.withUnsafeBytes { qb in text { redirect.writeLocation(path: pb, matched: matched, query: qb, $0) } } }
                return text { redirect.writeLocation(path: pb, matched: matched, query: nil, $0) }
            }
        }
        #expect(location("/blog", nil, moved) == "https://blog.example.com/posts")
        #expect(location("/blog/2024/x", "p=2", moved) == "https://blog.example.com/posts/2024/x?p=2")
        #expect(location("/blogs", nil, moved) == nil, "a segment boundary, like strip_prefix")
        #expect(location("/other", nil, moved) == nil)
        let slash = PathRedirect(from: "/old/", to: "/new/")
        #expect(location("/old/a", nil, slash) == "/new/a")
        let exact = PathRedirect(from: "/index.html", to: "/", exact: true)
        #expect(location("/index.html", nil, exact) == "/")
        #expect(location("/index.html/x", nil, exact) == nil)
    }

    @Test func redirectStatusKeepsTheMethodForUnsafeRequests() {
        #expect(RedirectStatus.code(permanent: true, safeMethod: true) == 301)
        #expect(RedirectStatus.code(permanent: false, safeMethod: true) == 302)
        #expect(RedirectStatus.code(permanent: true, safeMethod: false) == 308)
        #expect(RedirectStatus.code(permanent: false, safeMethod: false) == 307)
    }
}

@Suite struct MiddlewareTraceparentValidation {
    private func valid(_ value: String) -> Bool { Array(value.utf8).withUnsafeBytes { TraceContext.isValidTraceparent($0) } }

    @Test func onlyTheW3CFormatPasses() {
        #expect(valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        #expect(valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"), "a later version may carry more")
        #expect(!valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"), "version 00 is exactly 55 bytes")
        #expect(!valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"))
        #expect(!valid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "version ff is invalid")
        #expect(!valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), "upper case hex")
        #expect(!valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), "all-zero trace-id")
        #expect(!valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), "all-zero parent-id")
        #expect(!valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"))
        #expect(!valid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(!valid("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(!valid(""))
    }
}

@Suite struct MiddlewareRateLimiterBuckets {
    @Test func aBurstPassesThenTokensComeAtTheRate() {
        let limiter = RateLimiter(RateLimit(rate: 10, burst: 3, tableSize: 1024))
        let t0: Int64 = 5_000_000
        #expect((0..<3).allSatisfy { _ in limiter.admit(hash: 42, nowMicros: t0) == 0 })
        let wait = limiter.admit(hash: 42, nowMicros: t0)
        #expect(wait == 100_000, "one token every 100 ms")
        #expect(RateLimiter.retryAfterSeconds(wait) == 1)
        #expect(limiter.admit(hash: 42, nowMicros: t0 + 100_000) == 0)
        #expect(limiter.admit(hash: 42, nowMicros: t0 + 100_000) > 0)
        #expect(limiter.admit(hash: 43 << 48 | 7, nowMicros: t0) == 0, "another client has its own bucket")
    }

    @Test func sprayingKeysNeitherGrowsTheTableNorFreesALimitedClient() {
        let limiter = RateLimiter(RateLimit(rate: 1, burst: 1, tableSize: 1024))
        let t0: Int64 = 1_000_000
        let victim: UInt64 = 0xABCD_0000_0000_0011
        #expect(limiter.admit(hash: victim, nowMicros: t0) == 0)
        #expect(limiter.admit(hash: victim, nowMicros: t0) > 0)
        var admitted = 0
        var state: UInt64 = 1
        for _ in 0..<100_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            if limiter.admit(hash: state, nowMicros: t0) == 0 { admitted += 1 }
        }
        #expect(admitted <= 2 * 1024, "the spray as a whole gets at most a token per slot")
        #expect(limiter.admit(hash: victim, nowMicros: t0) > 0, "a limited client stays limited")
        #expect(limiter.admit(hash: victim, nowMicros: t0 + 2_000_000) == 0)
    }

    @Test func parsedRatesAreTokensPerSecond() throws {
        let config = try ConfigLoader.loadConfig(text: """
            listeners:
              - address: :8080
            middlewares:
              a: {rate_limit: {rate: 3600/h}}
            routes:
              - {service: s, middlewares: [a]}

            """, path: "switchyard.yml")
        #expect(config.routes[0].middlewares[0].kind == .rateLimit(RateLimit(rate: 1, burst: 1)))
    }
}

@Suite struct MiddlewareHtpasswdUsers {
    // Made with `htpasswd -nbB alice s3cret` and `openssl passwd -6 -salt abcdefgh s3cret` / `-5 -salt saltsalt`.
    static let bcrypt = "$2y$05$DJOpC6HE0kbhb0ffjJxCbe1FCVtKDJ0T7jeFBynOplgPFysg20t0."
    static let sha512 = "$6$abcdefgh$Z7KfoKnKTSZrzo5VZ0YubGLQOj9ov6sHo9TmE3zIU/LHKhpE30zCnZ0mcIXYf9r9rQ4DYaXoxAFSPFlcWdxjB."
    static let sha256 = "$5$saltsalt$i1q2ZQzc.tl/BQ6CHiENAcVDvEY6nJ1OWlWXKh94b1."

    private func users(_ text: String) throws -> Htpasswd {
        try Htpasswd.parse(text, path: "users.htpasswd").get()
    }

    private func check(_ file: Htpasswd, _ user: String, _ password: String) -> Bool {
        Array(user.utf8).withUnsafeBytes { u in Array(password.utf8).withUnsafeBytes { p in file.check(user: u, password: p) } }
    }

    @Test func bcryptAndSHACryptVerifyAndNothingElseDoes() throws {
        let file = try users("# staff\nalice:\(Self.bcrypt)\n\nbob:\(Self.sha512)\ncarol:\(Self.bcrypt.replacingOccurrences(of: "$2y$", with: "$2b$"))\ndave:\(Self.sha256)\n")
        #expect(check(file, "alice", "s3cret"))
        #expect(check(file, "alice", "s3cret"), "the second time from the verified cache")
        #expect(!check(file, "alice", "s3cret!") && !check(file, "alice", "") && !check(file, "alice", "S3cret"))
        #expect(check(file, "bob", "s3cret") && !check(file, "bob", "wrong"))
        #expect(check(file, "carol", "s3cret"), "$2b$ is the same bcrypt")
        #expect(check(file, "dave", "s3cret"))
        #expect(!check(file, "mallory", "s3cret"), "an unknown user fails (after a crypt of the same cost)")
        #expect(!check(file, "ALICE", "s3cret"), "user names are exact")
    }

    @Test func plainTextMD5AndBrokenLinesAreRefusedWithTheirLine() {
        func problem(_ text: String) -> String {
            if case .failure(let problem) = Htpasswd.parse(text, path: "u.htpasswd") { return problem.message }
            return "parsed"
        }
        #expect(problem("alice:s3cret\n").contains("u.htpasswd:1: user 'alice' has no bcrypt"))
        #expect(problem("alice:\(Self.bcrypt)\nbob:$apr1$x$y\n").contains("u.htpasswd:2:"))
        #expect(problem("bob:{SHA}abc=\n").contains("refused"))
        #expect(problem("no-colon\n").contains("expected 'user:hash'"))
        #expect(problem("a:\(Self.bcrypt)\na:\(Self.bcrypt)\n").contains("listed twice"))
        #expect(problem("# nobody\n").contains("no users"))
    }

    @Test func authorizationValuesDecodeStrictly() {
        func decoded(_ value: String) -> String? {
            Array(value.utf8).withUnsafeBytes { v in
                BasicCredentials.withDecoded(v) { u, p in String(decoding: u, as: UTF8.self) + "|" + String(decoding: p, as: UTF8.self) }
            }
        }
        #expect(decoded("Basic YWxpY2U6czNjcmV0") == "alice|s3cret")
        #expect(decoded("basic   YWxpY2U6czNjcmV0  ") == "alice|s3cret")
        #expect(decoded("Basic YTpiOmM=") == "a|b:c", "the password may hold a colon")
        #expect(decoded("Basic YWxpY2U=") == nil, "no colon")
        #expect(decoded("Bearer YWxpY2U6czNjcmV0") == nil)
        #expect(decoded("Basic YWxp*2U6czNjcmV0") == nil)
        #expect(decoded("Basic YWxpY2U6czNjcmV") == nil, "not a multiple of 4")
        #expect(decoded("Basic " + String(repeating: "QUFB", count: 400)) == nil, "too long")
        #expect(decoded("Basic") == nil)
    }
}
