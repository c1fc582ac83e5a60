// `redirect` with regex + replacement and the `path_regex` matcher as values: config text
// in, a Location (or a named error) and the route a request gets out.

import Testing
@testable import YardModel

private func load(_ text: String) throws(ConfigError) -> SwitchyardConfig {
    try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\n\(text)", path: "switchyard.yml")
}

private func problem(_ text: String) -> String {
    do {
        _ = try load(text)
        return "no error"
    } catch {
        return error.description
    }
}

/// The Location `redirect` writes for `url` pieces, or what it did instead.
private func location(_ redirect: RegexRedirect, secure: Bool = false, host: String, path: String, query: String? = nil) -> String {
    var out: [UInt8] = []
    let outcome = Array(host.utf8).withUnsafeBytes { h in
        Array(path.utf8).withUnsafeBytes { p in
            query.map { Array($0.utf8) }.map { q in q.withUnsafeBytes { redirect.writeLocation(secure: secure, host: h, path: p, query: $0) { out += $0 } } }
                ?? redirect.writeLocation(secure: secure, host: h, path: p, query: nil) { out += $0 }
        }
    }
    switch outcome {
    case .redirected: return String(decoding: out, as: UTF8.self)
    case .noMatch: return "no match"
    case .refused: return out.isEmpty ? "refused" : "refused but wrote \(out)"
    }
}

private func redirect(_ pattern: String, _ replacement: String) throws -> RegexRedirect {
    try RegexRedirect(regex: try LinearRegex(pattern), replacement: replacement)
}

@Suite struct RegexRedirectLocations {
    @Test func theRegexSeesTheWholeURLAndTheReplacementTakesItsGroups() throws {
        let www = try redirect("^https?://www\\.([^/]+)(.*)", "https://${1}$2")
        #expect(location(www, host: "www.example.com", path: "/a/b", query: "x=1&y") == "https://example.com/a/b?x=1&y")
        #expect(location(www, secure: true, host: "www.example.com:8443", path: "") == "https://example.com:8443/", "the port is part of the host")
        #expect(location(www, host: "example.com", path: "/a") == "no match")
        let dollar = try redirect("^http://h/price/(\\d+)$", "/p?amount=$$$1")
        #expect(location(dollar, host: "h", path: "/price/42") == "/p?amount=$42")
    }

    @Test func textAroundTheMatchIsKeptAsGoReplaceKeepsIt() throws {
        let old = try redirect("/old/", "/new/")
        #expect(location(old, host: "h", path: "/old/x", query: "q=/old/") == "http://h/new/x?q=/old/", "only the first match is replaced")
        let zero = try redirect("/v1(/[a-z]+)", "${0}-legacy")
        #expect(location(zero, host: "h", path: "/v1/users/7") == "http://h/v1/users-legacy/7")
    }

    /// The attack: a group capturing an encoded or raw CR LF must not make a second header.
    @Test func aCapturedCRLFNeverBecomesAHeader() throws {
        let any = try redirect("^http://[^/]+/go/(.*)$", "https://target.example/$1")
        #expect(location(any, host: "h", path: "/go/x%0d%0aSet-Cookie:%20a=b") == "https://target.example/x%0d%0aSet-Cookie:%20a=b",
                "percent-encoded stays encoded: one header value")
        #expect(location(any, host: "h", path: "/go/x\r\nSet-Cookie: a=b") == "no match", "'.' does not take \\n, as in Go")
        let prefix = try redirect("^http://[^/]+/go/(.*)", "https://target.example/$1")
        #expect(location(prefix, host: "h", path: "/go/x\r\nSet-Cookie:a=b") == "refused", "the \\n is in the text kept after the match")
        let segment = try redirect("^http://[^/]+/go/([^/]*)$", "https://target.example/$1")
        #expect(location(segment, host: "h", path: "/go/x\r\nSet-Cookie:a=b") == "refused", "a negated class takes CR and LF")
        #expect(location(any, host: "h", path: "/go/a b") == "refused")
        #expect(location(any, host: "h", path: "/go/\u{7f}") == "refused")
        #expect(location(any, host: "h", path: "/go/é") == "refused")
        #expect(any.refusals.count.load(ordering: .relaxed) == 3)
        let empty = try redirect("^.*$", "${0}")
        #expect(location(empty, host: "", path: "/") == "http:///")
    }

    @Test func replacementsGoWouldReadDifferentlyAreRefused() {
        func refusal(_ pattern: String, _ replacement: String) -> String {
            do {
                _ = try redirect(pattern, replacement)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal("(a)", "$1x").contains("write ${1}x"))
        #expect(refusal("(a)", "$name").contains("named groups"))
        #expect(refusal("(a)", "${10}").contains("not $1..$9"))
        #expect(refusal("(a)", "/cost5$").contains("write $$"))
        #expect(refusal("(a)", "$2").contains("only 1"))
        #expect(refusal("a", "$1").contains("no groups"))
        #expect(refusal("(a)", "/x y").contains("space"))
        #expect(refusal("(a)", "").contains("empty"))
        #expect(refusal("(a)", "/$1/${1}/$$") == "accepted")
    }
}

@Suite struct RegexRedirectConfig {
    @Test func aRedirectTakesRegexAndReplacementWithPermanentAsToday() throws {
        let config = try load("""
            middlewares:
              www: {redirect: {regex: "^https?://www\\\\.(.+)", replacement: "https://${1}"}}
              temp: {redirect: {regex: "^http://[^/]+/tmp/(.*)", replacement: "/t/$1", permanent: false}}
            routes:
              - {service: s, middlewares: [www, temp]}

            """)
        let kinds = config.routes[0].middlewares.map(\.kind)
        #expect(kinds[0] == .redirectRegex(try redirect("^https?://www\\.(.+)", "https://${1}")))
        guard case .redirectRegex(let temp) = kinds[1] else { Issue.record("not a regex redirect: \(kinds[1])"); return }
        #expect(!temp.permanent && temp.replacement == "/t/$1" && kinds[0].typeName == "redirect")
    }

