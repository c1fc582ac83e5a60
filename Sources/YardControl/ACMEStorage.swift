#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardACME
import YardIO
import YardTLS

/// Where an ACME listener keeps its files (`acme.storage`):
///
///     account.key             the account's P-256 key (0600)
///     default.pem             the self-signed certificate served until the first issuance
///     certificates/NAME.pem   an issued chain, leaf first, then its key
///
/// A certificate and its key share one file (0600), replaced by one rename: a crash can
/// never leave a new key beside an old certificate. OpenSSL reads the chain and the key
/// from the same file, each skipping the other's blocks. The folders are 0700. Threading: a value; blocking file I/O, control
/// plane only.
struct ACMEStorage: Sendable {
    let root: String

    init(_ root: String) { self.root = root }

    var accountKeyPath: String { "\(root)/account.key" }
    var defaultPath: String { "\(root)/default.pem" }
    var certificatesFolder: String { "\(root)/certificates" }

    /// A name that is never asked for: the default certificate must not take SNI from
    /// an issued one (the first certificate to claim a name keeps it).
    static let defaultServerName = "switchyard-default.invalid"

    var hasDefault: Bool { access(defaultPath, R_OK) == 0 }

    var defaultSource: TLSCertificateSource {
        TLSCertificateSource(certificatePath: defaultPath, keyPath: defaultPath, serverNames: [Self.defaultServerName])
    }

    /// Makes the folders and, when `needsDefault`, the self-signed default certificate
    /// (for the first of `defaultNames`) if it is not there yet.
    func prepare(defaultNames: [String], needsDefault: Bool) throws {
        do {
            try ACMEFiles.makeDirectory(root, mode: 0o700)
            try ACMEFiles.makeDirectory(certificatesFolder, mode: 0o700)
            guard needsDefault, !hasDefault else { return }
            let made = try ACMESelfSigned.make(names: [defaultNames.first ?? "switchyard.invalid"])
            try ACMEFiles.writeAtomically(defaultPath, made.certificatePEM + made.keyPEM, mode: 0o600)
            logger.info("acme: made the self-signed default certificate \(defaultPath); it answers until the CA issues one")
        } catch let error as ACMEFileError {
            throw TLSConfigError(description: "acme storage \(root): \(error.message)")
        } catch {
            throw TLSConfigError(description: "acme storage \(root): \(error)")
        }
    }

    /// The file stem of `name` (a wildcard's `*` is not a character to put in a path).
    static func stem(_ name: String) -> String {
        name.replacingOccurrences(of: "*", with: "_wildcard_")
    }

    func certificatePath(_ name: String) -> String { "\(certificatesFolder)/\(Self.stem(name)).pem" }

    /// Every issued certificate (with its key), by file name; SNI names from each.
    func issuedSources() -> [TLSCertificateSource] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: certificatesFolder)) ?? []
        return files.filter { $0.hasSuffix(".pem") }.sorted().map { file in
            TLSCertificateSource(certificatePath: "\(certificatesFolder)/\(file)", keyPath: "\(certificatesFolder)/\(file)")
        }
    }

    /// The stored certificate for `name` (nil when there is none or it does not parse).
    func stored(_ name: String) -> ACMECertificateInfo? {
        guard let pem = try? ACMEFiles.readFile(certificatePath(name)) else { return nil }
        return try? ACMECertificateInfo(pem: pem)
    }

    /// The stored file (chain and key) for `name`, "" when there is none.
    func text(_ name: String) -> String {
        ((try? ACMEFiles.readFile(certificatePath(name))) ?? nil) ?? ""
    }

    /// Writes an issued certificate and its key, in one file (0600) by one rename.
    func store(_ name: String, _ certificate: ACMECertificate) throws(ACMEFileError) {
        var chain = certificate.chainPEM
        if !chain.hasSuffix("\n") { chain += "\n" }
        try ACMEFiles.writeAtomically(certificatePath(name), chain + certificate.privateKeyPEM, mode: 0o600)
    }

    /// Keeps `key` (the fleet's) as `account.key` (0600) when the file holds another.
    func keepAccountKey(_ key: ACMEPrivateKey) throws {
        let pem = try key.pem()
        if (try? ACMEFiles.readFile(accountKeyPath)) == pem { return }
        try ACMEFiles.writeAtomically(accountKeyPath, pem, mode: 0o600)
        logger.info("acme: \(accountKeyPath) is now the fleet's account key (from the state store)")
    }

    /// The account key, made and saved (0600) on first use.
    func accountKey() throws -> ACMEPrivateKey {
        if let pem = try ACMEFiles.readFile(accountKeyPath) { return try ACMEPrivateKey(pem: pem) }
        let key = try ACMEPrivateKey.generateP256()
        try ACMEFiles.writeAtomically(accountKeyPath, try key.pem(), mode: 0o600)
        logger.info("acme: new account key \(accountKeyPath)")
        return key
    }
}
