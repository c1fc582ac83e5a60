import Foundation
import Testing

/// Established TCP connections from anyone to `port` on loopback (`ss`), e.g. the proxy's
/// upstream connections to a backend.
func establishedConnections(toPort port: UInt16, dir: ScratchDir) throws -> Int {
    let result = try runCommand("/usr/bin/ss", ["-Htn", "state", "established", "( dport = :\(port) )"],
                                dir: dir, label: "ss", timeout: .seconds(5))
    return result.stdout.split(separator: "\n").count
}

extension Integration {
    @Suite struct HTTPBehaviour {
        let dir: ScratchDir
        let backend: Backend
        let proxy: RunningProxy

        init() throws {
            dir = try ScratchDir("protocol")
            backend = try Backend.demo("a", dir: dir)
            do {
                proxy = try RunningProxy(ProxySpec(workers: 1),
                                         services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            } catch {
                backend.stop()
                throw error
            }
        }

        private func stop() {
            proxy.stop()
            backend.stop()
        }

        @Test(.timeLimit(.minutes(1)))
        func severalRequestsShareOneClientAndOneUpstreamConnection() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            for i in 0..<5 {
                try connection.send("GET /n\(i) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                let response = try connection.readResponse()
                #expect(response.status == 200)
                #expect(response.bodyText.hasPrefix("hello from a"))
                #expect(response.header("Connection") == nil)
            }
            #expect(try establishedConnections(toPort: backend.port, dir: dir) == 1)
        }

        @Test(.timeLimit(.minutes(1)))
        func pipelinedRequestsAreAnsweredInOrder() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send((200...202).map { "GET /status/\($0) HTTP/1.1\r\nHost: shop.test\r\n\r\n" }.joined())
            for expected in 200...202 {
                #expect(try connection.readResponse().status == expected)
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func expectContinueBodyThroughCurlSucceedsWithoutWaitingForCurlsTimeout() throws {
            defer { stop() }
            let payload = String(repeating: "0123456789abcdef", count: 4096)
            try dir.write("payload.bin", payload)
            let result = try curl(proxy.url + "/echo", ["-H", "Expect: 100-continue", "--data-binary", "@" + dir.file("payload.bin")],
                                  extra: ["%{time_total}"], dir: dir)
            #expect(result.exitStatus == 0, "\(result.stderr)")
            #expect(result.httpStatus == 200)
            #expect(result.body.count == payload.count)
            #expect(result.body.hashValue == payload.hashValue, "the body came back changed")
            // curl sends the body anyway after 1 s without a 100; sooner means the 100 came through.
            #expect((Double(result.written.first ?? "") ?? 99) < 0.9)
        }

        @Test(.timeLimit(.minutes(1)))
        func expectContinueRelaysTheInterimResponseBeforeTheBodyIsSent() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            #expect(connection.readUntil(contains: "\r\n\r\n", timeout: .seconds(5)))
            #expect(String(decoding: connection.buffered, as: UTF8.self).hasPrefix("HTTP/1.1 100 "))
            try connection.send("hello")
            let response = try connection.readResponse(method: "POST")
            #expect(response.status == 200)
            #expect(response.bodyText == "hello")
        }

        @Test(.timeLimit(.minutes(1)))
        func headGetsNoBodyAndTheConnectionStaysUsable() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("HEAD /size/1000 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            let head = try connection.readResponse(method: "HEAD")
            #expect(head.status == 200)
            try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            let next = try connection.readResponse()
            #expect(next.status == 200)
            #expect(next.bodyText.hasPrefix("hello from a"), "bytes after HEAD's head: \(next.bodyText.prefix(80))")
        }

        @Test(.timeLimit(.minutes(1)))
        func noContentAndNotModifiedPassWithoutBodyAndKeepTheConnection() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("GET /status/204 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            #expect(try connection.readResponse().status == 204)
            try connection.send("GET /status/304 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            #expect(try connection.readResponse().status == 304)
            try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            let next = try connection.readResponse()
            #expect(next.status == 200)
            #expect(next.bodyText.hasPrefix("hello from a"))
            #expect(connection.buffered.isEmpty)
        }

        @Test(.timeLimit(.minutes(1)))
        func hopByHopFieldsAreRemovedAndForwardingFieldsAdded() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("GET /headers HTTP/1.1\r\nHost: shop.test\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n"
                + "Keep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
                + "X-Forwarded-Host: evil.test\r\nX-Kept: yes\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            let received = response.bodyText
            let lines = received.lowercased().components(separatedBy: "\r\n")
            #expect(!lines.contains { $0.hasPrefix("x-secret") }, "\(received)")
            #expect(!lines.contains { $0.hasPrefix("keep-alive") }, "\(received)")
            #expect(!lines.contains { $0.hasPrefix("connection") }, "\(received)")
            #expect(!lines.contains { $0.hasPrefix("te:") }, "\(received)")
            #expect(lines.contains("x-kept: yes"), "\(received)")
            // The client is not in trusted_proxies: its X-Forwarded-For is replaced, not
            // extended (RequestHardeningTests.swift has the trusted case).
            #expect(lines.filter { $0.hasPrefix("x-forwarded-for") } == ["x-forwarded-for: 127.0.0.1"], "\(received)")
            #expect(lines.filter { $0.hasPrefix("x-forwarded-proto") } == ["x-forwarded-proto: http"], "\(received)")
            #expect(lines.filter { $0.hasPrefix("x-forwarded-host") } == ["x-forwarded-host: shop.test"], "\(received)")
            #expect(lines.contains("via: 1.1 switchyard"), "\(received)")
            // The client asked to close: the answer says so and the proxy closes.
            #expect(response.header("Connection")?.lowercased() == "close")
            #expect(connection.readUntilClosed(timeout: .seconds(5)))
        }

        @Test(.timeLimit(.minutes(1)))
        func chunkedUploadIsEchoed() throws {
            defer { stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5;note=first\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
            let response = try connection.readResponse(method: "POST")
            #expect(response.status == 200)
            #expect(response.bodyText == "hello world")

            let payload = String(repeating: "chunked upload ", count: 20000)
            try dir.write("upload.txt", payload)
            let result = try curl(proxy.url + "/echo", ["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + dir.file("upload.txt")],
                                  dir: dir)
            #expect(result.httpStatus == 200)
            #expect(result.body.count == payload.count)
            #expect(result.body.hashValue == payload.hashValue, "the body came back changed")
        }
    }

    @Suite struct Routing {
        @Test(.timeLimit(.minutes(1)))
        func hostRoutesBeatPathRoutesAndPathPrefixesPickTheService() throws {
            let dir = try ScratchDir("routing")
            let shop = try Backend.demo("shop", dir: dir)
            defer { shop.stop() }
            let api = try Backend.demo("api", dir: dir)
            defer { api.stop() }
            let spec = ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop"), RouteSpec(path: "/api", service: "api")])
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: shop.port)]),
                                                          ServiceSpec(name: "api", instances: [.init(port: api.port)])], dir: dir)
            defer { proxy.stop() }

            func backend(host: String, path: String) throws -> String {
                let response = try rawExchange(port: proxy.port, "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                return response.status == 200 ? (response.header("X-Backend") ?? "?") : "\(response.status)"
            }
            #expect(try backend(host: "shop.test", path: "/") == "shop")
            #expect(try backend(host: "SHOP.test:8080", path: "/cart") == "shop")
            #expect(try backend(host: "shop.test", path: "/api/v1") == "shop")
            #expect(try backend(host: "other.test", path: "/api/v1") == "api")
            #expect(try backend(host: "other.test", path: "/api") == "api")
            #expect(try backend(host: "other.test", path: "/") == "404")
            let viaCurl = try curl(proxy.url + "/api/items", ["-H", "Host: other.test"], extra: ["%header{x-backend}"], dir: dir)
            #expect(viaCurl.written.first == "api")
        }
    }
}
