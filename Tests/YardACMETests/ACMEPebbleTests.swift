import Foundation
import Testing
import YardTestSupport
@testable import YardACME

/// The client against a real ACME CA: Let's Encrypt's pebble on loopback, validating
/// HTTP-01 against `ACMEChallengeResponder` (its DNS answers every name with 127.0.0.1).
@Suite(.serialized) struct ACMEPebbleTests {
    /// A responder on a kernel-chosen port, and pebble validating HTTP-01 against it.
    static func start(environment: [String: String] = [:]) throws -> (ACMEChallengeResponder, PebbleServer) {
        let responder = try ACMEChallengeResponder(port: 0)
        let pebble = try PebbleServer(httpPort: responder.port, tlsPort: try freePort(), environment: environment)
        return (responder, pebble)
    }

    @Test func pebbleIssuesACertificateOverHTTP01AndItsChainVerifiesAgainstPebblesRoot() throws {
        let (responder, pebble) = try Self.start()
        let client = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        let issued = try client.issueCertificate(names: ["test.example", "www.test.example"], solver: responder, deadline: .seconds(60))

        let directory = try TempDir(prefix: "switchyard-acme-issued")
        let chain = try directory.write("chain.pem", issued.chainPEM)
        let key = try directory.write("key.pem", issued.privateKeyPEM)
        let root = try directory.write("root.pem", try pebble.rootCertificatePEM())
        #expect(issued.chainPEM.components(separatedBy: "-----BEGIN CERTIFICATE-----").count - 1 >= 2, "leaf and intermediate")
        let verified = try openssl(["verify", "-CAfile", root, "-untrusted", chain, chain])
        #expect(verified.contains("\(chain): OK"), "\(verified)")
        let text = try openssl(["x509", "-in", chain, "-noout", "-text"])
        #expect(text.contains("DNS:test.example") && text.contains("DNS:www.test.example"))
        // The key written is the certificate's key.
        #expect(try openssl(["pkey", "-in", key, "-pubout"]) == (try openssl(["x509", "-in", chain, "-noout", "-pubkey"])))
        // Pebble fetched both challenges from the responder; the tokens are withdrawn after.
        #expect(responder.requestsServed >= 2)
    }

