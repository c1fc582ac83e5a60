import Foundation
import Testing

extension Integration {
    @Suite struct Drain {
        /// SIGTERM with five slow requests in flight: all five complete with 200, new
        /// connections are refused at once, and the proxy exits 0 within the drain deadline.
        @Test(.timeLimit(.minutes(1)))
        func sigtermLetsInFlightRequestsFinishThenExitsZero() throws {
            let dir = try ScratchDir("drain")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            var spec = ProxySpec()
            spec.timeouts["drain"] = "5s"
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }

            let requests = try (0..<5).map { _ in try BackgroundCurl(proxy.url + "/slow?ms=1500", dir: dir) }
            defer { requests.forEach { $0.child.stop() } }
            // In flight: the proxy holds five connections to the backend.
            try waitFor("five requests forwarded to the backend", timeout: .seconds(5)) {
                try establishedConnections(toPort: backend.port, dir: dir) >= 5
            }
            #expect(requests.allSatisfy { $0.child.isRunning })
            let signalled = ContinuousClock.now
            proxy.child.signal(SIGTERM)

            var refusedWhileDraining = false
            try waitFor("new connections to be refused", timeout: .seconds(1), interval: .milliseconds(10)) {
                do {
                    _ = try RawConnection(port: proxy.port)
                    return false
                } catch let error as RawConnection.ConnectError where error.refused {
                    refusedWhileDraining = requests.contains { $0.child.isRunning }
                    return true
                }
            }
            #expect(refusedWhileDraining, "the listener closed only after the in-flight requests finished")

            for request in requests {
                let result = request.finish(timeout: .seconds(10))
                #expect(result.exitStatus == 0, "\(result.stderr)")
                #expect(result.httpStatus == 200)
                #expect(result.body.hasPrefix("hello from slow"))
            }
            let status = proxy.child.waitExit(timeout: .seconds(6))
            let elapsed = ContinuousClock.now - signalled
            #expect(status == 0)
            #expect(elapsed < .seconds(5), "exited \(elapsed) after SIGTERM")
        }
    }
}
