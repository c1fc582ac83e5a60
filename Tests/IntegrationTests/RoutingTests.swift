import Foundation
import Testing

extension Integration {
    /// Route matchers through the real binary: curl's request lands on the backend the most
    /// specific (or highest-priority) route names, and `switchyard explain` says why.
    @Suite struct RoutingMatchersThroughTheBinary {
        static let routes = """
            routes:
              - {name: default, service: main}
              - {name: tenants, host: '*.shop.example', service: tenant}
              - {name: health, path_exact: /healthz, service: health}
              - {name: writes, path: /api, methods: [POST, PUT], service: writes}
              - {name: beta, path: /api, headers: {X-Env: beta}, query: {v: "2"}, service: beta}

            """

        @Test(.timeLimit(.minutes(1)))
        func eachMatcherSendsCurlToItsBackendAndExplainSaysWhy() throws {
            let dir = try ScratchDir("routing-matchers")
            let names = ["main", "tenant", "health", "writes", "beta"]
            let backends = try names.map { try Backend.demo($0, dir: dir) }
            defer { backends.forEach { $0.stop() } }
            try dir.write("services.yml", servicesYAML(zip(names, backends).map { ServiceSpec(name: $0, instances: [.init(port: $1.port)]) }))
            try dir.write("switchyard.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                \(Self.routes)discovery: {provider: file, file: services.yml}
                admin: {address: 127.0.0.1:0}
                workers: 1

                """)
            let (proxy, port, adminPort) = try startProxyWithAdmin(dir: dir)
            defer { proxy.stop() }
            let url = "http://127.0.0.1:\(port)"
            func backend(_ path: String, _ options: [String] = []) throws -> String {
                let result = try curl(url + path, options, dir: dir)
                guard result.httpStatus == 200 else { return "status \(result.httpStatus)" }
                return result.body.split(separator: " ").dropFirst(2).first.map(String.init) ?? result.body
            }
            #expect(try backend("/") == "main")
            #expect(try backend("/", ["-H", "Host: eu.shop.example"]) == "tenant")
            #expect(try backend("/", ["-H", "Host: a.eu.shop.example"]) == "main", "a wildcard is one label")
            #expect(try backend("/healthz") == "health")
            #expect(try backend("/healthz/x") == "main", "an exact path takes nothing below it")
            #expect(try backend("/api/orders", ["-X", "POST", "-d", "x=1"]) == "writes")
            #expect(try backend("/api/orders") == "main")
            #expect(try backend("/api/orders?a=1&v=2", ["-H", "X-Env: beta"]) == "beta")
            #expect(try backend("/api/orders?v=2", ["-H", "X-Env: prod"]) == "main")
            // HTTP/2 (prior knowledge) goes through the same routing.
            #expect(try backend("/api/orders?v=2", ["--http2-prior-knowledge", "-H", "X-Env: beta"]) == "beta")

            let explained = try runCommand(SwitchyardBinary.path, [
                "explain", "--admin", "http://127.0.0.1:\(adminPort)", "--path", "/api/orders?v=2", "--method", "PATCH",
                "--header", "X-Env:prod", "--json",
            ], dir: dir, label: "explain")
            #expect(explained.status == 0, "\(explained.stderr)")
            #expect(explained.stdout.contains("\"route\":\"'default'"), "\(explained.stdout)")
            #expect(explained.stdout.contains("did not match: no header x-env equal to 'beta'"), "\(explained.stdout)")
            #expect(explained.stdout.contains("did not match: method PATCH is not POST or PUT"), "\(explained.stdout)")
            #expect(explained.stdout.contains("did not match: the path is not exactly"), "\(explained.stdout)")
        }
    }
}

extension Integration {
    /// Middlewares through the real binary: the demo backend's `/headers` echoes the head it
    /// received, so each rewrite is read back as the backend saw it.
    @Suite struct RouteMiddlewaresThroughTheBinary {
        @Test(.timeLimit(.minutes(1)))
        func stripAddReplaceHeadersAndRequestIDReachTheBackend() throws {
            let dir = try ScratchDir("route-middlewares")
            let shop = try Backend.demo("shop", dir: dir)
            defer { shop.stop() }
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: shop.port)])]))
            try dir.write("switchyard.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                middlewares:
                  strip-shop: {strip_prefix: [/shop]}
                  v2: {add_prefix: /v2}
                  legacy: {replace_path: /headers}
                  tidy: {headers: {set: {X-Env: prod, X-Team: web}, remove: [X-Debug]}}
                  ids: {request_id: {}}
                routes:
                  - {path: /shop, service: shop, middlewares: [strip-shop, v2, tidy, ids]}
                  - {path: /old, service: shop, middlewares: [legacy]}
                discovery: {provider: file, file: services.yml}
                workers: 1

                """)
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            let url = "http://127.0.0.1:\(try proxy.waitForListeningPort())"

            let stripped = try curl(url + "/shop/headers?q=1", ["-H", "X-Debug: 1", "-H", "X-Env: dev", "-H", "X-Forwarded-Prefix: /evil"], dir: dir)
            #expect(stripped.httpStatus == 200)
            let head = stripped.body.lowercased()
            #expect(head.hasPrefix("get /v2/headers?q=1 http/1.1"), "\(stripped.body)")
            #expect(head.contains("x-forwarded-prefix: /shop\r\n") && !head.contains("/evil"), "\(stripped.body)")
            #expect(head.contains("x-env: prod\r\n") && !head.contains("x-env: dev"), "\(stripped.body)")
            #expect(head.contains("x-team: web\r\n") && !head.contains("x-debug"), "\(stripped.body)")
            let id = head.components(separatedBy: "x-request-id: ").dropFirst().first?.prefix(32) ?? ""
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "\(stripped.body)")

