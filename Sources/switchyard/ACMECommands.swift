#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import YardACME
import YardControl

/// `switchyard acme …`: certificates from an ACME CA (Let's Encrypt, ZeroSSL, step-ca).
struct ACME: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acme",
        abstract: "Get certificates from an ACME CA (RFC 8555).",
        subcommands: [ACMEIssue.self])
}

/// Orders one certificate, answering HTTP-01 on its own small HTTP listener, and writes
/// cert.pem (the chain) and key.pem (mode 0600) for a TLS listener's `certificates:`.
struct ACMEIssue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Order a certificate over HTTP-01 and write cert.pem and key.pem.",
        discussion: """
            The CA must reach http://NAME:80/.well-known/acme-challenge/ on this host: run it with \
            --http-port 80 where nothing else listens on 80, or forward port 80 to --http-port. \
            Try the CA's staging directory first (Let's Encrypt: \
            https://acme-staging-v02.api.letsencrypt.org/directory).
            """)

    @Option(help: "The CA's directory URL.")
    var directory: String

    @Option(help: "A DNS name for the certificate (repeat for more; the first is the subject).")
    var name: [String] = []

    @Option(help: "Port of the HTTP-01 responder this command runs while ordering.")
    var httpPort: UInt16

    @Option(help: "IPv4 address the responder binds.")
    var httpAddress = "0.0.0.0"

    @Option(help: "Directory to write cert.pem and key.pem into (created if missing).")
    var out: String

    @Option(help: "PEM CAs to trust for the CA's own HTTPS (a private CA); default: the system store.")
    var caFile: String?

    @Option(help: "The account key (P-256 PEM); made and saved there (0600) if missing. Default: OUT/account.key.")
    var accountKey: String?

    @Option(help: "Contact e-mail for the account (repeatable).")
    var email: [String] = []

    @Option(help: "Seconds to wait for the whole order.")
    var timeout = 120

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        guard (1...3600).contains(timeout) else { fail("--timeout must be 1...3600 seconds") }
        do {
            let names = try ACMEIdentifiers.validated(name)
            try ACMEFiles.makeDirectory(out)
            let keyPath = accountKey ?? "\(out)/account.key"
            let key = try loadOrCreateAccountKey(at: keyPath)
            let responder = try ACMEChallengeResponder(address: httpAddress, port: httpPort)
            defer { responder.stop() }
            let client = try ACMEClient(directoryURL: directory, accountKey: key, caFile: caFile)
            client.log = { FileHandleWriter.stderr("acme: \($0)\n") }
            try client.register(contact: email)
            let issued = try client.issueCertificate(names: names, solver: responder, deadline: .seconds(timeout))
            try ACMEFiles.writeAtomically("\(out)/key.pem", issued.privateKeyPEM, mode: 0o600)
            try ACMEFiles.writeAtomically("\(out)/cert.pem", issued.chainPEM, mode: 0o644)
            FileHandleWriter.stdout("issued \(names.joined(separator: ",")): \(out)/cert.pem \(out)/key.pem\n")
        } catch let error as ACMEError {
            fail("acme issue: \(error)")
        } catch let error as ACMEFileError {
            fail("acme issue: \(error.message)")
        }
    }

    private func loadOrCreateAccountKey(at path: String) throws -> ACMEPrivateKey {
        if let pem = try ACMEFiles.readFile(path) {
            do { return try ACMEPrivateKey(pem: pem) } catch { throw ACMEFileError(message: "account key \(path): \(error)") }
        }
        let key = try ACMEPrivateKey.generateP256()
        try ACMEFiles.writeAtomically(path, try key.pem(), mode: 0o600)
        FileHandleWriter.stderr("acme: new account key \(path)\n")
        return key
    }
}

/// `switchyard certs`: the certificates a running replica holds from ACME.
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a running replica's ACME certificates: names, issuer, expiry, next renewal, last error.")

    @OptionGroup var options: AdminOptions

    struct View: Decodable {
        struct Item: Decodable {
            var listener: String
            var name: String
            var issuer: String?
            var not_after: Int64?
            var next_renewal: Int64?
            var last_error: String?
            var failures: Int
            var lease_holder: String?
        }
        var certificates: [Item]
    }

    func run() throws {
        let client = options.makeClient()
        let answer = client.checked(client.request("GET", "/certs"))
        if options.json {
            FileHandleWriter.stdout(answer.text)
            return
        }
        let view = decode(ACMECertificateStatus.self, answer)
        guard !view.certificates.isEmpty else {
            FileHandleWriter.stdout("no ACME certificates (no listener has tls.acme)\n")
            return
        }
        func time(_ seconds: Int64?) -> String { seconds.map(ACMECertificateStatus.time) ?? "-" }
        var text = ""
        for item in view.certificates {
            text += "\(item.name)  listener=\(item.listener)  issuer=\(item.issuer ?? "-")  not_after=\(time(item.not_after))"
                + "  next_renewal=\(time(item.next_renewal))" + (item.lease_holder.map { "  ordering=\($0)" } ?? "") + "\n"
            if let error = item.last_error {
                text += "    last error (\(item.failures) failure(s)): \(error)" + (item.next_attempt.map { "; next attempt \(time($0))" } ?? "") + "\n"
            }
        }
        FileHandleWriter.stdout(text)
    }
}
