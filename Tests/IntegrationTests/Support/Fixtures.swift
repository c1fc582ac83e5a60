#if canImport(Glibc)
import Glibc
#endif
import Foundation

// A running proxy with its config files, and the backends behind it.

/// One instance line of a services file.
struct InstanceSpec {
    var port: UInt16
    var track: String? = nil
    var weight: Int? = nil
}

/// One service of a services file.
struct ServiceSpec {
    var name: String
    var active: String? = nil
    var instances: [InstanceSpec]
    /// Appended to the service's block as is, indented under it (e.g. "upstream: {protocol: h2c}").
    var extraYAML = ""
}

/// The YAML of a services file for the file provider.
func servicesYAML(_ services: [ServiceSpec]) -> String {
    var text = "services:\n"
    for service in services {
        text += "  \(service.name):\n"
        if let active = service.active { text += "    active: \(active)\n" }
        for line in service.extraYAML.split(separator: "\n") { text += "    \(line)\n" }
        if service.instances.isEmpty {
            text += "    instances: []\n"
            continue
        }
        text += "    instances:\n"
        for instance in service.instances {
            text += "      - address: 127.0.0.1\n        port: \(instance.port)\n"
            if let track = instance.track { text += "        track: \(track)\n" }
            if let weight = instance.weight { text += "        weight: \(weight)\n" }
        }
    }
    return text
}

/// One route of the proxy config.
struct RouteSpec {
    var host: String? = nil
    var path: String = "/"
    var service: String
}

/// The proxy's config, as the tests vary it.
struct ProxySpec {
    var routes: [RouteSpec] = [RouteSpec(service: "shop")]
    var workers = 2
    var timeouts: [String: String] = ["client_header": "2s", "upstream_response": "5s", "drain": "10s"]
    var limits: [String: String] = [:]
    /// Appended to the config as is (admin, state_store, ...).
    var extraYAML = ""
    /// YAML of the listener's `tls:` block (without the key), nil for plain HTTP.
    var tls: String? = nil

    var yaml: String {
        var text = """
        listeners:
          - name: web
            address: 127.0.0.1:0
            protocol: http

        """
        if let tls {
            text += "    tls:\n" + tls.split(separator: "\n").map { "      \($0)\n" }.joined()
        }
        text += "routes:\n"
        for route in routes {
            text += "  - path: \(route.path)\n"
            if let host = route.host { text += "    host: \(host)\n" }
            text += "    service: \(route.service)\n"
        }
        text += "discovery:\n  provider: file\n  file: services.yml\n"
        text += "workers: \(workers)\n"
        if !timeouts.isEmpty {
            text += "timeouts:\n" + timeouts.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)\n" }.joined()
        }
        if !limits.isEmpty {
            text += "limits:\n" + limits.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)\n" }.joined()
        }
        return text + extraYAML
    }
}

/// `switchyard run` on a config written to a scratch directory.
final class RunningProxy {
    let dir: ScratchDir
    let child: ChildProcess
    let port: UInt16

    init(_ spec: ProxySpec, services: [ServiceSpec], dir: ScratchDir) throws {
        self.dir = dir
        try dir.write("services.yml", servicesYAML(services))
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

    var pid: Int32 { child.pid }
    var url: String { "http://127.0.0.1:\(port)" }

    func stop() { child.stop() }

    /// Replaces the services file (by rename) and waits until the proxy logs the new table.
    func publish(_ services: [ServiceSpec]) throws {
        let before = child.stderrText.components(separatedBy: "published").count
        try dir.write("services.yml", servicesYAML(services))
        try waitFor("the proxy to publish a new routing table", timeout: .seconds(5)) {
            child.stderrText.components(separatedBy: "published").count > before
        }
    }
}

/// Runs `body` against a proxy (`spec`) in front of one demo backend, service `shop`, in a
/// new scratch directory; stops both after.
func withDemoProxy(_ label: String, spec: ProxySpec = ProxySpec(workers: 1), _ body: (RunningProxy) throws -> Void) throws {
    let dir = try ScratchDir(label)
    let backend = try Backend.demo("shop", dir: dir)
    defer { backend.stop() }
    let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
    defer { proxy.stop() }
    try body(proxy)
}

/// Starts `switchyard run` on `dir/switchyard.yml` (which must enable the admin listener on
/// port 0) and waits for both the proxy's and the admin listener's ports.
func startProxyWithAdmin(dir: ScratchDir) throws -> (child: ChildProcess, port: UInt16, adminPort: UInt16) {
    let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
    do {
        return (child, try child.waitForListeningPort(), try child.waitForAdminPort())
    } catch {
        child.stop()
        throw error
    }
}

/// A backend process: `switchyard backend` (the demo origin), or the Python recording
/// origin where a test needs to see every request the backend received.
final class Backend {
    let name: String
    let child: ChildProcess
    let port: UInt16
    /// The Python origin's log of request lines, one per request received.
    let requestLog: String?

