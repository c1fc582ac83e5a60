#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

// TLS from Switchyard to its upstreams (a service's `upstream.tls`): a real HTTPS origin
// (Python's ssl module over OpenSSL) with a certificate from the test CA, reached through
// the real binary; wrong trust and wrong names answered 502 while other services serve.

/// An HTTPS origin: keep-alive HTTP/1.1 over TLS, one log line per TLS connection
/// (`connection N resumed=0|1`), answers naming the connection that carried them.
final class TLSOrigin {
    let child: ChildProcess
    let port: UInt16
    private let connectionLog: String
    private let requestLog: String

    init(_ name: String, certificate: String, key: String, dir: ScratchDir) throws {
        let script = dir.file("tls-origin.py")
        if !FileManager.default.fileExists(atPath: script) {
            try Data(tlsOriginSource.utf8).write(to: URL(fileURLWithPath: script))
        }
        connectionLog = dir.file("connections-\(name).log")
        requestLog = dir.file("requests-tls-origin-\(name).log")
        _ = FileManager.default.createFile(atPath: connectionLog, contents: nil)
        child = try ChildProcess("/usr/bin/env", ["python3", script, name, certificate, key, connectionLog],
                                 dir: dir, label: "tls-origin-\(name)")
        do {
            port = try child.waitForListeningPort()
        } catch {
            child.stop()
            throw error
        }
    }

    /// TLS connections accepted (handshakes done) so far, and how many were resumed.
    var connections: (total: Int, resumed: Int) {
        let lines = ((try? String(contentsOfFile: connectionLog, encoding: .utf8)) ?? "").split(separator: "\n")
        return (lines.count, lines.filter { $0.hasSuffix("resumed=1") }.count)
    }

    /// An origin for `name` with a certificate from a fresh test CA, in a new scratch
    /// directory.
    static func signed(_ label: String, name: String = "api.internal") throws -> (ScratchDir, TestCertificates, TLSOrigin) {
        let dir = try ScratchDir(label)
        let pki = try TestCertificates()
        let leaf = try pki.issue(file: "leaf", names: [name])
        return (dir, pki, try TLSOrigin("leaf", certificate: leaf.certificate, key: leaf.key, dir: dir))
    }

    /// Request lines the origin received (checks included).
    var requestLines: Set<String> { Set(requests) }

    /// Requests the origin received so far.
    var requestCount: Int { requests.count }

