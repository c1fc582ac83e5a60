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
