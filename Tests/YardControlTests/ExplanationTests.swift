// explain as values: a routing table and a request in, the track and the rule that decided out.

import Testing
@testable import YardControl
import YardModel

@Suite struct ExplainRunsTheRequestPathsSplit {
    static func table(canary: String, override: String = "", stickyCookies: StickyCookieValues? = nil) throws -> RoutingTable {
        let services = """
            services:
              shop:
                active: blue
                health: {type: none}
            \(canary)\(override)    instances:
                  - {address: 127.0.0.1, port: 9101, track: blue}
                  - {address: 127.0.0.1, port: 9201, track: green}

            """
        let catalog = try ConfigLoader.loadCatalog(text: services, path: "services.yml")
        return buildRoutingTable(version: 1, routes: [RouteConfig(host: nil, pathPrefix: "/", service: "shop")], catalog: catalog,
                                 stickyCookies: stickyCookies)
    }

    static let tenPercent = "    canary: {track: green, percent: 10, sticky: 'cookie:user'}\n"

    @Test func withoutACanaryTheActiveTrackServesByTheNoCanaryRule() throws {
        let result = Explanation.explain(table: try Self.table(canary: ""), query: ["host": "shop", "path": "/"])
        #expect(result.track == "blue")
        #expect(result.rule == "no_canary")
        #expect(result.answer == "forwarded by round_robin to one of 1 endpoint(s) of blue")
    }

    @Test func theOverrideHeaderPinsItsTrack() throws {
        let result = Explanation.explain(table: try Self.table(canary: Self.tenPercent), query: ["host": "shop", "header": "x-switchyard-track: green"])
        #expect(result.track == "green")
        #expect(result.rule == "override_header")
    }

    @Test func anOverrideFromANetworkNotAllowedIsIgnoredAndSaysWhy() throws {
        let table = try Self.table(canary: "", override: "    override: {allow: [10.0.0.0/8]}\n")
        let refused = Explanation.explain(table: table, query: ["header": "X-Switchyard-Track: green", "client": "192.168.1.5"])
        #expect(refused.track == "blue")
        #expect(refused.reasons.contains { $0.contains("not in the override's allow list") })
        let allowed = Explanation.explain(table: table, query: ["header": "X-Switchyard-Track: green", "client": "10.1.2.3"])
        #expect(allowed.track == "green")
    }

    @Test func anUnknownTrackInTheHeaderIsIgnoredAndNamed() throws {
        let result = Explanation.explain(table: try Self.table(canary: ""), query: ["header": "X-Switchyard-Track: purple"])
        #expect(result.track == "blue")
        #expect(result.reasons.contains { $0.contains("names no track") })
    }

    @Test func theStickyCookieDecidesAndTheTrackFollowsItsPoint() throws {
        let table = try Self.table(canary: Self.tenPercent)
        var seen: Set<String> = []
        for user in 0..<200 {
            let result = Explanation.explain(table: table, query: ["headers": "Cookie: a=b; user=\(user)"])
            #expect(result.rule == "sticky_key")
            seen.insert(result.track ?? "")
        }
        #expect(seen == ["blue", "green"], "about 10 % of 200 users land on the canary")
    }

    @Test func withoutAStickyKeyTheShareDecidesAndBothTracksAreCandidates() throws {
        let result = Explanation.explain(table: try Self.table(canary: Self.tenPercent), query: [:])
        #expect(result.rule == "canary_share")
        #expect(result.candidates.count == 2)
    }

    @Test func aCanaryAtOneHundredPercentTakesEverything() throws {
        let table = try Self.table(canary: "    canary: {track: green, percent: 100}\n")
        let result = Explanation.explain(table: table, query: [:])
        #expect(result.track == "green")
        #expect(result.rule == "canary_at_100_percent")
    }

    @Test func noRouteAnswers404WithoutATrack() throws {
        let empty = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: []))
        let result = Explanation.explain(table: empty, query: ["host": "x"])
        #expect(result.answer == "404 no route")
        #expect(result.track == nil && result.rule == nil)
    }
}

@Suite struct ExplainRouteMiddlewares {
    @Test func explainNamesTheMiddlewaresAndAppliesIPAllowToTheGivenClient() throws {
        let config = try ConfigLoader.loadConfig(text: """
            listeners:
              - address: :8080
            middlewares:
              office: {ip_allow: [10.0.0.0/8]}
              tidy: {headers: {remove: [X-Debug]}}
            routes:
              - {path: /office, service: shop, middlewares: [tidy, office]}

            """, path: "switchyard.yml")
        let catalog = try ConfigLoader.loadCatalog(text: "services:\n  shop:\n    instances:\n      - {address: 127.0.0.1, port: 9101}\n", path: "services.yml")
        let table = buildRoutingTable(version: 1, routes: config.routes, catalog: catalog)
        let refused = Explanation.explain(table: table, query: ["path": "/office", "client": "192.168.1.5"])
        #expect(refused.answer == "403 ip_allow")
        #expect(refused.reasons.contains("the route runs middlewares tidy, office, in that order"))
        let allowed = Explanation.explain(table: table, query: ["path": "/office", "client": "10.2.3.4"])
        #expect(allowed.answer.hasPrefix("forwarded"))
    }