    private var requests: [String] {
        let text = (try? String(contentsOfFile: requestLog, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    func stop() { child.stop() }
}

/// `switchyard run` (one worker, so one pool) with the admin listener, on a services file
/// the test writes as text.
final class UpstreamTLSProxy {
    let dir: ScratchDir
    let child: ChildProcess
    let port: UInt16
    let adminPort: UInt16

    init(services: String, routes: [RouteSpec], dir: ScratchDir) throws {
        self.dir = dir
        try dir.write("services.yml", services)
        try dir.write("switchyard.yml", ProxySpec(routes: routes, workers: 1).yaml + "admin:\n  address: 127.0.0.1:0\n")
        (child, port, adminPort) = try startProxyWithAdmin(dir: dir)
    }

    var log: String { child.stderrText }
    func stop() { child.stop() }

    /// `count` requests for `path` on one keep-alive client connection.
    func get(_ path: String, count: Int = 1) throws -> [WireResponse] {
        let connection = try RawConnection(port: port)
        var responses: [WireResponse] = []
        for _ in 0..<count {
            try connection.send("GET \(path) HTTP/1.1\r\nHost: shop\r\n\r\n")
            responses.append(try connection.readResponse(timeout: .seconds(10)))
        }
        return responses
    }

    /// A sample's value on the admin listener's /metrics (0 when absent).
    func metric(_ line: String) throws -> Double {
        let scrape = try curl("http://127.0.0.1:\(adminPort)/metrics", dir: dir)
        let found = scrape.body.split(separator: "\n").first { $0.hasPrefix(line + " ") }
        return found.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }
}

/// The `tls:` value that trusts `pki`'s CA for api.internal.
func trusting(_ pki: TestCertificates) -> String { "{ca_file: \(pki.caFile), server_name: api.internal}" }

/// A services-file entry: one instance at 127.0.0.1:`port` reached over TLS.
func tlsService(_ name: String, port: UInt16, tls: String, health: String? = nil) -> String {
    var text = "  \(name):\n    upstream:\n      tls: \(tls)\n"
    text += "    health:\n" + (health ?? "      type: none\n      consecutive_failures: 0\n")
    return text + "    instances:\n      - {address: 127.0.0.1, port: \(port)}\n"
}

extension Integration {
    @Suite struct UpstreamTLS {
        @Test(.timeLimit(.minutes(1)))
        func requestsReachAVerifiedTLSOriginAndShareOneUpstreamConnection() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-keepalive")
            defer { origin.stop() }
            let services = "services:\n" + tlsService("shop", port: origin.port, tls: trusting(pki))
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(service: "shop")], dir: dir)
            defer { proxy.stop() }

            let responses = try proxy.get("/", count: 5) + proxy.get("/", count: 5)
            #expect(responses.map(\.status) == Array(repeating: 200, count: 10), "\(proxy.log.suffix(1500))")
            #expect(responses.allSatisfy { $0.bodyText.hasPrefix("hello from leaf") })
            // Two client connections, one after the other: both served by one pooled
            // upstream connection, so one handshake.
            #expect(Set(responses.compactMap { $0.header("x-connection") }) == ["1"])
            #expect(origin.connections.total == 1)
            #expect(try proxy.metric("switchyard_upstream_tls_handshakes_total{result=\"full\"}") == 1)
            #expect(try proxy.metric("switchyard_upstream_tls_handshakes_total{result=\"failed\"}") == 0)
        }

        @Test(.timeLimit(.minutes(1)))
        func http2ClientStreamsReachTheTLSOriginOverPooledHTTP1Connections() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-h2c")
            defer { origin.stop() }
            let services = "services:\n" + tlsService("shop", port: origin.port, tls: trusting(pki))
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(service: "shop")], dir: dir)
            defer { proxy.stop() }
            // One stream per client connection (curl's h2c reuse is not what this is about):
            // the streams' exchanges share one pooled upstream TLS connection.
            for _ in 0..<3 {
                let result = try curl("http://127.0.0.1:\(proxy.port)/", ["--http2-prior-knowledge"], extra: ["%{http_version}"], dir: dir)
                #expect(result.httpStatus == 200, "\(result.stderr) \(proxy.log.suffix(1500))")
                #expect(result.written.first == "2")
                #expect(result.body.hasPrefix("hello from leaf"))
            }
            #expect(origin.requestCount == 3)
            #expect(origin.connections.total == 1)
        }

        @Test(.timeLimit(.minutes(1)))
        func aNewConnectionToTheSameEndpointResumesTheTLSSession() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-resume")
            defer { origin.stop() }
            let services = "services:\n" + tlsService("shop", port: origin.port, tls: trusting(pki))
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(service: "shop")], dir: dir)
            defer { proxy.stop() }

            // The origin closes after /close: the request after it needs a new connection,
            // which offers the session of the first.
            let statuses = try proxy.get("/", count: 1) + proxy.get("/close", count: 1) + proxy.get("/", count: 1)
            #expect(statuses.map(\.status) == [200, 200, 200], "\(proxy.log.suffix(1500))")
            #expect(statuses.compactMap { $0.header("x-connection") } == ["1", "1", "2"])
            #expect(origin.connections.total == 2)
            #expect(origin.connections.resumed == 1, "the second handshake resumed the first's session")
            #expect(try proxy.metric("switchyard_upstream_tls_handshakes_total{result=\"resumed\"}") == 1)
        }

        @Test(.timeLimit(.minutes(1)))
        func largeBodiesBothWaysCrossTheTLSConnectionIntact() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-bodies", name: "127.0.0.1")
            defer { origin.stop() }
            // No server_name: the endpoint's IP address is verified against the certificate.
            let services = "services:\n" + tlsService("shop", port: origin.port, tls: "{ca_file: \(pki.caFile)}")
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(service: "shop")], dir: dir)
            defer { proxy.stop() }

            // 4 MiB down: far more than a buffer, so OpenSSL holds decrypted bytes while
            // the client is slower than the origin.
            let big = try curl("http://127.0.0.1:\(proxy.port)/big/4194304", ["--limit-rate", "8M"], extra: ["%{size_download}"], dir: dir)
            #expect(big.httpStatus == 200, "\(proxy.log.suffix(1500))")
            #expect(big.written.first == "4194304")
            let upload = dir.file("upload.txt")
            let sent = String((0..<(3 << 20)).map { Character(Unicode.Scalar(UInt8(97 + $0 % 26))) })
            try dir.write("upload.txt", sent)
            let echoed = try curl("http://127.0.0.1:\(proxy.port)/echo", ["--data-binary", "@\(upload)"], dir: dir)
            #expect(echoed.httpStatus == 200)
            #expect(echoed.body.count == sent.count)
            #expect(echoed.body == sent, "\(proxy.log.suffix(1500))")
        }

        @Test(.timeLimit(.minutes(1)))
        func aWrongCAOrServerNameIs502WithTheReasonLoggedOnceAndOtherServicesServe() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-refused")
            let strangers = try TestCertificates()
            defer { origin.stop() }
            let services = "services:\n"
                + tlsService("good", port: origin.port, tls: trusting(pki))
                + tlsService("strangerca", port: origin.port, tls: "{ca_file: \(strangers.caFile), server_name: api.internal}")
                + tlsService("othername", port: origin.port, tls: "{ca_file: \(pki.caFile), server_name: other.internal}")
            let routes = [RouteSpec(path: "/good", service: "good"), RouteSpec(path: "/ca", service: "strangerca"),
                          RouteSpec(path: "/name", service: "othername")]
            let proxy = try UpstreamTLSProxy(services: services, routes: routes, dir: dir)
            defer { proxy.stop() }

            for _ in 0..<3 {
                #expect(try proxy.get("/ca").map(\.status) == [502])
                #expect(try proxy.get("/name").map(\.status) == [502])
                #expect(try proxy.get("/good").map(\.status) == [200])
            }
            let verifyFailures = proxy.log.split(separator: "\n").filter { $0.contains("TLS handshake with") && $0.contains("certificate verify failed") }
            #expect(verifyFailures.count == 2, "one line per refusing endpoint, not per request: \(verifyFailures)")
            #expect(verifyFailures.contains { $0.contains("strangerca/") && $0.contains("unable to get local issuer certificate") })
            #expect(verifyFailures.contains { $0.contains("othername/") && $0.contains("hostname mismatch") })
            // Each refused request tried the (only) endpoint up to three times, as for a refused connect.
            #expect(try proxy.metric("switchyard_upstream_tls_handshakes_total{result=\"failed\"}") >= 6)
            #expect(try proxy.metric("switchyard_upstream_tls_handshakes_total{result=\"full\"}") == 1)
        }

        @Test(.timeLimit(.minutes(1)))
        func verifyFalseAcceptsASelfSignedOrigin() throws {
            let dir = try ScratchDir("upstream-tls-noverify")
            let pki = try TestCertificates()
            // The CA's own certificate: self-signed, and for no name the proxy dials.
            let origin = try TLSOrigin("self", certificate: pki.caFile, key: pki.directory.file("ca.key"), dir: dir)
            defer { origin.stop() }
            let services = "services:\n"
                + tlsService("lax", port: origin.port, tls: "{verify: false}")
                + tlsService("strict", port: origin.port, tls: "true")
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(path: "/lax", service: "lax"),
                                                                          RouteSpec(path: "/strict", service: "strict")], dir: dir)
            defer { proxy.stop() }
            #expect(try proxy.get("/lax", count: 3).map(\.status) == [200, 200, 200], "\(proxy.log.suffix(1500))")
            #expect(try proxy.get("/strict").map(\.status) == [502], "the system store does not trust it")
        }

        @Test(.timeLimit(.minutes(1)))
        func aCAFileThatDoesNotLoadIsNamedAndTheServiceGets502() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-badca")
            defer { origin.stop() }
            try dir.write("garbage.pem", "not a certificate\n")
            let services = "services:\n"
                + tlsService("good", port: origin.port, tls: trusting(pki))
                + tlsService("broken", port: origin.port, tls: "{ca_file: \(dir.file("garbage.pem")), server_name: api.internal}")
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(path: "/good", service: "good"),
                                                                          RouteSpec(path: "/broken", service: "broken")], dir: dir)
            defer { proxy.stop() }
            #expect(try proxy.get("/broken").map(\.status) == [502])
            #expect(try proxy.get("/good").map(\.status) == [200])
            #expect(proxy.log.contains("service broken: upstream TLS: ca_file \(dir.file("garbage.pem")) does not load"), "\(proxy.log.suffix(1500))")
        }

        @Test(.timeLimit(.minutes(1)))
        func aServiceWhoseNewCAFileDoesNotLoadKeepsServingWithTheCAItHad() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-keepca")
            defer { origin.stop() }
            let proxy = try UpstreamTLSProxy(services: "services:\n" + tlsService("shop", port: origin.port, tls: trusting(pki)),
                                             routes: [RouteSpec(service: "shop")], dir: dir)
            defer { proxy.stop() }
            #expect(try proxy.get("/").map(\.status) == [200])

            try dir.write("garbage.pem", "not a certificate\n")
            let broken = "{ca_file: \(dir.file("garbage.pem")), server_name: api.internal}"
            let before = proxy.log.components(separatedBy: "published (discovery)").count
            try dir.write("services.yml", "services:\n" + tlsService("shop", port: origin.port, tls: broken))
            try waitFor("the proxy to publish the rewritten services file", timeout: .seconds(5)) {
                proxy.log.components(separatedBy: "published (discovery)").count > before
            }
            #expect(proxy.log.contains("service shop: upstream TLS: ca_file \(dir.file("garbage.pem")) does not load"))
            #expect(proxy.log.contains("the previous CA keeps serving"))
            #expect(try proxy.get("/", count: 3).map(\.status) == [200, 200, 200], "\(proxy.log.suffix(1500))")
        }

        @Test(.timeLimit(.minutes(1)))
        func healthChecksSpeakTLSAndAnUntrustedOriginIsUnhealthy() throws {
            let (dir, pki, origin) = try TLSOrigin.signed("upstream-tls-health")
            let strangers = try TestCertificates()
            defer { origin.stop() }
            let check = "      type: http\n      path: /healthz\n      interval: 200ms\n      timeout: 150ms\n      rise: 1\n      fall: 1\n"
            let services = "services:\n"
                + tlsService("good", port: origin.port, tls: trusting(pki), health: check)
                + tlsService("strangerca", port: origin.port, tls: "{ca_file: \(strangers.caFile), server_name: api.internal}", health: check)
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(path: "/good", service: "good"),
                                                                          RouteSpec(path: "/ca", service: "strangerca")], dir: dir)
            defer { proxy.stop() }
            try waitFor("the untrusted endpoint to be marked unhealthy", timeout: .seconds(10)) {
                proxy.log.contains("strangerca/127.0.0.1:\(origin.port) is unhealthy: TLS handshake")
            }
            #expect(proxy.log.contains("certificate verify failed"))
            #expect(!proxy.log.contains("good/127.0.0.1:\(origin.port) is unhealthy"), "\(proxy.log.suffix(1500))")
            #expect(try proxy.get("/good").map(\.status) == [200])
            #expect(try proxy.get("/ca").first?.status != 200)
            #expect(origin.requestLines.contains("GET /healthz HTTP/1.1"), "the check reached the origin over TLS")
        }
    }
}

