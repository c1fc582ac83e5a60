#if canImport(Glibc)
import Glibc
#endif
import Foundation

// Fixtures for the health, ejection, drain and balancing tests: a services file with a
// health section, a proxy whose services file the test writes as text, origins that fail
// or stall on purpose, a keep-alive client, and readers for the proxy's log.

// MARK: services.yml

/// The `shop` service with a health section, a balancer and per-instance drain flags.
struct ShopPool {
    var instances: [UInt16]
    var draining: Set<UInt16> = []
    var balancer: String? = nil
    var hashOn: String? = nil
    /// `health:` keys and values, written in this order.
    var health: [(String, String)] = []

    var yaml: String {
        var text = "services:\n  shop:\n"
        if let balancer { text += "    balancer: \(balancer)\n" }
        if let hashOn { text += "    hash_on: \"\(hashOn)\"\n" }
        if !health.isEmpty {
            text += "    health:\n" + health.map { "      \($0.0): \($0.1)\n" }.joined()
        }
        text += "    instances:\n"
        for port in instances {
            text += "      - {address: 127.0.0.1, port: \(port)\(draining.contains(port) ? ", drain: true" : "")}\n"
        }
        return text
    }
}

// MARK: The proxy

/// `switchyard run` with a services file the test writes as text.
final class PoolProxy {
    let dir: ScratchDir
    let child: ChildProcess
    let port: UInt16

    init(_ pool: ShopPool, spec: ProxySpec = ProxySpec(), dir: ScratchDir) throws {
        self.dir = dir
        try dir.write("services.yml", pool.yaml)
        try dir.write("switchyard.yml", spec.yaml)
        child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")],
                                 dir: dir, label: "proxy")
        do {
            port = try child.waitForListeningPort()
        } catch {
            child.stop()
            throw error
        }
    }

    var url: String { "http://127.0.0.1:\(port)" }
    var log: String { child.stderrText }
    func stop() { child.stop() }

    /// Rewrites services.yml (by rename) and waits until the proxy publishes a table for it.
    func publish(_ pool: ShopPool) throws {
        let marker = "published (discovery)"
        let before = log.components(separatedBy: marker).count
        try dir.write("services.yml", pool.yaml)
        try waitFor("the proxy to publish the rewritten services file", timeout: .seconds(5)) {
            log.components(separatedBy: marker).count > before
        }
    }

    /// Log lines containing `text`, with their timestamps.
    func logLines(containing text: String) -> [(at: Date, line: String)] {
        // The proxy's stamps: `2025-01-31T12:34:56.789Z`.
        let stamps = ISO8601DateFormatter()
        stamps.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return log.split(separator: "\n").compactMap { line in
            guard line.contains(text), let stamp = line.split(separator: " ").first,
                  let at = stamps.date(from: String(stamp)) else { return nil }
            return (at, String(line))
        }
    }

    /// The first log line containing `text` stamped at or after `since`.
    func firstLogLine(containing text: String, since: Date) -> (at: Date, line: String)? {
        logLines(containing: text).first { $0.at >= since.addingTimeInterval(-0.001) }
    }
}

/// Milliseconds from `start` to `end`.
func milliseconds(from start: Date, to end: Date) -> Int {
    Int((end.timeIntervalSince(start) * 1000).rounded())
}

// MARK: Backends

/// `switchyard backend` on a given port (to bring a killed backend back on its address).
func demoBackend(_ name: String, port: UInt16, dir: ScratchDir, label: String) throws -> ChildProcess {
    let child = try ChildProcess(SwitchyardBinary.path, ["backend", "--name", name, "--port", String(port)],
                                 dir: dir, label: label)
    do {
        _ = try child.waitForListeningPort()
    } catch {
        child.stop()
        throw error
    }
    return child
}