    @Test func badRegexRedirectsAreNamedWithTheirKey() {
        #expect(problem("middlewares:\n  r: {redirect: {regex: '(a', replacement: /x}}\n")
            .contains("the redirect regex '(a': missing ')' for the group opened at offset 0"))
        #expect(problem("middlewares:\n  r: {redirect: {regex: '(?=x)a', replacement: /x}}\n").contains("lookaround"))
        #expect(problem("middlewares:\n  r: {redirect: {regex: '^/(a)', replacement: /$1x}}\n").contains("write ${1}x"))
        #expect(problem("middlewares:\n  r: {redirect: {regex: '^/(a)'}}\n").contains("replacement"))
        #expect(problem("middlewares:\n  r: {redirect: {regex: '^/a', replacement: /b, from: /a}}\n").contains("'from' does not go with 'regex'"))
        #expect(problem("middlewares:\n  r: {redirect: {from: /a, to: /b, replacement: /c}}\n").contains("'replacement' goes with 'regex'"))
        #expect(problem("middlewares:\n  r: {redirect: {regex: '', replacement: /c}}\n").contains("empty"))
        #expect(problem("middlewares:\n  r: {redirect: {regex: 'a{1000}', replacement: /c}}\n").contains("counts above 100"))
    }
}

/// A request to route by path (with `?query`) on host `h`.
private func routed(_ table: RoutingTable, _ path: String, host: String = "h") -> String {
    let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let (hostBytes, pathBytes, queryBytes) = (Array(host.utf8), Array(String(parts[0]).utf8), Array((parts.count > 1 ? String(parts[1]) : "").utf8))
    let route = hostBytes.withUnsafeBytes { h in pathBytes.withUnsafeBytes { p in queryBytes.withUnsafeBytes { q in
        table.route(host: h, path: p, method: UnsafeRawBufferPointer(start: nil, count: 0), query: q, fields: NoRouteFields())
    } } }
    return route?.name ?? "404"
}

private func table(_ routes: String) throws -> RoutingTable {
    let config = try load("routes:\n\(routes)")
    return buildRoutingTable(version: 1, routes: config.routes, catalog: ServiceCatalog(services: []))
}

@Suite struct PathRegexRouting {
    @Test func aRegexRouteSitsAfterPrefixesAndBeforeNoPath() throws {
        let t = try table("""
              - {name: catch-all, service: s}
              - {name: users, path_regex: '^/api/v[0-9]+/users/[^/]+$', service: s}
              - {name: api-prefix, path: /api, service: s}
              - {name: exact, path_exact: /api/v1/users/me, service: s}
              - {name: host-any, host: shop.example, service: s}

            """)
        #expect(t.routes.map { $0.name ?? "" } == ["host-any", "exact", "api-prefix", "users", "catch-all"])
        #expect(routed(t, "/api/v2/users/alice") == "api-prefix", "a prefix of the same host class wins")
        #expect(routed(t, "/api/v1/users/me") == "exact")
        #expect(routed(t, "/shop", host: "shop.example") == "host-any", "an exact host beats any host, whatever the path")
    }

    @Test func theRegexIsMatchedAgainstThePathWithoutTheQuery() throws {
        let t = try table("""
              - {name: users, path_regex: '^/v[0-9]+/users/[^/]+$', service: s}
              - {name: images, path_regex: '\\.(png|jpe?g)$', service: s}
              - {name: root, path_regex: '^/$', service: s}
              - {name: rest, path: /x, service: s}

            """)
        #expect(routed(t, "/v2/users/alice?tab=1") == "users")
        #expect(routed(t, "/v2/users/alice/posts") == "404")
        #expect(routed(t, "/v2/users/") == "404")
        #expect(routed(t, "/static/a.JPG") == "404", "case-sensitive")
        #expect(routed(t, "/static/a.jpeg?v=.png") == "images")
        #expect(routed(t, "/static/a.gif?x=.png") == "404", "the query is not searched")
        #expect(routed(t, "/") == "root")
    }

    @Test func plainRoutesKeepTheFastPathAndRegexRoutesAreConditions() throws {
        let t = try table("  - {name: p, path: /a, service: s}\n  - {name: r, path_regex: '^/b', service: s}\n")
        let plain = try #require(t.routes.first { $0.name == "p" })
        let regex = try #require(t.routes.first { $0.name == "r" })
        #expect(!plain.matcher.hasConditions && plain.matcher.pathRegex == nil)
        #expect(regex.matcher.hasConditions && regex.match.summary == "* ~^/b")
    }

    @Test func badPathRegexesAreNamedWithTheirKey() {
        #expect(problem("routes:\n  - {path_regex: '^/(a', service: s}\n").contains("path_regex '^/(a': missing ')'"))
        #expect(problem("routes:\n  - {path_regex: '(\\w+)\\1', service: s}\n").contains("backreference"))
        #expect(problem("routes:\n  - {path: /a, path_regex: '^/a', service: s}\n").contains("not two"))
        #expect(problem("routes:\n  - {path_exact: /a, path_regex: '^/a', service: s}\n").contains("not two"))
        #expect(problem("routes:\n  - {path_regex: '', service: s}\n").contains("empty"))
        #expect(problem("routes:\n  - {path_regex: '^/a', service: s}\n  - {path_regex: '^/a', service: t}\n").contains("duplicates the route"))
        #expect(problem("routes:\n  - {path_regex: '^/a', service: s}\n  - {path_regex: '^/b', service: t}\n") == "no error")
    }
}
