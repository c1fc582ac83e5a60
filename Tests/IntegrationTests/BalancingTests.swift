import Foundation
import Testing

extension Integration {
    /// The balancers through the real binary, with backends whose behaviour differs.
    @Suite(.serialized) struct Balancing {
        /// `least_conn`, wrk at concurrency 8 for 3 s, one backend taking 50 ms per request
        /// and one answering at once: the slow one holds its connections, so most new
        /// requests go to the fast one.
        @Test(.timeLimit(.minutes(1)))
        func leastConnSendsMostRequestsToTheFastBackendUnderConcurrency() throws {
            let dir = try ScratchDir("least-conn")
            let fast = try ScriptedOrigin("fast", dir: dir)
            defer { fast.stop() }
            let slow = try ScriptedOrigin("slow", delayMs: 50, dir: dir)
            defer { slow.stop() }
            let proxy = try PoolProxy(ShopPool(instances: [fast.port, slow.port], balancer: "least_conn"), dir: dir)
            defer { proxy.stop() }

            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c8", "-d3s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            #expect(wrk.waitExit(timeout: .seconds(10)) == 0, "wrk: \(wrk.stderrText)")
            let output = wrk.stdoutText
            let (fastHits, slowHits) = (fast.hits, slow.hits)
            print("least_conn at concurrency 8: fast \(fastHits), slow (50 ms) \(slowHits); wrk: \(WrkReport(output).requests) requests")
            #expect(!output.contains("Non-2xx or 3xx responses") && !output.contains("Socket errors"), "\(output)")
            #expect(slowHits > 0)
            #expect(fastHits > 5 * slowHits, "fast \(fastHits), slow \(slowHits)")
        }

        /// `consistent_hash` on `X-User`: 20 users, each sending three requests on fresh
        /// connections (so across both workers), always land on the same backend, and the
        /// users spread over all three backends.
        @Test(.timeLimit(.minutes(1)))
        func consistentHashKeepsEachUserOnOneBackendAndSpreadsUsers() throws {
            let dir = try ScratchDir("consistent-hash")
            let backends = try ["a", "b", "c"].map { try Backend.demo($0, dir: dir) }
            defer { backends.forEach { $0.stop() } }
            let pool = ShopPool(instances: backends.map(\.port), balancer: "consistent_hash", hashOn: "header:X-User")
            let proxy = try PoolProxy(pool, dir: dir)
            defer { proxy.stop() }

            var placement: [String: Set<String>] = [:]
            for round in 0..<3 {
                for user in 0..<20 {
                    let response = try rawExchange(port: proxy.port, "GET /r\(round) HTTP/1.1\r\nHost: shop.test\r\nX-User: user-\(user)\r\n\r\n")
                    #expect(response.status == 200)
                    placement["user-\(user)", default: []].insert(response.header("X-Backend") ?? "?")
                }
            }
            let moved = placement.filter { $0.value.count != 1 }
            #expect(moved.isEmpty, "users answered by more than one backend: \(moved)")
            var perBackend: [String: Int] = [:]
            for names in placement.values { perBackend[names.first!, default: 0] += 1 }
            print("consistent_hash on X-User, 20 users: \(perBackend.sorted { $0.key < $1.key })")
            #expect(Set(perBackend.keys) == ["a", "b", "c"], "\(perBackend)")
        }
    }
}
