import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// `health: {type: grpc}` (docs/health.md): grpc.health.v1.Health/Check against the
    /// grpcio fixture server over h2c and over TLS (h2), SERVING up, anything else down.
    @Suite(.serialized) struct GRPCHealth {
        static let checks = "interval: 200ms, timeout: 150ms, rise: 1, fall: 1"

        /// The proxy's log line for `service`'s endpoint at `port` (health transitions).
        static func line(_ service: String, _ port: UInt16, _ text: String) -> String {
            "\(service)/127.0.0.1:\(port) \(text)"
        }

        @Test(.timeLimit(.minutes(1)))
        func grpcCheckOverH2cFollowsTheServingStatus() throws {
            let dir = try ScratchDir("grpc-health")
            let statusFile = dir.file("health-status")
            try dir.write("health-status", "- SERVING\n")
            let server = try GRPCServer(dir: dir, health: statusFile)
            defer { server.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1), services: [
                ServiceSpec(name: "shop", instances: [.init(port: server.port)],
                            extraYAML: "upstream: {protocol: h2c}\nhealth: {type: grpc, \(Self.checks)}"),
            ], dir: dir)
            defer { proxy.stop() }
            var log: String { proxy.child.stderrText }
            #expect(log.contains("services: shop[1/1]"), "SERVING before the listeners opened: \(log)")

            try dir.write("health-status", "- NOT_SERVING\n")
            try waitFor("NOT_SERVING to take it out", timeout: .seconds(5)) {
                log.contains(Self.line("shop", server.port, "is unhealthy: grpc NOT_SERVING"))
            }
            let healthy = Self.line("shop", server.port, "is healthy")
            func comesBack(_ what: String) throws {
                let before = log.components(separatedBy: healthy).count
                try dir.write("health-status", "- SERVING\n")
                try waitFor(what, timeout: .seconds(5)) { log.components(separatedBy: healthy).count > before }
            }
            try comesBack("SERVING to bring it back")
            try dir.write("health-status", "- HANG\n")
            try waitFor("a check with no answer in time to take it out", timeout: .seconds(5)) {
                log.contains(Self.line("shop", server.port, "is unhealthy: no answer within 150 ms"))
            }
            try comesBack("SERVING to bring it back after the hang")
            try dir.write("health-status", "- UNKNOWN\n")
            try waitFor("UNKNOWN to take it out", timeout: .seconds(5)) {
                log.contains(Self.line("shop", server.port, "is unhealthy: grpc UNKNOWN"))
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func grpcServiceNameIsAskedAboutAndAnUnknownOneIsDown() throws {
            let dir = try ScratchDir("grpc-health-names")
            let statusFile = dir.file("health-status")
            try dir.write("health-status", "- SERVING\nshop.Cart NOT_SERVING\nshop.Search SERVING\n")
            let server = try GRPCServer(dir: dir, health: statusFile)
            defer { server.stop() }
            let service = { (name: String, grpcService: String) in
                ServiceSpec(name: name, instances: [.init(port: server.port)],
                            extraYAML: "upstream: {protocol: h2c}\nhealth: {type: grpc, grpc_service: \"\(grpcService)\", \(Self.checks)}")
            }
            let proxy = try RunningProxy(ProxySpec(workers: 1), services: [
                service("shop", "shop.Search"), service("cart", "shop.Cart"), service("ghost", "shop.Missing"),
            ], dir: dir)
            defer { proxy.stop() }
            var log: String { proxy.child.stderrText }
            try waitFor("the first results", timeout: .seconds(5)) {
                log.contains(Self.line("cart", server.port, "is unhealthy")) && log.contains(Self.line("ghost", server.port, "is unhealthy"))
            }
            #expect(log.contains(Self.line("cart", server.port, "is unhealthy: grpc NOT_SERVING")), "\(log)")
            #expect(log.contains(Self.line("ghost", server.port, "is unhealthy: grpc-status 5: unknown service")), "\(log)")
            #expect(!log.contains(Self.line("shop", server.port, "is unhealthy")), "\(log)")
            #expect(try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n").status != 503,
                    "shop.Search is SERVING: the shop service has its endpoint")
        }

        @Test(.timeLimit(.minutes(1)))
        func grpcCheckOverTLSVerifiesTheUpstreamAndFollowsTheStatus() throws {
            let dir = try ScratchDir("grpc-health-tls")
            let pki = try TestCertificates()
            let leaf = try pki.issue(file: "grpc-upstream", names: ["grpc.internal"])
            let statusFile = dir.file("health-status")
            try dir.write("health-status", "- SERVING\n")
            let server = try GRPCServer(dir: dir, tls: (leaf.certificate, leaf.key), health: statusFile)
            defer { server.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1), services: [
                ServiceSpec(name: "shop", instances: [.init(port: server.port)],
                            extraYAML: "upstream: {protocol: h2, tls: {ca_file: \(pki.caFile), server_name: grpc.internal}}\nhealth: {type: grpc, \(Self.checks)}"),
            ], dir: dir)
            defer { proxy.stop() }
            var log: String { proxy.child.stderrText }
            #expect(log.contains("services: shop[1/1]"), "SERVING over TLS: \(log)")
            try dir.write("health-status", "- NOT_SERVING\n")
            try waitFor("NOT_SERVING over TLS to take it out", timeout: .seconds(5)) {
                log.contains(Self.line("shop", server.port, "is unhealthy: grpc NOT_SERVING"))
            }
        }
    }
}