/// A Python origin that answers every request with a fixed status after a fixed delay and
/// counts what it received: the misbehaving backend the demo origin cannot be. With
/// `failEvery` N > 0, every Nth request is answered 500 instead.
final class ScriptedOrigin {
    let name: String
    let child: ChildProcess
    let port: UInt16
    private let requestLog: String

    init(_ name: String, status: Int = 200, delayMs: Int = 0, failEvery: Int = 0, dir: ScratchDir) throws {
        self.name = name
        let script = dir.file("scripted-origin.py")
        if !FileManager.default.fileExists(atPath: script) {
            try Data(scriptedOriginSource.utf8).write(to: URL(fileURLWithPath: script))
        }
        requestLog = dir.file("hits-\(name).log")
        _ = FileManager.default.createFile(atPath: requestLog, contents: nil)
        child = try ChildProcess("/usr/bin/env", ["python3", script, name, requestLog, String(status), String(delayMs), String(failEvery)],
                                 dir: dir, label: "origin-\(name)")
        do {
            port = try child.waitForListeningPort()
        } catch {
            child.stop()
            throw error
        }
    }

    /// Requests received so far (one line each in the origin's log).
    var hits: Int {
        (try? String(contentsOfFile: requestLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
    }

    func stop() { child.stop() }
}

/// argv: name, log path, status, delay in ms, fail every Nth (0: never). Keep-alive HTTP/1.1; bodies by Content-Length.
private let scriptedOriginSource = #"""
import socketserver, sys, threading, time

NAME, LOG, STATUS, DELAY = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
FAIL_EVERY = int(sys.argv[5]) if len(sys.argv) > 5 else 0
served = [0]
lock = threading.Lock()
log = open(LOG, "ab", buffering=0)

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while self.exchange():
                pass
        except (OSError, ValueError):
            pass

    def exchange(self):
        line = self.rfile.readline(65536)
        if not line.strip():
            return False
        headers = {}
        while True:
            field = self.rfile.readline(65536)
            if field in (b"\r\n", b"\n", b""):
                break
            name, _, value = field.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self.rfile.read(int(headers.get(b"content-length", b"0")))
        with lock:
            log.write(line.rstrip(b"\r\n") + b"\n")
            served[0] += 1
            status = 500 if FAIL_EVERY and served[0] % FAIL_EVERY == 0 else STATUS
        if DELAY:
            time.sleep(DELAY / 1000)
        answer = b"hello from %s (%d)\n" % (NAME.encode(), self.server.server_address[1])
        self.wfile.write(b"HTTP/1.1 %d %s\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
                         % (status, b"OK" if status < 400 else b"Failing On Purpose", NAME.encode(), len(answer)) + answer)
        return b"close" not in headers.get(b"connection", b"").lower()

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#

// MARK: Clients

/// One keep-alive connection through the proxy, reopened when the proxy closes it.
final class KeepAliveClient {
    let port: UInt16
    private var connection: RawConnection?

    init(port: UInt16) { self.port = port }

    /// GET `path` with extra header lines (each ending in CRLF); the response.
    func get(_ path: String = "/", headers: String = "") throws -> WireResponse {
        if connection == nil { connection = try RawConnection(port: port) }
        do {
            try connection!.send("GET \(path) HTTP/1.1\r\nHost: shop.test\r\n\(headers)\r\n")
            let response = try connection!.readResponse()
            if response.header("Connection")?.lowercased() == "close" { connection = nil }
            return response
        } catch {
            connection = nil
            throw error
        }
    }

    /// The backend that answered a GET of `/`, or `status NNN` for an answer without one.
    func backend() throws -> String {
        let response = try get()
        return response.header("X-Backend") ?? "status \(response.status)"
    }

    /// Sends GETs one after another for `duration`; how many each backend answered.
    func tally(for duration: Duration) throws -> [String: Int] {
        let end = ContinuousClock.now + duration
        var counts: [String: Int] = [:]
        while ContinuousClock.now < end { counts[try backend(), default: 0] += 1 }
        return counts
    }
}
