import Foundation
import Testing

extension Integration {
    /// Passive ejection (outlier detection) end to end: backends that pass their TCP checks
    /// but answer 500 to every request are taken out by the data plane's failure counts.
    @Suite(.serialized) struct Ejection {
        static func policy(consecutiveFailures: Int, baseEjection: String) -> [(String, String)] {
            [("type", "tcp"), ("interval", "200ms"), ("timeout", "150ms"),
             ("consecutive_failures", "\(consecutiveFailures)"), ("base_ejection", baseEjection), ("max_ejected_percent", "50")]
        }

        /// One worker, round robin over two good backends and one that answers 500: within
        /// `consecutive_failures` × 3 requests the bad one has had its 3 failures and is
        /// ejected; it gets nothing more until the 2 s ejection ends, and the next ejection
        /// lasts twice as long.
        @Test(.timeLimit(.minutes(1)))
        func backendAnswering500IsEjectedAfterConsecutiveFailuresAndGetsNothingUntilTheEjectionEnds() throws {
            let dir = try ScratchDir("eject-500")
            let good = try [Backend.demo("a", dir: dir), Backend.demo("b", dir: dir)]
            defer { good.forEach { $0.stop() } }
            let bad = try ScriptedOrigin("bad", status: 500, dir: dir)
            defer { bad.stop() }
            let failures = 3
            let pool = ShopPool(instances: good.map(\.port) + [bad.port],
                                health: Self.policy(consecutiveFailures: failures, baseEjection: "2s"))
            let proxy = try PoolProxy(pool, spec: ProxySpec(workers: 1), dir: dir)
            defer { proxy.stop() }
            #expect(proxy.log.contains("services: shop[3/3]"), "the TCP checks pass for all three: \(proxy.log)")

            let client = KeepAliveClient(port: proxy.port)
            let startedAt = Date()
            var statuses: [Int] = []
            for _ in 0..<(failures * 3) { statuses.append(try client.get().status) }
            #expect(bad.hits == failures, "the 500 backend got \(bad.hits) of \(failures * 3) requests")
            #expect(statuses.filter { $0 == 500 }.count == failures, "\(statuses)")
            let ejected = "shop/127.0.0.1:\(bad.port) ejected for"
            try waitFor("the ejection", timeout: .seconds(2)) {
                proxy.firstLogLine(containing: ejected, since: startedAt) != nil
                    && proxy.firstLogLine(containing: "services: shop[2/3]", since: startedAt) != nil
            }
            let first = proxy.firstLogLine(containing: ejected, since: startedAt)!
            #expect(first.line.contains("ejected for 2000 ms"), "\(first.line)")

            // While ejected: nothing reaches it, every answer is a 200.
            let hitsWhenEjected = bad.hits
            for _ in 0..<60 {
                #expect(try client.get().status == 200)
            }
            #expect(bad.hits == hitsWhenEjected, "the ejected backend got \(bad.hits - hitsWhenEjected) requests")

            // The ejection ends after 2 s; it fails again and is ejected for 4 s.
            try waitFor("the end of the ejection", timeout: .seconds(4)) {
                proxy.log.contains("shop/127.0.0.1:\(bad.port) back from ejection")
            }
            let backAt = proxy.firstLogLine(containing: "back from ejection", since: startedAt)!.at
            print("ejected at +\(milliseconds(from: startedAt, to: first.at)) ms, back at +\(milliseconds(from: startedAt, to: backAt)) ms")
            #expect(abs(milliseconds(from: first.at, to: backAt) - 2000) <= 300)
            try waitFor("the second ejection", timeout: .seconds(5)) {
                _ = try client.get()
                return proxy.logLines(containing: ejected).count >= 2
            }
            let second = proxy.logLines(containing: ejected)[1].line
            #expect(second.contains("ejected for 4000 ms"), "\(second)")
            #expect(bad.hits <= hitsWhenEjected + failures + 1, "\(bad.hits) hits after it came back")
        }

        /// Four backends, three answering 500, `max_ejected_percent: 50`: two are ejected,
        /// the third is refused ejection ("already ejected") and stays in rotation.
        @Test(.timeLimit(.minutes(1)))
        func atMostMaxEjectedPercentOfEndpointsAreEjectedAtOnce() throws {
            let dir = try ScratchDir("eject-cap")
            let good = try Backend.demo("good", dir: dir)
            defer { good.stop() }
            let bad = try (1...3).map { try ScriptedOrigin("bad\($0)", status: 500, dir: dir) }
            defer { bad.forEach { $0.stop() } }
            let pool = ShopPool(instances: [good.port] + bad.map(\.port),
                                health: Self.policy(consecutiveFailures: 2, baseEjection: "20s"))
            let proxy = try PoolProxy(pool, spec: ProxySpec(workers: 1), dir: dir)
            defer { proxy.stop() }

            let client = KeepAliveClient(port: proxy.port)
            try waitFor("a refused ejection", timeout: .seconds(5)) {
                _ = try client.get()
                return proxy.log.contains("are already ejected")
            }
            // More failures from the one left in: still refused, still in rotation.
            let refused = bad.filter { origin in !proxy.log.contains("127.0.0.1:\(origin.port) ejected for") }
            #expect(refused.count == 1, "ejected: \(proxy.logLines(containing: "ejected for").map(\.line))")
            let before = refused.first?.hits ?? 0
            for _ in 0..<40 { _ = try client.get() }
            #expect((refused.first?.hits ?? 0) > before, "the endpoint over the cap should stay in rotation")
            let ejections = proxy.logLines(containing: "ejected for")
            print(ejections.map(\.line).joined(separator: "\n"))
            print(proxy.logLines(containing: "already ejected").prefix(3).map(\.line).joined(separator: "\n"))
            #expect(ejections.count == 2, "\(ejections.map(\.line))")
            #expect(proxy.log.contains("2 of 4 endpoints are already ejected (max 50%)"))
            #expect(!proxy.log.contains("shop[1/4]"), "three endpoints were out at once: \(proxy.log)")
        }
    }
}
