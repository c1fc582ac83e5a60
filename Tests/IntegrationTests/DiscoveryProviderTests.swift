import Foundation
import Testing

// The etcd and DNS providers through the real binary: a change reaches the routing table
// in time, a backend killed under load costs no request, and garbage is reported by name.

// MARK: - Helpers

/// `switchyard run` with a `discovery:` section given as YAML, and the admin listener.
private final class DiscoveringProxy {
    let child: ChildProcess
    let port: UInt16
    let adminPort: UInt16
    let dir: ScratchDir

    init(discovery: String, services: String? = nil, dir: ScratchDir) throws {
        self.dir = dir
        if let services { try dir.write("services.yml", services) }
        let yaml = """
            listeners:
              - {name: web, address: 127.0.0.1:0}
            routes:
              - {path: /, service: shop}
            workers: 2
            admin:
              address: 127.0.0.1:0
            discovery:
            \(discovery)
            """
        try dir.write("switchyard.yml", yaml)
        (child, port, adminPort) = try startProxyWithAdmin(dir: dir)
    }

    var url: String { "http://127.0.0.1:\(port)" }
    var adminURL: String { "http://127.0.0.1:\(adminPort)" }
    func stop() { child.stop() }

    /// GET /status, parsed.
    func status() throws -> [String: Any] {
        let result = try curl(adminURL + "/status", dir: dir)
        guard result.httpStatus == 200, let json = try JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any] else {
            throw HarnessError("/status answered \(result.httpStatus): \(result.body.prefix(300))")
        }
        return json
    }

    /// The ports of `service`'s endpoints in the routing table the workers serve.
    func endpointPorts(_ service: String = "shop") throws -> [Int] {
        let services = try status()["services"] as? [[String: Any]] ?? []
        let tracks = services.first { $0["name"] as? String == service }?["tracks"] as? [[String: Any]] ?? []
        return tracks.flatMap { ($0["endpoints"] as? [[String: Any]] ?? []).compactMap { $0["port"] as? Int } }.sorted()
    }

    /// The track names of `service` in the routing table.
    func trackNames(_ service: String = "shop") throws -> [String] {
        let services = try status()["services"] as? [[String: Any]] ?? []
        let tracks = services.first { $0["name"] as? String == service }?["tracks"] as? [[String: Any]] ?? []
        return tracks.compactMap { $0["name"] as? String }
    }

    /// The provider named `name` in /status.
    func provider(_ name: String) throws -> [String: Any]? {
        (try status()["providers"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }
}

private func milliseconds(since start: ContinuousClock.Instant) -> Int {
    let elapsed = (ContinuousClock.now - start).components
    return Int(elapsed.seconds * 1_000 + elapsed.attoseconds / 1_000_000_000_000_000)
}

/// Answers every POST with `200` and a body that is not JSON (a misconfigured endpoint).
private let garbageServerSource = #"""
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html>oops</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_port, flush=True)
server.serve_forever()
"""#

extension Integration {
    @Suite(.serialized) struct DiscoveryProviders {
        @Test(.timeLimit(.minutes(1)))
        func anEtcdKeyChangeReachesTheRoutingTableWithinOneSecond() throws {
            let dir = try ScratchDir("etcd-change")
            let a = try Backend.demo("a", dir: dir), b = try Backend.demo("b", dir: dir)
            defer { a.stop(); b.stop() }
            let etcd = try EtcdBackend()
            try etcd.put("/switchyard/services/shop/instances/a", EtcdBackend.instance(port: a.port))
            let proxy = try DiscoveringProxy(discovery: """
                  providers:
                    - {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /switchyard/}
                """, dir: dir)
            defer { proxy.stop() }
            try waitFor("the listed instance", timeout: .seconds(5)) { try proxy.endpointPorts() == [Int(a.port)] }
            var worst = 0
            // Add an instance, then move the first one to another track.
            let changes: [(String, String, () throws -> Bool)] = [
                ("b", EtcdBackend.instance(port: b.port), { try proxy.endpointPorts().count == 2 }),
                ("a", EtcdBackend.instance(port: a.port, track: "green"), { try proxy.trackNames().contains("green") }),
            ]
            for (id, value, arrived) in changes {
                let start = ContinuousClock.now
                try etcd.put("/switchyard/services/shop/instances/\(id)", value)
                try waitFor("the change in the routing table", timeout: .seconds(3), interval: .milliseconds(10), arrived)
                worst = max(worst, milliseconds(since: start))
            }
            print("etcd: key change to routing table, worst of 2: \(worst) ms")
            #expect(worst < 1_000)
            let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
            #expect(response.status == 200)
        }

        @Test(.timeLimit(.minutes(2)))
        func etcdKilledAndRestartedUnderLoadCostsNoRequestAndConverges() throws {
            let dir = try ScratchDir("etcd-kill")
            let a = try Backend.demo("a", dir: dir), b = try Backend.demo("b", dir: dir), c = try Backend.demo("c", dir: dir)
            defer { a.stop(); b.stop(); c.stop() }
            let etcd = try EtcdBackend()
            try etcd.put("/switchyard/services/shop/instances/a", EtcdBackend.instance(port: a.port))
            try etcd.put("/switchyard/services/shop/instances/b", EtcdBackend.instance(port: b.port))
            let proxy = try DiscoveringProxy(discovery: """
                  providers:
                    - {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /switchyard/, timeout: 1s}
                """, dir: dir)
            defer { proxy.stop() }
            try waitFor("both instances", timeout: .seconds(5)) { try proxy.endpointPorts().count == 2 }

            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c32", "-d10s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            try waitFor("wrk's connections", timeout: .seconds(5)) { try establishedConnections(toPort: proxy.port, dir: dir) >= 16 }
            let killedAt = ContinuousClock.now
            etcd.kill(0)
            try waitFor("status to show etcd failing", timeout: .seconds(10), interval: .milliseconds(50)) {
                try proxy.provider("etcd")?["healthy"] as? Bool == false
            }
            let failing = try proxy.provider("etcd") ?? [:]
            print("etcd: provider failing \(milliseconds(since: killedAt)) ms after the kill: \(failing["error"] ?? "")")
            #expect((failing["stale_since"] as? String)?.hasSuffix("Z") == true, "an RFC 3339 time: \(failing)")
            // Traffic keeps the last snapshot.
            #expect(try proxy.endpointPorts() == [Int(a.port), Int(b.port)].sorted())
            let cli = try runCommand(SwitchyardBinary.path, ["status", "--admin", proxy.adminURL, "--interval", "0"], dir: dir,
                                     label: "cli-status", timeout: .seconds(10))
            #expect(cli.stdout.contains("etcd FAILING (stale"), "\(cli.stdout)")

            try etcd.restart(0)
            let restartedAt = ContinuousClock.now
            try etcd.put("/switchyard/services/shop/instances/c", EtcdBackend.instance(port: c.port))
            try waitFor("convergence after the restart", timeout: .seconds(15), interval: .milliseconds(50)) {
                try proxy.endpointPorts().count == 3 && proxy.provider("etcd")?["healthy"] as? Bool == true
            }
            print("etcd: converged \(milliseconds(since: restartedAt)) ms after the restart")

            #expect(wrk.waitExit(timeout: .seconds(20)) == 0, "wrk: \(wrk.stderrText)")
            let report = WrkReport(wrk.stdoutText)
            print(wrk.stdoutText)
            #expect(report.requests > 0)
            #expect(report.non2xx3xx == 0, "\(wrk.stdoutText)")
            #expect(report.socketErrors == nil, "\(wrk.stdoutText)")
            #expect(proxy.child.stderrText.contains("discovery provider 'etcd'"), "\(proxy.child.stderrText.suffix(2000))")
        }

        @Test(.timeLimit(.minutes(2)))
        func losingTheWatchedMemberOfAThreeMemberEtcdUnderLoadCostsNoRequest() throws {
            let dir = try ScratchDir("etcd-member")
            let a = try Backend.demo("a", dir: dir), b = try Backend.demo("b", dir: dir)
            defer { a.stop(); b.stop() }
            let etcd = try EtcdBackend(members: 3)
            try etcd.put("/switchyard/services/shop/instances/a", EtcdBackend.instance(port: a.port))
            let proxy = try DiscoveringProxy(discovery: """
                  providers:
                    - {type: etcd, endpoints: [\(etcd.endpoints.joined(separator: ", "))], timeout: 2s}
                """, dir: dir)
            defer { proxy.stop() }
            try waitFor("the listed instance", timeout: .seconds(5)) { try proxy.endpointPorts() == [Int(a.port)] }
            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c32", "-d8s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            try waitFor("wrk's connections", timeout: .seconds(5)) { try establishedConnections(toPort: proxy.port, dir: dir) >= 16 }
            // The provider watches the first member: kill it, then write through a survivor.
            etcd.kill(0)
            let killedAt = ContinuousClock.now
            try waitFor("a write through a survivor", timeout: .seconds(15), interval: .milliseconds(100)) {
                (try? etcd.put("/switchyard/services/shop/instances/b", EtcdBackend.instance(port: b.port))) != nil
            }
            try waitFor("the change through another member", timeout: .seconds(10), interval: .milliseconds(20)) {
                try proxy.endpointPorts().count == 2
            }
            print("etcd: member 1 of 3 killed; the change written through a survivor served \(milliseconds(since: killedAt)) ms after the kill")
            #expect(wrk.waitExit(timeout: .seconds(20)) == 0, "wrk: \(wrk.stderrText)")
            let report = WrkReport(wrk.stdoutText)
            print(wrk.stdoutText)
            #expect(report.requests > 0)
            #expect(report.non2xx3xx == 0, "\(wrk.stdoutText)")
            #expect(report.socketErrors == nil, "\(wrk.stdoutText)")
        }

        @Test(.timeLimit(.minutes(1)))
        func aProviderAnsweringGarbageIsNamedInStatusAndTheLogAndTheRunningTableStays() throws {
            let dir = try ScratchDir("etcd-garbage")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            try dir.write("garbage.py", garbageServerSource)
            let garbage = try ChildProcess("/usr/bin/env", ["python3", dir.file("garbage.py")], dir: dir, label: "garbage")
            defer { garbage.stop() }
            let garbagePort = try garbage.waitForListeningPort()
            let proxy = try DiscoveringProxy(discovery: """
                  providers:
                    - {type: file, file: services.yml}
                    - {type: etcd, endpoints: [http://127.0.0.1:\(garbagePort)]}
                """, services: servicesYAML([ServiceSpec(name: "shop", instances: [InstanceSpec(port: a.port)])]), dir: dir)
            defer { proxy.stop() }
            try waitFor("status to show etcd failing", timeout: .seconds(10)) { try proxy.provider("etcd")?["healthy"] as? Bool == false }
            let etcd = try proxy.provider("etcd") ?? [:]
            let error = etcd["error"] as? String ?? ""
            #expect(error.contains("127.0.0.1:\(garbagePort)") && error.contains("not JSON"), "\(error)")
            #expect(try proxy.provider("file")?["healthy"] as? Bool == true)
            #expect(proxy.child.stderrText.contains("discovery provider 'etcd' (http://127.0.0.1:\(garbagePort)"),
                    "\(proxy.child.stderrText.suffix(2000))")
            #expect(try proxy.endpointPorts() == [Int(a.port)])
            let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
            #expect(response.status == 200)
            #expect(response.header("X-Backend") == "a")
        }

        @Test(.timeLimit(.minutes(1)))
        func aProviderFlappingEvery50msAppliesAtMostOncePerQuiescenceWindow() throws {
            let dir = try ScratchDir("flap")
            let a = try Backend.demo("a", dir: dir), b = try Backend.demo("b", dir: dir)
            defer { a.stop(); b.stop() }
            let one = servicesYAML([ServiceSpec(name: "shop", instances: [InstanceSpec(port: a.port)])])
            let two = servicesYAML([ServiceSpec(name: "shop", instances: [InstanceSpec(port: a.port), InstanceSpec(port: b.port)])])
            let proxy = try DiscoveringProxy(discovery: """
                  quiescence: {min: 200ms, max: 1s}
                  providers:
                    - {type: file, file: services.yml, poll: 20ms}
                """, services: one, dir: dir)
            defer { proxy.stop() }
            try waitFor("the first table", timeout: .seconds(5)) { try proxy.endpointPorts() == [Int(a.port)] }
            let published = { proxy.child.stderrText.components(separatedBy: "published (discovery)").count - 1 }
            let before = published()
            // 3 s of flapping: the file alternates between one and two instances every 50 ms.
            let start = ContinuousClock.now
            for step in 0..<60 {
                try dir.write("services.yml", step % 2 == 0 ? two : one)
                let next = start + .milliseconds(50 * (step + 1))
                try waitFor("the next rewrite time", timeout: .seconds(2), interval: .milliseconds(5)) { ContinuousClock.now >= next }
            }
            try dir.write("services.yml", two)
            try waitFor("the last version", timeout: .seconds(5)) { try proxy.endpointPorts().count == 2 }
            let applies = published() - before
            print("flapping every 50 ms for 3 s with quiescence max 1 s: \(applies) routing tables published")
            // One per max window at most (3), plus the final state after the flapping.
            #expect(applies <= 4, "\(proxy.child.stderrText.suffix(2000))")
            let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
            #expect(response.status == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func aDNSRecordChangeReachesTheRoutingTableWithinTheTTLBound() throws {
            let dir = try ScratchDir("dns-change")
            let a = try Backend.demo("a", dir: dir), b = try Backend.demo("b", dir: dir)
            defer { a.stop(); b.stop() }
            let dns = try DNSBackend(service: "web", ports: [a.port])
            let proxy = try DiscoveringProxy(discovery: """
                  providers:
                    - type: dns
                      server: 127.0.0.1:\(dns.port)
                      ttl: {min: 200ms, max: 1s}
                      services:
                        shop: {srv: _web._tcp.service.test}
                """, dir: dir)
            defer { proxy.stop() }
            try waitFor("the first answer", timeout: .seconds(5)) { try proxy.endpointPorts() == [Int(a.port)] }
            let start = ContinuousClock.now
            try dns.set(service: "web", ports: [a.port, b.port])
            try waitFor("the new record in the routing table", timeout: .seconds(5), interval: .milliseconds(10)) {
                try proxy.endpointPorts().count == 2
            }
            let took = milliseconds(since: start)
            print("dns: record change to routing table: \(took) ms (ttl 0 clamped to min 200 ms, max 1 s; quiescence min 100 ms)")
            // The bound: one poll interval (at most ttl.max) plus the quiescence window.
            #expect(took < 1_000 + 100)
        }
    }
}
