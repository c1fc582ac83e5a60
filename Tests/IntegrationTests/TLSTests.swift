#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

/// A TLS listener in front of a plain backend, with the test PKI (a.test, b.test and
/// *.b.test, default.test), and the real clients that talk to it: openssl s_client, curl.
final class TLSFixture {
    let dir: ScratchDir
    let pki: TestCertificates
    let backend: Backend
    let proxy: RunningProxy

    /// `servedCopies`: serve copies of a.test's files (`served.pem`/`served.key` in the
    /// scratch directory) as the first certificate, so a test can replace them.
    init(_ label: String, servedCopies: Bool = false) throws {
        dir = try ScratchDir(label)
        pki = try TestCertificates()
        backend = try Backend.demo("a", dir: dir)
        var first = (pki.fallback.certificate, pki.fallback.key)
        if servedCopies {
            try FileManager.default.copyItem(atPath: pki.a.certificate, toPath: dir.file("served.pem"))
            try FileManager.default.copyItem(atPath: pki.a.key, toPath: dir.file("served.key"))
            first = (dir.file("served.pem"), dir.file("served.key"))
        }
        let tls = """
            certificates:
              - {cert: \(first.0), key: \(first.1)}
              - {cert: \(pki.a.certificate), key: \(pki.a.key)}
              - {cert: \(pki.b.certificate), key: \(pki.b.key)}
            alpn: [h2, http/1.1]
            """
        do {
            proxy = try RunningProxy(ProxySpec(workers: 1, tls: tls),
                                     services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
        } catch {
            backend.stop()
            throw error
        }
    }

    deinit {
        proxy.stop()
        backend.stop()
    }

    var port: UInt16 { proxy.port }

    /// `openssl s_client` to the listener; stdin from `input` (a file path) or /dev/null.
    func sClient(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(20)) throws -> CommandResult {
        let label = "s_client-\(UInt32.random(in: 0...UInt32.max))"
        let stdin = input.flatMap { FileHandle(forReadingAtPath: $0) }
        let child = try ChildProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caFile] + arguments,
                                     dir: dir, label: label, stdin: stdin)
        defer { child.stop() }
        let status = child.waitExit(timeout: timeout)
        return CommandResult(status: status, stdout: child.stdoutText, stderr: child.stderrText)
    }

    /// The subject CN of the certificate the server presented (s_client's `subject=` line).
    func presentedName(serverName: String?) throws -> String {
        let result = try sClient(serverName.map { ["-servername", $0] } ?? ["-noservername"])
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("subject=") } ?? ""
        return line.components(separatedBy: "CN = ").last.map { String($0) } ?? ""
    }

    /// curl over TLS to `name` (resolved to 127.0.0.1), trusting the test CA.
    func curlTLS(_ name: String, paths: [String], extra: [String] = []) throws -> CurlResult {
        let urls = paths.map { "https://\(name):\(port)\($0)" }
        // HTTP/1.1 on purpose: these tests are about the HTTP/1.1-over-TLS path (h2 by
        // ALPN has its own test).
        return try curl(urls[0], ["--http1.1", "--cacert", pki.caFile, "--resolve", "\(name):\(port):127.0.0.1"] + urls.dropFirst(),
                        extra: extra, dir: dir)
    }
}

extension Integration {
    @Suite struct TLS {
        @Test(.timeLimit(.minutes(1)))
        func sniPresentsEachNamesCertificateAndTheDefaultOtherwise() throws {
            let f = try TLSFixture("tls-sni")
            #expect(try f.presentedName(serverName: "a.test") == "a.test")
            #expect(try f.presentedName(serverName: "b.test") == "b.test")
            #expect(try f.presentedName(serverName: "shop.b.test") == "b.test", "*.b.test covers one label")
            #expect(try f.presentedName(serverName: "unknown.test") == "default.test")
            #expect(try f.presentedName(serverName: nil) == "default.test")
        }

        @Test(.timeLimit(.minutes(1)))
        func alpnPicksH2FirstAndHTTP1ForClientsThatOnlySpeakIt() throws {
            let f = try TLSFixture("tls-alpn")
            let both = try f.sClient(["-servername", "a.test", "-alpn", "h2,http/1.1"])
            #expect(both.stdout.contains("ALPN protocol: h2"), "\(both.stdout.suffix(800))")
            let http1 = try f.sClient(["-servername", "a.test", "-alpn", "http/1.1"])
            #expect(http1.stdout.contains("ALPN protocol: http/1.1"), "\(http1.stdout.suffix(800))")
            let other = try f.sClient(["-servername", "a.test", "-alpn", "spdy/3"])
            #expect(other.stdout.contains("No ALPN negotiated"), "\(other.stdout.suffix(800))")
            #expect(other.stdout.contains("Verify return code: 0 (ok)"))
        }

