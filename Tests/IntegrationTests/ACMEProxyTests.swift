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
            /// Every replica (they share the listener ports through SO_REUSEPORT).
            let proxies: [ChildProcess]
            let adminPorts: [UInt16]
            var proxy: ChildProcess { proxies[0] }
            var adminPort: UInt16 { adminPorts[0] }
            let root: String

            init(_ label: String, challenge: String, names: [String], domains: [String] = [], routeHost: String? = nil,
                 pebbleConfig: [String: String] = [:], pebbleEnvironment: [String: String] = [:],
                 replicas: Int = 1, replicaNames: [[String]] = [], extraACME: String = "", extraYAML: String = "",
                 beforeStart: (PebbleServer) throws -> Void = { _ in }) throws {
                dir = try ScratchDir(label)
                pebble = try PebbleServer(httpPort: try freePort(), tlsPort: try freePort(), environment: pebbleEnvironment, config: pebbleConfig)
                backend = try Backend.demo("a", dir: dir)
                root = dir.file("pebble-root.pem")
                try pebble.rootCertificatePEM().write(toFile: root, atomically: true, encoding: .utf8)
                try beforeStart(pebble)
                try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: backend.port)])]))
                var proxies: [ChildProcess] = []
                var adminPorts: [UInt16] = []
                defer { if adminPorts.count < replicas { proxies.forEach { $0.stop() } } }
                for replica in 0..<replicas {
                let names = names + (replica < replicaNames.count ? replicaNames[replica] : [])
                try dir.write("switchyard-\(replica).yml", """
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
                            storage: acme-\(replica)
                            \(extraACME)
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
                    \(extraYAML)

                    """)
                let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard-\(replica).yml")],
                                             dir: dir, label: "proxy-\(replica)")
                proxies.append(proxy)
                _ = try proxy.waitForListeningPort()
                adminPorts.append(try proxy.waitForAdminPort())
                }
                self.proxies = proxies
                self.adminPorts = adminPorts
            }

            deinit {
                proxies.forEach { $0.stop() }
                backend.stop()
            }

            /// curl to `name` on the TLS listener, verifying against pebble's root.
            func verifiedGet(_ name: String) throws -> CurlResult {
                try curl("https://\(name):\(pebble.tlsPort)/", ["--cacert", root, "--resolve", "\(name):\(pebble.tlsPort):127.0.0.1"], dir: dir)
            }

            /// Waits until a client trusting pebble's root gets 200 from `name`.
            func waitUntilServed(_ name: String, timeout: Duration = .seconds(60)) throws {
                try waitFor("a certificate pebble issued for \(name) to be served", timeout: timeout, interval: .milliseconds(500)) {
                    guard proxies.contains(where: { $0.process.isRunning }) else {
                        throw HarnessError("every proxy exited: \(proxy.stderrText.suffix(2000))")
                    }
                    let served = try verifiedGet(name)
                    return served.exitStatus == 0 && served.httpStatus == 200
                }
            }

            func admin(_ path: String, replica: Int = 0) throws -> String {
                try curl("http://127.0.0.1:\(adminPorts[replica])\(path)", [], dir: dir).body
            }

            /// The `not_after` `/certs` reports for `name` (nil before the first issuance).
            func notAfter(_ name: String, replica: Int = 0) throws -> Int64? {
                try certificate(name, replica: replica)?["not_after"] as? Int64
            }

            func certificate(_ name: String, replica: Int = 0) throws -> [String: Any]? {
                let object = try JSONSerialization.jsonObject(with: Data(try admin("/certs", replica: replica).utf8)) as? [String: Any]
                let items = object?["certificates"] as? [[String: Any]] ?? []
                return items.first { $0["name"] as? String == name }
            }

            var log: String { proxy.stderrText + proxy.stdoutText }

            /// How often pebble's log says `text` (orders added, certificates issued, accounts).
            func pebbleCount(_ text: String) -> Int { pebble.log.components(separatedBy: text).count - 1 }

            /// The serial number of the certificate the TLS listener serves for `name`.
            func servedSerial(_ name: String) throws -> String {
                let shown = try runCommand("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(pebble.tlsPort)", "-servername", name],
                                           dir: dir, label: "s_client-serial", timeout: .seconds(10))
                guard let start = shown.stdout.range(of: "-----BEGIN CERTIFICATE-----"),
                      let end = shown.stdout.range(of: "-----END CERTIFICATE-----") else {
                    throw HarnessError("no certificate from s_client: \(shown.stdout.prefix(500))\(shown.stderr.prefix(500))")
                }
                try dir.write("served.pem", String(shown.stdout[start.lowerBound..<end.upperBound]) + "\n")
                return try runCommand("/usr/bin/openssl", ["x509", "-in", dir.file("served.pem"), "-noout", "-serial"], dir: dir,
                                      label: "x509-serial").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }

        /// A store key file for a fleet test.
        static func storeKey() throws -> (dir: ScratchDir, file: String) {
            let dir = try ScratchDir("acme-store-key")
            try dir.write("store.key", (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() + "\n")
            return (dir, dir.file("store.key"))
        }

        @Test(.timeLimit(.minutes(2)))
        func proxyOrdersOverHTTP01OnItsOwnHTTPListenerAndServesTheCertificate() throws {
            let setup = try Setup("acme-proxy-http01", challenge: "http-01", names: ["test.example"])
            try setup.waitUntilServed("test.example")
            #expect(setup.pebble.log.contains("validate w/ HTTP:"), "pebble validated over HTTP-01")

            // The key (with its chain) is stored 0600; the default certificate too.
            for file in ["acme-0/certificates/test.example.pem", "acme-0/default.pem", "acme-0/account.key"] {
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

        @Test(.timeLimit(.minutes(1)))
        func checkLoadsTheACMEFilesAndWritesNothing() throws {
            let dir = try ScratchDir("acme-check")
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: 9)])]))
            try dir.write("good.key", String(repeating: "ab", count: 32) + "\n")
            try dir.write("bad.key", "not a key\n")
            func config(_ keyFile: String) -> String {
                """
                listeners:
                  - name: secure
                    address: 127.0.0.1:0
                    tls:
                      acme: {directory: "https://127.0.0.1:9/dir", names: [shop.example], storage: acme, store_key_file: \(keyFile)}
                routes:
                  - {path: /, service: shop}
                discovery: {provider: file, file: services.yml}

                """
            }
            try dir.write("good.yml", config("good.key"))
            try dir.write("bad.yml", config("bad.key"))
            let good = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("good.yml")], dir: dir, label: "check-good")
            #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
            #expect(good.stdout.contains("store_key_file") && good.stdout.contains("ACME"), "\(good.stdout)")
            let bad = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("bad.yml")], dir: dir, label: "check-bad")
            #expect(bad.status != 0 && (bad.stdout + bad.stderr).contains("store_key_file"), "\(bad.stdout)\(bad.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("acme")), "check wrote the ACME storage")
        }

        @Test(.timeLimit(.minutes(2)))
        func proxyOrdersOverTLSALPN01OnItsOwnTLSListener() throws {
            let setup = try Setup("acme-proxy-alpn", challenge: "tls-alpn-01", names: ["alpn.example"])
            try setup.waitUntilServed("alpn.example")
            #expect(!setup.pebble.log.contains("validate w/ HTTP:"), "validated over TLS-ALPN-01 only")
            // After the order, acme-tls/1 is not negotiated for anyone: the challenge is withdrawn.
            let probe = try runCommand("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(setup.pebble.tlsPort)",
                                                            "-servername", "alpn.example", "-alpn", "acme-tls/1"],
                                       dir: setup.dir, label: "s_client-alpn", timeout: .seconds(10))
            #expect(probe.stdout.contains("No ALPN negotiated"), "\(probe.stdout.prefix(2000))")
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
        func threeReplicasOnOneEtcdPlaceOneOrderAndAllServeTheCertificate() throws {
            let etcd = try EtcdCluster(size: 1)
            let keyDir = try ScratchDir("acme-fleet-key")
            try keyDir.write("store.key", (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() + "\n")
            let setup = try Setup("acme-fleet", challenge: "http-01", names: ["fleet.example"], replicas: 3,
                                  extraACME: "store_key_file: \(keyDir.file("store.key"))",
                                  extraYAML: "state_store: {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /sy-acme/}")
            try waitFor("every replica to hold the certificate", timeout: .seconds(60), interval: .milliseconds(500)) {
                try (0..<3).allSatisfy { try setup.notAfter("fleet.example", replica: $0) != nil }
            }
            let expiries = try (0..<3).map { try setup.notAfter("fleet.example", replica: $0) }
            #expect(Set(expiries).count == 1, "\(expiries)")
            let issued = setup.pebble.log.components(separatedBy: "Issued certificate serial").count - 1
            #expect(issued == 1, "\(issued) orders were finalized for one name")
            // Whichever replica the kernel hands a connection to serves the issued certificate.
            for _ in 0..<6 {
                let served = try setup.verifiedGet("fleet.example")
                #expect(served.exitStatus == 0 && served.httpStatus == 200, "\(served.stderr)")
            }
            // The store holds the key sealed: no PEM private key in etcd.
            let stored = try curl("\(etcd.endpoints[0])/v3/kv/range", ["-X", "POST", "-d",
                "{\"key\":\"\(Data("/sy-acme/acme/certificates/fleet.example".utf8).base64EncodedString())\"}"], dir: setup.dir)
            let kvs = (try JSONSerialization.jsonObject(with: Data(stored.body.utf8)) as? [String: Any])?["kvs"] as? [[String: Any]]
            let value = try #require(kvs?.first?["value"] as? String, "\(stored.body)")
            let record = try #require(Data(base64Encoded: value))
            #expect(record.prefix(4) == Data("SYA1".utf8) && !String(decoding: record, as: UTF8.self).contains("PRIVATE KEY"))
        }

        @Test(.timeLimit(.minutes(2)))
        func aLeaseWhoseHolderDiedIsTakenOverWhenItExpires() throws {
            let etcd = try EtcdCluster(size: 1)
            let dir = try ScratchDir("acme-lease-key")
            try dir.write("store.key", String(repeating: "cd", count: 32) + "\n")
            // A replica that took the lease and died: it would have renewed it every order.
            let expires = Date().timeIntervalSince1970 + 6
            let lease = #"{"expiresUnix":\#(expires),"holder":"dead-replica"}"#
            let put = try curl("\(etcd.endpoints[0])/v3/kv/put", ["-X", "POST", "-d",
                "{\"key\":\"\(Data("/sy-acme/acme/leases/lease.example".utf8).base64EncodedString())\",\"value\":\"\(Data(lease.utf8).base64EncodedString())\"}"],
                dir: dir)
            #expect(put.httpStatus == 200, "\(put.body)")
            let setup = try Setup("acme-lease", challenge: "http-01", names: ["lease.example"],
                                  extraACME: "store_key_file: \(dir.file("store.key"))\n        lease: 30s",
                                  extraYAML: "state_store: {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /sy-acme/}")
            try waitFor("the replica to see the dead holder's lease", timeout: .seconds(5), interval: .milliseconds(200)) {
                try setup.certificate("lease.example")?["lease_holder"] as? String == "dead-replica"
            }
            #expect(!setup.pebble.log.contains("lease.example"), "ordered while another replica held the lease")
            try setup.waitUntilServed("lease.example", timeout: .seconds(40))
            #expect(Date().timeIntervalSince1970 >= expires - 1, "served before the lease expired")
        }

        @Test(.timeLimit(.minutes(3)))
        func shortLivedCertificatesRenewAndAFailedRenewalKeepsTheOldCertificate() throws {
            let setup = try Setup("acme-proxy-renew", challenge: "http-01", names: ["test.example"],
                                  pebbleConfig: ["certificateValidityPeriod": "45"],
                                  // No reuse of valid authorizations: every renewal is validated again.
                                  pebbleEnvironment: ["PEBBLE_AUTHZREUSE": "0"])
            try setup.waitUntilServed("test.example")
            let first = try #require(try setup.notAfter("test.example"))
            // Two thirds of 45 s: renewed within about 30 s; every handshake meanwhile verifies.
            var failed: [String] = []
            try waitFor("the certificate to be renewed", timeout: .seconds(60), interval: .milliseconds(200)) {
                let served = try setup.verifiedGet("test.example")
                if served.exitStatus != 0 || served.httpStatus != 200 { failed.append(served.stderr) }
                return (try setup.notAfter("test.example") ?? first) > first
            }
            #expect(failed.isEmpty, "\(failed.count) requests failed during the renewal: \(failed.prefix(3))")
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

            // `status` warns about a certificate whose renewal window is open; `status --check`
            // fails once less than a sixth of its lifetime (7.5 s of 45 s) is left.
            let admin = "http://127.0.0.1:\(setup.adminPort)"
            let status = try runCommand(SwitchyardBinary.path, ["status", "--admin", admin, "--interval", "0"], dir: setup.dir, label: "status")
            #expect(status.stdout.contains("warning: certificate test.example (listener secure): in its renewal window"), "\(status.stdout)")
            try waitFor("less than a sixth of the lifetime to be left", timeout: .seconds(40), interval: .milliseconds(500)) {
                renewed - Int64(Date().timeIntervalSince1970) < 7
            }
            let check = try runCommand(SwitchyardBinary.path, ["status", "--check", "--admin", admin], dir: setup.dir, label: "status-check")
            #expect(check.status == 1 && check.stdout.contains("certificate test.example (listener secure): expires"), "\(check.stdout)\(check.stderr)")
        }
    }
}