    private init(name: String, child: ChildProcess, requestLog: String?) throws {
        self.name = name
        self.child = child
        self.requestLog = requestLog
        do {
            port = try child.waitForListeningPort()
        } catch {
            child.stop()
            throw error
        }
    }

    /// The demo origin: `switchyard backend --name NAME --port 0`.
    static func demo(_ name: String, dir: ScratchDir) throws -> Backend {
        let child = try ChildProcess(SwitchyardBinary.path, ["backend", "--name", name, "--port", "0"],
                                     dir: dir, label: "backend-\(name)")
        return try Backend(name: name, child: child, requestLog: nil)
    }

    /// The Python recording origin: answers `hello from NAME (PORT)` (and `/echo`; and
/// `/repeated-length` with Content-Length sent twice), and
    /// appends every request line it receives to a log the test can read (and every
    /// non-empty body to a file of its own, `receivedBodies`).
    static func recording(_ name: String, dir: ScratchDir) throws -> Backend {
        let script = dir.file("recording-origin.py")
        if !FileManager.default.fileExists(atPath: script) {
            try Data(recordingOriginSource.utf8).write(to: URL(fileURLWithPath: script))
        }
        let log = dir.file("requests-\(name).log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let child = try ChildProcess("/usr/bin/env", ["python3", script, name, log], dir: dir, label: "origin-\(name)")
        return try Backend(name: name, child: child, requestLog: log)
    }

    /// Request lines the recording origin has received so far.
    var receivedRequestLines: [String] {
        guard let requestLog, let text = try? String(contentsOfFile: requestLog, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// The request bodies the recording origin received (non-empty ones), with their request lines.
    var receivedBodies: [(line: String, body: Data)] {
        guard let requestLog, let text = try? String(contentsOfFile: requestLog + ".bodies", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { entry in
            let parts = entry.split(separator: "\t").map(String.init)
            guard parts.count == 2, let body = FileManager.default.contents(atPath: parts[1]) else { return nil }
            return (parts[0], body)
        }
    }

    var pid: Int32 { child.pid }
    func stop() { child.stop() }
}

/// A minimal keep-alive HTTP/1.1 origin that records request lines (argv: name, log path).
private let recordingOriginSource = #"""
import socket, socketserver, sys, threading

NAME, LOG = sys.argv[1], sys.argv[2]
lock = threading.Lock()
bodies = [0]

def record(line):
    with lock, open(LOG, "ab") as f:
        f.write(line + b"\n")

def record_body(line, body):
    # Each non-empty body to its own file, listed with its request line in LOG.bodies.
    with lock:
        bodies[0] += 1
        path = "%s.body-%d" % (LOG, bodies[0])
        with open(path, "wb") as f:
            f.write(body)
        with open(LOG + ".bodies", "ab") as f:
            f.write(line + b"\t" + path.encode() + b"\n")

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while self.exchange():
                pass
        except (OSError, ValueError):
            pass

    def body(self, headers):
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            data = b""
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline(8)
        return self.rfile.read(int(headers.get(b"content-length", b"0")))

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
        record(line.rstrip(b"\r\n"))
        method, target, version = line.split()
        body = self.body(headers)
        if body:
            record_body(line.rstrip(b"\r\n"), body)
        if target.startswith(b"/echo"):
            answer = body
        else:
            answer = b"hello from %s (%d)\n" % (NAME.encode(), self.server.server_address[1])
        # /repeated-length: the Content-Length field twice (identical), as some servers send it.
        length = b"Content-Length: %d\r\n" % len(answer)
        if target.startswith(b"/repeated-length"):
            length += length
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\n%s\r\n" % (NAME.encode(), length) + answer)
        return b"close" not in headers.get(b"connection", b"").lower()

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#
