import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// The canary gate judges the whole fleet: each replica publishes its per-track
    /// windows in its report in the state store, and `canary step` on any replica sums
    /// every live replica's figures.
    @Suite(.serialized) struct FleetCanary {
        /// Two replicas on one etcd. Behind replica 2 the canary answers every second
        /// request with 500; behind replica 1 it is healthy. The step run through replica 1
        /// is refused, and `--json` shows both replicas' figures and their sum.
        @Test(.timeLimit(.minutes(2)))
        func aCanaryFailingOnlyBehindReplicaTwoIsRefusedThroughReplicaOne() throws {
            let dir = try ScratchDir("fleet-canary")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            let failingChild = try ChildProcess(SwitchyardBinary.path, ["backend", "--name", "green-2", "--port", "0", "--fail-every", "2"], dir: dir, label: "green-2")
            defer { blue.stop(); green.stop(); failingChild.stop() }
            let failingPort = try failingChild.waitForListeningPort()
            let etcd = try EtcdCluster(size: 1)
            let store = "  type: etcd\n  endpoints: [\(etcd.endpoints[0])]\n  prefix: /sy-fleet/\n  replica_ttl: 3s\n"
            // The canary instance each replica reaches differs (as if green-2 sat on
            // replica 2's node): the only way one replica alone sees the failures.
            let r1 = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]),
                                      label: "r1", store: store + "  replica_id: r1\n", servicesFile: "services-r1.yml")
            defer { r1.stop() }
            let r2 = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [failingPort]),
                                      label: "r2", store: store + "  replica_id: r2\n", servicesFile: "services-r2.yml")
            defer { r2.stop() }
            try waitFor("both replicas to report in etcd", timeout: .seconds(10)) {
                ((try r1.adminJSON("/replicas"))["replicas"] as? [[String: Any]])?.count == 2
            }
            let set = try r1.cli(["canary", "set", "shop", "50", "--track", "green"])
            #expect(set.status == 0, "\(set.stderr)")
            try waitFor("r2 to apply the canary", timeout: .seconds(10)) {
                ((try r2.adminJSON("/services/shop"))["state"] as? [String: Any])?["canary_permille"] as? Int == 500
            }
            let one = try sendSequential(60, port: r1.port)
            let two = try sendSequential(60, port: r2.port)
            #expect(one.filter { $0 == "green-1" }.count == 30, "\(one)")
            #expect(two.filter { $0 == "green-2" }.count == 30, "\(two)")
            // r2's next report carries its failures.
            try waitFor("r2's published window with the failures", timeout: .seconds(10)) {
                let replicas = (try r1.adminJSON("/replicas"))["replicas"] as? [[String: Any]] ?? []
                let windows = (replicas.first { $0["id"] as? String == "r2" }?["windows"] as? [String: Any])?["shop"] as? [[String: Any]]
                let green = (windows?.first?["tracks"] as? [String: Any])?["green"] as? [String: Any]
                return (green?["server_errors"] as? Int ?? 0) >= 10
            }

            let step = try r1.cli(["canary", "step", "shop", "--min-requests", "20", "--gate", "errors=1%", "--gate", "p99-floor=1s", "--json"])
            #expect(step.status == 1, "\(step.stdout) \(step.stderr)")
            let answer = try JSONSerialization.jsonObject(with: Data(step.stdout.utf8)) as? [String: Any]
            let gate = answer?["gate"] as? [String: Any]
            let replicas = gate?["replicas"] as? [[String: Any]] ?? []
            #expect(replicas.map { $0["replica"] as? String } == ["r1", "r2"], "\(step.stdout)")
            func canary(_ id: String) -> [String: Any] {
                replicas.first { $0["replica"] as? String == id }?["canary"] as? [String: Any] ?? [:]
            }
            // Replica 1 alone would have passed: 30 canary requests, no error.
            #expect(canary("r1")["requests"] as? Int == 30 && canary("r1")["server_errors"] as? Int == 0, "\(step.stdout)")
            #expect((canary("r2")["server_errors"] as? Int ?? 0) >= 10, "\(step.stdout)")
            let total = gate?["canary"] as? [String: Any]
            #expect(total?["requests"] as? Int == (canary("r1")["requests"] as? Int ?? 0) + (canary("r2")["requests"] as? Int ?? 0), "\(step.stdout)")
            let reasons = gate?["reasons"] as? [String] ?? []
            #expect(reasons.contains { $0.contains("canary error rate") }, "\(step.stdout)")
            // Not stepped, on either replica.
            #expect(((try r2.adminJSON("/services/shop"))["state"] as? [String: Any])?["canary_permille"] as? Int == 500)

            // The same refusal in words, with the per-replica rows.
            let words = try r1.cli(["canary", "step", "shop", "--min-requests", "20", "--gate", "errors=1%", "--gate", "p99-floor=1s"])
            #expect(words.status == 1 && words.stdout.contains("summed over 2 replicas"), "\(words.stdout)")
        }
    }
}
