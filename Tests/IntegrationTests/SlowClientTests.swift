import Foundation
import Testing

// No client connection lives on without progress: silent connections get the header timeout
// from accept, trickling bodies are cut with 408, and one address cannot hold more than
// `max_connections_per_client` connections. Short configured timeouts keep the tests fast.

extension Integration {
    @Suite struct SlowClients {
        @Test(.timeLimit(.minutes(1)))
        func aConnectionThatNeverSendsAByteIsClosedAtTheHeaderTimeout() throws {
            let spec = ProxySpec(workers: 1, timeouts: ["client_header": "1s", "client_idle": "30s", "drain": "5s"])
            try withDemoProxy("slow-silent", spec: spec) { proxy in
                let silent = try RawConnection(port: proxy.port)
                let start = ContinuousClock.now
                #expect(silent.readUntilClosed(timeout: .seconds(10)), "still open after 10 s")
                let lived = ContinuousClock.now - start
                #expect(lived < .seconds(4), "closed after \(lived), not at client_header (1 s)")
                #expect(silent.buffered.isEmpty, "a connection that sent nothing gets no answer")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func keepAliveConnectionsGetTheIdleTimeoutUntilTheNextHeadBegins() throws {
            let spec = ProxySpec(workers: 1, timeouts: ["client_header": "1s", "client_idle": "30s", "drain": "5s"])
            try withDemoProxy("slow-keepalive", spec: spec) { proxy in
                let connection = try RawConnection(port: proxy.port)
                try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(try connection.readResponse().status == 200)
                // Between requests: client_idle (30 s), not client_header (1 s).
                #expect(connection.readSome(deadline: .now + .seconds(2)) == .timedOut, "closed between requests")
                // The first bytes of a head start the header timeout.
                try connection.send("GET / HTTP/1.1\r\nHost: sh")
                let start = ContinuousClock.now
                #expect(try connection.readResponse(timeout: .seconds(5)).status == 408)
                #expect(ContinuousClock.now - start < .seconds(3))
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aBodyThatStopsIsCutWith408AtTheBodyTimeoutAndTheUpstreamIsNotReused() throws {
            let spec = ProxySpec(workers: 1, timeouts: ["client_header": "2s", "client_body": "1s", "upstream_response": "10s", "drain": "5s"])
            try withDemoProxy("slow-body-stop", spec: spec) { proxy in
                let connection = try RawConnection(port: proxy.port)
                try connection.send("POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\n0123456789")
                let start = ContinuousClock.now
                let response = try connection.readResponse(timeout: .seconds(8))
                #expect(response.status == 408)
                #expect(ContinuousClock.now - start < .seconds(4))
                #expect(connection.readUntilClosed(timeout: .seconds(5)))
                // The upstream connection holding the half body was closed, not pooled: the
                // next request on the (single) pool is answered whole.
                let next = try rawExchange(port: proxy.port, "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nhello")
                #expect(next.status == 200)
                #expect(next.bodyText == "hello")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aBodyThatTricklesBelowTheMinimumRateIsCutWith408() throws {
            let spec = ProxySpec(workers: 1, timeouts: ["client_header": "2s", "client_body": "10s", "upstream_response": "10s", "drain": "5s"],
                                 limits: ["min_body_rate": "1000", "min_body_rate_after": "1s"])
            try withDemoProxy("slow-body-rate", spec: spec) { proxy in
                let connection = try RawConnection(port: proxy.port)
                try connection.send("POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100000\r\n\r\n")
                let start = ContinuousClock.now
                var answered = false
                // One byte every 100 ms (10 B/s), well under 1000 B/s, but never silent for 10 s.
                while ContinuousClock.now - start < .seconds(8) {
                    do { try connection.send("x") } catch { break }
                    if connection.readSome(deadline: .now + .milliseconds(100)) != .timedOut {
                        answered = true
                        break
                    }
                }
                #expect(answered, "no answer after 8 s of trickling")
                #expect(ContinuousClock.now - start < .seconds(4))
                #expect(try connection.readResponse().status == 408)
                // A body at a normal rate passes.
                let next = try rawExchange(port: proxy.port, "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nhello")
                #expect(next.status == 200)
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func oneAddressCannotHoldMoreThanItsConnections() throws {
            let dir = try ScratchDir("slow-per-client")
            let backend = try Backend.demo("shop", dir: dir)
            defer { backend.stop() }
            let spec = ProxySpec(workers: 2, limits: ["max_connections_per_client": "3"], extraYAML: "admin:\n  address: 127.0.0.1:0\n")
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: backend.port)])]))
            try dir.write("switchyard.yml", spec.yaml)
            let (child, port, adminPort) = try startProxyWithAdmin(dir: dir)
            defer { child.stop() }

            // Three connections, each served once (so each was accepted), then held open.
            var held = try (0..<3).map { _ in try RawConnection(port: port) }
            for connection in held {
                try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(try connection.readResponse().status == 200)
            }
            // A fourth is accepted by the kernel and closed by the proxy at once.
            let fourth = try RawConnection(port: port)
            #expect(fourth.readUntilClosed(timeout: .seconds(5)), "a fourth connection stayed open")
            // Closing one makes room again.
            held.removeLast()
            try waitFor("a new connection to be served", timeout: .seconds(5), interval: .milliseconds(100)) {
                (try? rawExchange(port: port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", timeout: .seconds(2)).status) == 200
            }
            let scrape = try curl("http://127.0.0.1:\(adminPort)/metrics", dir: dir)
            let line = scrape.body.split(separator: "\n").first { $0.hasPrefix("switchyard_client_connections_refused_total{reason=\"per_client\"} ") }
            #expect(line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0 >= 1, "\(line ?? "no per_client sample")")
            #expect(held.count == 2)
        }

        /// An h2c connection that sends the preface and then no request gets the header
        /// timeout (2 s here), not the idle timeout (60 s): a GOAWAY, then the close.
        @Test(.timeLimit(.minutes(1)))
        func anH2cConnectionWithoutARequestIsClosedAtTheHeaderTimeout() throws {
            try withDemoProxy("slow-h2-preface") { proxy in
                let connection = try RawConnection(port: proxy.port)
                try connection.send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0])
                let start = ContinuousClock.now
                #expect(connection.readUntilClosed(timeout: .seconds(10)), "the connection outlived the header timeout")
                #expect(ContinuousClock.now - start < .seconds(6))
            }
        }

