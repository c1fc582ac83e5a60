import Foundation
import Testing

// HTTP/2 downstream (h2c with prior knowledge) through the real binary, with real clients:
// curl, nghttp and h2load (Debian nghttp2-client), Python `h2` for the edge cases.

extension Integration {
    @Suite struct HTTP2 {
        let dir: ScratchDir
        let backend: Backend
        let proxy: RunningProxy

        init() throws {
            dir = try ScratchDir("http2")
            backend = try Backend.demo("h2", dir: dir)
            do {
                var spec = ProxySpec(workers: 1)
                spec.timeouts["drain"] = "5s"
                proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            } catch {
                backend.stop()
                throw error
            }
        }

        private func stop() {
            proxy.stop()
            backend.stop()
        }

        private var h2: [String] { ["--http2-prior-knowledge", "-H", "Host: shop.test"] }

        // MARK: Real clients

        @Test(.timeLimit(.minutes(1)))
        func curlWithPriorKnowledgeGetsPostsAndDownloadsOverHTTP2() throws {
            defer { stop() }
            let get = try curl(proxy.url + "/hello", h2, extra: ["%{http_version}"], dir: dir)
            #expect(get.httpStatus == 200 && get.written.first == "2", "\(get.stderr)")
            #expect(get.body.hasPrefix("hello from h2"))

            let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try Data(payload).write(to: URL(fileURLWithPath: dir.file("payload.bin")))
            let post = try runCommand("/usr/bin/curl", ["-sS", "--http2-prior-knowledge", "--data-binary", "@" + dir.file("payload.bin"),
                                                        "-o", dir.file("echoed.bin"), "-w", "%{http_code}", proxy.url + "/echo"],
                                      dir: dir, label: "post")
            #expect(post.stdout == "200", "\(post.stderr)")
            #expect((try? Data(contentsOf: URL(fileURLWithPath: dir.file("echoed.bin")))) == Data(payload))

            // Unknown length: curl -T - sends DATA without content-length (chunked upstream).
            let upload = try runCommand("/bin/sh", ["-c", "head -c 2000000 /dev/zero | curl -sS --http2-prior-knowledge -T - -o /dev/null -w '%{http_code} %{size_download}' \(proxy.url)/echo"],
                                        dir: dir, label: "upload")
            #expect(upload.stdout == "200 2000000", "\(upload.stderr)")

            let big = try curl(proxy.url + "/size/50000000", h2 + ["-o", "/dev/null"], extra: ["%{size_download}"], dir: dir)
            #expect(big.httpStatus == 200 && big.written.first == "50000000")
            let chunked = try curl(proxy.url + "/chunked/1000000", h2 + ["-o", "/dev/null"], extra: ["%{size_download}"], dir: dir)
            #expect(chunked.httpStatus == 200 && chunked.written.first == "1000000")
        }

        /// A client that opens its windows wide once and then never sends another frame: the
        /// proxy must keep producing DATA on its own. A send stops at 256 KiB of output; when
        /// the socket took all of it, the rest used to wait for a frame from the client that
        /// never came, until the upstream timeout cut the download (seen as a flaky 50 MB
        /// download under CPU load).
        @Test(.timeLimit(.minutes(1)))
        func aClientWithWideOpenWindowsThatSendsNothingMoreGetsTheWholeBody() throws {
            defer { stop() }
            let script = dir.file("wide-window.py")
            try Data("""
            import socket, struct, sys, time, h2.connection, h2.config, h2.settings
            port, size = int(sys.argv[1]), int(sys.argv[2])
            sock = socket.create_connection(("127.0.0.1", port))
            conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
            conn.increment_flow_control_window(2**31 - 1 - 65535)
            conn.send_headers(1, [(":method", "GET"), (":path", "/size/%d" % size), (":scheme", "http"),
                                  (":authority", "shop.test")], end_stream=True)
            sock.sendall(conn.data_to_send())
            # From here on the frames are read raw and fast (a slow reader would fill the socket
            # and give the proxy a writable event); the server's SETTINGS gets its ACK, and
            # nothing else is ever sent.
            buf, received, ended, deadline = b"", 0, None, time.time() + 30
            sock.settimeout(1)
            while ended is None and time.time() < deadline:
                try:
                    data = sock.recv(1 << 22)
                except socket.timeout:
                    continue
                if not data:
                    break
                buf += data
                while len(buf) >= 9:
                    length = int.from_bytes(buf[0:3], "big")
                    if len(buf) < 9 + length:
                        break
                    kind, flags = buf[3], buf[4]
                    if kind == 4 and not flags & 1:
                        sock.sendall(b"\\x00\\x00\\x00\\x04\\x01\\x00\\x00\\x00\\x00")
                    elif kind == 0:
                        padding = buf[9] + 1 if flags & 8 else 0
                        received += length - padding
                        if flags & 1:
                            ended = "ended"
                    elif kind == 3 or kind == 7:
                        ended = "cut"
                    buf = buf[9 + length:]
            print(received, ended or "stalled")
            """.utf8).write(to: URL(fileURLWithPath: script))
            for round in 0..<3 {
                let result = try runCommand("/usr/bin/env", ["python3", script, "\(proxy.port)", "30000000"], dir: dir,
                                            label: "wide-window-\(round)", timeout: .seconds(40))
                #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "30000000 ended", "\(result.stderr)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func nghttpFetchesSeveralStreamsConcurrentlyOnOneConnection() throws {
            defer { stop() }
            let urls = (0..<8).map { proxy.url + "/slow?ms=300&n=\($0)" }
            let started = ContinuousClock.now
            let result = try runCommand("/usr/bin/nghttp", ["-n", "-s", "-H", ":authority: shop.test"] + urls, dir: dir, label: "nghttp")
            let elapsed = ContinuousClock.now - started
            #expect(result.status == 0, "\(result.stderr)")
            // -s prints one line per stream with its status; all eight were 200.
            let lines = result.stdout.split(separator: "\n").filter { $0.contains(" 200 ") }
            #expect(lines.count == 8, "\(result.stdout)")
            // Concurrent, not one after another (8 × 300 ms).
            #expect(elapsed < .milliseconds(2_000), "took \(elapsed)")
        }

        @Test(.timeLimit(.minutes(1)))
        func h2loadTenThousandMultiplexedRequestsNoneFail() throws {
            defer { stop() }
            let result = try runCommand("/usr/bin/h2load", ["-n", "10000", "-c", "4", "-m", "10", "-H", ":authority: shop.test", proxy.url + "/"],
                                        dir: dir, label: "h2load", timeout: .seconds(50))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("10000 succeeded, 0 failed, 0 errored"), "\(result.stdout)")
            #expect(result.stdout.contains("status codes: 10000 2xx"))
        }

