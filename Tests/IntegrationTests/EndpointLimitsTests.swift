import Foundation
import Testing

extension Integration {
    /// Per-endpoint `max_connections` and the per-service wait queue (`max_pending`,
    /// `queue_timeout`): HAProxy's `maxconn` / `maxqueue`. The demo backend counts the most
    /// requests it answered at once (`/concurrency`), so the test sees the limit from the
    /// backend's side, across both event loops of the proxy.
    @Suite(.serialized) struct EndpointLimits {
        /// 20 clients at once against one replica capped at 4, each request 300 ms: the
        /// replica never answers a 5th at once, and all 20 complete once the queue serves them.
        @Test(.timeLimit(.minutes(1)))
        func aCappedReplicaNeverSeesAFifthRequestAndTheQueueServesEveryone() throws {
            let dir = try ScratchDir("limits-cap")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            let proxy = try TrafficProxy(dir: dir, services: services(backend.port, maxPending: 100, queueTimeout: "10s"), label: "cap")
            defer { proxy.stop() }

            let codes = try parallelCurl(proxy.url + "/slow?ms=300", count: 20, dir: dir).answers.map(\.code)
            #expect(codes == Array(repeating: 200, count: 20), "\(codes)")
            let peak = try backendPeak(backend, dir: dir)
            print("max_connections 4: 20 concurrent 300 ms requests, backend peak concurrency \(peak)")
            #expect(peak <= 4, "the backend answered \(peak) requests at once")
            #expect(peak == 4, "the cap is used, not undershot")

            let metrics = try scrape(proxy)
            #expect(value(metrics, "switchyard_queue_wait_seconds_count{service=\"shop\"}") >= 10, "most requests waited and were served from the queue")
            #expect(value(metrics, "switchyard_queue_length{service=\"shop\"}") == 0)
            #expect(value(metrics, "switchyard_queue_refused_total{service=\"shop\",reason=\"full\"}") == 0)
            #expect(metrics.contains("switchyard_endpoint_max_connections{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(backend.port)\"} 4"))
            #expect(metrics.contains("switchyard_endpoint_slots_in_use{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(backend.port)\"} 0"),
                    "every slot was given back")
        }

