import Foundation
import Testing

// Upstream connection reuse at browser-like HTTP/2 concurrency: 512 streams in flight need
// about as many HTTP/1.1 upstream connections, and steady load must reuse them rather than
// close and reopen them (the default pool floor is 64 idle per endpoint per worker).

extension Integration {
    @Suite struct UpstreamPool {
        let dir: ScratchDir
        let backend: Backend
        let proxy: RunningProxy

        init() throws {
            dir = try ScratchDir("upstream-pool")
            backend = try Backend.demo("pool", dir: dir)
            do {
                proxy = try RunningProxy(ProxySpec(workers: 1), services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            } catch {
                backend.stop()
                throw error
            }
        }

        private func acceptedByBackend() throws -> Int {
            let answer = try curl("http://127.0.0.1:\(backend.port)/connections", dir: dir)
            return Int(answer.body.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }

        private func h2load(_ requests: Int, label: String) throws {
            let result = try runCommand("/usr/bin/h2load", ["-n", "\(requests)", "-c", "16", "-m", "32", "-H", ":authority: shop.test", proxy.url + "/"],
                                        dir: dir, label: label, timeout: .seconds(80))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("\(requests) succeeded, 0 failed, 0 errored"), "\(result.stdout)")
        }

        @Test(.timeLimit(.minutes(2)))
        func fiveHundredTwelveStreamsReuseUpstreamConnectionsAfterWarmUp() throws {
            defer {
                proxy.stop()
                backend.stop()
            }
            try h2load(4_000, label: "warm-up")
            let before = try acceptedByBackend()
            #expect(before > 0)
            try h2load(20_000, label: "steady")
            let opened = try acceptedByBackend() - before
            // One connection per stream in flight at most was opened during warm-up; steady load
            // opens next to none (the old fixed bound of 64 idle opened one per ~3 requests).
            #expect(opened < 200, "\(opened) new upstream connections for 20000 requests after warm-up")
        }
    }

    /// A client that leaves mid-exchange (a browser cancelling, a tool stopping) does not cost
    /// the upstream connection when the rest of the response is near: it is read, dropped,
    /// and the connection pooled for the next request.
    @Suite struct OrphanedResponses {
        @Test(.timeLimit(.minutes(1)))
        func aClientLeavingBeforeTheAnswerDoesNotCostTheUpstreamConnection() throws {
            let dir = try ScratchDir("orphaned-responses")
            let backend = try Backend.demo("shop", dir: dir)
            defer { backend.stop() }
            let spec = ProxySpec(workers: 1, extraYAML: "admin:\n  address: 127.0.0.1:0\n")
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: backend.port)])]))
            try dir.write("switchyard.yml", spec.yaml)
            let (child, port, adminPort) = try startProxyWithAdmin(dir: dir)
            defer { child.stop() }
            /// The sum of a metric's samples (all label sets).
            func counter(_ name: String) throws -> Int {
                let scrape = try curl("http://127.0.0.1:\(adminPort)/metrics", dir: dir)
                let samples = scrape.body.split(separator: "\n").filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
                return samples.reduce(0) { $0 + (Int($1.split(separator: " ").last ?? "") ?? 0) }
            }
            func accepted() throws -> Int {
                Int(try curl("http://127.0.0.1:\(backend.port)/connections", dir: dir).body.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            }
            let base = "http://127.0.0.1:\(port)"
            #expect(try curl(base + "/", ["-H", "Host: shop.test"], dir: dir).httpStatus == 200)
            let before = try accepted()

            // HTTP/1.1: curl gives up after 0.3 s and closes; the answer comes at 0.8 s. A
            // closed client socket reads as a half-close, so the exchange still ends normally
            // and its connection is pooled.
            for _ in 1 ... 3 {
                let gaveUp = try curl(base + "/slow?ms=800", ["-H", "Host: shop.test", "--max-time", "0.3"], dir: dir)
                #expect(gaveUp.httpStatus == 0)
                try waitFor("the answer to the client that left to end", timeout: .seconds(5)) {
                    try counter("switchyard_endpoint_active_requests") == 0
                }
            }
            // HTTP/2: the stream goes with its connection when nghttp times out; the rest of
            // its response is read and dropped, and the connection pooled.
            for round in 1 ... 3 {
                _ = try runCommand("/usr/bin/nghttp", ["-t", "300ms", "-H", ":authority: shop.test", base + "/slow?ms=800"],
                                   dir: dir, label: "nghttp-gives-up")
                try waitFor("the abandoned stream's response to be read and its connection pooled", timeout: .seconds(5)) {
                    try counter("switchyard_upstream_orphans_pooled_total") == round
                }
                #expect(try curl(base + "/", ["-H", "Host: shop.test"], dir: dir).httpStatus == 200)
            }
            // The last /connections read may count itself; nothing else was opened (closing
            // the abandoned connections would have cost one new connection per round).
            let opened = try accepted() - before
            #expect(opened <= 1, "\(opened) new upstream connections: the abandoned ones were closed, not reused")
        }
    }
}
