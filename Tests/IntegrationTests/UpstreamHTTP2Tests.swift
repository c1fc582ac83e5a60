#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

// Upstream HTTP/2 (a service's `upstream.protocol: h2c` or `h2`) through the real binary:
// a real gRPC server (Python grpcio from PyPI, Tests/Fixtures/grpc_echo.py) for unary and
// streaming calls with their status, metadata and trailers; Debian's nginx as an h2c and
// h2-over-TLS origin (in front of the demo backend) for HTTP semantics, multiplexing and
// its GOAWAY every 1000 requests.

/// The gRPC fixture server (plain, or TLS with `certificate`/`key`); with `health`, its
/// grpc.health.v1 answers come from that status file (Tests/Fixtures/grpc_echo.py).
final class GRPCServer {
    let child: ChildProcess
    let port: UInt16

    init(dir: ScratchDir, tls: (certificate: String, key: String)? = nil, health: String? = nil) throws {
        var arguments = ["server"]
        if let tls { arguments += ["--tls", tls.certificate, tls.key] }
        if let health { arguments += ["--health", health] }
        (child, port) = try startFixtureServer("grpc_echo.py", arguments, dir: dir, label: "grpc-server")
    }

    func stop() { child.stop() }
}

/// Starts a Python server from Tests/Fixtures and waits for its "listening" line; stopped
/// (by its PID) if it never prints one.
func startFixtureServer(_ script: String, _ arguments: [String], dir: ScratchDir, label: String) throws -> (ChildProcess, UInt16) {
    let child = try ChildProcess("/usr/bin/env", ["python3", SwitchyardBinary.repositoryRoot + "/Tests/Fixtures/" + script] + arguments,
                                 dir: dir, label: label)
    do {
        return (child, try child.waitForListeningPort(timeout: .seconds(20)))
    } catch {
        child.stop()
        throw error
    }
}

/// Runs the fixture's client against `target`; its JSON report.
func runGRPCClient(_ target: String, dir: ScratchDir, ca: String? = nil, authority: String? = nil) throws -> [String: Any] {
    var arguments = [SwitchyardBinary.repositoryRoot + "/Tests/Fixtures/grpc_echo.py", "client", target]
    if let ca { arguments += ["--ca", ca] }
    if let authority { arguments += ["--authority", authority] }
    let result = try runCommand("/usr/bin/env", ["python3"] + arguments, dir: dir, label: "grpc-client", timeout: .seconds(60))
    guard result.status == 0, let data = result.stdout.data(using: .utf8),
          let report = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw HarnessError("gRPC client failed (\(result.status.map(String.init) ?? "timeout")): \(result.stderr.suffix(3000))")
    }
    return report
}

/// nginx (Debian's nginx-light, which has the HTTP/2 module) serving HTTP/2 with prior
/// knowledge, or over TLS with ALPN, in front of the demo backend at `originPort`. Its
/// access log names the connection of every request.
final class H2Nginx {
    let prefix: String
    let port: UInt16
    let child: ChildProcess