        @Test(.timeLimit(.minutes(1)))
        func requestTrailersReachTheUpstreamAsChunkedTrailers() throws {
            defer { stop() }
            try "some body".write(toFile: dir.file("body.txt"), atomically: true, encoding: .utf8)
            let result = try runCommand("/usr/bin/nghttp", ["-d", dir.file("body.txt"), "--trailer", "x-checksum: 42", "-H", ":authority: shop.test",
                                                            proxy.url + "/echo"], dir: dir, label: "nghttp-trailer")
            #expect(result.status == 0 && result.stdout == "some body", "\(result.stdout) \(result.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func responseTrailersOfAChunkedUpstreamArriveAsHTTP2Trailers() throws {
            defer { stop() }
            try Data(trailerOriginSource.utf8).write(to: URL(fileURLWithPath: dir.file("trailer-origin.py")))
            let origin = try ChildProcess("/usr/bin/env", ["python3", dir.file("trailer-origin.py")], dir: dir, label: "trailer-origin")
            defer { origin.stop() }
            let port = try origin.waitForListeningPort()
            try proxy.publish([ServiceSpec(name: "shop", instances: [.init(port: port)])])
            let result = try runCommand("/usr/bin/nghttp", ["-v", "-H", ":authority: shop.test", proxy.url + "/t"], dir: dir, label: "nghttp-trailers")
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("x-checksum: 7"), "\(result.stdout)")
            #expect(result.stdout.contains("hello, trailers"))
            #expect(!result.stdout.contains("transfer-encoding"))
        }

        @Test(.timeLimit(.minutes(1)))
        func theProxysOwnAnswersReachHTTP2ClientsAsResponses() throws {
            defer { stop() }
            try proxy.publish([ServiceSpec(name: "shop", instances: [])])
            // Two streams on one connection (nghttp; curl 7.88.1 cannot reuse a prior-knowledge
            // connection, against nghttpx either: "Error in the HTTP2 framing layer").
            let result = try runCommand("/usr/bin/nghttp", ["-v", proxy.url + "/a", proxy.url + "/b"], dir: dir, label: "own-answers")
            #expect(result.stdout.components(separatedBy: ":status: 503").count == 3, "\(result.stdout)")
            #expect(result.stdout.components(separatedBy: "recv DATA frame <length=61, flags=0x01").count == 3, "\(result.stdout)")
            #expect(!result.stdout.contains("RST_STREAM"))
        }

        // MARK: Edge cases (Python h2)

