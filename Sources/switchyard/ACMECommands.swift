#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import YardACME

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
            try makeDirectory(out)
            let keyPath = accountKey ?? "\(out)/account.key"
            let key = try loadOrCreateAccountKey(at: keyPath)
            let responder = try ACMEChallengeResponder(address: httpAddress, port: httpPort)
            defer { responder.stop() }
            let client = try ACMEClient(directoryURL: directory, accountKey: key, caFile: caFile)
            client.log = { FileHandleWriter.stderr("acme: \($0)\n") }
            try client.register(contact: email)
            let issued = try client.issueCertificate(names: names, solver: responder, deadline: .seconds(timeout))
            try writeAtomically("\(out)/key.pem", issued.privateKeyPEM, mode: 0o600)
            try writeAtomically("\(out)/cert.pem", issued.chainPEM, mode: 0o644)
            FileHandleWriter.stdout("issued \(names.joined(separator: ",")): \(out)/cert.pem \(out)/key.pem\n")
        } catch let error as ACMEError {
            fail("acme issue: \(error)")
        } catch let error as ACMEFileError {
            fail("acme issue: \(error.message)")
        }
    }

    private func loadOrCreateAccountKey(at path: String) throws -> ACMEPrivateKey {
        if let pem = try readFile(path) {
            do { return try ACMEPrivateKey(pem: pem) } catch { throw ACMEFileError(message: "account key \(path): \(error)") }
        }
        let key = try ACMEPrivateKey.generateP256()
        try writeAtomically(path, try key.pem(), mode: 0o600)
        FileHandleWriter.stderr("acme: new account key \(path)\n")
        return key
    }
}

struct ACMEFileError: Error { var message: String }

private func makeDirectory(_ path: String) throws(ACMEFileError) {
    if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
    throw ACMEFileError(message: "cannot create \(path): \(String(cString: strerror(errno)))")
}

/// The file's text, or nil if it does not exist. At most 1 MiB.
private func readFile(_ path: String) throws(ACMEFileError) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        if errno == ENOENT { return nil }
        throw ACMEFileError(message: "cannot read \(path): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 8192)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count < 0, errno == EINTR { continue }
        guard count >= 0 else { throw ACMEFileError(message: "cannot read \(path): \(String(cString: strerror(errno)))") }
        if count == 0 { break }
        bytes.append(contentsOf: chunk.prefix(count))
        guard bytes.count <= 1 << 20 else { throw ACMEFileError(message: "\(path) is larger than 1 MiB") }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes `text` to a new file beside `path` with `mode` from the start (a key is never
/// readable by others, even briefly), then renames it over `path`.
private func writeAtomically(_ path: String, _ text: String, mode: mode_t) throws(ACMEFileError) {
    let temporary = "\(path).tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
    guard fd >= 0 else { throw ACMEFileError(message: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
    _ = fchmod(fd, mode)   // O_CREAT's mode is masked by the umask
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw ACMEFileError(message: "cannot write \(temporary): \(reason)")
        }
        offset += written
    }
    let synced = fsync(fd) == 0
    let closed = close(fd) == 0
    guard synced, closed, rename(temporary, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw ACMEFileError(message: "cannot write \(path): \(reason)")
    }
}
