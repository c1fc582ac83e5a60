import Foundation
import Testing
import YardTestSupport

/// `switchyard run` following Consul (the emulator in Tests/Fixtures) and Docker (podman's
/// Docker API), end to end: a discovery change reaches the routing table, and the
/// traffic, within 1 s; a provider's backend lost under load costs no request.
extension Integration {
    @Suite struct ContainerDiscovery {
        /// A config with one route to `shop` and the given provider entry.
        private func config(provider: String) -> String {
            """
            listeners:
              - name: web
                address: 127.0.0.1:0
            routes:
              - path: /
                service: shop
            discovery:
              quiescence: {min: 50ms, max: 300ms}
              providers:
                - \(provider)
            workers: 2

            """
        }

        private func register(_ consul: EmulatorProcess, id: String, port: UInt16) throws {
            try consul.call("PUT", "/v1/catalog/register", json: """
                {"Node":"node-\(id)","Address":"127.0.0.1","Service":{"ID":"\(id)","Service":"shop","Port":\(port),"Tags":["track=blue"]}}
                """)
        }

        private func backendName(_ proxy: UInt16) -> String {
            ((try? rawExchange(port: proxy, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", timeout: .seconds(2)))?.header("X-Backend")) ?? "-"
        }

        /// The instant from which the proxy answered only from `name` `times` times in a row.
        private func waitUntilServedBy(_ name: String, proxy: UInt16, times: Int = 4, timeout: Duration = .seconds(5)) throws -> ContinuousClock.Instant {
            var streak = 0
            var firstOfStreak = ContinuousClock.now
            try waitFor("answers only from \(name)", timeout: timeout, interval: .milliseconds(5)) {
                let sentAt = ContinuousClock.now
                if backendName(proxy) == name {
                    if streak == 0 { firstOfStreak = sentAt }
                    streak += 1
                } else {
                    streak = 0
                }
                return streak >= times
            }
            return firstOfStreak
        }

        /// wrk through the proxy for 6 s while the provider's backend is killed at 1 s and
        /// restarted 2 s after the proxy reports it failing: no request may fail.
        private func outageUnderLoad(
            provider: String, proxy: ChildProcess, port: UInt16, dir: ScratchDir, connections: Int,
            kill: () throws -> Void, restart: () throws -> Void
        ) throws {
            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c\(connections)", "-d6s", "--timeout", "5s", "http://127.0.0.1:\(port)/"],
                                       dir: dir, label: "wrk")
            defer { wrk.stop() }
            try waitFor("wrk's connections", timeout: .seconds(5)) { try establishedConnections(toPort: port, dir: dir) >= connections / 2 }
            pause(.seconds(1))
            try kill()
            try waitFor("the provider to report the outage", timeout: .seconds(5)) {
                proxy.stderrText.contains("discovery provider '\(provider)'") && proxy.stderrText.contains("failing")
            }
            pause(.seconds(2))
            try restart()
            let status = wrk.waitExit(timeout: .seconds(15))
            #expect(status == 0, "wrk: \(wrk.stderrText)")
            let report = WrkReport(wrk.stdoutText)
            print("\(provider) outage under load:\n\(wrk.stdoutText)")
            #expect(report.requests > 0)
            #expect(report.non2xx3xx == 0, "\(wrk.stdoutText)")
            #expect(report.socketErrors == nil, "\(wrk.stdoutText)")
        }

        @Test(.timeLimit(.minutes(1)))
        func aConsulRegistrationChangeReachesTheTrafficWithinOneSecondAndAnAgentOutageUnderLoadCostsNoRequest() throws {
            let dir = try ScratchDir("consul")
            let state = dir.file("consul-state.json")
            let consul = try EmulatorProcess(script: "consul_emulator.py", arguments: ["--data", state])
            let blue1 = try Backend.demo("blue1", dir: dir)
            let blue2 = try Backend.demo("blue2", dir: dir)
            defer { blue1.stop(); blue2.stop() }
            try register(consul, id: "blue1", port: blue1.port)

            try dir.write("switchyard.yml", config(provider: "{type: consul, address: '\(consul.url)', services: [shop], wait: 5s}"))
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            let port = try proxy.waitForListeningPort()
            _ = try waitUntilServedBy("blue1", proxy: port)

            // Move the service from blue1 to blue2 in Consul; time until traffic follows.
            let changedAt = ContinuousClock.now
            try register(consul, id: "blue2", port: blue2.port)
            try consul.call("PUT", "/v1/catalog/deregister", json: #"{"Node":"node-blue1","ServiceID":"blue1"}"#)
            let servedAt = try waitUntilServedBy("blue2", proxy: port)
            let latency = servedAt - changedAt
            print("consul -> proxy traffic: \(latency.components.seconds * 1000 + latency.components.attoseconds / 1_000_000_000_000_000) ms (quiescence min 50 ms)")
            #expect(latency < .seconds(1))

            // Under load: the agent is killed, stays down 2 s, and comes back.
            try outageUnderLoad(provider: "consul", proxy: proxy, port: port, dir: dir, connections: 16,
                                kill: { consul.kill() }, restart: { try consul.restart() })
            // The outage is logged once when it starts and once when it ends; the recovery
            // line names the last failure: the blocking query open at the kill ends with
            // "closed the connection without answering", a query started after it with
            // "cannot connect"; either names the agent's URL.
            try waitFor("the recovery line", timeout: .seconds(5)) { proxy.stderrText.contains("discovery provider 'consul' healthy again") }
            let failure = proxy.stderrText
            #expect(failure.contains("cannot connect to \(consul.url)") || failure.contains("\(consul.url): closed the connection without answering"),
                    "\(failure.suffix(2000))")

            // After the restart, the provider converges: a change made now reaches traffic.
            try register(consul, id: "blue1", port: blue1.port)
            try consul.call("PUT", "/v1/catalog/deregister", json: #"{"Node":"node-blue2","ServiceID":"blue2"}"#)
            _ = try waitUntilServedBy("blue1", proxy: port, timeout: .seconds(10))
        }

        @Test(.timeLimit(.minutes(2)))
        func aDockerContainerStartAndStopReachTheTrafficWithinOneSecondAndAnEngineOutageUnderLoadCostsNoRequest() throws {
            let dir = try ScratchDir("docker")
            let engine = try PodmanEngine()
            let first = try freePort()
            let second = try freePort()
            let a = try engine.createHTTPContainer(name: "shop-a", port: first, labels: ["switchyard.service": "shop", "switchyard.port": "\(first)"])
            let b = try engine.createHTTPContainer(name: "shop-b", port: second, labels: ["switchyard.service": "shop", "switchyard.port": "\(second)"])
            try engine.start(a)
            try dir.write("switchyard.yml", config(provider: "{type: docker, socket: '\(engine.socketPath)'}"))
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            let port = try proxy.waitForListeningPort()
            func body() -> String {
                ((try? rawExchange(port: port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", timeout: .seconds(2)))?.bodyText ?? "-")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try waitFor("shop-a serving through the proxy", timeout: .seconds(5)) { body() == "shop-a" }

            let startedAt = ContinuousClock.now
            try engine.start(b)
            // From here shop-b runs (podman's own start time is not Switchyard's).
            let runningAt = ContinuousClock.now
            try waitFor("shop-b in rotation", timeout: .seconds(5), interval: .milliseconds(5)) { body() == "shop-b" }
            let startTotal = ContinuousClock.now - startedAt
            let startLatency = ContinuousClock.now - runningAt

            let stoppedAt = ContinuousClock.now
            try engine.stop(a)
            var streak = 0
            try waitFor("only shop-b answering", timeout: .seconds(5), interval: .milliseconds(5)) {
                streak = body() == "shop-b" ? streak + 1 : 0
                return streak >= 6
            }
            let stopLatency = ContinuousClock.now - stoppedAt
            func ms(_ d: Duration) -> Int64 { d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000 }
            print("docker -> proxy traffic: running -> served \(ms(startLatency)) ms (\(ms(startTotal)) ms with podman start), stop command -> gone \(ms(stopLatency)) ms")
            #expect(startLatency < .seconds(1))
            #expect(stopLatency < .seconds(1))

            // Under load: the engine's API is killed (the containers keep running), stays
            // down 2 s, and comes back. busybox httpd forks per connection and answers
            // slowly under load: fewer connections and a longer wrk timeout keep its
            // slowness from counting as a proxy failure.
            try outageUnderLoad(provider: "docker", proxy: proxy, port: port, dir: dir, connections: 8,
                                kill: { try engine.killService() }, restart: { try engine.restartService() })
            // Converged after the restart: a container started now joins.
            try engine.start(a)
            do {
                try waitFor("shop-a back in rotation", timeout: .seconds(5), interval: .milliseconds(5)) { body() == "shop-a" }
            } catch {
                Issue.record("\(error)\n\(proxy.stderrText.suffix(3000))")
            }
        }
    }
}
