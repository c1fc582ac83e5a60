import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// Two Switchyard replicas sharing one real etcd (Debian's etcd-server) as the state
    /// store: a flip through one is applied by both, `flip --wait` returns when both
    /// serve it, an unreachable store leaves both serving their last state (and status
    /// says so), and they converge when it is back.
    @Suite(.serialized) struct Replicas {
        @Test(.timeLimit(.minutes(2)))
        func twoReplicasAgreeThroughEtcdAndSurviveItsLoss() throws {
            let dir = try ScratchDir("replicas")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let etcd = try EtcdCluster(size: 1)
            let store = "  type: etcd\n  endpoints: [\(etcd.endpoints[0])]\n  prefix: /sy-test/\n  replica_ttl: 3s\n"
            let services = blueGreenServices(blue: [blue.port], green: [green.port])
            let one = try TrafficProxy(dir: dir, services: services, label: "r1", store: store + "  replica_id: r1\n")
            defer { one.stop() }
            let two = try TrafficProxy(dir: dir, services: services, label: "r2", store: store + "  replica_id: r2\n")
            defer { two.stop() }
            try waitFor("both replicas to report in etcd", timeout: .seconds(10)) {
                ((try one.adminJSON("/replicas"))["replicas"] as? [[String: Any]])?.count == 2
            }
            #expect(try one.backend() == "blue-1" && two.backend() == "blue-1")

            // flip --wait through r1 returns once r2 serves the new revision too.
            let flip = try one.cli(["flip", "shop", "--to", "green", "--wait", "--wait-timeout", "10s"])
            #expect(flip.status == 0, "\(flip.stdout) \(flip.stderr)")
            #expect(flip.stdout.contains("all 2 replica(s) serve revision 1"), "\(flip.stdout)")
            #expect(try one.backend() == "green-1")
            #expect(try two.backend() == "green-1")

            // The store goes away: both keep serving green, and say the store is unreachable.
            etcd.kill(0)
            for proxy in [one, two] {
                try waitFor("\(proxy.label) to report the store unreachable", timeout: .seconds(15)) {
                    let store = (try proxy.adminJSON("/services/shop"))["store"] as? [String: Any]
                    return store?["reachable"] as? Bool == false
                }
                #expect(try sendSequential(50, port: proxy.port).allSatisfy { $0 == "green-1" })
            }
            let status = try two.cli(["status", "--interval", "0"])
            #expect(status.stdout.contains("UNREACHABLE"), "\(status.stdout)")
            let during = try one.cli(["flip", "shop", "--to", "blue"])
            #expect(during.status == 2 && during.stderr.contains("nothing changed"), "\(during.stderr)")
            #expect(try one.backend() == "green-1")

            // Back: both reconnect; a flip through r2 reaches r1.
            try etcd.restart(0)
            for proxy in [one, two] {
                try waitFor("\(proxy.label) to reach the store again", timeout: .seconds(20)) {
                    let store = (try proxy.adminJSON("/services/shop"))["store"] as? [String: Any]
                    return store?["reachable"] as? Bool == true
                }
            }
            let back = try two.cli(["flip", "shop", "--to", "blue", "--wait", "--wait-timeout", "10s"])
            #expect(back.status == 0, "\(back.stdout) \(back.stderr)")
            #expect(try one.backend() == "blue-1" && two.backend() == "blue-1")

            // A write against a stale revision gets 409 (exit 1) on either replica.
            let stale = try one.cli(["flip", "shop", "--to", "green", "--revision", "1"])
            #expect(stale.status == 1 && stale.stderr.contains("stale revision"), "\(stale.stderr)")
            #expect(try two.backend() == "blue-1")
        }

        /// etcd over TLS with --client-cert-auth (certificates made here with openssl) as
        /// both the state store and the discovery provider: instances arrive through the
        /// TLS watch, a flip goes through the TLS store; a config without the client
        /// certificate does not start, and says why.
        @Test(.timeLimit(.minutes(2)))
        func aTLSEtcdWithClientCertificatesIsTheStoreAndTheProvider() throws {
            let dir = try ScratchDir("replicas-tls")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let certificates = try TestCertificates()
            let server = try certificates.issue(file: "etcd-server", names: ["127.0.0.1"], client: true)
            let client = try certificates.issue(file: "etcd-client", names: ["switchyard"], client: true)
            let etcd = try EtcdCluster(size: 1, tls: .init(caFile: certificates.caFile, server: server, client: client))
            for (id, port, track) in [("b1", blue.port, "blue"), ("g1", green.port, "green")] {
                let put = try etcd.etcdctl(["put", "/sy/services/shop/instances/\(id)", "{\"address\": \"127.0.0.1\", \"port\": \(port), \"track\": \"\(track)\"}"])
                try #require(put.status == .exited(0), "\(put.output)")
            }
            let settings = try etcd.etcdctl(["put", "/sy/services/shop/settings", "{\"active\": \"blue\", \"health\": {\"type\": \"none\"}}"])
            try #require(settings.status == .exited(0), "\(settings.output)")
            let access = "ca_file: \(certificates.caFile), cert_file: \(client.certificate), key_file: \(client.key)"
            var spec = ProxySpec(workers: 1)
            spec.extraYAML = "admin:\n  address: 127.0.0.1:0\nstate_store: {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /sy-state/, \(access)}\n"
            let config = spec.yaml.replacingOccurrences(
                of: "discovery:\n  provider: file\n  file: services.yml\n",
                with: "discovery:\n  providers:\n    - {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /sy/, \(access)}\n")
            let proxy = try TrafficProxy(dir: dir, configText: config, label: "tls")
            defer { proxy.stop() }
            try waitFor("the instances from the TLS watch", timeout: .seconds(10)) { (try? proxy.backend()) == "blue-1" }
            let flip = try proxy.cli(["flip", "shop", "--to", "green", "--wait", "--wait-timeout", "10s"])
            #expect(flip.status == 0, "\(flip.stdout) \(flip.stderr)")
            #expect(try proxy.backend() == "green-1")
            let stored = try etcd.etcdctl(["get", "/sy-state/traffic/shop", "--print-value-only"])
            #expect(stored.output.contains("green"), "\(stored.output)")

            // Without the client certificate the store refuses this replica, and status says why.
            let bare = config.replacingOccurrences(of: ", cert_file: \(client.certificate), key_file: \(client.key)", with: "")
            let refused = try TrafficProxy(dir: dir, configText: bare, label: "bare")
            defer { refused.stop() }
            try waitFor("the refused store in /status", timeout: .seconds(10)) {
                let store = (try refused.adminJSON("/status"))["state_store"] as? [String: Any]
                return (store?["error"] as? String)?.contains("the server refused the client certificate") == true
            }
        }

        /// The fleet as deployed: three replicas on an etcd that wants TLS and client
        /// certificates, a flip through one under load on all three, `flip --wait` naming
        /// every replica, and not one failed request on any of them.
        @Test(.timeLimit(.minutes(2)))
        func threeReplicasOnATLSEtcdFlipUnderLoadWithoutAFailedRequest() throws {
            let dir = try ScratchDir("replicas-tls-fleet")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let certificates = try TestCertificates()
            let server = try certificates.issue(file: "etcd-server", names: ["127.0.0.1"], client: true)
            let client = try certificates.issue(file: "etcd-client", names: ["switchyard"], client: true)
            let etcd = try EtcdCluster(size: 1, tls: .init(caFile: certificates.caFile, server: server, client: client))
            let store = "  type: etcd\n  endpoints: [\(etcd.endpoints[0])]\n  prefix: /sy-fleet/\n  replica_ttl: 3s\n"
                + "  ca_file: \(certificates.caFile)\n  cert_file: \(client.certificate)\n  key_file: \(client.key)\n"
            let services = blueGreenServices(blue: [blue.port], green: [green.port])
            let replicas = try (1 ... 3).map { n in
                try TrafficProxy(dir: dir, services: services, label: "r\(n)", store: store + "  replica_id: r\(n)\n")
            }
            defer { replicas.forEach { $0.stop() } }
            try waitFor("three replicas to report in etcd", timeout: .seconds(15)) {
                ((try replicas[0].adminJSON("/replicas"))["replicas"] as? [[String: Any]])?.count == 3
            }

            let load = try replicas.map { proxy in
                try ChildProcess("/usr/bin/wrk", ["-t1", "-c8", "-d5s", "--timeout", "4s", proxy.url + "/"], dir: dir, label: "wrk-\(proxy.label)")
            }
            defer { load.forEach { $0.stop() } }
            try waitFor("wrk's connections through every replica", timeout: .seconds(5)) {
                try replicas.allSatisfy { try establishedConnections(toPort: $0.port, dir: dir) >= 4 }
            }
            let flip = try replicas[1].cli(["flip", "shop", "--to", "green", "--wait", "--wait-timeout", "10s"])
            #expect(flip.status == 0, "\(flip.stdout) \(flip.stderr)")
            #expect(flip.stdout.contains("all 3 replica(s) serve revision 1"), "\(flip.stdout)")
            for proxy in replicas { #expect(try proxy.backend() == "green-1", "\(proxy.label)") }
            for wrk in load {
                #expect(wrk.waitExit(timeout: .seconds(15)) == 0, "\(wrk.stderrText)")
                let output = wrk.stdoutText
                #expect(output.contains("requests in"), "\(output)")
                #expect(!output.contains("Non-2xx or 3xx responses") && !output.contains("Socket errors"), "\(output)")
            }
        }

        /// The same agreement through Consul KV (Tests/Fixtures/consul_emulator.py: no
        /// Consul agent can run here).
        @Test(.timeLimit(.minutes(1)))
        func twoReplicasAgreeThroughConsulKV() throws {
            let dir = try ScratchDir("replicas-consul")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let consul = try EmulatorProcess(script: "consul_emulator.py")
            let store = "  type: consul\n  address: \(consul.url)\n  prefix: sy/\n  replica_ttl: 3s\n"
            let services = blueGreenServices(blue: [blue.port], green: [green.port])
            let one = try TrafficProxy(dir: dir, services: services, label: "c1", store: store + "  replica_id: c1\n")
            defer { one.stop() }
            let two = try TrafficProxy(dir: dir, services: services, label: "c2", store: store + "  replica_id: c2\n")
            defer { two.stop() }
            try waitFor("both replicas to report in Consul", timeout: .seconds(10)) {
                ((try one.adminJSON("/replicas"))["replicas"] as? [[String: Any]])?.count == 2
            }
            let flip = try two.cli(["flip", "shop", "--to", "green", "--wait", "--wait-timeout", "10s"])
            #expect(flip.status == 0, "\(flip.stdout) \(flip.stderr)")
            #expect(flip.stdout.contains("all 2 replica(s) serve revision 1"), "\(flip.stdout)")
            #expect(try one.backend() == "green-1" && two.backend() == "green-1")
            let canary = try one.cli(["canary", "set", "shop", "100", "--track", "blue"])
            #expect(canary.status == 0, "\(canary.stderr)")
            try waitFor("r2 to follow the canary", timeout: .seconds(5)) { try two.backend() == "blue-1" }
        }
    }
}
