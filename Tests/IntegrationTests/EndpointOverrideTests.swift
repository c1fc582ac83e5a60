import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// `switchyard endpoint weight|maint|ready|drain|status`: overrides of one endpoint,
    /// stored in the state store beside the service's traffic state (same revisions and
    /// history), applied when the routing table is built, kept across restarts and
    /// discovery changes, and applied by every replica (file, etcd and Consul KV stores).
    @Suite(.serialized) struct EndpointOverride {
        /// Maintenance takes an endpoint out of rotation and survives a restart of the
        /// proxy; `ready` puts it back; a runtime weight splits exactly (smooth weighted
        /// round robin) and keeps applying when discovery adds an endpoint.
        @Test(.timeLimit(.minutes(2)))
        func maintSurvivesARestartAndAWeightSurvivesADiscoveryChange() throws {
            let dir = try ScratchDir("endpoint-override")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir), Backend.demo("blue-3", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let one = "127.0.0.1:\(blue[0].port)"
            var proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue[0].port, blue[1].port], green: [green.port]))
            defer { proxy.stop() }
            #expect(Set(try sendSequential(10, port: proxy.port)) == ["blue-1", "blue-2"])

            let maint = try proxy.cli(["endpoint", "maint", "shop", one, "--why", "disk full"])
            #expect(maint.status == 0, "\(maint.stdout) \(maint.stderr)")
            #expect(maint.stdout.contains("endpoint \(one) ready -> maint (revision 1"), "\(maint.stdout)")
            #expect(try sendSequential(20, port: proxy.port).allSatisfy { $0 == "blue-2" })
            // Stored in the state store file, beside the traffic state.
            let stored = try String(contentsOfFile: dir.file("state.json"), encoding: .utf8)
            #expect(stored.contains("\"\(one)\":{\"state\":\"maint\"}"), "\(stored)")

            // A new process reads it back before its first table.
            proxy.stop()
            proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue[0].port, blue[1].port], green: [green.port]))
            #expect(try sendSequential(20, port: proxy.port).allSatisfy { $0 == "blue-2" })
            let status = try proxy.cli(["endpoint", "status", "shop"])
            #expect(status.status == 0, "\(status.stderr)")
            #expect(status.stdout.contains(one) && status.stdout.contains("maint"), "\(status.stdout)")
            // The tracks still follow discovery: only an endpoint was ever stored.
            #expect(try proxy.backend() == "blue-2")

            #expect(try proxy.cli(["endpoint", "ready", "shop", one]).status == 0)
            #expect(Set(try sendSequential(10, port: proxy.port)) == ["blue-1", "blue-2"])

            // Weight 3 against discovery's 1: exactly 3 of every 4 requests.
            let weight = try proxy.cli(["endpoint", "weight", "shop", one, "3", "--json"])
            #expect(weight.status == 0, "\(weight.stderr)")
            #expect(weight.stdout.contains("\"override\":{\"state\":\"ready\",\"weight\":3}"), "\(weight.stdout)")
            let split = try sendSequential(40, port: proxy.port)
            #expect(split.filter { $0 == "blue-1" }.count == 30, "\(split)")

            // Weight 0 and a third endpoint from discovery: the override keeps applying.
            #expect(try proxy.cli(["endpoint", "weight", "shop", one, "0"]).status == 0)
            try dir.write("services.yml", blueGreenServices(blue: blue.map(\.port), green: [green.port]))
            try waitFor("blue-3 from discovery", timeout: .seconds(10)) {
                try sendSequential(6, port: proxy.port).contains("blue-3")
            }
            #expect(Set(try sendSequential(30, port: proxy.port)) == ["blue-2", "blue-3"])
            let answer = try proxy.adminJSON("/services/shop/endpoints")
            let views = (answer["services"] as? [[String: Any]])?.first?["endpoints"] as? [[String: Any]] ?? []
            let first = views.first { $0["endpoint"] as? String == one }
            #expect(first?["override_weight"] as? Int == 0 && first?["effective_weight"] as? Int == 0, "\(answer)")

            // Every change is a revision with who and why in the history.
            let service = try proxy.adminJSON("/services/shop")
            let state = service["state"] as? [String: Any]
            #expect(state?["revision"] as? Int == 4, "\(service)")
            let history = (state?["history"] as? [[String: Any]])?.compactMap { $0["action"] as? String } ?? []
            #expect(history.first == "endpoint \(one) ready -> maint" && history.last == "endpoint \(one) weight 3 -> 0", "\(history)")
            #expect((state?["history"] as? [[String: Any]])?.first?["why"] as? String == "disk full")
        }

        /// Drain: no new request reaches the endpoint, the one in flight finishes there.
        /// The older `POST /endpoints/ID/drain` is now the same stored change.
        @Test(.timeLimit(.minutes(1)))
        func drainLetsInFlightRequestsFinishAndTheOldRouteIsStored() throws {
            let dir = try ScratchDir("endpoint-drain-stored")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let (one, two) = ("127.0.0.1:\(blue[0].port)", "127.0.0.1:\(blue[1].port)")
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: blue.map(\.port), green: [green.port]))
            defer { proxy.stop() }
            // Only blue-1 takes requests while the slow one starts.
            #expect(try proxy.cli(["endpoint", "maint", "shop", two]).status == 0)
            let slow = try BackgroundCurl(proxy.url + "/slow?ms=1500", extra: ["%header{x-backend}"], dir: dir)
            try waitFor("the slow request to reach blue-1", timeout: .seconds(5)) {
                activeRequests(try proxy.adminJSON("/status"), track: "blue") > 0
            }
            #expect(try proxy.cli(["endpoint", "ready", "shop", two]).status == 0)
            #expect(try proxy.cli(["endpoint", "drain", "shop", one]).status == 0)
            #expect(try sendSequential(20, port: proxy.port).allSatisfy { $0 == "blue-2" })
            let finished = slow.finish(timeout: .seconds(10))
            #expect(finished.httpStatus == 200 && finished.written.first == "blue-1", "\(finished)")

            // The older route: stored, in the history, and undone the same way.
            let undrained = try proxy.adminPost("/endpoints/shop%2F\(one)/drain", "{\"drain\": false}")
            #expect(undrained.status == 200, "\(undrained)")
            #expect(Set(try sendSequential(10, port: proxy.port)) == ["blue-1", "blue-2"])
            let drained = try proxy.adminPost("/endpoints/shop%2F\(one)/drain", "{\"drain\": true}")
            #expect(drained.status == 200 && drained.body.contains("\"state\":\"drain\""), "\(drained)")
            #expect(try String(contentsOfFile: dir.file("state.json"), encoding: .utf8).contains("\"state\":\"drain\""))
            #expect(try sendSequential(10, port: proxy.port).allSatisfy { $0 == "blue-2" })
        }

        /// Bad input is refused with a clear message and changes nothing.
        @Test(.timeLimit(.minutes(1)))
        func badEndpointChangesAreRefusedAndChangeNothing() throws {
            let dir = try ScratchDir("endpoint-bad")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            let one = "127.0.0.1:\(blue.port)"
            let heavy = try proxy.cli(["endpoint", "weight", "shop", one, "257"])
            #expect(heavy.status == 2 && heavy.stderr.contains("0 to 256"), "\(heavy.stderr)")
            let unknown = try proxy.cli(["endpoint", "maint", "shop", "127.0.0.1:1"])
            #expect(unknown.status == 2 && unknown.stderr.contains("no endpoint 127.0.0.1:1"), "\(unknown.stderr)")
            let noPort = try proxy.cli(["endpoint", "maint", "shop", "127.0.0.1"])
            #expect(noPort.status == 2 && noPort.stderr.contains("not ADDRESS:PORT"), "\(noPort.stderr)")
            let noService = try proxy.cli(["endpoint", "drain", "nope", one])
            #expect(noService.status == 2 && noService.stderr.contains("no service 'nope'"), "\(noService.stderr)")
            for body in ["{\"state\": \"down\"}", "{\"weight\": -1}", "{\"state\": \"maint\", \"weight\": 2}", "{}", "[1]", "{\"weight\": 1e30}"] {
                let answer = try proxy.adminPost("/services/shop/endpoints/\(one)", body)
                #expect(answer.status == 400, "\(body): \(answer)")
            }
            let stale = try proxy.cli(["endpoint", "maint", "shop", one, "--revision", "7"])
            #expect(stale.status == 1 && stale.stderr.contains("stale revision"), "\(stale.stderr)")
            #expect(((try proxy.adminJSON("/services/shop"))["state"] as? [String: Any])?["revision"] as? Int == 0)
            #expect(try proxy.backend() == "blue-1")
        }

        /// The dashboard, as headless Chromium renders it, names stored overrides.
        @Test(.timeLimit(.minutes(2)), .enabled(if: DashboardBrowser.path != nil, DashboardBrowser.missingMessage))
        func theDashboardShowsStoredOverrides() throws {
            let dir = try ScratchDir("endpoint-dashboard")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: blue.map(\.port), green: [green.port]))
            defer { proxy.stop() }
            #expect(try proxy.cli(["endpoint", "maint", "shop", "127.0.0.1:\(blue[0].port)"]).status == 0)
            #expect(try proxy.cli(["endpoint", "weight", "shop", "127.0.0.1:\(blue[1].port)", "5"]).status == 0)
            let dom = try DashboardBrowser.dumpDOM(proxy.adminURL + "/dashboard", dir: dir)
            let rows = dom.components(separatedBy: "<tr class=\"endpoint")
            let first = rows.first { $0.contains("data-endpoint=\"shop/127.0.0.1:\(blue[0].port)\"") } ?? ""
            let second = rows.first { $0.contains("data-endpoint=\"shop/127.0.0.1:\(blue[1].port)\"") } ?? ""
            #expect(first.contains("flag-maint") && !first.contains("flag-draining"), "\(first.prefix(800))")
            #expect(second.contains("flag-weight") && second.contains("weight 5"), "\(second.prefix(800))")
        }

        /// Two replicas on one etcd: maintenance through r1 with --wait returns once r2
        /// serves it too, and r2 sends nothing to the endpoint.
        @Test(.timeLimit(.minutes(2)))
        func maintThroughOneReplicaAppliesOnEveryReplica() throws {
            let dir = try ScratchDir("endpoint-replicas")
            let etcd = try EtcdCluster(size: 1)
            try twoReplicasFollowOneOverride(dir: dir, store: "  type: etcd\n  endpoints: [\(etcd.endpoints[0])]\n  prefix: /sy-endpoint/\n  replica_ttl: 3s\n")
        }

        /// The same through Consul KV (Tests/Fixtures/consul_emulator.py).
        @Test(.timeLimit(.minutes(2)))
        func maintThroughOneReplicaAppliesOnEveryReplicaThroughConsul() throws {
            let dir = try ScratchDir("endpoint-replicas-consul")
            let consul = try EmulatorProcess(script: "consul_emulator.py")
            try twoReplicasFollowOneOverride(dir: dir, store: "  type: consul\n  address: \(consul.url)\n  prefix: sy/\n  replica_ttl: 3s\n")
        }

        private func twoReplicasFollowOneOverride(dir: ScratchDir, store: String) throws {
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let services = blueGreenServices(blue: blue.map(\.port), green: [green.port])
            let r1 = try TrafficProxy(dir: dir, services: services, label: "r1", store: store + "  replica_id: r1\n")
            defer { r1.stop() }
            let r2 = try TrafficProxy(dir: dir, services: services, label: "r2", store: store + "  replica_id: r2\n")
            defer { r2.stop() }
            try waitFor("both replicas to report in the store", timeout: .seconds(10)) {
                ((try r1.adminJSON("/replicas"))["replicas"] as? [[String: Any]])?.count == 2
            }
            let maint = try r1.cli(["endpoint", "maint", "shop", "127.0.0.1:\(blue[0].port)", "--wait", "--wait-timeout", "10s"])
            #expect(maint.status == 0, "\(maint.stdout) \(maint.stderr)")
            #expect(maint.stdout.contains("all 2 replica(s) serve revision 1"), "\(maint.stdout)")
            #expect(try sendSequential(20, port: r2.port).allSatisfy { $0 == "blue-2" })
            #expect(try sendSequential(20, port: r1.port).allSatisfy { $0 == "blue-2" })
            // A flip afterwards is the next revision of the same state, and keeps the override.
            let flip = try r2.cli(["flip", "shop", "--to", "blue", "--wait", "--wait-timeout", "10s"])
            #expect(flip.status == 0 && flip.stdout.contains("revision 2"), "\(flip.stdout) \(flip.stderr)")
            #expect(try sendSequential(10, port: r1.port).allSatisfy { $0 == "blue-2" })
            let ready = try r2.cli(["endpoint", "ready", "shop", "127.0.0.1:\(blue[0].port)", "--wait", "--wait-timeout", "10s"])
            #expect(ready.status == 0, "\(ready.stderr)")
            #expect(Set(try sendSequential(10, port: r1.port)) == ["blue-1", "blue-2"])
        }
    }
}