        /// A connection that turns into HTTP/2 (h2c prior knowledge) keeps its place in the
        /// per-client count: switching protocols must not free it (it did).
        @Test(.timeLimit(.minutes(1)))
        func h2cConnectionsCountTowardTheSameLimit() throws {
            let spec = ProxySpec(workers: 1, limits: ["max_connections_per_client": "3"])
            try withDemoProxy("slow-per-client-h2", spec: spec) { proxy in
                let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
                var held: [RawConnection] = []
                for _ in 0..<3 {
                    let connection = try RawConnection(port: proxy.port)
                    try connection.send(preface)
                    // The proxy's SETTINGS: the connection is an HTTP/2 connection now.
                    #expect(connection.readSome(deadline: .now + .seconds(5)) != .timedOut)
                    held.append(connection)
                }
                let fourth = try RawConnection(port: proxy.port)
                #expect(fourth.readUntilClosed(timeout: .seconds(5)), "a fourth connection stayed open beside three h2c ones")
                #expect(held.count == 3)
            }
        }

        /// A short slowhttptest run (the long one with the shipped timeouts is
        /// scripts/slow-clients): slowloris and slow-body connections are all cut by the
        /// proxy before slowhttptest's time limit, while a probe keeps getting 200s.
        @Test(.timeLimit(.minutes(1)))
        func slowhttptestConnectionsAreCutWhileOtherClientsAreServed() throws {
            let spec = ProxySpec(workers: 2, timeouts: ["client_header": "2s", "client_body": "2s", "upstream_response": "5s", "drain": "5s"],
                                 limits: ["min_body_rate": "1000", "min_body_rate_after": "2s"])
            try withDemoProxy("slow-httptest", spec: spec) { proxy in
                for (mode, path) in [("-H", "/"), ("-B", "/echo")] {
                    let attack = try ChildProcess("/usr/bin/slowhttptest",
                                                  [mode, "-c", "100", "-r", "100", "-i", "5", "-x", "10", "-s", "8192", "-p", "2", "-l", "20",
                                                   "-u", "http://127.0.0.1:\(proxy.port)\(path)"],
                                                  dir: proxy.dir, label: "slowhttptest\(mode)")
                    defer { attack.stop() }
                    var probes = 0
                    var served = 0
                    let start = ContinuousClock.now
                    while attack.isRunning && ContinuousClock.now - start < .seconds(25) {
                        probes += 1
                        if (try? rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", timeout: .seconds(2)).status) == 200 {
                            served += 1
                        }
                        pause(.milliseconds(100))
                    }
                    #expect(attack.waitExit(timeout: .seconds(5)) != nil, "slowhttptest \(mode) still running")
                    let output = attack.stdoutText + attack.stderrText
                    #expect(output.contains("No open connections left"), "slowhttptest \(mode): \(output.suffix(600))")
                    #expect(probes > 5 && served == probes, "\(served) of \(probes) probes answered 200 during slowhttptest \(mode)")
                }
            }
        }
    }
}