    init(dir: ScratchDir, originPort: UInt16, tls: (certificate: String, key: String)? = nil) throws {
        prefix = dir.file("h2-nginx")
        port = try closedPort()
        for sub in ["conf", "logs", "tmp"] {
            try FileManager.default.createDirectory(atPath: "\(prefix)/\(sub)", withIntermediateDirectories: true)
        }
        let listen = tls == nil ? "listen 127.0.0.1:\(port) http2;"
            : "listen 127.0.0.1:\(port) ssl http2; ssl_certificate \(tls!.certificate); ssl_certificate_key \(tls!.key);"
        let config = """
            user root;
            worker_processes 1;
            pid logs/nginx.pid;
            error_log logs/error.log info;
            events { worker_connections 512; }
            http {
                log_format conn '$connection $request_method $uri $status';
                access_log logs/access.log conn;
                client_body_temp_path tmp/body;
                proxy_temp_path tmp/proxy;
                client_max_body_size 0;
                server {
                    \(listen)
                    location = /nginx-404 { return 404 "nope\\n"; }
                    location / {
                        proxy_pass http://127.0.0.1:\(originPort);
                        proxy_http_version 1.1;
                        proxy_request_buffering off;
                        proxy_buffering off;
                    }
                }
            }

            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: "\(prefix)/conf/nginx.conf"))
        child = try ChildProcess("/usr/sbin/nginx", ["-p", prefix + "/", "-c", "conf/nginx.conf", "-g", "daemon off;"], dir: dir, label: "h2-nginx")
        let prefix = self.prefix
        try waitFor("nginx to write its pid file", timeout: .seconds(10)) { [child] in
            guard child.isRunning else { throw HarnessError("nginx exited: \(child.stderrText)") }
            return FileManager.default.fileExists(atPath: "\(prefix)/logs/nginx.pid")
        }
    }

    /// (connection, method, path, status) of every request nginx logged.
    var requests: [(connection: String, method: String, path: String, status: String)] {
        let text = (try? String(contentsOfFile: "\(prefix)/logs/access.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ").map(String.init)
            return parts.count == 4 ? (parts[0], parts[1], parts[2], parts[3]) : nil
        }
    }

    func stop() {
        child.signal(SIGQUIT)
        if child.waitExit(timeout: .seconds(5)) == nil { child.stop() }
    }
}

/// An h2c origin with scripted answers (Tests/Fixtures/h2_origin.py, Python's h2 as a
/// server): interim heads, many fields, bodies without a length, trailers, empty values.
final class ScriptedH2Origin {
    let child: ChildProcess
    let port: UInt16

    init(dir: ScratchDir) throws {
        (child, port) = try startFixtureServer("h2_origin.py", [], dir: dir, label: "h2-origin")
    }

    func stop() { child.stop() }
}

/// The demo backend behind an h2c nginx behind Switchyard (one worker), the service saying
/// `upstream: {protocol: h2c}`; optionally with a first instance where nothing listens.
struct H2cChain {
    let backend: Backend
    let nginx: H2Nginx
    let proxy: RunningProxy

    init(dir: ScratchDir, deadInstance: Bool = false) throws {
        backend = try Backend.demo("behind-nginx", dir: dir)
        do {
            nginx = try H2Nginx(dir: dir, originPort: backend.port)
            let instances: [InstanceSpec] = (deadInstance ? [.init(port: try closedPort())] : []) + [.init(port: nginx.port)]
            do {
                proxy = try RunningProxy(ProxySpec(workers: 1), services: [
                    ServiceSpec(name: "shop", instances: instances, extraYAML: "upstream: {protocol: h2c}"),
                ], dir: dir)
            } catch {
                nginx.stop()
                throw error
            }
        } catch {
            backend.stop()
            throw error
        }
    }

    func stop() {
        proxy.stop()
        nginx.stop()
        backend.stop()
    }
}

extension Integration {
    @Suite struct UpstreamHTTP2 {
        // MARK: gRPC

        private func expectCallsWorked(_ report: [String: Any]) {
            #expect(report["unary"] as? String == "hello")
            #expect(report["initial"] as? String == "i1", "initial metadata")
            #expect(report["trailer"] as? String == "t1", "trailing metadata")
            #expect(report["unary_1mib_intact"] as? Bool == true)
            #expect(report["error"] as? String == "NOT_FOUND:no such item", "status and message")
            #expect(report["error_trailer"] as? String == "t1", "trailers of a failed call")
            #expect(report["server_stream"] as? [Int] == [100, 100_000])
            #expect(report["client_stream"] as? String == "50:250000")
            #expect(report["bidi"] as? [String] == (0..<20).map { "m\($0)" })
            #expect(report["pingpong_rounds"] as? Int == 10, "bidi streams both ways without buffering")
            #expect(report["concurrent_ok"] as? Int == 200)
        }

        @Test(.timeLimit(.minutes(2)))
        func grpcUnaryAndStreamingCallsKeepTheirStatusMetadataAndTrailers() throws {
            let dir = try ScratchDir("grpc-h2c")
            let server = try GRPCServer(dir: dir)
            defer { server.stop() }
            let proxy = try RunningProxy(ProxySpec(routes: [RouteSpec(service: "echo")]), services: [
                ServiceSpec(name: "echo", instances: [.init(port: server.port)], extraYAML: "upstream: {protocol: h2c}\nhealth: {type: tcp, interval: 1s}"),
            ], dir: dir)
            defer { proxy.stop() }
            expectCallsWorked(try runGRPCClient("127.0.0.1:\(proxy.port)", dir: dir))
        }

        @Test(.timeLimit(.minutes(2)))
        func grpcOverATLSListenerToATLSUpstreamVerifiedByItsCA() throws {
            let dir = try ScratchDir("grpc-tls")
            let pki = try TestCertificates()
            let upstreamLeaf = try pki.issue(file: "grpc-upstream", names: ["grpc.internal"])
            let server = try GRPCServer(dir: dir, tls: (upstreamLeaf.certificate, upstreamLeaf.key))
            defer { server.stop() }
            var spec = ProxySpec(routes: [RouteSpec(service: "echo")])
            spec.tls = "certificates:\n  - {cert: \(pki.a.certificate), key: \(pki.a.key)}"
            let proxy = try RunningProxy(spec, services: [
                ServiceSpec(name: "echo", instances: [.init(port: server.port)],
                            extraYAML: "upstream: {protocol: h2, tls: {ca_file: \(pki.caFile), server_name: grpc.internal}}"),
            ], dir: dir)
            defer { proxy.stop() }
            expectCallsWorked(try runGRPCClient("127.0.0.1:\(proxy.port)", dir: dir, ca: pki.caFile, authority: "a.test"))
        }

        @Test(.timeLimit(.minutes(1)))
        func anUpstreamWhoseCertificateNamesAnotherHostIsRefusedAndSaysWhy() throws {
            let dir = try ScratchDir("grpc-tls-wrong-name")
            let pki = try TestCertificates()
            let leaf = try pki.issue(file: "grpc-upstream", names: ["other.internal"])
            let server = try GRPCServer(dir: dir, tls: (leaf.certificate, leaf.key))
            defer { server.stop() }
            let proxy = try RunningProxy(ProxySpec(routes: [RouteSpec(service: "echo")]), services: [
                ServiceSpec(name: "echo", instances: [.init(port: server.port)],
                            extraYAML: "upstream: {protocol: h2, tls: {ca_file: \(pki.caFile), server_name: grpc.internal}}"),
            ], dir: dir)
            defer { proxy.stop() }
            let result = try curl(proxy.url + "/echo.Echo/Unary", ["--http2-prior-knowledge", "-X", "POST"], dir: dir)
            #expect(result.httpStatus == 502)
            try waitFor("the verification failure in the log", timeout: .seconds(5)) {
                proxy.child.stderrText.contains("TLS handshake with") && proxy.child.stderrText.contains("failed")
            }
        }

        // MARK: HTTP through an h2c origin

        @Test(.timeLimit(.minutes(2)))
        func http1AndHTTP2ClientsReachAnH2cOriginWithBodiesBothWays() throws {
            let dir = try ScratchDir("h2c-origin")
            let chain = try H2cChain(dir: dir)
            defer { chain.stop() }
            let proxy = chain.proxy

            let get = try curl(proxy.url + "/hello", dir: dir)
            #expect(get.httpStatus == 200 && get.body.hasPrefix("hello from behind-nginx"), "\(get.stderr)")
            #expect(try curl(proxy.url + "/nginx-404", dir: dir).httpStatus == 404)
            let head = try curl(proxy.url + "/size/1000", ["-I"], dir: dir)
            #expect(head.httpStatus == 200 && head.body.lowercased().contains("content-length: 1000"))

            let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try Data(payload).write(to: URL(fileURLWithPath: dir.file("payload.bin")))
            for flag in ["--http1.1", "--http2-prior-knowledge"] {
                let post = try runCommand("/usr/bin/curl", ["-sS", flag, "--data-binary", "@" + dir.file("payload.bin"),
                                                            "-o", dir.file("echoed.bin"), "-w", "%{http_code}", proxy.url + "/echo"],
                                          dir: dir, label: "post")
                #expect(post.stdout == "200", "\(flag): \(post.stderr)")
                #expect((try? Data(contentsOf: URL(fileURLWithPath: dir.file("echoed.bin")))) == Data(payload), "\(flag)")
                // Unknown length: chunked from an HTTP/1.1 client, DATA without length from h2.
                let upload = try runCommand("/bin/sh", ["-c", "head -c 2000000 /dev/zero | curl -sS \(flag) -T - -o /dev/null -w '%{http_code} %{size_download}' \(proxy.url)/echo"],
                                            dir: dir, label: "upload")
                #expect(upload.stdout == "200 2000000", "\(flag): \(upload.stderr)")
                let big = try curl(proxy.url + "/size/30000000", [flag, "-o", "/dev/null"], extra: ["%{size_download}"], dir: dir)
                #expect(big.httpStatus == 200 && big.written.first == "30000000", "\(flag)")
                let chunked = try curl(proxy.url + "/chunked/1000000", [flag, "-o", "/dev/null"], extra: ["%{size_download}"], dir: dir)
                #expect(chunked.httpStatus == 200 && chunked.written.first == "1000000", "\(flag)")
            }
        }

        @Test(.timeLimit(.minutes(2)))
        func streamsMultiplexOnOneConnectionAndGOAWAYedStreamsAreReplayed() throws {
            let dir = try ScratchDir("h2c-multiplex")
            let chain = try H2cChain(dir: dir)
            defer { chain.stop() }
            let (nginx, proxy) = (chain.nginx, chain.proxy)

            // Eight slow requests from eight HTTP/1.1 clients at once: one upstream connection.
            let started = ContinuousClock.now
            let clients = try (0..<8).map { n in
                try ChildProcess("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(proxy.url)/slow?ms=400&n=\(n)"],
                                 dir: dir, label: "slow-\(n)")
            }
            defer { clients.forEach { $0.stop() } }
            for client in clients { #expect(client.waitExit(timeout: .seconds(10)) == 0) }
            #expect(clients.filter { $0.stdoutText == "200" }.count == 8)
            #expect(ContinuousClock.now - started < .milliseconds(2_500))
            let slowConnections = Set(nginx.requests.filter { $0.path == "/slow" }.map(\.connection))
            #expect(slowConnections.count == 1, "\(slowConnections)")

            // nginx ends a connection with GOAWAY after 1000 requests (keepalive_requests):
            // the streams it refuses are replayed on a new connection; none fails.
            let load = try runCommand("/usr/bin/h2load", ["-n", "4000", "-c", "4", "-m", "10", proxy.url + "/hello"],
                                      dir: dir, label: "h2load", timeout: .seconds(60))
            #expect(load.stdout.contains("4000 succeeded, 0 failed"), "\(load.stdout.suffix(800))")
            let loadConnections = Set(nginx.requests.filter { $0.path == "/hello" }.map(\.connection))
            #expect(loadConnections.count >= 4 && loadConnections.count <= 12, "\(loadConnections.count) upstream connections")
            #expect(nginx.requests.filter { $0.path == "/hello" }.count == 4000)
        }

        /// Response heads from an HTTP/2 origin reach the client without being parsed again
        /// (laid out with their spans): each shape of head, to HTTP/1.1 and to HTTP/2 clients,
        /// means what it meant; a head with more fields than `limits.max_headers` is refused
        /// with 502 as an HTTP/1.1 one would be, and the proxy goes on.
        @Test(.timeLimit(.minutes(2)))
        func everyShapeOfAnHTTP2ResponseHeadIsRelayedAsItWasSent() throws {
            let dir = try ScratchDir("h2c-heads")
            let origin = try ScriptedH2Origin(dir: dir)
            defer { origin.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1), services: [
                ServiceSpec(name: "shop", instances: [.init(port: origin.port)], extraYAML: "upstream: {protocol: h2c}"),
            ], dir: dir)
            defer { proxy.stop() }

            // HTTP/1.1, one keep-alive connection for the well-formed heads.
            let connection = try RawConnection(port: proxy.port)
            func get(_ path: String) throws -> WireResponse {
                try connection.send("GET \(path) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                return try connection.readResponse()
            }
            let hints = try get("/early-hints")
            #expect(hints.interim == [103] && hints.status == 200 && hints.bodyText == "ok", "\(hints)")
            #expect(hints.header("x-origin") == "h2-origin")
            let fields = try get("/fields/60")
            #expect(fields.status == 200 && fields.header("x-f-0") == "v0" && fields.header("x-f-59") == "v59" && fields.bodyText == "ok")
            let unframed = try get("/no-length")
            #expect(unframed.status == 200 && unframed.bodyText == "abcdef"
                    && unframed.header("transfer-encoding")?.lowercased() == "chunked", "\(unframed)")
            let empty = try get("/empty-value")
            #expect(empty.status == 200 && empty.header("x-empty") == "" && empty.body.isEmpty, "\(empty)")
            let noContent = try get("/no-content")
            #expect(noContent.status == 204 && noContent.header("x-origin") == "h2-origin")
            let trailers = try get("/trailers")
            #expect(trailers.status == 200 && trailers.bodyText == "abc")
            let after = try get("/after")
            #expect(after.status == 200 && after.bodyText == "path=/after")

            // Too many fields: 502, as from an HTTP/1.1 origin; the proxy serves on.
            let crowded = try rawExchange(port: proxy.port, "GET /fields/150 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            #expect(crowded.status == 502, "\(crowded)")
            #expect(try curl(proxy.url + "/still-here", dir: dir).body == "path=/still-here")

            // HTTP/2 clients: after an interim head, trailers, an unframed body, the refusal.
            let report = try runH2Exchanges(port: proxy.port, [[
                H2Request("hints", "/early-hints"),
                H2Request("trailers", "/trailers"),
                H2Request("unframed", "/no-length"),
                H2Request("crowded", "/fields/150"),
                H2Request("fields", "/fields/60"),
            ]], dir: dir)
            let h2Hints = try report["hints"]
            // Interim heads are not relayed to HTTP/2 clients (H2Responses.swift): the final one is.
            #expect(h2Hints.statusCode == 200 && h2Hints.informational.isEmpty && h2Hints.bodyText == "ok", "\(h2Hints)")
            let h2Trailers = try report["trailers"]
            #expect(h2Trailers.statusCode == 200 && h2Trailers.bodyText == "abc" && h2Trailers.trailer("x-checksum") == "7", "\(h2Trailers)")
            let h2Unframed = try report["unframed"]
            #expect(h2Unframed.statusCode == 200 && h2Unframed.bodyText == "abcdef" && h2Unframed.ended)
            #expect(try report["crowded"].statusCode == 502)
            let h2Fields = try report["fields"]
            #expect(h2Fields.statusCode == 200 && h2Fields.header("x-f-59") == "v59")
            #expect(proxy.child.isRunning)
        }

        @Test(.timeLimit(.minutes(1)))
        func aDeadEndpointIsSkippedAndAnOriginThatVanishesGets502() throws {
            let dir = try ScratchDir("h2c-failures")
            let chain = try H2cChain(dir: dir, deadInstance: true)
            defer { chain.stop() }
            let (nginx, proxy) = (chain.nginx, chain.proxy)
            for _ in 0..<6 {
                let result = try curl(proxy.url + "/hello", dir: dir)
                #expect(result.httpStatus == 200, "\(result.stderr)")
            }
            nginx.stop()
            let after = try curl(proxy.url + "/hello", dir: dir)
            #expect(after.httpStatus == 502)
            #expect(proxy.child.isRunning)
        }
    }
}