/// The HTTPS origin (argv: name, certificate, key, connection log). Each TLS connection is
/// handshaken in its own thread; requests are logged to `requests-<label>.log` beside it.
private let tlsOriginSource = #"""
import os, socket, socketserver, ssl, sys, threading

NAME, CERT, KEY, LOG = sys.argv[1:5]
REQUESTS = os.path.join(os.path.dirname(LOG), "requests-tls-origin-%s.log" % NAME)
lock = threading.Lock()
count = [0]

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
context.set_alpn_protocols(["http/1.1"])

def append(path, line):
    with lock, open(path, "a") as f:
        f.write(line + "\n")

class Handler(socketserver.StreamRequestHandler):
    def setup(self):
        self.request = context.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
        self.request.settimeout(30)
        self.connection = self.request
        self.request.do_handshake()
        with lock:
            count[0] += 1
            self.number = count[0]
        append(LOG, "connection %d resumed=%d" % (self.number, 1 if self.request.session_reused else 0))
        super().setup()

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
        append(REQUESTS, line.rstrip(b"\r\n").decode())
        method, target, version = line.split()
        body = self.rfile.read(int(headers.get(b"content-length", b"0")))
        if target.startswith(b"/echo"):
            answer = body
        elif target.startswith(b"/big/"):
            answer = b"x" * int(target[5:])
        else:
            answer = b"hello from %s\n" % NAME.encode()
        close = target.startswith(b"/close") or b"close" in headers.get(b"connection", b"").lower()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Connection: %d\r\nContent-Length: %d\r\n%s\r\n"
                         % (self.number, len(answer), b"Connection: close\r\n" if close else b""))
        self.wfile.write(answer)
        self.wfile.flush()
        return not close

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass  # failed handshakes (untrusted clients) are expected in these tests

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#
