#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// `tls.acme` when things go wrong or get busy: pebble refusing nonces, a challenge that
    /// cannot be validated, a renewal under wrk load, RSA keys, and a SIGHUP that changes
    /// the `acme` block.
    @Suite(.serialized) struct ACMEResilience {
        typealias Setup = ACMEProxy.Setup

        @Test(.timeLimit(.minutes(2)))
        func refusedNoncesAreRetriedAndTheCertificateIsStillIssued() throws {
            // Pebble refuses half of all good nonces as badNonce.
            let setup = try Setup("acme-nonce-reject", challenge: "http-01", names: ["nonce.example"],
                                  pebbleEnvironment: ["PEBBLE_WFE_NONCEREJECT": "50"])
            try setup.waitUntilServed("nonce.example")
            #expect(setup.log.contains("refused the nonce"), "pebble refused no nonce: \(setup.log.suffix(1500))")
            #expect(try setup.certificate("nonce.example")?["failures"] as? Int == 0, "an order failed on badNonce")
        }

        @Test(.timeLimit(.minutes(2)))
        func aChallengeThatFailsIsReportedRetriedWithBackoffWhileTheDefaultCertificateServes() throws {
            // Validation of the name reaches nothing: 127.0.0.2 has no listener on the HTTP port.
            let setup = try Setup("acme-failing-challenge", challenge: "http-01", names: ["fail.example"],
                                  extraACME: "retry: 2s") { pebble in
                try pebble.addARecord(host: "fail.example", address: "127.0.0.2")
            }
            try waitFor("two failed orders", timeout: .seconds(40), interval: .milliseconds(250)) {
                (try setup.certificate("fail.example")?["failures"] as? Int ?? 0) >= 2
            }
            let item = try #require(try setup.certificate("fail.example"))
            let error = item["last_error"] as? String ?? ""
            #expect(error.contains("http-01 challenge for fail.example"), "\(error)")
            // The next attempt waits twice the first wait (2 s, then 4 s).
            let nextAttempt = try #require(item["next_attempt"] as? Int64)
            let now = Int64(Date().timeIntervalSince1970)
            #expect(nextAttempt > now - 1 && nextAttempt <= now + 9, "next attempt \(nextAttempt - now) s away")
            #expect(setup.log.contains("next attempt in 2 s") && setup.log.contains("next attempt in 4 s"), "\(setup.log.suffix(2000))")
            let metrics = try setup.admin("/metrics")
            #expect(metrics.range(of: #"switchyard_acme_order_failures\{name="fail.example"\} [1-9]"#, options: .regularExpression) != nil,
                    "\(metrics.suffix(400))")
            let certs = try runCommand(SwitchyardBinary.path, ["certs", "--admin", "http://127.0.0.1:\(setup.adminPort)"],
                                       dir: setup.dir, label: "certs")
            #expect(certs.stdout.contains("last error") && certs.stdout.contains("next attempt"), "\(certs.stdout)")
            // Meanwhile the default certificate answers every handshake.
            let served = try curl("https://fail.example:\(setup.pebble.tlsPort)/",
                                  ["-k", "--resolve", "fail.example:\(setup.pebble.tlsPort):127.0.0.1"], dir: setup.dir)
            #expect(served.exitStatus == 0 && served.httpStatus == 200, "\(served.stderr)")
            #expect(try setup.verifiedGet("fail.example").exitStatus != 0, "a CA-verified certificate before any issuance")

            // Once validation reaches the proxy, a later attempt gets the certificate.
            try setup.pebble.clearARecords(host: "fail.example")
            try setup.waitUntilServed("fail.example", timeout: .seconds(40))
            #expect(try setup.certificate("fail.example")?["failures"] as? Int == 0)
        }

        @Test(.timeLimit(.minutes(3)))
        func aRenewalUnderWrkLoadFailsNoHandshakeAndNoRequest() throws {
            let setup = try Setup("acme-renew-load", challenge: "http-01", names: ["load.example"],
                                  pebbleConfig: ["certificateValidityPeriod": "30"], pebbleEnvironment: ["PEBBLE_AUTHZREUSE": "0"])
            try setup.waitUntilServed("load.example")
            let firstSerial = try setup.servedSerial("load.example")
            let first = try #require(try setup.notAfter("load.example"))
            let renewal = try #require(try setup.certificate("load.example")?["next_renewal"] as? Int64)
            // wrk sends SNI from the URL's host; the script makes it connect to 127.0.0.1.
            try setup.dir.write("loopback.lua", """
                wrk.resolve = function(host, service) wrk.addrs = wrk.lookup("127.0.0.1", service) end

                """)
            let seconds = max(renewal - Int64(Date().timeIntervalSince1970), 0) + 10
            // A new connection (and TLS handshake) per request.
            let wrk = try ChildProcess("/usr/bin/wrk", ["-t", "2", "-c", "8", "-d", "\(seconds)s", "--timeout", "5s", "-H", "Connection: close",
                                                        "-s", setup.dir.file("loopback.lua"),
                                                        "https://load.example:\(setup.pebble.tlsPort)/"],
                                       dir: setup.dir, label: "wrk")
            defer { wrk.stop() }
            #expect(wrk.waitExit(timeout: .seconds(seconds + 20)) == 0, "\(wrk.stderrText)")
            let report = wrk.stdoutText
            #expect(!report.contains("Socket errors"), "handshakes or connections failed: \(report)")
            #expect(!report.contains("Non-2xx"), "\(report)")
            let requests = report.range(of: #"(\d+) requests in"#, options: .regularExpression).map { Int(report[$0].split(separator: " ")[0]) ?? 0 } ?? 0
            #expect(requests > 100, "\(report)")
            #expect((try setup.notAfter("load.example") ?? first) > first, "not renewed during the load")
            let renewedSerial = try setup.servedSerial("load.example")
            #expect(renewedSerial != firstSerial, "\(firstSerial) still served")
            try setup.waitUntilServed("load.example", timeout: .seconds(5))
        }

        @Test(.timeLimit(.minutes(2)))
        func rsa2048KeysAreOrderedAndAChangedACMEBlockWaitsForTheRestart() throws {
            let setup = try Setup("acme-rsa", challenge: "http-01", names: ["rsa.example"], extraACME: "key_type: rsa2048")
            try setup.waitUntilServed("rsa.example")
            let shown = try runCommand("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(setup.pebble.tlsPort)", "-servername", "rsa.example"],
                                       dir: setup.dir, label: "s_client-rsa", timeout: .seconds(10))
            #expect(shown.stdout.contains("Server public key is 2048 bit"), "\(shown.stdout.prefix(3000))")
            let stored = setup.dir.read("acme-0/certificates/rsa.example.pem")
            let key = try runCommand("/usr/bin/openssl", ["pkey", "-in", setup.dir.file("acme-0/certificates/rsa.example.pem"), "-noout", "-text"],
                                     dir: setup.dir, label: "pkey")
            #expect(stored.contains("PRIVATE KEY") && key.stdout.contains("2048 bit"), "\(key.stdout.prefix(200))\(key.stderr)")

            // A SIGHUP with another acme block: said to apply at the next restart, and the
            // running block keeps its names.
            let config = setup.dir.file("switchyard-0.yml")
            let text = try String(contentsOfFile: config, encoding: .utf8)
            try setup.dir.writeInPlace("switchyard-0.yml", text.replacingOccurrences(of: "names: [rsa.example]", with: "names: [rsa.example, more.example]")
                .replacingOccurrences(of: "key_type: rsa2048", with: "key_type: ecdsa-p256"))
            setup.proxy.signal(SIGHUP)
            try waitFor("the reload to say when the acme block applies", timeout: .seconds(10), interval: .milliseconds(100)) {
                setup.log.contains("listener 'secure': the acme block changed and applies at the next restart")
            }
            pause(.seconds(2))
            #expect(try setup.certificate("more.example") == nil, "a name of the new block was ordered before a restart")
            let again = try setup.verifiedGet("rsa.example")
            #expect(again.exitStatus == 0 && again.httpStatus == 200, "\(again.stderr)")
        }
    }
}
