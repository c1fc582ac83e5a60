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
}
