// Route matchers as values: a config text in, the route a request gets out.

import Testing
@testable import YardModel

/// A request to route: host, path with optional `?query`, method and headers.
private struct Probe: RouteFields {
    var host: String
    var path: String
    var method = "GET"
    var headers: [(String, String)] = []

    func contains(name: [UInt8], value: [UInt8]?) -> Bool {
        headers.contains { Array($0.0.lowercased().utf8) == name && (value == nil || Array($0.1.utf8) == value) }
    }
}

/// The configured route name the table picks for `probe`, or "404".
private func routed(_ table: RoutingTable, _ probe: Probe) -> String {
    let parts = probe.path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let (host, path, query, method) = (Array(probe.host.utf8), Array(String(parts[0]).utf8),
                                       Array((parts.count > 1 ? String(parts[1]) : "").utf8), Array(probe.method.utf8))
    let route = host.withUnsafeBytes { h in path.withUnsafeBytes { p in query.withUnsafeBytes { q in method.withUnsafeBytes { m in
        table.route(host: h, path: p, method: m, query: q, fields: probe)
    } } } }
    return route?.name ?? "404"
}

private func table(_ routes: String) throws -> RoutingTable {
    let config = try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\nroutes:\n\(routes)", path: "switchyard.yml")
    return buildRoutingTable(version: 1, routes: config.routes, catalog: ServiceCatalog(services: []))
}

@Suite struct RoutingMatchers {
    @Test func aWildcardHostStandsForExactlyOneLabel() throws {
        let t = try table("  - {name: any-shop, host: '*.shop.example', service: s}\n")
        #expect(routed(t, Probe(host: "eu.shop.example", path: "/")) == "any-shop")
        #expect(routed(t, Probe(host: "EU.Shop.Example:8443", path: "/")) == "any-shop")
        #expect(routed(t, Probe(host: "shop.example", path: "/")) == "404")
        #expect(routed(t, Probe(host: "a.eu.shop.example", path: "/")) == "404")
        #expect(routed(t, Probe(host: ".shop.example", path: "/")) == "404")
    }

    @Test func anExactHostBeatsAWildcardWhichBeatsAnyHost() throws {
        let t = try table("""
              - {name: catch-all, service: s}
              - {name: wild, host: '*.example.com', service: s}
              - {name: exact, host: [www.example.com, example.com], service: s}

            """)
        #expect(routed(t, Probe(host: "www.example.com", path: "/")) == "exact")
        #expect(routed(t, Probe(host: "example.com", path: "/x")) == "exact")
        #expect(routed(t, Probe(host: "api.example.com", path: "/")) == "wild")
        #expect(routed(t, Probe(host: "other.test", path: "/")) == "catch-all")
    }

    @Test func anExactPathMatchesOnlyItselfAndBeatsALongerPrefix() throws {
        let t = try table("""
              - {name: prefix, path: /healthz/deep, service: s}
              - {name: exact, path_exact: /healthz, service: s}
              - {name: root, service: s}

            """)
        #expect(routed(t, Probe(host: "h", path: "/healthz")) == "exact")
        #expect(routed(t, Probe(host: "h", path: "/healthz/")) == "root")
        #expect(routed(t, Probe(host: "h", path: "/healthz/deep/x")) == "prefix")
    }

    @Test func methodsHeadersAndQueryNarrowARouteAndTheNarrowerOneWins() throws {
        let t = try table("""
              - {name: api, path: /api, service: s}
              - {name: api-writes, path: /api, methods: [POST, PUT], service: s}
              - {name: api-canary, path: /api, headers: {X-Env: canary}, service: s}
              - {name: api-debug, path: /api, headers_present: [X-Debug], query: {v: "2"}, service: s}

            """)
        #expect(routed(t, Probe(host: "h", path: "/api/x")) == "api")
        #expect(routed(t, Probe(host: "h", path: "/api/x", method: "POST")) == "api-writes")
        #expect(routed(t, Probe(host: "h", path: "/api/x", method: "post")) == "api", "methods are case-sensitive")
        #expect(routed(t, Probe(host: "h", path: "/api", headers: [("x-env", "canary")])) == "api-canary")
        #expect(routed(t, Probe(host: "h", path: "/api", headers: [("X-Env", "Canary")])) == "api", "header values compare exactly")
        #expect(routed(t, Probe(host: "h", path: "/api?a=1&v=2", headers: [("X-Debug", "")])) == "api-debug")
        #expect(routed(t, Probe(host: "h", path: "/api?v=22", headers: [("X-Debug", "1")])) == "api")
        #expect(routed(t, Probe(host: "h", path: "/api?v=2", headers: [])) == "api")
    }

