import Foundation
import Testing

// What a client sends cannot steer the proxy or the backends: repeated Content-Length,
// trailers that frame or route, h2c upgrades, absolute-form targets, dot segments, spoofed
// forwarding fields. Each test is the attack, sent as raw bytes through the real binary.

/// The raw head the demo backend's `/headers` saw, as lines.
private func headLines(_ response: WireResponse) -> [String] {
    response.bodyText.components(separatedBy: "\r\n").filter { !$0.isEmpty }
}

/// Values of the field `name` in head lines (case-insensitive name).
private func values(_ lines: [String], _ name: String) -> [String] {
    lines.compactMap { line in
        guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == name.lowercased() else { return nil }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}

extension Integration {
    @Suite struct RequestSteering {
        @Test(.timeLimit(.minutes(1)))
        func repeatedIdenticalContentLengthReachesTheBackendAsOneField() throws {
            try withDemoProxy("steer-cl") { proxy in
                for fields in ["Content-Length: 5\r\nContent-Length: 5\r\n", "Content-Length: 5, 5\r\n"] {
                    let response = try rawExchange(port: proxy.port, "POST /headers HTTP/1.1\r\nHost: shop.test\r\n\(fields)\r\nhello")
                    #expect(response.status == 200)
                    #expect(values(headLines(response), "content-length") == ["5"], "\(response.bodyText)")
                }
                let conflicting = try rawExchange(port: proxy.port, "POST /headers HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5, 6\r\n\r\nhello")
                #expect(conflicting.status == 400)
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aResponseWithRepeatedContentLengthReachesTheClientWithOne() throws {
            let dir = try ScratchDir("steer-response-cl")
            let origin = try Backend.recording("origin", dir: dir)
            defer { origin.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1), services: [ServiceSpec(name: "shop", instances: [.init(port: origin.port)])], dir: dir)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("GET /repeated-length HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value) == ["\(response.body.count)"],
                    "\(response.headers)")
            // The keep-alive connection is still in step: a second exchange works.
            try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func h2cUpgradeAndHTTP2SettingsNeverReachTheBackend() throws {
            try withDemoProxy("steer-h2c") { proxy in
                let response = try rawExchange(port: proxy.port,
                    "GET /headers HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
                #expect(response.status == 200)
                let lines = headLines(response)
                #expect(values(lines, "upgrade").isEmpty, "\(lines)")
                #expect(values(lines, "http2-settings").isEmpty, "\(lines)")
                #expect(!values(lines, "connection").contains { $0.lowercased().contains("upgrade") }, "\(lines)")

                // A WebSocket upgrade that also lists h2c keeps its upgrade, without h2c.
                let connection = try RawConnection(port: proxy.port)
                try connection.send("GET /headers HTTP/1.1\r\nHost: shop.test\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                let websocket = try connection.readResponse()
                #expect(values(headLines(websocket), "upgrade") == ["websocket"], "\(websocket.bodyText)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func absoluteFormTargetsRouteAndForwardByTheirAuthority() throws {
            let dir = try ScratchDir("steer-absolute")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let spec = ProxySpec(routes: [RouteSpec(host: "a.example", service: "a"), RouteSpec(host: "b.example", service: "b")], workers: 1)
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "a", instances: [.init(port: a.port)]),
                                                          ServiceSpec(name: "b", instances: [.init(port: b.port)])], dir: dir)
            defer { proxy.stop() }

            let response = try rawExchange(port: proxy.port, "GET http://a.example/x/headers?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n")
            #expect(response.status == 200)
            #expect(response.header("x-backend") == "a")
            let lines = headLines(response)
            #expect(lines.first == "GET /x/headers?q=1 HTTP/1.1", "\(lines)")
            #expect(values(lines, "host") == ["a.example"], "\(lines)")
            #expect(values(lines, "x-forwarded-host") == ["a.example"], "\(lines)")
        }

        @Test(.timeLimit(.minutes(1)))
        func dotSegmentsAndEscapesAreResolvedBeforeRouting() throws {
            let dir = try ScratchDir("steer-paths")
            let publicSide = try Backend.demo("public", dir: dir)
            defer { publicSide.stop() }
            let admin = try Backend.demo("admin", dir: dir)
            defer { admin.stop() }
            let spec = ProxySpec(routes: [RouteSpec(path: "/public", service: "public"), RouteSpec(path: "/admin", service: "admin")], workers: 1)
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "public", instances: [.init(port: publicSide.port)]),
                                                          ServiceSpec(name: "admin", instances: [.init(port: admin.port)])], dir: dir)
            defer { proxy.stop() }

            let routed: [(target: String, backend: String, line: String)] = [
                ("/public/../admin/headers", "admin", "GET /admin/headers HTTP/1.1"),
                ("/public/%2e%2e/admin/headers", "admin", "GET /admin/headers HTTP/1.1"),
                ("/public/.%2E/%61dmin/headers", "admin", "GET /admin/headers HTTP/1.1"),
                ("//admin//headers", "admin", "GET /admin/headers HTTP/1.1"),
                ("/public/./x/../headers?next=/../admin", "public", "GET /public/headers?next=/../admin HTTP/1.1"),
                ("/public/headers", "public", "GET /public/headers HTTP/1.1"),
            ]
            for (target, backend, line) in routed {
                let response = try rawExchange(port: proxy.port, "GET \(target) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(response.status == 200, "\(target)")
                #expect(response.header("x-backend") == backend, "\(target) went to \(response.header("x-backend") ?? "-")")
                #expect(headLines(response).first == line, "\(target): \(headLines(response).first ?? "")")
            }
            for target in ["/public/%2f../admin/headers", "/public/..%2Fadmin", "/public/..%5cadmin", "/public\\..\\admin", "/public/%zz"] {
                let response = try rawExchange(port: proxy.port, "GET \(target) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(response.status == 400, "\(target) answered \(response.status)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func forwardingFieldsFromAnUntrustedClientAreReplaced() throws {
            try withDemoProxy("steer-forwarded") { proxy in
                let lines = headLines(try rawExchange(port: proxy.port, spoofed))
                #expect(values(lines, "x-forwarded-for") == ["127.0.0.1"], "\(lines)")
                #expect(values(lines, "x-forwarded-proto") == ["http"], "\(lines)")
                #expect(values(lines, "x-forwarded-host") == ["shop.test"], "\(lines)")
                #expect(values(lines, "forwarded").isEmpty, "\(lines)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func forwardingFieldsFromATrustedProxyAreKeptAndExtended() throws {
            var spec = ProxySpec(workers: 1)
            spec.extraYAML = "trusted_proxies: [127.0.0.0/8]\n"
            try withDemoProxy("steer-trusted", spec: spec) { proxy in
                let lines = headLines(try rawExchange(port: proxy.port, spoofed))
                #expect(values(lines, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"], "\(lines)")
                #expect(values(lines, "x-forwarded-proto") == ["https"], "\(lines)")
                #expect(values(lines, "x-forwarded-host") == ["www.example"], "\(lines)")
                #expect(values(lines, "forwarded") == ["for=203.0.113.9;proto=https"], "\(lines)")
            }
        }

        /// The same over HTTP/2 (h2c): a trusted proxy's fields are kept, an untrusted
        /// client's replaced.
        @Test(.timeLimit(.minutes(1)))
        func forwardingFieldsOverHTTP2FollowTheSameTrustRule() throws {
            let h2 = ["--http2-prior-knowledge", "-H", "Host: shop.test", "-H", "X-Forwarded-For: 203.0.113.9"]
            var trusted = ProxySpec(workers: 1)
            trusted.extraYAML = "trusted_proxies: [127.0.0.0/8]\n"
            try withDemoProxy("steer-trusted-h2", spec: trusted) { proxy in
                let head = try curl(proxy.url + "/headers", h2, dir: proxy.dir)
                #expect(head.httpStatus == 200 && head.body.contains("203.0.113.9"), "\(head.body)")
            }
            try withDemoProxy("steer-untrusted-h2") { proxy in
                let head = try curl(proxy.url + "/headers", h2, dir: proxy.dir)
                #expect(head.httpStatus == 200 && !head.body.contains("203.0.113.9"), "\(head.body)")
            }
        }

        private var spoofed: String {
            "GET /headers HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
                + "X-Forwarded-Host: www.example\r\nForwarded: for=203.0.113.9;proto=https\r\n\r\n"
        }

        @Test(.timeLimit(.minutes(1)))
        func trailersThatFrameOrRouteAreRefusedAndNeverReachTheBackend() throws {
            let dir = try ScratchDir("steer-trailers")
            let origin = try Backend.recording("origin", dir: dir)
            defer { origin.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1), services: [ServiceSpec(name: "shop", instances: [.init(port: origin.port)])], dir: dir)
            defer { proxy.stop() }

            for trailer in ["Content-Length: 44", "Transfer-Encoding: chunked", "Host: admin.internal", "Authorization: Basic eA=="] {
                let connection = try RawConnection(port: proxy.port)
                try connection.send("POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\(trailer)\r\n\r\n")
                #expect(try connection.readResponse().status == 400, "\(trailer)")
                #expect(connection.readUntilClosed(timeout: .seconds(5)))
            }
            // Ordinary trailers pass, and the upstream pool is sound after the refusals.
            let fine = try rawExchange(port: proxy.port,
                "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n")
            #expect(fine.status == 200)
            #expect(fine.bodyText == "hello")
        }
    }
}