    @Test func registeringTheSameKeyAgainFindsTheSameAccount() throws {
        let (_, pebble) = try Self.start()
        let key = try ACMEPrivateKey.generateP256()
        let first = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: key, caFile: pebble.caFile).register(contact: ["ops@test.example"])
        let second = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: key, caFile: pebble.caFile).register()
        #expect(first == second)
        #expect(first.hasPrefix("https://127.0.0.1:\(pebble.port)/"))
    }

    @Test func aCAThatRequiresExternalAccountBindingAcceptsTheBoundAccountOnly() throws {
        let macKey = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
        let responder = try ACMEChallengeResponder(port: 0)
        let pebble = try PebbleServer(httpPort: responder.port, tlsPort: try freePort(), config: [
            "externalAccountBindingRequired": "true", "externalAccountMACKeys": "{\"kid-1\": \"\(macKey)\"}",
        ])
        let unbound = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        #expect(throws: ACMEError.self) { try unbound.register() }
        let client = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        let account = try client.register(externalAccount: try ACMEExternalAccountBinding(keyID: "kid-1", macKeyText: macKey))
        #expect(account.hasPrefix("https://127.0.0.1:\(pebble.port)/"))
        let wrong = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        #expect(throws: ACMEError.self) {
            try wrong.register(externalAccount: try ACMEExternalAccountBinding(keyID: "kid-1", macKeyText: String(macKey.reversed())))
        }
    }

    @Test func aStaleNonceIsRefusedAsBadNonceAndRetried() throws {
        let (_, pebble) = try Self.start()
        let client = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        var lines: [String] = []
        client.log = { lines.append($0) }
        try client.register()
        client.nonce = "c3RhbGUtbm9uY2U"
        let (_, order) = try client.newOrder(names: ["test.example"])
        #expect(order.status == "pending")
        #expect(lines.contains { $0.contains("refused the nonce") }, "\(lines)")
    }

    @Test func aWrongKeyAuthorizationFailsWithTheCAsProblemDocument() throws {
        final class WrongAnswers: ACMEChallengeSolver {
            let responder: ACMEChallengeResponder
            init(_ responder: ACMEChallengeResponder) { self.responder = responder }
            var challengeType: String { "http-01" }
            func publish(name: String, token: String, keyAuthorization: String) { responder.publish(token: token, keyAuthorization: "\(token).wrong") }
            func withdraw(name: String, token: String) { responder.withdraw(token: token) }
        }
        let (responder, pebble) = try Self.start()
        let client = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        let error = try #require(failure { () throws(ACMEError) in
            _ = try client.issueCertificate(names: ["test.example"], solver: WrongAnswers(responder), deadline: .seconds(60))
        }, "issued with a wrong key authorization")
        guard case .invalid(let operation, let problem) = error else { Issue.record("\(error)"); return }
        #expect(operation.contains("test.example"))
        #expect(problem?.code == "unauthorized" || problem?.code == "incorrectResponse", "\(String(describing: problem))")
        #expect(problem?.identifier == "test.example")
    }

    @Test func anOrderTheCARefusesIsAServerErrorWithItsProblem() throws {
        let (_, pebble) = try Self.start()
        let client = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: pebble.caFile)
        try client.register()
        // An identifier type the CA does not support (the public API only sends `dns`).
        let newOrder = try client.loadDirectory().newOrder
        let error = try #require(failure { () throws(ACMEError) in
            try client.post(newOrder, payload: #"{"identifiers":[{"type":"bogus","value":"test.example"}]}"#, operation: "new order")
        }, "the CA accepted a bogus identifier type")
        guard case .server(_, let status, let problem) = error else { Issue.record("\(error)"); return }
        #expect(status >= 400 && status < 500)
        #expect(problem.type.hasPrefix(ACMEProblem.namespace), "\(problem)")
    }

    @Test func aCAWhoseCertificateIsNotTrustedIsATransportError() throws {
        let (_, pebble) = try Self.start()
        // The system store does not trust the test CA that signed pebble's HTTPS certificate.
        let client = try ACMEClient(directoryURL: pebble.directoryURL, accountKey: .generateP256(), caFile: nil, timeout: .seconds(5))
        #expect {
            try client.register()
        } throws: { error in
            guard case .transport(_, let reason) = error as? ACMEError else { return false }
            return reason.contains("TLS handshake")
        }
    }

    @Test func nothingListeningIsATransportErrorNotAHang() throws {
        let client = try ACMEClient(directoryURL: "https://127.0.0.1:\(try freePort())/dir", accountKey: .generateP256(), timeout: .seconds(3))
        #expect(throws: ACMEError.self) { try client.register() }
    }

    @Test func responderAnswersPublishedTokensOnlyUntilWithdrawn() throws {
        let responder = try ACMEChallengeResponder(port: 0)
        responder.publish(token: "abc", keyAuthorization: "abc.thumb")
        let base = "http://127.0.0.1:\(responder.port)\(ACMEChallengeResponder.pathPrefix)"
        #expect(try curl(base + "abc") == "200 abc.thumb")
        #expect(try curl(base + "other") == "404 ")
        #expect(try curl("http://127.0.0.1:\(responder.port)/") == "404 ")
        responder.withdraw(token: "abc")
        #expect(try curl(base + "abc") == "404 ")
        responder.stop()
        #expect(!isListening(port: responder.port))
    }

    @Test func silentConnectionsDoNotHoldUpTheCAsRequest() throws {
        let responder = try ACMEChallengeResponder(port: 0)
        responder.publish(token: "abc", keyAuthorization: "abc.thumb")
        // Anyone on the Internet can connect to port 80 and say nothing (slowloris).
        let idle = try (0..<4).map { _ in try HTTPConnection(port: responder.port) }
        let started = ContinuousClock.now
        let response = try httpGet(port: responder.port, path: ACMEChallengeResponder.pathPrefix + "abc", timeout: .seconds(3))
        #expect(response.status == 200 && response.text == "abc.thumb")
        #expect(ContinuousClock.now - started < .seconds(1))
        _ = idle
    }

    /// The error `body` throws, or nil if it succeeds.
    private func failure(_ body: () throws(ACMEError) -> Void) -> ACMEError? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    private func curl(_ url: String) throws -> String {
        let runner = try ProcessRunner("/usr/bin/curl", arguments: ["-sS", "--max-time", "5", "-o", "-", "-w", "%{http_code} ", url])
        defer { runner.stop() }
        _ = try runner.waitForExit(deadline: .seconds(10))
        // -w prints after the body: move the status to the front.
        let out = runner.stdout
        let status = String(out.suffix(4).prefix(3))
        return "\(status) \(out.dropLast(4))"
    }

    private func openssl(_ arguments: [String]) throws -> String {
        let runner = try ProcessRunner("/usr/bin/openssl", arguments: arguments)
        defer { runner.stop() }
        let status = try runner.waitForExit(deadline: .seconds(20))
        guard status == .exited(0) else { throw TestSupportError("openssl \(arguments.first ?? "") \(status)\n\(runner.outputSummary)") }
        return runner.stdout
    }
}