    @Test func queryParametersMatchByExactRawValueOrPresence() {
        func has(_ query: String, _ name: String, _ value: String?) -> Bool {
            let condition = ByteCondition(RouteCondition(name: name, value: value), lowercaseName: false)
            return Array(query.utf8).withUnsafeBytes { RouteMatcher.query($0, has: condition) }
        }
        #expect(has("a=1&b=2", "b", "2"))
        #expect(has("a=1&b=2", "a", nil))
        #expect(has("flag&b=2", "flag", nil))
        #expect(has("flag&b=2", "flag", ""))
        #expect(!has("ab=1", "a", nil))
        #expect(!has("a=12", "a", "1"))
        #expect(!has("", "a", nil))
        #expect(!has("&&=&", "a", nil))
        #expect(has("b=1&b=2", "b", "2"), "any repetition of the parameter may match")
    }

    @Test func anExplicitPriorityBeatsSpecificityAndTiesKeepFileOrder() throws {
        let t = try table("""
              - {name: specific, host: shop.example, path: /cart, service: s}
              - {name: maintenance, priority: 10, service: s}
              - {name: first, path: /x, service: s}
              - {name: second, path: /x, query_present: [a], priority: -1, service: s}

            """)
        #expect(routed(t, Probe(host: "shop.example", path: "/cart")) == "maintenance")
        #expect(t.routes.map { $0.name ?? "" } == ["maintenance", "specific", "first", "second"])
    }

    @Test func theHostAndPathOnlyLookupSkipsRoutesWithConditions() throws {
        let t = try table("  - {name: posts, methods: [POST], service: s}\n  - {name: all, path: /a, service: s}\n")
        let route = Array("h".utf8).withUnsafeBytes { h in Array("/a".utf8).withUnsafeBytes { p in t.route(host: h, path: p) } }
        #expect(route?.name == "all")
    }
}

@Suite struct RoutingConfigErrors {
    private func error(_ routes: String) -> String {
        do {
            _ = try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\nroutes:\n\(routes)", path: "switchyard.yml")
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func eachBadMatcherIsNamedWithItsLineAndKey() {
        #expect(error("  - {host: 'a.*.example', service: s}\n").contains("routes[0].host: 'a.*.example': a wildcard is '*.' in front"))
        #expect(error("  - {host: '*.com', service: s}\n").contains("every name under a top-level domain"))
        #expect(error("  - {host: [], service: s}\n").contains("routes[0].host: expected at least one value"))
        #expect(error("  - {path: /a, path_exact: /a, service: s}\n").contains("either 'path' (a prefix) or 'path_exact'"))
        #expect(error("  - {methods: [get], service: s}\n").contains("write 'GET'"))
        #expect(error("  - {methods: ['GE T'], service: s}\n").contains("is not an HTTP method"))
        #expect(error("  - {headers: {'X Bad': 1}, service: s}\n").contains("routes[0].headers.X Bad: 'X Bad' is not a valid header name"))
        #expect(error("  - {query: {v: 'a&b'}, service: s}\n").contains("has a character a request cannot carry"))
        #expect(error("  - {priority: 5000, service: s}\n").contains("routes[0].priority"))
        #expect(error("  - {path_exact: /a?b, service: s}\n").contains("use 'query:' for parameters"))
        #expect(error("  - {hosts: a, service: s}\n").contains("did you mean 'host'"))
    }

    @Test func twoRoutesWithTheSameMatchAreRefusedButAMethodMakesThemDifferent() {
        #expect(error("  - {path: /a, service: s}\n  - {path: /a, service: t}\n").contains("duplicates the route at line 4"))
        #expect(error("  - {path: /a, service: s}\n  - {path: /a, methods: GET, service: t}\n") == "no error")
    }
}
