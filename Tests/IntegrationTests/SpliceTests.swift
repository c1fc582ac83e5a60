import Foundation
import Testing

// Large plain-to-plain response bodies move by splice(2) (Sources/YardProxy/ResponseSplice.swift):
// the bytes must arrive exactly, at the client's pace, a cut at the origin must reach the client
// as a cut (never as a clean end), and a client that leaves mid-body must not disturb the next.

/// An origin whose `/whole/N` answers N bytes (byte k = k*31 mod 256) with Content-Length in
/// 50 KiB pieces a few ms apart (so a splice spans many events), and whose `/cut/N` declares N
/// bytes, sends a third of them and closes.
private let spliceOriginSource = #"""
import http.server, sys, time

def pattern(n):
    return bytes((k * 31) & 0xFF for k in range(n))

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        kind, _, n = self.path.strip("/").partition("/")
        n = int(n)
        body = pattern(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        if kind == "cut":
            self.wfile.write(body[: n // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        for start in range(0, n, 50 * 1024):
            self.wfile.write(body[start : start + 50 * 1024])
            self.wfile.flush()
            time.sleep(0.002)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#

private func expectedBody(_ count: Int) -> Data {
    Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) })
}

/// Whether two bodies are equal, and where they first differ when not (a plain `==` in an
/// expectation makes the test library diff megabytes).
private func sameBytes(_ got: Data, _ expected: Data) -> Bool {
    if got == expected { return true }
    let first = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, expected.count)
    print("bodies differ: \(got.count) bytes against \(expected.count), first difference at \(first)")
    return false
}

extension Integration {
    @Suite struct SplicedBodies {
        let dir: ScratchDir
        let origin: ChildProcess
        let proxy: RunningProxy

        init() throws {
            dir = try ScratchDir("splice")
            let script = dir.file("splice-origin.py")
            try Data(spliceOriginSource.utf8).write(to: URL(fileURLWithPath: script))
            origin = try ChildProcess("/usr/bin/env", ["python3", script], dir: dir, label: "origin")
            do {
                let port = try origin.waitForListeningPort()
                var spec = ProxySpec()
                spec.workers = 1
                proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: port)])], dir: dir)
            } catch {
                origin.stop()
                throw error
            }
        }

        private func stop() {
            proxy.stop()
            origin.stop()
        }

        /// curl once: the exit status and what it wrote to stdout (`-w`), and the body saved.
        private func download(_ path: String, _ options: [String] = [], to name: String) throws -> (CurlResult, Data) {
            let file = dir.file(name)
            let run = try runCommand("/usr/bin/curl", ["-sS", "--max-time", "50", "-o", file, "-w", "%{http_code}\\n"] + options + [proxy.url + path],
                                     dir: dir, label: "curl-\(name)", timeout: .seconds(55))
            let result = curlResult(exitStatus: run.status, stdout: run.stdout, stderr: run.stderr, body: "")
            return (result, (try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data())
        }

        @Test(.timeLimit(.minutes(1)))
        func largeBodiesArriveExactlyAndTheConnectionIsReused() throws {
            defer { stop() }
            // Two spliced responses on one client connection: the second one reuses it, and the
            // upstream connection went back to its pool in between.
            let first = dir.file("first.bin"), second = dir.file("second.bin")
            let run = try runCommand("/usr/bin/curl", ["-sS", "--max-time", "50", "-w", "%{num_connects}\\n",
                                                       "-o", first, proxy.url + "/whole/4194304", "-o", second, proxy.url + "/whole/3000000"],
                                     dir: dir, label: "curl-two", timeout: .seconds(55))
            let result = curlResult(exitStatus: run.status, stdout: "0\n" + run.stdout, stderr: run.stderr, body: "")
            #expect(result.exitStatus == 0, "\(result.stderr)")
            let firstBody = try Data(contentsOf: URL(fileURLWithPath: first)), secondBody = try Data(contentsOf: URL(fileURLWithPath: second))
            #expect(sameBytes(firstBody, expectedBody(4_194_304)), "\(firstBody.count) bytes")
            #expect(sameBytes(secondBody, expectedBody(3_000_000)), "\(secondBody.count) bytes")
            // num_connects per transfer: 1 for the first, 0 for the second (the connection was reused).
            #expect(run.stdout.split(separator: "\n").map(String.init) == ["1", "0"], "\(run.stdout)")
        }

        @Test(.timeLimit(.minutes(1)))
        func aSlowReaderGetsEveryByteAtItsOwnPace() throws {
            defer { stop() }
            let (result, body) = try download("/whole/1048576", ["--limit-rate", "1M"], to: "slow.bin")
            #expect(result.exitStatus == 0, "\(result.stderr)")
            #expect(sameBytes(body, expectedBody(1_048_576)), "\(body.count) bytes")
        }

        @Test(.timeLimit(.minutes(1)))
        func anOriginThatStopsMidBodyIsACutNeverACleanEnd() throws {
            defer { stop() }
            let (result, body) = try download("/cut/3000000", to: "cut.bin")
            // curl 18: the transfer closed with bytes remaining.
            #expect(result.exitStatus == 18, "exit \(String(describing: result.exitStatus)): \(result.stderr)")
            #expect(body.count < 3_000_000)
            #expect(sameBytes(body, expectedBody(body.count)), "what arrived is the origin's bytes")
            let (next, nextBody) = try download("/whole/200000", to: "after-cut.bin")
            #expect(next.exitStatus == 0 && sameBytes(nextBody, expectedBody(200_000)), "\(nextBody.count) bytes")
        }

        @Test(.timeLimit(.minutes(1)))
        func aClientThatLeavesMidBodyDoesNotDisturbTheNext() throws {
            defer { stop() }
            let (gone, _) = try download("/whole/8388608", ["--limit-rate", "200K", "--max-time", "1"], to: "gone.bin")
            #expect(gone.exitStatus == 28, "curl gave up at its --max-time: \(gone.stderr)")
            for round in 0..<3 {
                let (result, body) = try download("/whole/600000", to: "next-\(round).bin")
                #expect(result.exitStatus == 0, "\(result.stderr)")
                #expect(sameBytes(body, expectedBody(600_000)), "\(body.count) bytes")
            }
        }
    }
}
