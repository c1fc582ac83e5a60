import Foundation
import Testing

extension Integration {
    @Suite struct FailureAnswers {
        @Test(.timeLimit(.minutes(1)))
        func serviceWithoutInstancesAnswers503() throws {
            let dir = try ScratchDir("503")
            let proxy = try RunningProxy(ProxySpec(), services: [ServiceSpec(name: "shop", instances: [])], dir: dir)
            defer { proxy.stop() }
            let result = try curl(proxy.url + "/", dir: dir)
            #expect(result.httpStatus == 503)
            // A route to a service discovery does not know answers the same.
            let unknown = try RunningProxy(ProxySpec(routes: [RouteSpec(service: "ghost")]),
                                           services: [ServiceSpec(name: "shop", instances: [])], dir: try ScratchDir("503-unknown"))
            defer { unknown.stop() }
            #expect(try curl(unknown.url + "/", dir: dir).httpStatus == 503)
        }

        @Test(.timeLimit(.minutes(1)))
        func onlyBackendOnAClosedPortAnswers502() throws {
            let dir = try ScratchDir("502")
            let proxy = try RunningProxy(ProxySpec(), services: [ServiceSpec(name: "shop", instances: [.init(port: try closedPort())])],
                                         dir: dir)
            defer { proxy.stop() }
            let result = try curl(proxy.url + "/", dir: dir)
            #expect(result.httpStatus == 502)
            // 502 keeps the client connection: the next request on it is answered too.
            let connection = try RawConnection(port: proxy.port)
            for _ in 0..<2 {
                try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(try connection.readResponse().status == 502)
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func slowBackendPastUpstreamResponseTimeoutAnswers504() throws {
            let dir = try ScratchDir("504")
            let backend = try Backend.demo("slow", dir: dir)
            defer { backend.stop() }
            var spec = ProxySpec()
            spec.timeouts["upstream_response"] = "1s"
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }
            let started = ContinuousClock.now
            let result = try curl(proxy.url + "/slow?ms=3000", dir: dir)
            let elapsed = ContinuousClock.now - started
            #expect(result.httpStatus == 504)
            #expect(elapsed >= .milliseconds(900) && elapsed < .milliseconds(2800), "answered after \(elapsed)")
            // A fast request on the same service still works afterwards.
            #expect(try curl(proxy.url + "/", dir: dir).httpStatus == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func requestMatchingNoRouteAnswers404() throws {
            let dir = try ScratchDir("404")
            let backend = try Backend.demo("a", dir: dir)
            defer { backend.stop() }
            let proxy = try RunningProxy(ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop")]),
                                         services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }
            #expect(try curl(proxy.url + "/", ["-H", "Host: other.test"], dir: dir).httpStatus == 404)
            #expect(try curl(proxy.url + "/", ["-H", "Host: shop.test"], dir: dir).httpStatus == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func halfAHeadStalledPastClientHeaderTimeoutAnswers408AndCloses() throws {
            let dir = try ScratchDir("408")
            let backend = try Backend.demo("a", dir: dir)
            defer { backend.stop() }
            var spec = ProxySpec()
            spec.timeouts["client_header"] = "1s"
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            let started = ContinuousClock.now
            try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\nX-Half")
            let response = try connection.readResponse(timeout: .seconds(5))
            let elapsed = ContinuousClock.now - started
            #expect(response.status == 408)
            #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(3), "answered after \(elapsed)")
            #expect(connection.readUntilClosed(timeout: .seconds(3)))
        }

        @Test(.timeLimit(.minutes(1)))
        func killedBackendAmongTwoLeavesEveryRequestSucceeding() throws {
            let dir = try ScratchDir("killed")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let proxy = try RunningProxy(ProxySpec(), services: [ServiceSpec(name: "shop", instances: [.init(port: a.port), .init(port: b.port)])],
                                         dir: dir)
            defer { proxy.stop() }
            // Warm up: both backends serve, and the proxy pools connections to both.
            var seen: Set<String> = []
            for _ in 0..<6 {
                let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(response.status == 200)
                seen.insert(response.header("X-Backend") ?? "")
            }
            #expect(seen == ["a", "b"])

            b.stop()
            var statuses: [Int] = []
            for _ in 0..<10 {
                statuses.append(try curl(proxy.url + "/", dir: dir).httpStatus)
            }
            #expect(statuses == Array(repeating: 200, count: 10))
            // Pooled keep-alive connections to the dead backend are retried too.
            let connection = try RawConnection(port: proxy.port)
            for _ in 0..<6 {
                try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                let response = try connection.readResponse()
                #expect(response.status == 200)
                #expect(response.header("X-Backend") == "a")
            }
        }
    }
}