        /// h2 by ALPN: curl over TLS speaks HTTP/2, several requests share the connection,
        /// a large body streams down and a chunked upload comes back byte for byte, and the
        /// origin hears X-Forwarded-Proto: https.
        @Test(.timeLimit(.minutes(1)))
        func h2OverTLSByALPNServesRequestsAndBodies() throws {
            let f = try TLSFixture("tls-h2")
            let urls = ["/one", "/two", "/three"].map { "https://a.test:\(f.port)\($0)" }
            let several = try curl(urls[0], ["--http2", "--cacert", f.pki.caFile, "--resolve", "a.test:\(f.port):127.0.0.1"] + urls.dropFirst(),
                                   extra: ["%{http_version}", "%{num_connects}"], dir: f.dir)
            #expect(several.exitStatus == 0, "\(several.stderr)")
            let lines = ([String(several.httpStatus)] + several.written).filter { !$0.isEmpty && !$0.hasPrefix("hello") }
            #expect(lines == ["200", "2", "1", "200", "2", "0", "200", "2", "0"], "h2 over TLS, one connection: \(lines)")
            let down = try curl("https://a.test:\(f.port)/size/8388608", ["--http2", "--cacert", f.pki.caFile, "--resolve", "a.test:\(f.port):127.0.0.1"],
                                extra: ["%{size_download}", "%{http_version}"], dir: f.dir)
            #expect(down.httpStatus == 200 && down.written.filter { !$0.isEmpty } == ["8388608", "2"], "\(down.written) \(down.stderr)")
            let upload = f.dir.file("upload.bin")
            try Data((0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: upload))
            let echoed = f.dir.file("echoed.bin")
            let result = try runCommand("/usr/bin/curl", [
                "-sS", "--http2", "--max-time", "50", "-o", echoed, "-w", "%{http_code} %{http_version}",
                "--cacert", f.pki.caFile, "--resolve", "a.test:\(f.port):127.0.0.1",
                "--data-binary", "@\(upload)", "https://a.test:\(f.port)/echo",
            ], dir: f.dir, label: "curl-h2-echo", timeout: .seconds(55))
            #expect(result.stdout == "200 2", "\(result.stdout) \(result.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: upload, andPath: echoed), "the body came back byte for byte")
            let head = try curl("https://a.test:\(f.port)/headers", ["--http2", "--cacert", f.pki.caFile, "--resolve", "a.test:\(f.port):127.0.0.1"], dir: f.dir)
            #expect(head.body.lowercased().contains("x-forwarded-proto: https"), "\(head.body)")
        }

        @Test(.timeLimit(.minutes(1)))
        func curlReusesOneVerifiedTLSConnectionForSeveralRequests() throws {
            let f = try TLSFixture("tls-curl")
            let result = try f.curlTLS("a.test", paths: ["/one", "/two", "/three"], extra: ["%{num_connects}"])
            #expect(result.exitStatus == 0, "\(result.stderr)")
            #expect(result.body.contains("hello from a"))
            // -w prints status and connects once per URL: the first request made the
            // connection, the other two reused it.
            // (Bodies after the first go to stdout between them.)
            let lines = ([String(result.httpStatus)] + result.written).filter { !$0.isEmpty && !$0.hasPrefix("hello") }
            #expect(lines == ["200", "1", "200", "0", "200", "0"], "keep-alive over TLS: \(lines)")
            let wrongName = try curl("https://wrong.test:\(f.port)/", ["--cacert", f.pki.caFile, "--resolve", "wrong.test:\(f.port):127.0.0.1"], dir: f.dir)
            #expect(wrongName.exitStatus == 60, "the default certificate does not name wrong.test: curl must refuse it")
        }