            let again = try curl(url + "/shop/headers", dir: dir)
            #expect(!again.body.contains(String(id)), "every request gets its own ID")
            let kept = try curl(url + "/shop/headers", ["-H", "X-Request-ID: abc-123"], dir: dir)
            #expect(kept.body.contains("X-Request-ID: abc-123\r\n") && kept.body.components(separatedBy: "X-Request-ID").count == 2, "\(kept.body)")

            let replaced = try curl(url + "/old/page.php", dir: dir)
            #expect(replaced.body.hasPrefix("GET /headers HTTP/1.1"), "\(replaced.body)")
            #expect(replaced.body.contains("X-Replaced-Path: /old/page.php\r\n"), "\(replaced.body)")

            // HTTP/2 from the client goes through the same steps.
            let h2 = try curl(url + "/shop/headers", ["--http2-prior-knowledge"], dir: dir)
            #expect(h2.body.hasPrefix("GET /v2/headers HTTP/1.1"), "\(h2.body)")
        }
    }
}

extension Integration {
    @Suite struct RoutingExampleConfig {
        /// conf/examples/routing.yml uses every matcher and middleware and stays valid.
        @Test(.timeLimit(.minutes(1)))
        func theRoutingExamplePassesCheck() throws {
            let dir = try ScratchDir("check-routing-example")
            let result = try runCommand(SwitchyardBinary.path,
                                        ["check", "--config", SwitchyardBinary.repositoryRoot + "/conf/examples/routing.yml"],
                                        dir: dir, label: "check")
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains(": ok"), "\(result.stdout)")
        }
    }
}

extension Integration {
    @Suite struct IPAllowThroughTheBinary {
        /// ip_allow checks the peer, or behind a trusted proxy the rightmost X-Forwarded-For
        /// entry that is not a trusted proxy; anything else gets 403.
        @Test(.timeLimit(.minutes(1)))
        func aClientOutsideTheNetworksGets403AndTrustedProxiesDecideTheClient() throws {
            let dir = try ScratchDir("route-ip-allow")
            let shop = try Backend.demo("shop", dir: dir)
            defer { shop.stop() }
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: shop.port)])]))
            func config(trusted: String) -> String {
                """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                middlewares:
                  office: {ip_allow: [10.0.0.0/8, "fd00::/8"]}
                  local: {ip_allow: [127.0.0.0/8, "::1"]}
                routes:
                  - {path: /office, service: shop, middlewares: [office]}
                  - {path: /local, service: shop, middlewares: [local]}
                discovery: {provider: file, file: services.yml}
                workers: 1
                \(trusted)
                """
            }
            try dir.write("switchyard.yml", config(trusted: ""))
            let direct = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "direct")
            defer { direct.stop() }
            let directURL = "http://127.0.0.1:\(try direct.waitForListeningPort())"
            #expect(try curl(directURL + "/office", dir: dir).httpStatus == 403)
            #expect(try curl(directURL + "/office", ["--http2-prior-knowledge"], dir: dir).httpStatus == 403)
            #expect(try curl(directURL + "/local", dir: dir).httpStatus == 200)
            #expect(try curl(directURL + "/office", ["-H", "X-Forwarded-For: 10.1.2.3"], dir: dir).httpStatus == 403,
                    "an untrusted peer's X-Forwarded-For is not believed")
            direct.stop()

            try dir.write("behind.yml", config(trusted: "trusted_proxies: [127.0.0.1]\n"))
            let behind = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("behind.yml")], dir: dir, label: "behind")
            defer { behind.stop() }
            let url = "http://127.0.0.1:\(try behind.waitForListeningPort())"
            #expect(try curl(url + "/office", ["-H", "X-Forwarded-For: 10.1.2.3"], dir: dir).httpStatus == 200)
            #expect(try curl(url + "/office", ["-H", "X-Forwarded-For: 10.1.2.3, 127.0.0.1"], dir: dir).httpStatus == 200,
                    "trusted hops on the right are skipped")
            #expect(try curl(url + "/office", ["-H", "X-Forwarded-For: 10.1.2.3, 192.168.0.9"], dir: dir).httpStatus == 403,
                    "the rightmost untrusted hop is the client; what it claims before it is not believed")
            #expect(try curl(url + "/office", ["-H", "X-Forwarded-For: fd00::5"], dir: dir).httpStatus == 200)
            #expect(try curl(url + "/office", ["-H", "X-Forwarded-For: not-an-ip"], dir: dir).httpStatus == 403)
            #expect(try curl(url + "/office", ["-H", "X-Forwarded-For: \(String(repeating: "1", count: 200))"], dir: dir).httpStatus == 403)
            #expect(try curl(url + "/office", dir: dir).httpStatus == 403, "no X-Forwarded-For: the trusted peer itself")
        }
    }
}