        /// With room for 2 waiters and a 200 ms wait against 600 ms answers: 4 requests are
        /// served, 2 wait and time out, 14 find the queue full; the 16 refused get 503 with
        /// Retry-After, and the counters say which was which.
        @Test(.timeLimit(.minutes(1)))
        func overflowAndExpiredWaitsGet503WithRetryAfter() throws {
            let dir = try ScratchDir("limits-overflow")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            let proxy = try TrafficProxy(dir: dir, services: services(backend.port, maxPending: 2, queueTimeout: "200ms"), label: "overflow")
            defer { proxy.stop() }

            let (answers, bodies) = try parallelCurl(proxy.url + "/slow?ms=600", count: 20, dir: dir)
            let codes = answers.map(\.code)
            #expect(codes.filter { $0 == 200 }.count == 4, "\(codes)")
            #expect(codes.filter { $0 == 503 }.count == 16, "\(codes)")
            let metrics = try scrape(proxy)
            #expect(value(metrics, "switchyard_queue_refused_total{service=\"shop\",reason=\"full\"}") == 14)
            #expect(value(metrics, "switchyard_queue_refused_total{service=\"shop\",reason=\"timeout\"}") == 2)

            // Each refused answer, whole: 503, Retry-After, and a body that says why.
            for answer in answers where answer.code == 503 { #expect(answer.retryAfter == "1") }
            #expect(bodies.filter { $0.contains("every endpoint is at max_connections") }.count == 16)
        }

        /// HTTP/2 clients: 2 connections with 16 streams each, 64 requests of 100 ms through
        /// a cap of 4: every stream gets its 200, the backend never answers a 5th at once.
        @Test(.timeLimit(.minutes(1)))
        func theCapHoldsForHTTP2Streams() throws {
            let dir = try ScratchDir("limits-h2")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            let proxy = try TrafficProxy(dir: dir, services: services(backend.port, maxPending: 100, queueTimeout: "10s"), label: "h2")
            defer { proxy.stop() }

            let started = ContinuousClock.now
            let result = try runCommand("/usr/bin/h2load", ["-n", "64", "-c", "2", "-m", "16", proxy.url + "/slow?ms=100"],
                                        dir: dir, label: "h2load", timeout: .seconds(40))
            let elapsed = ContinuousClock.now - started
            #expect(result.stdout.contains("64 succeeded, 0 failed"), "\(result.stdout)")
            #expect(result.stdout.contains("status codes: 64 2xx"), "\(result.stdout)")
            let peak = try backendPeak(backend, dir: dir)
            print("h2load -c2 -m16 -n64, 100 ms each, max_connections 4: peak \(peak), \(elapsed)")
            #expect(peak <= 4 && peak >= 3, "the backend answered \(peak) requests at once")
            // 64 requests 4 at a time take 16 rounds of 100 ms.
            #expect(elapsed >= .milliseconds(1_500))
        }

        /// An HTTP/2 stream that finds every slot taken and no room to wait gets a whole 503
        /// response on its stream, with retry-after; the connection goes on. `/status` shows
        /// the limit and the slot in use.
        @Test(.timeLimit(.minutes(1)))
        func aRefusedHTTP2StreamGetsA503WithRetryAfter() throws {
            let dir = try ScratchDir("limits-h2-busy")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            let proxy = try TrafficProxy(dir: dir, services: services(backend.port, maxConnections: 1, maxPending: 0, queueTimeout: "1s"), label: "h2busy")
            defer { proxy.stop() }
            let held = try BackgroundCurl(proxy.url + "/slow?ms=1500", dir: dir)
            try waitFor("the only slot taken", timeout: .seconds(5)) {
                (try? scrape(proxy)).map { value($0, "switchyard_endpoint_slots_in_use{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(backend.port)\"}") == 1 } ?? false
            }
            let refused = try curl(proxy.url + "/", ["--http2-prior-knowledge"], extra: ["%{http_version}", "%header{retry-after}"], dir: dir)
            #expect(refused.httpStatus == 503)
            #expect(refused.written.first == "2", "answered over HTTP/2")
            #expect(refused.written.dropFirst().first == "1", "retry-after: \(refused.written)")
            #expect(refused.body.contains("every endpoint is at max_connections"))

            let status = try rawExchange(port: proxy.adminPort, "GET /status HTTP/1.1\r\nHost: 127.0.0.1:\(proxy.adminPort)\r\nConnection: close\r\n\r\n")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(status.body)) as? [String: Any])
            let shop = try #require((json["services"] as? [[String: Any]])?.first { $0["name"] as? String == "shop" })
            let limits = try #require(shop["limits"] as? [String: Any])
            #expect(limits["max_connections"] as? Int == 1)
            #expect((limits["in_use"] as? [String: Int])?["shop/127.0.0.1:\(backend.port)"] == 1)

