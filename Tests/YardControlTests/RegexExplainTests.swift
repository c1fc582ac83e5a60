// explain for the regex parts of routing: which path_regex routes matched or did not, and
// what a regex redirect answers (or why it forwards).

import Testing
@testable import YardControl
import YardModel

@Suite struct ExplainShowsRegexRoutesAndRedirects {
    static func table() throws -> RoutingTable {
        let config = try ConfigLoader.loadConfig(text: """
            listeners:
              - address: :8080
            middlewares:
              www: {redirect: {regex: "^http://www\\\\.([^/]+)/(.*)", replacement: "https://${1}/$2"}}
              go: {redirect: {regex: "^http://[^/]+/go/(.*)$", replacement: "https://target.example/$1", permanent: false}}
            routes:
              - {name: users, path_regex: '^/v[0-9]+/users/[^/]+$', service: shop}
              - {name: go, path: /go, service: shop, middlewares: [go]}
              - {name: site, service: shop, middlewares: [www]}

            """, path: "switchyard.yml")
        let catalog = try ConfigLoader.loadCatalog(text: "services:\n  shop:\n    instances:\n      - {address: 127.0.0.1, port: 9101}\n", path: "services.yml")
        return buildRoutingTable(version: 1, routes: config.routes, catalog: catalog)
    }

    @Test func aPathRegexRouteSaysWhetherItsRegexMatched() throws {
        let table = try Self.table()
        let hit = Explanation.explain(table: table, query: ["path": "/v2/users/alice?x=1"])
        #expect(hit.route == "'users' (* ~^/v[0-9]+/users/[^/]+$)")
        #expect(hit.reasons.contains { $0.contains("matched (any host, path regex ^/v[0-9]+/users/[^/]+$)") }, "\(hit.reasons)")
        let miss = Explanation.explain(table: table, query: ["path": "/v2/users/alice/posts"])
        #expect(miss.route == "'site' (*/)")
        #expect(miss.reasons.contains("route 'users' (* ~^/v[0-9]+/users/[^/]+$) did not match: the path does not match the regex ^/v[0-9]+/users/[^/]+$"),
                "\(miss.reasons)")
    }

    @Test func aRegexRedirectGivesItsLocationOrSaysWhyNot() throws {
        let table = try Self.table()
        let www = Explanation.explain(table: table, query: ["host": "www.example.com", "path": "/a?b=1"])
        #expect(www.answer == "301 redirect")
        #expect(www.reasons.contains("redirect regex '^http://www\\.([^/]+)/(.*)' matches http://www.example.com/a?b=1: answers 301 with Location https://example.com/a?b=1"),
                "\(www.reasons)")
        let post = Explanation.explain(table: table, query: ["host": "h", "path": "/go/x", "method": "POST"])
        #expect(post.answer == "307 redirect")
        let plain = Explanation.explain(table: table, query: ["host": "example.com", "path": "/a"])
        #expect(plain.answer.hasPrefix("forwarded"))
        #expect(plain.reasons.contains("redirect regex '^http://www\\.([^/]+)/(.*)' does not match http://example.com/a"), "\(plain.reasons)")
        let spaced = Explanation.explain(table: table, query: ["host": "h", "path": "/go/a b"])
        #expect(spaced.answer.hasPrefix("forwarded"))
        #expect(spaced.reasons.contains { $0.contains("forwarded, not redirected") }, "\(spaced.reasons)")
    }
}
