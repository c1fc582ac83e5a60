#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// `switchyard acme issue` against pebble: the files it writes are what a TLS
    /// listener's `certificates:` serves, and a client trusting pebble's root accepts them.
    @Suite struct ACMEIssue {
        @Test(.timeLimit(.minutes(2)))
        func acmeIssueWritesFilesATLSListenerServesToAClientTrustingTheCA() throws {
            let dir = try ScratchDir("acme-issue")
            let httpPort = try freePort()
            let pebble = try PebbleServer(httpPort: httpPort, tlsPort: try freePort())
            let out = dir.file("certs")
            let result = try runCommand(SwitchyardBinary.path, [
                "acme", "issue", "--directory", pebble.directoryURL, "--name", "test.example", "--name", "www.test.example",
                "--http-port", "\(httpPort)", "--http-address", "127.0.0.1", "--out", out, "--ca-file", pebble.caFile,
                "--email", "ops@test.example", "--timeout", "60",
            ], dir: dir, label: "acme-issue", timeout: .seconds(90))
            #expect(result.status == 0, "stderr: \(result.stderr)\n\(pebble.outputSummary)")
            #expect(result.stdout.contains("issued test.example,www.test.example"))
            for (file, mode) in [("key.pem", 0o600), ("account.key", 0o600), ("cert.pem", 0o644)] {
                let attributes = try FileManager.default.attributesOfItem(atPath: "\(out)/\(file)")
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == mode, "\(file)")
            }

            // A second run reuses the saved account key (the same account at the CA).
            let again = try runCommand(SwitchyardBinary.path, [
                "acme", "issue", "--directory", pebble.directoryURL, "--name", "test.example",
                "--http-port", "\(httpPort)", "--http-address", "127.0.0.1", "--out", out, "--ca-file", pebble.caFile,
            ], dir: dir, label: "acme-issue-again", timeout: .seconds(90))
            #expect(again.status == 0, "stderr: \(again.stderr)")
            #expect(!again.stderr.contains("new account key"))

            let root = dir.file("pebble-root.pem")
            try pebble.rootCertificatePEM().write(toFile: root, atomically: true, encoding: .utf8)
            let backend = try Backend.demo("a", dir: dir)
            defer { backend.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1, tls: "certificates:\n  - {cert: \(out)/cert.pem, key: \(out)/key.pem}"),
                                         services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }
            let served = try curl("https://test.example:\(proxy.port)/",
                                  ["--cacert", root, "--resolve", "test.example:\(proxy.port):127.0.0.1"], dir: dir)
            #expect(served.exitStatus == 0 && served.httpStatus == 200, "\(served.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func acmeIssueRefusesANameNoCACanIssueForBeforeContactingIt() throws {
            let dir = try ScratchDir("acme-issue-bad")
            let result = try runCommand(SwitchyardBinary.path, [
                "acme", "issue", "--directory", "https://127.0.0.1:\(try closedPort())/dir", "--name", "a.example,DNS:evil.example",
                "--http-port", "\(try freePort())", "--out", dir.file("certs"),
            ], dir: dir, label: "acme-issue-bad")
            #expect(result.status == 2)
            #expect(result.stderr.contains("is not a DNS name"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("certs")))
        }
    }
}