        @Test(.timeLimit(.minutes(1)))
        func largeBodiesCrossTLSIntactInBothDirections() throws {
            let f = try TLSFixture("tls-bodies")
            // 8 MiB down (partial writes, record by record), 4 MiB up chunked and streamed
            // back (reads that fill the buffer while OpenSSL holds more records).
            let down = try f.curlTLS("a.test", paths: ["/size/8388608"], extra: ["%{size_download}"])
            #expect(down.httpStatus == 200 && down.written.first == "8388608", "\(down.stderr)")
            let upload = f.dir.file("upload.bin")
            try Data((0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: upload))
            let echoed = f.dir.file("echoed.bin")
            let result = try runCommand("/usr/bin/curl", [
                "-sS", "--http1.1", "--max-time", "50", "-o", echoed, "-w", "%{http_code}",
                "--cacert", f.pki.caFile, "--resolve", "a.test:\(f.port):127.0.0.1",
                "-H", "Transfer-Encoding: chunked", "--data-binary", "@\(upload)", "https://a.test:\(f.port)/echo",
            ], dir: f.dir, label: "curl-echo", timeout: .seconds(55))
            #expect(result.stdout == "200", "\(result.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: upload, andPath: echoed), "the body came back byte for byte")
        }

        @Test(.timeLimit(.minutes(1)))
        func tls10And11AreRefused() throws {
            let f = try TLSFixture("tls-versions")
            for flag in ["-tls1", "-tls1_1"] {
                // SECLEVEL=0 so the client really offers the old version.
                let result = try f.sClient(["-servername", "a.test", flag, "-cipher", "DEFAULT@SECLEVEL=0"])
                #expect(result.status != 0, "\(flag) must fail")
                #expect(result.stderr.contains("protocol version") || result.stdout.contains("Cipher is (NONE)"), "\(flag): \(result.stderr.suffix(400))")
            }
            let modern = try f.sClient(["-servername", "a.test", "-tls1_2"])
            #expect(modern.stdout.contains("Verify return code: 0 (ok)"))
        }