    @Test func explainGivesTheRedirectAndNamesRateLimitsAndRouteSettings() throws {
        let config = try ConfigLoader.loadConfig(text: """
            listeners:
              - address: :8080
            middlewares:
              https: {redirect_scheme: https}
              moved: {redirect: {from: /blog, to: "https://blog.example.com/"}}
              limit: {rate_limit: {rate: 5/s, burst: 10}}
            routes:
              - {host: shop.example, service: shop, middlewares: [https]}
              - {path: /blog, service: shop, middlewares: [moved]}
              - {path: /upload, service: shop, middlewares: [limit], max_body_bytes: 1MiB, retries: {attempts: 0}}

            """, path: "switchyard.yml")
        let catalog = try ConfigLoader.loadCatalog(text: "services:\n  shop:\n    instances:\n      - {address: 127.0.0.1, port: 9101}\n", path: "services.yml")
        let table = buildRoutingTable(version: 1, routes: config.routes, catalog: catalog)
        let scheme = Explanation.explain(table: table, query: ["host": "shop.example:80", "path": "/cart?id=7"])
        #expect(scheme.answer == "301 redirect_scheme")
        #expect(scheme.reasons.contains { $0.contains("Location https://shop.example/cart?id=7") }, "\(scheme.reasons)")
        let moved = Explanation.explain(table: table, query: ["path": "/blog/a", "method": "POST"])
        #expect(moved.answer == "308 redirect")
        #expect(moved.reasons.contains { $0.contains("Location https://blog.example.com/a") }, "\(moved.reasons)")
        let upload = Explanation.explain(table: table, query: ["path": "/upload"])
        #expect(upload.answer.hasPrefix("forwarded"))
        #expect(upload.reasons.contains { $0.hasPrefix("rate_limit: each client (by its address) may send 10 at once") }, "\(upload.reasons)")
        #expect(upload.reasons.contains("the route's own settings: bodies up to 1048576 bytes (413 above), 0 retries"), "\(upload.reasons)")
    }

    @Test func aProxySetStickyCookieCountsOnlyWhenSignedByTheFleet() throws {
        let signed = StickyCookieValues { message in Array(HMACSHA256Stub.mac(message)) }
        let canary = "    canary: {track: green, percent: 10, sticky: 'cookie:user', sticky_cookie: true}\n"
        let table = try ExplainRunsTheRequestPathsSplit.table(canary: canary, stickyCookies: signed)
        let genuine = String(decoding: signed.values[5], as: UTF8.self)
        let kept = Explanation.explain(table: table, query: ["headers": "Cookie: user=\(genuine)"])
        #expect(kept.rule == "sticky_key" && kept.track == "green")
        let forged = Explanation.explain(table: table, query: ["headers": "Cookie: user=5.0000000000000000"])
        #expect(forged.rule == "canary_share")
        #expect(forged.reasons.contains { $0.contains("the response sets one") }, "\(forged.reasons)")
        let unloaded = Explanation.explain(table: try ExplainRunsTheRequestPathsSplit.table(canary: canary), query: ["headers": "Cookie: user=\(genuine)"])
        #expect(unloaded.reasons.contains { $0.contains("not loaded from the state store") }, "\(unloaded.reasons)")
    }
}

/// A deterministic stand-in for the fleet's MAC.
private enum HMACSHA256Stub {
    static func mac(_ message: [UInt8]) -> [UInt8] {
        var state: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in message { state = (state ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return (0..<8).map { UInt8(truncatingIfNeeded: state >> (UInt64($0) * 8)) }
    }
}

@Suite struct ExplainAuthAndCompress {
    @Test func explainSaysWhatForwardAuthAndCompressDoOnTheRoute() throws {
        let config = try ConfigLoader.loadConfig(text: """
            listeners:
              - address: :8080
            middlewares:
              sso: {forward_auth: {address: "http://10.0.0.5:9000/verify", timeout: 2s}}
              gz: {compress: {min_bytes: 2KiB, level: 1}}
              shadow: {mirror: {service: shop-next, percent: 2.5, max_body_bytes: 8KiB}}
            routes:
              - {path: /staff, service: shop, middlewares: [sso, gz, shadow]}

            """, path: "switchyard.yml")
        let catalog = try ConfigLoader.loadCatalog(text: "services:\n  shop:\n    instances:\n      - {address: 127.0.0.1, port: 9101}\n", path: "services.yml")
        let table = buildRoutingTable(version: 1, routes: config.routes, catalog: catalog)
        #expect(table.services.map(\.name) == ["shop", "10.0.0.5:9000"], "the auth address becomes a service")
        let staff = Explanation.explain(table: table, query: ["path": "/staff/x"])
        #expect(staff.reasons.contains { $0.hasPrefix("forward_auth: forwarded only if service '10.0.0.5:9000' answers 2xx") && $0.contains("2000 ms is 504") },
                "\(staff.reasons)")
        #expect(staff.reasons.contains("compress: gzip (level 1) for listed text types of at least 2048 bytes, when the client's Accept-Encoding allows gzip"),
                "\(staff.reasons)")
        #expect(staff.reasons.contains("mirror: a copy of 2.5 % of requests goes to service 'shop-next', bodies up to 8192 bytes; its answers are dropped"),
                "\(staff.reasons)")
    }
}
