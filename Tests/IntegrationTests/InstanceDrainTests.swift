import Foundation
import Testing

extension Integration {
    /// `drain: true` on an instance: no new requests go to it, and the ones it is serving
    /// finish.
    @Suite(.serialized) struct InstanceDrain {
        @Test(.timeLimit(.minutes(1)))
        func drainingInstanceGetsNoNewRequests() throws {
            let dir = try ScratchDir("instance-drain")
            let backends = try ["a", "b", "c"].map { try Backend.demo($0, dir: dir) }
            defer { backends.forEach { $0.stop() } }
            let pool = ShopPool(instances: backends.map(\.port), draining: [backends[2].port])
            let proxy = try PoolProxy(pool, dir: dir)
            defer { proxy.stop() }
            #expect(proxy.log.contains("services: shop[2/3]"), "\(proxy.log)")

            var names: [String: Int] = [:]
            for _ in 0..<30 {
                let result = try curl(proxy.url + "/", extra: ["%header{x-backend}"], dir: dir)
                #expect(result.httpStatus == 200)
                names[result.written.first ?? "?", default: 0] += 1
            }
            #expect(names["c"] == nil, "the draining instance got requests: \(names)")
            #expect(names["a", default: 0] > 0 && names["b", default: 0] > 0, "\(names)")
        }

        /// One worker, so two concurrent slow requests go one to each backend; b is set to
        /// drain while its request is in flight: that request finishes with 200, and every
        /// later request goes to a.
        @Test(.timeLimit(.minutes(1)))
        func drainSetWhileASlowRequestIsInFlightLetsItFinish() throws {
            let dir = try ScratchDir("instance-drain-inflight")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            var pool = ShopPool(instances: [a.port, b.port])
            let proxy = try PoolProxy(pool, spec: ProxySpec(workers: 1), dir: dir)
            defer { proxy.stop() }

            let slow = try (0..<2).map { _ in
                try BackgroundCurl(proxy.url + "/slow?ms=1500", extra: ["%header{x-backend}"], dir: dir)
            }
            defer { slow.forEach { $0.child.stop() } }
            try waitFor("a slow request at each backend", timeout: .seconds(3)) {
                try establishedConnections(toPort: a.port, dir: dir) >= 1 && establishedConnections(toPort: b.port, dir: dir) >= 1
            }
            pool.draining = [b.port]
            try proxy.publish(pool)
            #expect(proxy.log.contains("services: shop[1/2]"), "\(proxy.log.suffix(800))")
            #expect(slow.allSatisfy { $0.child.isRunning }, "the drain was published only after the slow requests ended")

            let results = slow.map { $0.finish(timeout: .seconds(5)) }
            #expect(results.map(\.httpStatus) == [200, 200], "\(results.map(\.stderr))")
            #expect(Set(results.compactMap(\.written.first)) == ["a", "b"], "\(results.map(\.body))")
            #expect(results.contains { $0.body.hasPrefix("hello from b") })

            let client = KeepAliveClient(port: proxy.port)
            let names = try (0..<20).map { _ in try client.backend() }
            #expect(names.allSatisfy { $0 == "a" }, "\(names)")
        }
    }
}
