#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

// TLS hardening: listeners accept only the key exchange groups of Mozilla "intermediate",
// and a close-delimited response from a TLS upstream that ends without close_notify is
// treated as truncated, never as complete.

/// An HTTPS origin whose responses are delimited by the close (argv: certificate, key):
/// `/cut` ends the TLS connection without close_notify, `/clean` with it.
private let closeDelimitedOriginSource = #"""
import socket, socketserver, ssl, sys

CERT, KEY = sys.argv[1:3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            tls = context.wrap_socket(self.request, server_side=True)
            tls.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                data = tls.recv(4096)
                if not data:
                    return
                head += data
            target = head.split(b" ")[1]
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 1000)
            if target == b"/clean":
                tls.unwrap()      # close_notify, then the TCP close
            # else: the socket closes below without close_notify (SSL_shutdown is never called)
        except (OSError, ValueError):
            pass

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

server = Server(("127.0.0.1", 0), Handler)
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#

extension Integration {
    @Suite struct TLSHardening {
        /// Whether `openssl s_client -groups GROUP` completes a handshake with the listener.
        private func handshakes(_ fixture: TLSFixture, group: String, version: String) throws -> Bool {
            let result = try fixture.sClient(["-groups", group, version, "-servername", "a.test"])
            let done = result.stdout.contains("Cipher is ") && !result.stdout.contains("Cipher is (NONE)")
            return done
        }

        @Test(.timeLimit(.minutes(1)))
        func listenersAcceptOnlyTheIntermediateKeyExchangeGroups() throws {
            let fixture = try TLSFixture("tls-groups")
            for group in ["X25519", "P-256", "P-384"] {
                #expect(try handshakes(fixture, group: group, version: "-tls1_3"), "\(group) was refused")
            }
            for group in ["X448", "P-521", "ffdhe2048"] {
                #expect(try !handshakes(fixture, group: group, version: "-tls1_3"), "\(group) was accepted")
            }
            // TLS 1.2: the group list also bounds ECDHE (the offered list must include the
            // certificate's curve, P-256, for the handshake to succeed at all).
            #expect(try handshakes(fixture, group: "X448:P-521:P-256", version: "-tls1_2"))
            let result = try fixture.sClient(["-groups", "X448:P-521:P-256", "-tls1_2", "-servername", "a.test"])
            #expect(!result.stdout.contains("X448") && !result.stdout.contains("P-521"), "\(result.stdout.suffix(600))")
        }

        /// Runs `body` with a proxy in front of the close-delimited HTTPS origin.
        private func withCloseDelimitedOrigin(_ label: String, _ body: (UpstreamTLSProxy, ScratchDir) throws -> Void) throws {
            let dir = try ScratchDir(label)
            let pki = try TestCertificates()
            let leaf = try pki.issue(file: "leaf", names: ["api.internal"])
            let script = dir.file("close-delimited-origin.py")
            try Data(closeDelimitedOriginSource.utf8).write(to: URL(fileURLWithPath: script))
            let origin = try ChildProcess("/usr/bin/env", ["python3", script, leaf.certificate, leaf.key], dir: dir, label: "tls-close-origin")
            defer { origin.stop() }
            let originPort = try origin.waitForListeningPort()
            let services = "services:\n" + tlsService("shop", port: originPort, tls: trusting(pki))
            let proxy = try UpstreamTLSProxy(services: services, routes: [RouteSpec(service: "shop")], dir: dir)
            defer { proxy.stop() }
            try body(proxy, dir)
        }

        @Test(.timeLimit(.minutes(1)))
        func aCloseDelimitedResponseWithoutCloseNotifyIsTreatedAsTruncated() throws {
            try withCloseDelimitedOrigin("tls-truncated") { proxy, _ in
                // With close_notify: complete, nothing counted.
                let clean = try proxy.get("/clean")
                #expect(clean.first?.status == 200)
                #expect(clean.first?.body.count == 1000)
                #expect(try proxy.metric("switchyard_upstream_truncated_responses_total") == 0, "\(proxy.log.suffix(1500))")

                // Without: the client gets what arrived and a cut; logged and counted.
                let connection = try RawConnection(port: proxy.port)
                try connection.send("GET /cut HTTP/1.1\r\nHost: shop\r\n\r\n")
                #expect(connection.readUntilClosed(timeout: .seconds(10)))
                #expect(String(decoding: connection.buffered, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
                try waitFor("the truncation to be counted", timeout: .seconds(5)) {
                    try proxy.metric("switchyard_upstream_truncated_responses_total") == 1
                }
                #expect(proxy.log.contains("without TLS close_notify"), "\(proxy.log.suffix(1500))")
            }
        }

        /// The same cut seen by an HTTP/2 client: its stream is reset (never ended with
        /// END_STREAM, as a complete response would be), counted, and the connection's other
        /// streams still work.
        @Test(.timeLimit(.minutes(1)))
        func aTruncatedResponseResetsTheHTTP2Stream() throws {
            try withCloseDelimitedOrigin("tls-truncated-h2") { proxy, dir in
                let base = "http://127.0.0.1:\(proxy.port)"
                let result = try runCommand("/usr/bin/nghttp", ["-v", "-t", "10", "-H", ":authority: shop", base + "/cut", base + "/clean"],
                                            dir: dir, label: "nghttp-truncated")
                let frames = result.stdout
                #expect(frames.contains("recv RST_STREAM frame"), "\(frames.suffix(2500))")
                #expect(frames.contains(":status: 200"), "\(frames.suffix(2500))")
                try waitFor("the truncation to be counted", timeout: .seconds(5)) {
                    try proxy.metric("switchyard_upstream_truncated_responses_total") == 1
                }
                #expect(proxy.log.contains("without TLS close_notify"), "\(proxy.log.suffix(1500))")
            }
        }
    }
}
