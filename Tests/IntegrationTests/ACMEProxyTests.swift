#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// `tls: {acme: ...}` on a listener: the running proxy orders its own certificates from
    /// pebble, answers the challenges itself (HTTP-01 on its HTTP listener, TLS-ALPN-01 on
    /// its TLS listener), serves what it got, renews, and keeps serving when an order fails.
    @Suite(.serialized) struct ACMEProxy {
        /// A proxy with an HTTP listener on `pebble.httpPort`, an ACME TLS listener on
        /// `pebble.tlsPort`, an admin API, and the shop backend.
        final class Setup {
            let dir: ScratchDir
            let pebble: PebbleServer
            let backend: Backend
            let proxy: ChildProcess
            let adminPort: UInt16
            let root: String

            init(_ label: String, challenge: String, names: [String], domains: [String] = [], routeHost: String? = nil,
                 pebbleConfig: [String: String] = [:]) throws {
                dir = try ScratchDir(label)
                pebble = try PebbleServer(httpPort: try freePort(), tlsPort: try freePort(), config: pebbleConfig)
                backend = try Backend.demo("a", dir: dir)
                root = dir.file("pebble-root.pem")
                try pebble.rootCertificatePEM().write(toFile: root, atomically: true, encoding: .utf8)
                try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: backend.port)])]))
                try dir.write("switchyard.yml", """
                    listeners:
                      - name: web
                        address: 127.0.0.1:\(pebble.httpPort)
                        protocol: http
                      - name: secure
                        address: 127.0.0.1:\(pebble.tlsPort)
                        protocol: http
                        tls:
                          acme:
                            directory: \(pebble.directoryURL)
                            ca_file: \(pebble.caFile)
                            email: ops@test.example
                            challenge: \(challenge)
                            names: [\(names.joined(separator: ", "))]
                            domains: [\(domains.map { "\"\($0)\"" }.joined(separator: ", "))]
                            storage: acme
                    routes:
                      - path: /
                        service: shop
                    \(routeHost.map { "  - path: /\n    host: \($0)\n    service: shop\n" } ?? "")
                    discovery:
                      provider: file
                      file: services.yml
                    workers: 1
                    admin:
                      address: 127.0.0.1:0

                    """)
                proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
                do {
                    _ = try proxy.waitForListeningPort()
                    adminPort = try proxy.waitForAdminPort()
                } catch {
                    proxy.stop()
                    throw error
                }
            }

            deinit {
                proxy.stop()
                backend.stop()
            }

            /// curl to `name` on the TLS listener, verifying against pebble's root.
            func verifiedGet(_ name: String) throws -> CurlResult {
                try curl("https://\(name):\(pebble.tlsPort)/", ["--cacert", root, "--resolve", "\(name):\(pebble.tlsPort):127.0.0.1"], dir: dir)
            }

            /// Waits until a client trusting pebble's root gets 200 from `name`.
            func waitUntilServed(_ name: String, timeout: Duration = .seconds(60)) throws {
                try waitFor("a certificate pebble issued for \(name) to be served", timeout: timeout, interval: .milliseconds(500)) {
                    guard proxy.process.isRunning else { throw HarnessError("proxy exited: \(proxy.stderrText.suffix(2000))") }
                    let served = try verifiedGet(name)
                    return served.exitStatus == 0 && served.httpStatus == 200
                }
            }

            func admin(_ path: String) throws -> String {
                try curl("http://127.0.0.1:\(adminPort)\(path)", [], dir: dir).body
            }

            /// The `not_after` `/certs` reports for `name` (nil before the first issuance).
            func notAfter(_ name: String) throws -> Int64? {
                try certificate(name)?["not_after"] as? Int64
            }

            func certificate(_ name: String) throws -> [String: Any]? {
                let object = try JSONSerialization.jsonObject(with: Data(try admin("/certs").utf8)) as? [String: Any]
                let items = object?["certificates"] as? [[String: Any]] ?? []
                return items.first { $0["name"] as? String == name }
            }

            var log: String { proxy.stderrText + proxy.stdoutText }
        }

        @Test(.timeLimit(.minutes(2)))
        func proxyOrdersOverHTTP01OnItsOwnHTTPListenerAndServesTheCertificate() throws {
            let setup = try Setup("acme-proxy-http01", challenge: "http-01", names: ["test.example"])
            try setup.waitUntilServed("test.example")
            #expect(setup.pebble.log.contains("validate w/ HTTP:"), "pebble validated over HTTP-01")

            // The key (with its chain) is stored 0600; the default certificate too.
            for file in ["acme/certificates/test.example.pem", "acme/default.pem", "acme/account.key"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: setup.dir.file(file))
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(file)")
            }
            // A name with no certificate still completes a handshake (the default), never a failure.
            let other = try curl("https://other.example:\(setup.pebble.tlsPort)/",
                                 ["-k", "--resolve", "other.example:\(setup.pebble.tlsPort):127.0.0.1"], dir: setup.dir)
            #expect(other.exitStatus == 0 && other.httpStatus == 200, "\(other.stderr)")
            // The challenge path of an unknown token is the responder's 404, not the shop's page.
            let challenge = try curl("http://127.0.0.1:\(setup.pebble.httpPort)/.well-known/acme-challenge/unknown", [], dir: setup.dir)
            #expect(challenge.httpStatus == 404)

            let metrics = try setup.admin("/metrics")
            #expect(metrics.contains("switchyard_tls_certificate_expiry_timestamp_seconds{name=\"test.example\"}"), "\(metrics.suffix(600))")
            let certs = try runCommand(SwitchyardBinary.path, ["certs", "--admin", "http://127.0.0.1:\(setup.adminPort)"],
                                       dir: setup.dir, label: "certs")
            #expect(certs.status == 0 && certs.stdout.contains("test.example") && certs.stdout.contains("issuer=Pebble"), "\(certs.stdout)\(certs.stderr)")
        }

        @Test(.timeLimit(.minutes(2)))
        func proxyOrdersOverTLSALPN01OnItsOwnTLSListener() throws {
            let setup = try Setup("acme-proxy-alpn", challenge: "tls-alpn-01", names: ["alpn.example"])
            try setup.waitUntilServed("alpn.example")
            #expect(!setup.pebble.log.contains("validate w/ HTTP:"), "validated over TLS-ALPN-01 only")
        }

        @Test(.timeLimit(.minutes(2)))
        func routeHostsGetCertificatesOnlyWhenTheAllowListSaysSo() throws {
            let setup = try Setup("acme-proxy-domains", challenge: "http-01", names: ["test.example"], domains: ["*.shop.example"],
                                  routeHost: "www.shop.example")
            try setup.waitUntilServed("www.shop.example")
            let setup2 = try Setup("acme-proxy-denied", challenge: "http-01", names: ["test.example"], domains: ["*.shop.example"],
                                   routeHost: "evil.example")
            try setup2.waitUntilServed("test.example")
            #expect(try setup2.certificate("evil.example") == nil, "a route host outside the allow-list was ordered")
            #expect(!setup2.pebble.log.contains("evil.example"))
        }

        @Test(.timeLimit(.minutes(3)))
        func shortLivedCertificatesRenewAndAFailedRenewalKeepsTheOldCertificate() throws {
            let setup = try Setup("acme-proxy-renew", challenge: "http-01", names: ["test.example"],
                                  pebbleConfig: ["certificateValidityPeriod": "45"])
            try setup.waitUntilServed("test.example")
            let first = try #require(try setup.notAfter("test.example"))
            // Two thirds of 45 s: renewed within about 30 s, still served.
            try waitFor("the certificate to be renewed", timeout: .seconds(60), interval: .seconds(1)) {
                (try setup.notAfter("test.example") ?? first) > first
            }
            let renewed = try #require(try setup.notAfter("test.example"))
            try setup.waitUntilServed("test.example", timeout: .seconds(10))

            // Validation now goes elsewhere: the next renewal fails, is reported, and the
            // renewed certificate keeps serving.
            try setup.pebble.addARecord(host: "test.example", address: "127.0.0.2")
            try waitFor("the failed renewal to be reported", timeout: .seconds(60), interval: .seconds(1)) {
                (try setup.certificate("test.example")?["last_error"] as? String) != nil
            }
            #expect(try setup.notAfter("test.example") == renewed)
            let served = try setup.verifiedGet("test.example")
            #expect(served.exitStatus == 0 && served.httpStatus == 200, "\(served.stderr)")
            #expect(setup.log.contains("the current certificate keeps serving"))
        }
    }
}
