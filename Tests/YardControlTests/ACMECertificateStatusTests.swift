import Foundation
import Testing
@testable import YardControl
import YardModel

/// What `status` and `status --check` say about ACME certificates, and what a SIGHUP does
/// with a changed `acme` block.
@Suite struct ACMECertificateStatusTests {
    static func item(_ name: String, notBefore: Int64 = 0, notAfter: Int64? = 90, renewal: Int64? = 60, error: String? = nil) -> ACMECertificateStatus.Item {
        ACMECertificateStatus.Item(listener: "web", name: name, issuer: "R11", not_before: notBefore, not_after: notAfter, next_renewal: renewal,
                                   last_error: error, failures: error == nil ? 0 : 2, next_attempt: nil, lease_holder: nil)
    }

    @Test func statusWarnsFromTheRenewalWindowAndCheckFailsInTheLastSixthOfTheLifetime() {
        let status = ACMECertificateStatus(certificates: [
            Self.item("fresh.example"),
            Self.item("due.example", error: "invalid: connection refused"),
            Self.item("pending.example", notAfter: nil, renewal: nil),
        ])
        #expect(status.warnings(now: 59).isEmpty && status.problems(now: 59).isEmpty)
        let warnings = status.warnings(now: 61)
        #expect(warnings.count == 2 && warnings[1].contains("due.example (listener web): in its renewal window since")
            && warnings[1].contains("2 failed renewal(s), last: invalid: connection refused"), "\(warnings)")
        #expect(status.problems(now: 75).isEmpty, "15 of 90 left: a sixth exactly")
        #expect(status.problems(now: 76).count == 2 && status.problems(now: 76)[0].contains("less than a sixth"))
        #expect(status.problems(now: 90).allSatisfy { $0.contains("expired at") } && status.warnings(now: 91).count == 2)
    }

    @Test func aSIGHUPKeepsTheRunningACMEBlockAndNamesTheListener() throws {
        let text = """
            listeners:
              - name: secure
                address: 127.0.0.1:8443
                tls:
                  acme: {directory: https://ca/dir, names: [a.example.com]%@}
              - name: plain
                address: 127.0.0.1:8080
            """
        let running = try ConfigLoader.loadConfig(text: text.replacingOccurrences(of: "%@", with: ""), path: "s.yml").listeners
        let same = ACMEManager.keepingRunningACME(running, running: running)
        #expect(same.changed.isEmpty && same.listeners == running)
        let reloaded = try ConfigLoader.loadConfig(text: text.replacingOccurrences(of: "%@", with: ", key_type: rsa2048"), path: "s.yml").listeners
        let kept = ACMEManager.keepingRunningACME(reloaded, running: running)
        #expect(kept.changed == ["secure"])
        #expect(kept.listeners[0].tls?.acme?.keyType == .ecdsaP256 && kept.listeners == running)
    }
}