        @Test(.timeLimit(.minutes(1)))
        func sessionsResumeFromTicketsOnTLS13AndTLS12() throws {
            let f = try TLSFixture("tls-resume")
            let request = try f.dir.writeReturningPath("request.txt", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            for version in ["-tls1_3", "-tls1_2"] {
                let session = f.dir.file("session\(version).pem")
                let first = try f.sClient(["-servername", "a.test", version, "-ign_eof", "-sess_out", session], input: request)
                #expect(first.stdout.contains("hello from a"), "\(version): the request was answered")
                #expect(first.stdout.contains("New, TLSv1."), "\(version)")
                let second = try f.sClient(["-servername", "a.test", version, "-ign_eof", "-sess_in", session], input: request)
                #expect(second.stdout.contains("Reused, TLSv1."), "\(version): \(second.stdout.prefix(1200))")
                #expect(second.stdout.contains("hello from a"))
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func sighupReloadsCertificatesWithoutDroppingAnEstablishedConnection() throws {
            let f = try TLSFixture("tls-reload", servedCopies: true)
            let before = try f.pki.fingerprint(of: f.dir.file("served.pem"))

            // An established keep-alive TLS connection, with one request answered.
            let input = Pipe()
            let held = try ChildProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(f.port)", "-CAfile", f.pki.caFile,
                                                             "-noservername", "-quiet"],
                                        dir: f.dir, label: "held", stdin: input.fileHandleForReading)
            defer { held.stop() }
            let ask = Data("GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8)
            input.fileHandleForWriting.write(ask)
            try waitFor("the first answer on the held connection", timeout: .seconds(10)) { held.stdoutText.contains("hello from a") }

            // Replace the served files with a new certificate for the same name, and SIGHUP.
            let renewed = try f.pki.issue(file: "renewed", names: ["default.test"])
            for (from, to) in [(renewed.certificate, "served.pem"), (renewed.key, "served.key")] {
                try Data(contentsOf: URL(fileURLWithPath: from)).write(to: URL(fileURLWithPath: f.dir.file(to + ".new")))
                #expect(rename(f.dir.file(to + ".new"), f.dir.file(to)) == 0)
            }
            let after = try f.pki.fingerprint(of: f.dir.file("served.pem"))
            #expect(before != after)
            f.proxy.child.signal(SIGHUP)
            try waitFor("the proxy to log the TLS reload", timeout: .seconds(10)) { f.proxy.child.stderrText.contains("TLS reloaded") }

            // New handshakes get the new certificate…
            try waitFor("a new connection to present the renewed certificate", timeout: .seconds(10)) {
                let result = try f.sClient(["-noservername", "-showcerts"])
                return result.stdout.contains(try certificateBody(renewed.certificate))
            }
            // …and the held connection still carries requests.
            input.fileHandleForWriting.write(Data("GET /second HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8))
            try waitFor("the second answer on the held connection", timeout: .seconds(10)) {
                held.stdoutText.components(separatedBy: "hello from a").count == 3
            }
            #expect(held.isRunning)
        }

        @Test(.timeLimit(.minutes(1)))
        func renewedCertificateFilesAreNoticedWithoutASignal() throws {
            let f = try TLSFixture("tls-file-change", servedCopies: true)
            let renewed = try f.pki.issue(file: "renewed", names: ["default.test"])
            // Key first, then certificate: in between the pair does not match, and the running one stays.
            for (from, to) in [(renewed.key, "served.key"), (renewed.certificate, "served.pem")] {
                try Data(contentsOf: URL(fileURLWithPath: from)).write(to: URL(fileURLWithPath: f.dir.file(to + ".new")))
                #expect(rename(f.dir.file(to + ".new"), f.dir.file(to)) == 0)
            }
            let body = try certificateBody(renewed.certificate)
            try waitFor("new connections to present the renewed certificate", timeout: .seconds(15)) {
                try f.sClient(["-noservername", "-showcerts"]).stdout.contains(body)
            }
            #expect(try f.curlTLS("a.test", paths: ["/"]).httpStatus == 200)
        }

        @Test(.timeLimit(.minutes(1)))
        func garbageAndSilentClientsNeitherCrashNorStallOthers() throws {
            let f = try TLSFixture("tls-garbage")
            // A plain-HTTP client on the TLS port, random bytes, a truncated ClientHello, silence.
            let plain = try RawConnection(port: f.port)
            try plain.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            let noise = try RawConnection(port: f.port)
            try noise.send((0..<4096).map { _ in UInt8.random(in: 0...255) })
            let truncated = try RawConnection(port: f.port)
            try truncated.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
            let silent = try RawConnection(port: f.port)
            _ = silent

            for _ in 0..<3 {
                let result = try f.curlTLS("a.test", paths: ["/"])
                #expect(result.httpStatus == 200, "\(result.stderr)")
            }
            #expect(plain.readUntilClosed(timeout: .seconds(5)), "a non-TLS client is closed")
            #expect(noise.readUntilClosed(timeout: .seconds(5)), "noise is closed")
            // The handshake timeout (client_header: 2s) ends the truncated and the silent one.
            #expect(truncated.readUntilClosed(timeout: .seconds(6)))
            #expect(silent.readUntilClosed(timeout: .seconds(6)))
            #expect(f.proxy.child.isRunning)
        }
    }
}

/// The base64 body of a PEM certificate file (what `s_client -showcerts` prints).
func certificateBody(_ path: String) throws -> String {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    return text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.prefix(3).joined(separator: "\n")
}

extension ScratchDir {
    /// Writes `text` to `name` and returns its path.
    func writeReturningPath(_ name: String, _ text: String) throws -> String {
        try write(name, text)
        return file(name)
    }
}

extension Integration.TLS {
    /// testssl.sh (Debian `testssl.sh`), offline and in its fast mode, finds nothing HIGH
    /// or CRITICAL in the listener's protocols, ciphers, and vulnerabilities. The test CA is
    /// added to its trust stores; about 70 s on the 2-core test machine.
    @Test(.timeLimit(.minutes(5)))
    func testsslFindsNothingHighOrCritical() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/testssl") else {
            Issue.record("testssl is not installed: run scripts/install-deps")
            return
        }
        let f = try TLSFixture("tls-testssl")
        let report = f.dir.file("testssl.json")
        let result = try runCommand("/usr/bin/testssl", [
            "--fast", "--quiet", "--color", "0", "--warnings", "off", "--add-ca", f.pki.caFile,
            "--ip", "127.0.0.1", "--jsonfile", report, "https://a.test:\(f.port)",
        ], dir: f.dir, label: "testssl", timeout: .seconds(240))
        #expect(result.status != nil, "testssl did not finish within 240 s")
        let data = try Data(contentsOf: URL(fileURLWithPath: report))
        let findings = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        #expect(findings.count > 50, "testssl ran its checks: \(findings.count) findings")
        let severe = findings.filter { ["HIGH", "CRITICAL"].contains($0["severity"] as? String ?? "") }
        #expect(severe.isEmpty, "\(severe.map { "\($0["severity"] ?? "") \($0["id"] ?? ""): \($0["finding"] ?? "")" })")
    }
}
