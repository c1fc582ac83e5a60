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
    }
}