        @Test(.timeLimit(.minutes(1)))
        func aBadPrefaceClosesTheConnectionAndOthersAreStillServed() throws {
            defer { stop() }
            let result = try runH2Edge("bad-preface", port: proxy.port, dir: dir)
            #expect(result.stdout.contains("closed"), "\(result.stdout) \(result.stderr)")
            #expect(try curl(proxy.url + "/", h2, dir: dir).httpStatus == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func anOversizedFrameIsAFrameSizeError() throws {
            defer { stop() }
            let result = try runH2Edge("oversized-frame", port: proxy.port, dir: dir)
            #expect(result.stdout.contains("goaway 6"), "\(result.stdout) \(result.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func theHundredAndFirstConcurrentStreamIsRefused() throws {
            defer { stop() }
            let result = try runH2Edge("stream-limit", port: proxy.port, dir: dir)
            #expect(result.stdout.contains("limit 100 resets [(201, 7)]"), "\(result.stdout) \(result.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func aTinyClientWindowStillGetsTheWholeResponseAsItOpens() throws {
            defer { stop() }
            let result = try runH2Edge("tiny-window", port: proxy.port, ["20000"], dir: dir)
            #expect(result.stdout.contains("received 20000 largest 16 ended True"), "\(result.stdout) \(result.stderr)")
        }

        /// CVE-2023-44487: a client opening and cancelling streams as fast as it can is sent
        /// GOAWAY(ENHANCE_YOUR_CALM); others are served throughout; memory comes back.
        @Test(.timeLimit(.minutes(1)))
        func aRapidResetFloodIsCutOffWhileOthersAreServedAndMemoryReturns() throws {
            defer { stop() }
            // Warm up, then the baseline.
            _ = try runCommand("/usr/bin/h2load", ["-n", "2000", "-c", "2", "-m", "10", proxy.url + "/"], dir: dir, label: "warmup")
            let baseline = residentBytes(pid: proxy.pid) ?? 0
            let floods = try (0..<8).map { try startH2Edge("rapid-reset", port: proxy.port, ["100000"], dir: dir, label: "flood-\($0)") }
            defer { for f in floods { f.stop() } }
            let served = try runCommand("/usr/bin/h2load", ["-n", "3000", "-c", "2", "-m", "5", proxy.url + "/"], dir: dir, label: "served",
                                        timeout: .seconds(30))
            #expect(served.stdout.contains("3000 succeeded, 0 failed"), "\(served.stdout)")
            for f in floods {
                _ = f.waitExit(timeout: .seconds(20))
                #expect(f.stdoutText.hasPrefix("goaway 11"), "\(f.stdoutText) \(f.stderrText)")
            }
            var after = 0
            try waitFor("the proxy's memory to return near its baseline", timeout: .seconds(10), interval: .milliseconds(200)) {
                after = residentBytes(pid: proxy.pid) ?? 0
                return after < baseline + 8 * 1024 * 1024
            }
            print("rapid reset: baseline RSS \(baseline / 1024) KiB, after the flood \(after / 1024) KiB")
        }

        @Test(.timeLimit(.minutes(1)))
        func sigtermSendsGoawayAndLetsTheStreamInFlightFinish() throws {
            defer { stop() }
            // First GOAWAY announces (last stream 2^31-1), the second names stream 1. It
            // follows the client's ACK of the PING sent with the first, not a timer.
            let (output, gap) = try drainWithSlowStream()
            #expect(output.contains("status 200 goaways [(0, 2147483647), (0, 1)] ended True"), "\(output)")
            #expect(gap >= 0 && gap < 0.5, "\(output)")
            #expect(proxy.child.waitExit(timeout: .seconds(6)) == 0)
        }

        @Test(.timeLimit(.minutes(1)))
        func aClientThatNeverAcknowledgesThePingGetsTheFinalGoawayAfterTheNoticeWait() throws {
            defer { stop() }
            let (output, gap) = try drainWithSlowStream(["noack"])
            #expect(output.contains("status 200 goaways [(0, 2147483647), (0, 1)] ended True"), "\(output)")
            // Half of timeouts.drain (5 s here) bounds the wait; the stream in flight finished meanwhile.
            #expect(gap >= 2.3 && gap < 4, "\(output)")
            #expect(proxy.child.waitExit(timeout: .seconds(8)) == 0)
        }

        /// SIGTERM while a 1.5 s request is in flight on the `drain` edge client: its output,
        /// and the seconds between the two GOAWAYs it saw (-1 for fewer than two).
        private func drainWithSlowStream(_ arguments: [String] = []) throws -> (String, Double) {
            let client = try startH2Edge("drain", port: proxy.port, arguments, dir: dir, label: "drain-client")
            defer { client.stop() }
            try waitFor("the request to be sent", timeout: .seconds(5)) { client.stdoutText.contains("sent") }
            pause(.milliseconds(200))
            proxy.child.signal(SIGTERM)
            _ = client.waitExit(timeout: .seconds(15))
            let output = client.stdoutText + client.stderrText
            let gap = Double(client.stdoutText.components(separatedBy: "gap ").last?.prefix(while: { $0 != "\n" }) ?? "") ?? -1
            return (output, gap)
        }
    }
}

/// An HTTP/1.1 origin whose one answer is chunked with a trailer (`x-checksum: 7`).
private let trailerOriginSource = #"""
import socket, socketserver

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                pass
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                             b"7\r\nhello, \r\n8\r\ntrailers\r\n0\r\nx-checksum: 7\r\n\r\n")
            self.wfile.flush()

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#
