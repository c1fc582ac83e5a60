import Foundation
import Testing

/// What wrk reported that these tests care about.
struct WrkReport {
    var requests: Int
    /// `Non-2xx or 3xx responses: N`, 0 when the line is absent.
    var non2xx3xx: Int
    /// The `Socket errors: ...` line, nil when absent.
    var socketErrors: String?

    init(_ output: String) {
        requests = 0
        non2xx3xx = 0
        socketErrors = nil
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if line.hasPrefix("Non-2xx or 3xx responses:") {
                non2xx3xx = Int(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) ?? -1
            } else if line.hasPrefix("Socket errors:") {
                socketErrors = line
            } else if line.contains("requests in"), let count = Int(line.split(separator: " ").first ?? "") {
                requests = count
            }
        }
    }
}

extension Integration {
    @Suite struct DiscoveryUnderLoad {
        /// wrk -t1 -c64 -d8s while services.yml is rewritten 20 times, alternating the active
        /// track and the instance set, by rename and in place: no error reaches a client.
        @Test(.timeLimit(.minutes(1)))
        func servicesFileRewrittenTwentyTimesUnderLoadCausesNoErrors() throws {
            let dir = try ScratchDir("reload")
            var backends: [Backend] = []
            defer { backends.forEach { $0.stop() } }
            for name in ["blue1", "blue2", "green1", "green2"] {
                backends.append(try Backend.demo(name, dir: dir))
            }
            let (blue1, blue2, green1, green2) = (backends[0].port, backends[1].port, backends[2].port, backends[3].port)
            let all = [InstanceSpec(port: blue1, track: "blue"), InstanceSpec(port: blue2, track: "blue"),
                       InstanceSpec(port: green1, track: "green"), InstanceSpec(port: green2, track: "green")]
            let versions: [[ServiceSpec]] = [
                [ServiceSpec(name: "shop", active: "green", instances: all)],
                [ServiceSpec(name: "shop", active: "blue", instances: all)],
                [ServiceSpec(name: "shop", instances: [InstanceSpec(port: green1), InstanceSpec(port: blue2, weight: 2)])],
                [ServiceSpec(name: "shop", active: "green", instances: Array(all[2...]))],
                [ServiceSpec(name: "shop", instances: [InstanceSpec(port: blue1)])],
            ]
            let proxy = try RunningProxy(ProxySpec(), services: [ServiceSpec(name: "shop", active: "blue", instances: all)], dir: dir)
            defer { proxy.stop() }

            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c64", "-d8s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            // Let wrk open its connections, then rewrite every 350 ms (20 rewrites in 7 s).
            try waitFor("wrk's connections through the proxy", timeout: .seconds(5)) {
                try establishedConnections(toPort: proxy.port, dir: dir) >= 32
            }
            let published = proxy.child.stderrText.components(separatedBy: "published").count
            let start = ContinuousClock.now
            var written: [String] = []
            for i in 0..<20 {
                let offset = (ContinuousClock.now - start).components
                written.append("\(offset.seconds * 1000 + offset.attoseconds / 1_000_000_000_000_000)ms")
                let text = servicesYAML(versions[i % versions.count])
                if i % 2 == 0 {
                    try dir.write("services.yml", text)
                } else {
                    try dir.writeInPlace("services.yml", text)
                }
                let next = start + .milliseconds(350 * (i + 1))
                try waitFor("the next rewrite time", timeout: .seconds(2)) { ContinuousClock.now >= next }
            }
            let status = wrk.waitExit(timeout: .seconds(15))
            #expect(status == 0, "wrk: \(wrk.stderrText)")
            let output = wrk.stdoutText
            print(output)
            let report = WrkReport(output)
            #expect(report.requests > 0)
            #expect(report.non2xx3xx == 0, "\(output)")
            #expect(report.socketErrors == nil, "\(output)")
            let tables = proxy.child.stderrText.components(separatedBy: "published").count - published
            // Rewrites closer together than a poll interval may be seen as one (and a starved
            // test thread bunches them up on a loaded machine), so only print the count.
            print("\(tables) routing tables published for 20 rewrites, written at \(written)")
            #expect(tables >= 2, "only \(tables) routing tables were published for 20 rewrites written at \(written)")
            // The last version written (only blue1) is what the proxy serves now.
            let last = versions[19 % versions.count]
            #expect(last[0].instances.map(\.port) == [blue1])
            var recent: [String] = []
            let converged = (try? waitFor("the proxy to serve from the last services file", timeout: .seconds(3)) {
                let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                recent = Array((recent + [response.header("X-Backend") ?? "\(response.status)"]).suffix(6))
                return recent == Array(repeating: "blue1", count: 6)
            }) != nil
            #expect(converged, "last answers came from \(recent); log: \(proxy.child.stderrText.suffix(1500))")
        }
    }
}
