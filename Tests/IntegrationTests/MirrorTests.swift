#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// The mirror middleware through the binary: an exact share of requests copied to a
    /// shadow service, whose state (answering, hanging, down) never shows in the real
    /// responses.
    @Suite(.serialized) struct MirrorMiddleware {
        /// A listener that never accepts: connections complete in its backlog and nothing
        /// is ever answered (a hung shadow).
        final class HangingListener {
            let fd: Int32
            let port: UInt16

            init() throws {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                guard fd >= 0 else { throw HarnessError("socket failed") }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                let ok = withUnsafeMutablePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                        bind(fd, pointer, length) == 0 && listen(fd, 512) == 0 && getsockname(fd, pointer, &length) == 0
                    }
                }
                guard ok else {
                    close(fd)
                    throw HarnessError("bind/listen failed: errno \(errno)")
                }
                self.fd = fd
                port = UInt16(bigEndian: address.sin_port)
            }

            func stop() { close(fd) }
        }

        static func config(percent: String, timeout: String = "1s", maxBody: String? = nil) -> String {
            """
            listeners:
              - name: web
                address: 127.0.0.1:0
                protocol: http
            admin:
              address: 127.0.0.1:0
            middlewares:
              shadow: {mirror: {service: shadow, percent: \(percent), timeout: \(timeout)\(maxBody.map { ", max_body_bytes: \($0)" } ?? "")}}
            routes:
              - path: /
                service: shop
                middlewares: [shadow]
            discovery:
              provider: file
              file: services.yml
            workers: 1

            """
        }

        static func services(shop: UInt16, shadow: UInt16) -> String {
            """
            services:
              shop:
                instances:
                  - {address: 127.0.0.1, port: \(shop)}
              shadow:
                health: {type: none}
                instances:
                  - {address: 127.0.0.1, port: \(shadow)}

            """
        }

        /// `switchyard_mirror_requests_total{result="RESULT"}` on the admin API.
        static func mirrorCount(_ result: String, adminPort: UInt16, dir: ScratchDir) throws -> Int {
            let metrics = try curl("http://127.0.0.1:\(adminPort)/metrics", dir: dir)
            let prefix = "switchyard_mirror_requests_total{result=\"\(result)\"} "
            let line = metrics.body.split(separator: "\n").first { $0.hasPrefix(prefix) }
            return line.flatMap { Int($0.dropFirst(prefix.count)) } ?? -1
        }

        static func start(_ dir: ScratchDir, percent: String, timeout: String = "1s", maxBody: String? = nil,
                          shop: UInt16, shadow: UInt16) throws -> (ChildProcess, UInt16, UInt16) {
            try dir.write("services.yml", Self.services(shop: shop, shadow: shadow))
            try dir.write("switchyard.yml", Self.config(percent: percent, timeout: timeout, maxBody: maxBody))
            let started = try startProxyWithAdmin(dir: dir)
            return (started.child, started.port, started.adminPort)
        }

        @Test(.timeLimit(.minutes(1)))
        func aThousandRequestsAtTenPercentSendExactlyOneHundredCopies() throws {
            let dir = try ScratchDir("mirror-exact")
            let shop = try Backend.demo("shop", dir: dir)
            let shadow = try Backend.recording("shadow", dir: dir)
            defer { shop.stop(); shadow.stop() }
            let (child, port, adminPort) = try Self.start(dir, percent: "10", shop: shop.port, shadow: shadow.port)
            defer { child.stop() }
            let connection = try RawConnection(port: port)
            for i in 0..<1_000 {
                try connection.send("GET /r/\(i) HTTP/1.1\r\nHost: shop\r\n\r\n")
                let response = try connection.readResponse()
                #expect(response.status == 200 && response.header("x-backend") == "shop")
            }
            try waitFor("100 copies at the shadow", timeout: .seconds(10)) { shadow.receivedRequestLines.count >= 100 }
            let sent = try Self.mirrorCount("sent", adminPort: adminPort, dir: dir)
            let failed = try Self.mirrorCount("failed", adminPort: adminPort, dir: dir)
            #expect(sent == 100, "sent \(sent), failed \(failed), shadow got \(shadow.receivedRequestLines.count)")
            try waitFor("every copy answered", timeout: .seconds(5)) {
                try Self.mirrorCount("failed", adminPort: adminPort, dir: dir) == 0 && shadow.receivedRequestLines.count == 100
            }
            // The copies are the forwarded requests: same method and path.
            #expect(shadow.receivedRequestLines.allSatisfy { $0.hasPrefix("GET /r/") })
            // A small POST body that came with its head is copied too.
            let body = String(repeating: "x", count: 1_000)
            for _ in 0..<10 {
                try connection.send("POST /echo HTTP/1.1\r\nHost: shop\r\nContent-Length: \(body.count)\r\n\r\n\(body)")
                #expect(try connection.readResponse().status == 200)
            }
            try waitFor("the POST copy", timeout: .seconds(5)) { shadow.receivedRequestLines.contains("POST /echo HTTP/1.1") }
        }

        @Test(.timeLimit(.minutes(1)))
        func aHangingOrDownShadowDoesNotChangeOrSlowTheRealResponses() throws {
            let dir = try ScratchDir("mirror-hang")
            let shop = try Backend.demo("shop", dir: dir)
            defer { shop.stop() }
            let hanging = try HangingListener()
            defer { hanging.stop() }
            for (label, shadowPort) in [("hanging", hanging.port), ("down", try closedPort())] {
                let (child, port, adminPort) = try Self.start(dir, percent: "100", timeout: "300ms", shop: shop.port, shadow: shadowPort)
                defer { child.stop() }
                let connection = try RawConnection(port: port)
                var slowest = Duration.zero
                let body = String(repeating: "b", count: 10_000)
                for i in 0..<50 {
                    let started = ContinuousClock.now
                    if i % 2 == 0 {
                        try connection.send("GET /r/\(i) HTTP/1.1\r\nHost: shop\r\n\r\n")
                    } else {
                        // A body after its head: the copy is held until it ended, then sent.
                        try connection.send("POST /echo?n=\(i) HTTP/1.1\r\nHost: shop\r\nContent-Length: \(body.count)\r\n\r\n")
                        try connection.send(body)
                    }
                    let response = try connection.readResponse()
                    slowest = max(slowest, ContinuousClock.now - started)
                    #expect(response.status == 200 && response.header("x-backend") == "shop", "\(label)")
                    if i % 2 == 1 { #expect(response.body.count == body.count, "\(label): the real POST is whole") }
                }
                // A copy that waited for the shadow would take its 300 ms timeout.
                #expect(slowest < .milliseconds(150), "\(label): the slowest real request took \(slowest)")
                try waitFor("\(label): every copy counted as failed", timeout: .seconds(5)) {
                    try Self.mirrorCount("failed", adminPort: adminPort, dir: dir) == 50
                }
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func copiesPastTheBoundInFlightAreDroppedAndCounted() throws {
            let dir = try ScratchDir("mirror-bound")
            let shop = try Backend.demo("shop", dir: dir)
            defer { shop.stop() }
            let hanging = try HangingListener()
            defer { hanging.stop() }
            let (child, port, adminPort) = try Self.start(dir, percent: "100", timeout: "20s", shop: shop.port, shadow: hanging.port)
            defer { child.stop() }
            let connection = try RawConnection(port: port)
            for i in 0..<300 {
                try connection.send("GET /r/\(i) HTTP/1.1\r\nHost: shop\r\n\r\n")
                #expect(try connection.readResponse().status == 200)
            }
            // 256 copies wait on the hung shadow; the other 44 were not sent.
            #expect(try Self.mirrorCount("sent", adminPort: adminPort, dir: dir) == 256)
            #expect(try Self.mirrorCount("dropped", adminPort: adminPort, dir: dir) == 44)
        }

        @Test(.timeLimit(.minutes(1)))
        func anHTTP2ClientsRequestsAreMirroredToo() throws {
            let dir = try ScratchDir("mirror-h2")
            let shop = try Backend.demo("shop", dir: dir)
            let shadow = try Backend.recording("shadow", dir: dir)
            defer { shop.stop(); shadow.stop() }
            let (child, port, adminPort) = try Self.start(dir, percent: "50", shop: shop.port, shadow: shadow.port)
            defer { child.stop() }
            for i in 0..<20 {
                let result = try curl("http://127.0.0.1:\(port)/h2/\(i)", ["--http2-prior-knowledge", "-H", "Host: shop"], extra: ["%{http_version}"], dir: dir)
                #expect(result.httpStatus == 200 && result.written.first == "2", "\(result.stderr)")
            }
            try waitFor("10 copies of 20 HTTP/2 requests", timeout: .seconds(10)) { shadow.receivedRequestLines.count >= 10 }
            #expect(try Self.mirrorCount("sent", adminPort: adminPort, dir: dir) == 10)
            #expect(shadow.receivedRequestLines.allSatisfy { $0.hasPrefix("GET /h2/") })
        }
        // MARK: Request bodies

        /// Bytes that are not text (every value, in no short period), written to `name`.
        static func binaryBody(_ dir: ScratchDir, _ name: String, bytes: Int) throws -> Data {
            let data = Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 251) })
            try data.write(to: URL(fileURLWithPath: dir.file(name)))
            return data
        }

        /// POSTs the file `name` to `path` with curl (`options` choose the framing and the
        /// HTTP version); the echo answer must be as long as the file.
        static func post(_ port: UInt16, _ path: String, file name: String, _ options: [String], dir: ScratchDir) throws {
            let result = try curl("http://127.0.0.1:\(port)\(path)", ["--data-binary", "@" + dir.file(name), "-H", "Host: shop",
                                                                    "-H", "Content-Type: application/octet-stream"] + options,
                                  extra: ["%{http_version}", "%{size_download}"], dir: dir)
            let sent = FileManager.default.contents(atPath: dir.file(name))?.count ?? -1
            #expect(result.httpStatus == 200, "\(path): \(result.stderr)")
            #expect(result.written.dropFirst().first == "\(sent)", "\(path): the real request's echo is whole")
            if options.contains("--http2-prior-knowledge") { #expect(result.written.first == "2", "\(path)") }
        }

        @Test(.timeLimit(.minutes(1)))
        func requestBodiesOfEveryFramingArriveByteExactAtTheShadow() throws {
            let dir = try ScratchDir("mirror-bodies")
            let shop = try Backend.recording("shop", dir: dir)
            let shadow = try Backend.recording("shadow", dir: dir)
            defer { shop.stop(); shadow.stop() }
            let (child, port, adminPort) = try Self.start(dir, percent: "100", shop: shop.port, shadow: shadow.port)
            defer { child.stop() }
            let body40 = try Self.binaryBody(dir, "body-40k.bin", bytes: 40_000)
            let body60 = try Self.binaryBody(dir, "body-60k.bin", bytes: 60_000)
            let cases: [(String, String, [String], Data)] = [
                // --limit-rate: the body comes over many reads after its head.
                ("/echo/length", "body-40k.bin", ["--limit-rate", "200k"], body40),
                ("/echo/chunked", "body-60k.bin", ["-H", "Transfer-Encoding: chunked"], body60),
                ("/echo/h2-length", "body-40k.bin", ["--http2-prior-knowledge"], body40),
                ("/echo/h2-stream", "body-60k.bin", ["--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked"], body60),
            ]
            for (path, file, options, _) in cases { try Self.post(port, path, file: file, options, dir: dir) }
            try waitFor("four bodies at the shadow", timeout: .seconds(10)) { shadow.receivedBodies.count >= 4 }
            let copies = shadow.receivedBodies
            for (path, _, _, expected) in cases {
                let copy = copies.first { $0.line.hasPrefix("POST \(path) ") }
                #expect(copy?.body == expected, "\(path): the shadow got \(copy?.body.count ?? -1) bytes, not the \(expected.count) sent")
                let real = shop.receivedBodies.first { $0.line.hasPrefix("POST \(path) ") }
                #expect(real?.body == expected, "\(path): the real upstream got the body whole")
            }
            #expect(try Self.mirrorCount("sent", adminPort: adminPort, dir: dir) == 4)
            #expect(try Self.mirrorCount("skipped_body", adminPort: adminPort, dir: dir) == 0)
        }

        @Test(.timeLimit(.minutes(1)))
        func aBodyOverTheBoundIsNotCopiedAndTheRealRequestIsUnaffected() throws {
            let dir = try ScratchDir("mirror-big-body")
            let shop = try Backend.recording("shop", dir: dir)
            let shadow = try Backend.recording("shadow", dir: dir)
            defer { shop.stop(); shadow.stop() }
            let (child, port, adminPort) = try Self.start(dir, percent: "100", maxBody: "16KiB", shop: shop.port, shadow: shadow.port)
            defer { child.stop() }
            let big = try Self.binaryBody(dir, "big.bin", bytes: 300_000)
            let small = try Self.binaryBody(dir, "small.bin", bytes: 10_000)
            // Over the bound: known at the head (Content-Length), or found as a chunked or an
            // HTTP/2 body grows past it.
            for (path, options) in [("/echo/big-length", [String]()), ("/echo/big-chunked", ["-H", "Transfer-Encoding: chunked"]),
                                    ("/echo/big-h2", ["--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked"])] {
                try Self.post(port, path, file: "big.bin", options, dir: dir)
                #expect(shop.receivedBodies.first { $0.line.hasPrefix("POST \(path) ") }?.body == big, "\(path): the real body is whole")
            }
            try Self.post(port, "/echo/small", file: "small.bin", [], dir: dir)
            try waitFor("the small body's copy", timeout: .seconds(10)) { shadow.receivedBodies.contains { $0.line.hasPrefix("POST /echo/small ") } }
            #expect(shadow.receivedBodies.first { $0.line.hasPrefix("POST /echo/small ") }?.body == small)
            #expect(!shadow.receivedRequestLines.contains { $0.contains("/echo/big") }, "no copy of a body over the bound")
            #expect(try Self.mirrorCount("skipped_body", adminPort: adminPort, dir: dir) == 3)
            #expect(try Self.mirrorCount("sent", adminPort: adminPort, dir: dir) == 1)
        }
    }
}
