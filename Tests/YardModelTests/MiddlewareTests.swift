// Middlewares as values: config text in, the route's steps (or a named error) out.

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

    @Test func eachBadMiddlewareIsNamedWithItsKey() {
        #expect(error("  a: {strip_prefix: shop}\n").contains("middlewares.a.strip_prefix: 'shop' must start with '/'"))
        #expect(error("  a: {strip_prefix: /}\n").contains("stripping '/' changes nothing"))
        #expect(error("  a: {add_prefix: /v2, replace_path: /x}\n").contains("exactly one type key"))
        #expect(error("  a: {strip_prefx: [/a]}\n").contains("did you mean 'strip_prefix'"))
        #expect(error("  a: {headers: {set: {Content-Length: '5'}}}\n").contains("cannot change it"))
        #expect(error("  a: {headers: {}}\n").contains("give 'set:' or 'remove:'"))
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
        let s = steps([.headers(set: [HeaderSetting(name: "X-Env", value: "prod")], remove: ["X-Debug"])])
        func drops(_ name: String) -> Bool { Array(name.utf8).withUnsafeBytes { s.drops($0) } }
        #expect(drops("x-debug") && drops("X-ENV") && !drops("X-Other"))
        #expect(String(decoding: s.addLines, as: UTF8.self) == "X-Env: prod\r\n")
        #expect(!s.rewritesPath && !s.isEmpty)
        #expect(RouteSteps.none.isEmpty)
    }
}
