#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension Integration {
    /// Active health checks end to end: a killed backend leaves rotation and comes back
    /// without a client seeing an error, a (re)joining backend ramps up, and a service with
    /// no healthy endpoint answers 503 at once (or, in panic mode, routes anyway).
    @Suite(.serialized) struct Health {
        static let intervalMs = 200
        static let fall = 2
        static let rise = 2
        /// On top of `fall`/`rise` × interval: the checker's 100 ms scheduling tick per
        /// check, 10 % jitter, publishing the table, and a machine loaded by wrk.
        static let marginMs = 800

        static func checks(_ extra: [(String, String)] = []) -> [(String, String)] {
            [("type", "http"), ("path", "/"), ("interval", "\(intervalMs)ms"), ("timeout", "150ms"),
             ("rise", "\(rise)"), ("fall", "\(fall)")] + extra
        }

        /// wrk -t1 -c64 -d10s over three backends; the third is SIGKILLed at ~3 s and
        /// started again on its port at ~6 s. Passive ejection is off, so the active checks
        /// alone take it out and bring it back; retries hide the requests it drops.
        @Test(.timeLimit(.minutes(1)))
        func killedBackendLeavesWithinFallChecksAndReturnsWithinRiseChecksWhileWrkSeesNoError() throws {
            let dir = try ScratchDir("health-kill")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let c = try Backend.demo("c", dir: dir)
            defer { c.stop() }
            var revived: ChildProcess?
            defer { revived?.stop() }
            let pool = ShopPool(instances: [a.port, b.port, c.port], health: Self.checks([("consecutive_failures", "0")]))
            let proxy = try PoolProxy(pool, dir: dir)
            defer { proxy.stop() }
            let client = KeepAliveClient(port: proxy.port)
            #expect(Set(try (0..<6).map { _ in try client.backend() }) == ["a", "b", "c"])

            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c64", "-d10s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            let start = ContinuousClock.now
            try waitFor("wrk's connections through the proxy", timeout: .seconds(3)) {
                try establishedConnections(toPort: proxy.port, dir: dir) >= 32
            }

            // ~3 s: SIGKILL c.
            try waitFor("3 s of load", timeout: .seconds(4)) { ContinuousClock.now >= start + .seconds(3) }
            let killedAt = Date()
            c.stop()
            let unhealthy = "shop/127.0.0.1:\(c.port) is unhealthy"
            try waitFor("'\(unhealthy)' in the log", timeout: .seconds(3)) {
                proxy.firstLogLine(containing: unhealthy, since: killedAt) != nil
            }
            let left = milliseconds(from: killedAt, to: proxy.firstLogLine(containing: unhealthy, since: killedAt)!.at)
            try waitFor("a table without c", timeout: .seconds(1)) {
                proxy.firstLogLine(containing: "services: shop[2/3]", since: killedAt) != nil
            }
            let published = milliseconds(from: killedAt, to: proxy.firstLogLine(containing: "services: shop[2/3]", since: killedAt)!.at)
            print("c killed: unhealthy after \(left) ms, out of the table after \(published) ms (fall \(Self.fall) × \(Self.intervalMs) ms)")
            #expect(published <= Self.fall * Self.intervalMs + Self.marginMs,
                    "c left rotation \(published) ms after SIGKILL; log: \(proxy.log.suffix(1500))")

            // ~6 s: c again, on the same port.
            try waitFor("6 s of load", timeout: .seconds(5)) { ContinuousClock.now >= start + .seconds(6) }
            revived = try demoBackend("c", port: c.port, dir: dir, label: "backend-c-revived")
            let listeningAt = Date()
            let probe = KeepAliveClient(port: proxy.port)
            try waitFor("c to answer through the proxy again", timeout: .seconds(3), interval: .milliseconds(5)) {
                try probe.backend() == "c"
            }
            let answered = milliseconds(from: listeningAt, to: Date())
            let healthy = proxy.firstLogLine(containing: "shop/127.0.0.1:\(c.port) is healthy", since: listeningAt)
            print("c restarted: healthy after \(healthy.map { "\(milliseconds(from: listeningAt, to: $0.at)) ms" } ?? "?"), "
                  + "first answer through the proxy after \(answered) ms (rise \(Self.rise) × \(Self.intervalMs) ms)")
            #expect(answered <= Self.rise * Self.intervalMs + Self.marginMs,
                    "c came back \(answered) ms after it listened again; log: \(proxy.log.suffix(1500))")

            let status = wrk.waitExit(timeout: .seconds(10))
            #expect(status == 0, "wrk: \(wrk.stderrText)")
            let output = wrk.stdoutText
            print(output)
            let report = WrkReport(output)
            #expect(report.requests > 0)
            #expect(!output.contains("Non-2xx or 3xx responses"), "\(output)")
            #expect(!output.contains("Socket errors"), "\(output)")
        }

        /// `slow_start: 4s`: c is killed, marked unhealthy, and started again; once healthy
        /// its weight ramps from 10 % to 100 %, so its share of sequential requests in 500 ms
        /// buckets rises from ~5 % towards a third.
        @Test(.timeLimit(.minutes(1)))
        func recoveredBackendRampsUpOverTheSlowStartWindow() throws {
            let dir = try ScratchDir("slow-start-recover")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let c = try Backend.demo("c", dir: dir)
            defer { c.stop() }
            var revived: ChildProcess?
            defer { revived?.stop() }
            let pool = ShopPool(instances: [a.port, b.port, c.port], health: Self.checks([("slow_start", "4s")]))
            let proxy = try PoolProxy(pool, dir: dir)
            defer { proxy.stop() }

            let killedAt = Date()
            c.stop()
            try waitFor("c to be unhealthy", timeout: .seconds(3)) {
                proxy.firstLogLine(containing: "services: shop[2/3]", since: killedAt) != nil
            }
            let restartedAt = Date()
            revived = try demoBackend("c", port: c.port, dir: dir, label: "backend-c-revived")
            try waitFor("c to be healthy again", timeout: .seconds(3), interval: .milliseconds(5)) {
                proxy.firstLogLine(containing: "services: shop[3/3]", since: restartedAt) != nil
            }
            let buckets = try Self.sampleShares(port: proxy.port, joining: "c")
            #expect(buckets.first! < 0.20, "c's share right after it came back: \(buckets)")
            #expect(buckets.last! > 0.25, "c's share after the ramp: \(buckets)")
            #expect(buckets.last! > buckets.first! * 2)
        }

        /// `slow_start: 4s`: an instance added to services.yml while the proxy runs ramps
        /// the same way once its first check passes.
        @Test(.timeLimit(.minutes(1)))
        func instanceAddedByDiscoveryRampsUpOverTheSlowStartWindow() throws {
            let dir = try ScratchDir("slow-start-join")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let c = try Backend.demo("c", dir: dir)
            defer { c.stop() }
            var pool = ShopPool(instances: [a.port, b.port], health: Self.checks([("slow_start", "4s")]))
            let proxy = try PoolProxy(pool, dir: dir)
            defer { proxy.stop() }
            // Present from startup: no ramp, an even split.
            let even = try KeepAliveClient(port: proxy.port).tally(for: .milliseconds(300))
            #expect(abs((even["a"] ?? 0) - (even["b"] ?? 0)) <= 2, "\(even)")

            let addedAt = Date()
            pool.instances.append(c.port)
            try proxy.publish(pool)
            try waitFor("c's first passing check", timeout: .seconds(3), interval: .milliseconds(5)) {
                proxy.firstLogLine(containing: "services: shop[3/3]", since: addedAt) != nil
            }
            let buckets = try Self.sampleShares(port: proxy.port, joining: "c")
            #expect(buckets.first! < 0.20, "c's share right after it joined: \(buckets)")
            #expect(buckets.last! > 0.25, "c's share after the ramp: \(buckets)")
            #expect(buckets.last! > buckets.first! * 2)
        }

        /// Ten 500 ms buckets of sequential keep-alive requests; prints a table of
        /// per-backend counts and returns `joining`'s share in each bucket.
        static func sampleShares(port: UInt16, joining: String) throws -> [Double] {
            let client = KeepAliveClient(port: port)
            var rows: [[String: Int]] = []
            for _ in 0..<10 { rows.append(try client.tally(for: .milliseconds(500))) }
            let names = Set(rows.flatMap(\.keys)).sorted()
            print("bucket   " + names.map { $0.padding(toLength: 8, withPad: " ", startingAt: 0) }.joined() + "\(joining) share")
            var shares: [Double] = []
            for (i, row) in rows.enumerated() {
                let total = row.values.reduce(0, +)
                let share = Double(row[joining] ?? 0) / Double(max(total, 1))
                shares.append(share)
                let counts = names.map { String(row[$0] ?? 0).padding(toLength: 8, withPad: " ", startingAt: 0) }.joined()
                print("\(String(format: "%4.1f s", Double(i) * 0.5))   \(counts)\(String(format: "%5.1f %%", share * 100))")
            }
            return shares
        }

        /// Both endpoints fail their checks (the check path answers 503): the service
        /// answers 503 at once, with a body that says why, rather than trying an endpoint.
        @Test(.timeLimit(.minutes(1)))
        func serviceWithNoHealthyEndpointAnswers503AtOnce() throws {
            let dir = try ScratchDir("no-healthy")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let proxy = try PoolProxy(ShopPool(instances: [a.port, b.port], health: Self.failingChecks), dir: dir)
            defer { proxy.stop() }
            #expect(proxy.log.contains("shop/127.0.0.1:\(a.port) is unhealthy"), "\(proxy.log)")
            #expect(proxy.log.contains("services: shop[0/2]"), "\(proxy.log)")

            var took: [Duration] = []
            for _ in 0..<5 {
                let sent = ContinuousClock.now
                let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                took.append(ContinuousClock.now - sent)
                #expect(response.status == 503)
                #expect(response.bodyText == "service unavailable: the service has no endpoint to serve it\n", "\(response.bodyText)")
            }
            print("503 answered in \(took)")
            #expect(took.allSatisfy { $0 < .milliseconds(250) }, "\(took)")
        }

        /// The same service with `panic_mode: true`: with no healthy endpoint the proxy sends
        /// to all of them, and they answer `/` with 200.
        @Test(.timeLimit(.minutes(1)))
        func panicModeRoutesToEveryEndpointWhenNoneIsHealthy() throws {
            let dir = try ScratchDir("panic")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let proxy = try PoolProxy(ShopPool(instances: [a.port, b.port], health: Self.failingChecks + [("panic_mode", "true")]),
                                      dir: dir)
            defer { proxy.stop() }
            #expect(proxy.log.contains("shop[2/2 PANIC]"), "\(proxy.log)")

            let client = KeepAliveClient(port: proxy.port)
            let names = try (0..<10).map { _ in try client.backend() }
            #expect(Set(names) == ["a", "b"], "\(names); log: \(proxy.log.suffix(600))")
        }

        /// HTTP checks of a path every demo backend answers with 503, while `/` answers 200.
        static let failingChecks: [(String, String)] =
            [("type", "http"), ("path", "/status/503"), ("interval", "200ms"), ("timeout", "150ms")]
    }
}