            let explain = try rawExchange(port: proxy.adminPort, "GET /explain?host=shop&path=/ HTTP/1.1\r\nHost: 127.0.0.1:\(proxy.adminPort)\r\nConnection: close\r\n\r\n")
            let explained = String(decoding: explain.body, as: UTF8.self)
            #expect(explained.contains("max_connections 1 per endpoint, slots in use: shop/127.0.0.1:\(backend.port) 1/1"), "\(explained)")
            #expect(explained.contains("every endpoint is full"))
            #expect(held.finish(timeout: .seconds(10)).httpStatus == 200)
        }

        /// The same cap applies to raw TCP tunnels: at the cap, a further connection is
        /// closed rather than relayed, and counted.
        @Test(.timeLimit(.minutes(1)))
        func aTCPConnectionBeyondTheCapIsClosed() throws {
            let dir = try ScratchDir("limits-tcp")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            let proxy = try TCPMode.start(dir: dir, services: services(backend.port, maxConnections: 1, maxPending: 0, queueTimeout: "1s"), workers: 2)
            defer { proxy.stop() }
            let port = try TCPMode.tcpPort(proxy)
            let held = try BackgroundCurl("http://127.0.0.1:\(port)/slow?ms=1500", dir: dir)
            try waitFor("the tunnel holding the only slot", timeout: .seconds(5)) {
                (try? scrape(proxy)).map { value($0, "switchyard_endpoint_slots_in_use{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(backend.port)\"}") == 1 } ?? false
            }
            let refused = try curl("http://127.0.0.1:\(port)/", dir: dir)
            #expect(refused.httpStatus == 0, "closed without an answer")
            #expect(held.finish(timeout: .seconds(10)).httpStatus == 200)
            #expect(value(try scrape(proxy), "switchyard_queue_refused_total{service=\"shop\",reason=\"full\"}") == 1)
            #expect(value(try scrape(proxy), "switchyard_endpoint_slots_in_use{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(backend.port)\"}") == 0)
        }

        /// An endpoint that refuses connections answers 502, and the slot the failed
        /// attempt claimed is given back at once, not when the keep-alive client leaves.
        @Test(.timeLimit(.minutes(1)))
        func aFailedConnectGivesItsSlotBackWhileTheClientStays() throws {
            let dir = try ScratchDir("limits-refused")
            let port = try closedPort()
            let proxy = try TrafficProxy(dir: dir, services: services(port, maxConnections: 1, maxPending: 5, queueTimeout: "1s"), label: "refused")
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            for _ in 0..<3 {
                try connection.send("GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
                #expect(try connection.readResponse().status == 502, "not a 503: the slot was free each time")
            }
            let metrics = try scrape(proxy)
            #expect(value(metrics, "switchyard_endpoint_slots_in_use{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(port)\"}") == 0)
            #expect(value(metrics, "switchyard_queue_refused_total{service=\"shop\",reason=\"full\"}") == 0)
        }

        /// A request waiting for a full track (pinned to green, green's one slot taken) does
        /// not hold up one behind it that the other track has room for: that one is served
        /// at once, and the green one when green's slot frees. On one loop (both in one
        /// queue) and on two (the other loop does not stand back for a blocked waiter).
        @Test(.timeLimit(.minutes(1)), arguments: [1, 2])
        func aWaiterForAFullTrackDoesNotHoldUpTheOthers(workers: Int) throws {
            let dir = try ScratchDir("limits-tracks-\(workers)")
            let blue = try Backend.demo("blue", dir: dir)
            let green = try Backend.demo("green", dir: dir)
            defer { blue.stop(); green.stop() }
            let services = """
            services:
              shop:
                active: blue
                health: {type: none}
                max_connections: 1
                max_pending: 10
                queue_timeout: 5s
                instances:
                  - {address: 127.0.0.1, port: \(blue.port), track: blue}
                  - {address: 127.0.0.1, port: \(green.port), track: green}

            """
            let proxy = try TrafficProxy(dir: dir, services: services, label: "tracks", workers: workers)
            defer { proxy.stop() }
            let pin = ["-H", "X-Switchyard-Track: green"]
            let holding = try BackgroundCurl(proxy.url + "/slow?ms=2000", pin, dir: dir)
            try waitFor("green's slot taken", timeout: .seconds(5)) {
                (try? scrape(proxy)).map { value($0, "switchyard_endpoint_slots_in_use{service=\"shop\",track=\"green\",endpoint=\"127.0.0.1:\(green.port)\"}") == 1 } ?? false
            }
            let waiting = try BackgroundCurl(proxy.url + "/", pin, dir: dir)
            try waitFor("the green request waiting", timeout: .seconds(5)) {
                (try? scrape(proxy)).map { value($0, "switchyard_queue_length{service=\"shop\"}") == 1 } ?? false
            }
            let started = ContinuousClock.now
            let stable = try curl(proxy.url + "/", dir: dir)
            let elapsed = ContinuousClock.now - started
            #expect(stable.httpStatus == 200 && stable.body.contains("hello from blue"), "\(stable.body)")
            #expect(elapsed < .milliseconds(1_000), "served without waiting for green: \(elapsed)")
            let held = holding.finish(timeout: .seconds(10))
            let served = waiting.finish(timeout: .seconds(10))
            #expect(held.httpStatus == 200 && served.httpStatus == 200)
            #expect(served.body.contains("hello from green"))
        }

        /// Clients that reset their connection (while waiting, and while being served)
        /// leave nothing behind: no slot stays taken, no place in the queue stays counted,
        /// and the next burst has the whole cap. (A client that only closes its sending
        /// side is still answered, waiting or not: `nc -N` and curl's half-close.)
        @Test(.timeLimit(.minutes(1)))
        func clientsThatResetLeaveNoSlotOrPlaceBehind() throws {
            let dir = try ScratchDir("limits-abandon")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            let proxy = try TrafficProxy(dir: dir, services: services(backend.port, maxPending: 100, queueTimeout: "10s"), label: "abandon")
            defer { proxy.stop() }
            let slot = "switchyard_endpoint_slots_in_use{service=\"shop\",track=\"\",endpoint=\"127.0.0.1:\(backend.port)\"}"

            var clients = try (0..<20).map { _ in try RawConnection(port: proxy.port) }
            for client in clients {
                try client.send("GET /slow?ms=1000 HTTP/1.1\r\nHost: shop\r\n\r\n")
                // Close with a reset, not a FIN.
                var hard = linger(l_onoff: 1, l_linger: 0)
                setsockopt(client.fd, SOL_SOCKET, SO_LINGER, &hard, socklen_t(MemoryLayout<linger>.size))
            }
            try waitFor("4 served and 16 waiting", timeout: .seconds(5)) {
                guard let metrics = try? scrape(proxy) else { return false }
                return value(metrics, slot) == 4 && value(metrics, "switchyard_queue_length{service=\"shop\"}") == 16
            }
            clients.removeAll()
            try waitFor("every slot and place given back", timeout: .seconds(3)) {
                guard let metrics = try? scrape(proxy) else { return false }
                return value(metrics, slot) == 0 && value(metrics, "switchyard_queue_length{service=\"shop\"}") == 0
            }
            let codes = try parallelCurl(proxy.url + "/slow?ms=100", count: 8, dir: dir).answers.map(\.code)
            #expect(codes == Array(repeating: 200, count: 8), "\(codes)")
            #expect(value(try scrape(proxy), slot) == 0)
        }

        // MARK: Helpers

        private func services(_ port: UInt16, maxConnections: Int = 4, maxPending: Int, queueTimeout: String) -> String {
            """
            services:
              shop:
                health: {type: none}
                max_connections: \(maxConnections)
                max_pending: \(maxPending)
                queue_timeout: \(queueTimeout)
                instances:
                  - {address: 127.0.0.1, port: \(port)}

            """
        }

        /// `count` requests at once (one curl, parallel transfers): each one's status and
        /// Retry-After (in the order they ended), and the bodies.
        private func parallelCurl(_ url: String, count: Int, dir: ScratchDir) throws -> (answers: [(code: Int, retryAfter: String)], bodies: [String]) {
            var arguments = ["-s", "--parallel", "--parallel-immediate", "--parallel-max", "\(count)", "-w", "%{http_code} %header{retry-after}\\n"]
            for i in 0..<count { arguments += ["-o", dir.file("body-\(i).txt"), url] }
            let result = try runCommand("/usr/bin/curl", arguments, dir: dir, label: "parallel-curl", timeout: .seconds(30))
            let answers = result.stdout.split(separator: "\n").map { line in
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                return (code: Int(parts.first ?? "") ?? 0, retryAfter: parts.count > 1 ? String(parts[1]) : "")
            }
            #expect(answers.count == count, "one status per transfer: \(result.stdout)")
            return (answers, (0..<count).map { dir.read("body-\($0).txt") })
        }

        private func backendPeak(_ backend: Backend, dir: ScratchDir) throws -> Int {
            let answer = try curl("http://127.0.0.1:\(backend.port)/concurrency", ["-s"], dir: dir)
            return Int(answer.body.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }

        private func scrape(_ proxy: TrafficProxy) throws -> String {
            let answer = try rawExchange(port: proxy.adminPort, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:\(proxy.adminPort)\r\nConnection: close\r\n\r\n")
            return String(decoding: answer.body, as: UTF8.self)
        }

        /// The value of the sample `series` (name and labels exactly), or -1.
        private func value(_ metrics: String, _ series: String) -> Double {
            for line in metrics.split(separator: "\n") where line.hasPrefix(series + " ") {
                return Double(line.dropFirst(series.count + 1)) ?? -1
            }
            return -1
        }
    }
}
