import Foundation
import Testing

extension Integration {
    /// Outlier detection end to end (docs/health.md): the success-rate rule (Envoy's) and
    /// the p99-latency rule eject the backend that fails a fifth of its requests and the one
    /// ten times slower than its siblings, never the healthy one, and never more than
    /// `max_ejected_percent` of the service.
    @Suite(.serialized) struct Outlier {
        static func policy(maxEjectedPercent: Int) -> [(String, String)] {
            [("type", "tcp"), ("interval", "200ms"), ("timeout", "150ms"), ("consecutive_failures", "0"),
             ("outlier_interval", "1s"),
             // Three endpoints: one outlier sits √2 deviations below the mean (docs/health.md).
             // The same volume for both rules, so both judge the same interval: once one
             // outlier is out, two endpoints are below either rule's minimum of three.
             ("success_rate_stdev_factor", "1.0"), ("success_rate_minimum_hosts", "3"), ("success_rate_request_volume", "10"),
             ("latency_p99_factor", "3"), ("latency_minimum_hosts", "3"), ("latency_request_volume", "10"),
             ("base_ejection", "30s"), ("max_ejected_percent", "\(maxEjectedPercent)")]
        }

        /// The three backends: healthy, 20 % 500s, and 10× slower (30 ms against 300 ms). Not
        /// 5 ms against 50: on a loaded 2-core runner, scheduling noise of a few tens of ms
        /// lands in every backend's p99 and hides a 45 ms difference, while it cannot hide 270.
        struct Trio {
            let good: ScriptedOrigin
            let flaky: ScriptedOrigin
            let slow: ScriptedOrigin
            var all: [ScriptedOrigin] { [good, flaky, slow] }

            init(dir: ScratchDir) throws {
                good = try ScriptedOrigin("good", delayMs: 30, dir: dir)
                flaky = try ScriptedOrigin("flaky", delayMs: 30, failEvery: 5, dir: dir)
                slow = try ScriptedOrigin("slow", delayMs: 300, dir: dir)
            }
        }

        /// Eight keep-alive clients send requests until `done` holds (polled every 50 ms) or
        /// 15 s pass: with a 300 ms backend in the rotation, enough for each endpoint to reach
        /// the rules' request volume (10) in every 1 s interval. Returns the requests answered.
        static func drive(port: UInt16, until done: () -> Bool) -> Int {
            let stop = StopFlag()
            let senders = DispatchGroup()
            // Threads, not concurrentPerform: that runs only as many iterations at once as
            // there are cores, and these block on the network.
            for _ in 0..<8 {
                senders.enter()
                Thread {
                    let client = KeepAliveClient(port: port)
                    while !stop.isSet {
                        if (try? client.get()) != nil { stop.count() }
                    }
                    senders.leave()
                }.start()
            }
            let deadline = ContinuousClock.now + .seconds(15)
            while !done() && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
            stop.set()
            senders.wait()
            return stop.sent
        }

        @Test(.timeLimit(.minutes(1)))
        func failingAndSlowBackendsAreEjectedAndTheHealthyOneIsNot() throws {
            let dir = try ScratchDir("outlier-both")
            let trio = try Trio(dir: dir)
            defer { trio.all.forEach { $0.stop() } }
            // 67 %: two of three may be out at once, never the third.
            let pool = ShopPool(instances: trio.all.map(\.port), health: Self.policy(maxEjectedPercent: 67))
            let proxy = try PoolProxy(pool, spec: ProxySpec(extraYAML: "admin:\n  address: 127.0.0.1:0\n"), dir: dir)
            defer { proxy.stop() }
            let flakyEjected = "shop/127.0.0.1:\(trio.flaky.port) ejected for 30000 ms (success_rate)"
            let slowEjected = "shop/127.0.0.1:\(trio.slow.port) ejected for 30000 ms (latency)"
            let sent = Self.drive(port: proxy.port) {
                proxy.log.contains(flakyEjected) && proxy.log.contains(slowEjected)
            }
            print("\(sent) requests; hits good \(trio.good.hits), flaky \(trio.flaky.hits), slow \(trio.slow.hits)")
            #expect(proxy.log.contains(flakyEjected), "\(proxy.log)")
            #expect(proxy.log.contains(slowEjected), "\(proxy.log)")
            #expect(!proxy.log.contains("shop/127.0.0.1:\(trio.good.port) ejected"), "\(proxy.log)")
            #expect(proxy.log.contains("below the service's threshold") && proxy.log.contains("the service's median p99"),
                    "the log says why: \(proxy.log)")

            // While both are out, every request goes to the healthy one.
            try waitFor("the table without them", timeout: .seconds(3)) { proxy.log.contains("services: shop[1/3]") }
            let flakyHits = trio.flaky.hits, slowHits = trio.slow.hits
            let client = KeepAliveClient(port: proxy.port)
            for _ in 0..<30 { #expect(try client.get().status == 200) }
            #expect(trio.flaky.hits == flakyHits && trio.slow.hits == slowHits,
                    "ejected backends got \(trio.flaky.hits - flakyHits) and \(trio.slow.hits - slowHits) more requests")

            // The metric counts them by rule.
            let admin = try proxy.child.waitForAdminPort()
            let metrics = try curl("http://127.0.0.1:\(admin)/metrics", dir: dir).body
            for (reason, count) in [("success_rate", 1), ("latency", 1), ("consecutive_failures", 0)] {
                #expect(metrics.contains("switchyard_outlier_ejections_total{service=\"shop\",reason=\"\(reason)\"} \(count)\n"),
                        "\(metrics.split(separator: "\n").filter { $0.contains("outlier") })")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func maxEjectedPercentKeepsTheSecondOutlierInRotation() throws {
            let dir = try ScratchDir("outlier-cap")
            let trio = try Trio(dir: dir)
            defer { trio.all.forEach { $0.stop() } }
            // 50 %: one of three.
            let pool = ShopPool(instances: trio.all.map(\.port), health: Self.policy(maxEjectedPercent: 50))
            let proxy = try PoolProxy(pool, dir: dir)
            defer { proxy.stop() }
            let refused = "already ejected (max 50%)"
            _ = Self.drive(port: proxy.port) { proxy.log.contains(refused) }
            let ejections = proxy.logLines(containing: " ejected for ")
            #expect(ejections.count == 1, "\(proxy.log)")
            #expect(ejections.allSatisfy { !$0.line.contains(":\(trio.good.port) ") }, "\(proxy.log)")
            #expect(proxy.log.contains(refused), "\(proxy.log)")
            #expect(proxy.log.contains("services: shop[2/3]"), "\(proxy.log)")
        }
    }
}

/// A stop flag and a request count shared by the senders of `Outlier.drive`.
private final class StopFlag: @unchecked Sendable {
    // `lock` guards both fields; the senders touch them once per request.
    private let lock = NSLock()
    private var stopped = false
    private var requests = 0

    var isSet: Bool { lock.withLock { stopped } }
    var sent: Int { lock.withLock { requests } }
    func set() { lock.withLock { stopped = true } }
    func count() { lock.withLock { requests += 1 } }
}
