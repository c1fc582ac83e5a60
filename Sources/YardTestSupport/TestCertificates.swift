#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A throwaway PKI for TLS tests, made with the `openssl` CLI (Debian `openssl`) in a temp
/// directory: a CA, leaves for `a.test` and for `b.test` (plus `*.b.test`), and a default
/// certificate for `default.test` (RSA, so both ECDSA and RSA suites are exercised).
/// Leaves look like production ones to scanners (testssl.sh): 90 days, a CRL
/// distribution point (on loopback; nothing fetches it).
///
/// Threading: immutable after `init`; `issue` writes new files and may be called from any
/// thread (each call uses its own file names).
public final class TestCertificates: Sendable {
    /// A certificate chain file and its key.
    public struct Pair: Sendable {
        public let certificate: String
        public let key: String
    }

    public let directory: TempDir
    /// The CA certificate to trust (`curl --cacert`, `s_client -CAfile`).
    public let caFile: String
    public let a: Pair
    public let b: Pair
    public let fallback: Pair

    public init() throws {
        directory = try TempDir(prefix: "switchyard-certs")
        caFile = directory.file("ca.pem")
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", directory.file("ca.key"), "-out", caFile, "-days", "90",
                          "-subj", "/CN=Switchyard Test CA",
                          "-addext", "basicConstraints=critical,CA:TRUE",
                          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], in: directory)
        a = try Self.issue(in: directory, file: "a", names: ["a.test"], rsa: false)
        b = try Self.issue(in: directory, file: "b", names: ["b.test", "*.b.test"], rsa: false)
        fallback = try Self.issue(in: directory, file: "default", names: ["default.test"], rsa: true)
    }

    /// Issues another certificate from the CA (`file`.pem / `file`.key), e.g. to replace a
    /// served one and test reloads. A name of digits and dots is an IP address entry.
    /// `client`: the certificate may also authenticate a client (extendedKeyUsage
    /// clientAuth), for servers that require client certificates.
    @discardableResult
    public func issue(file: String, names: [String], rsa: Bool = false, client: Bool = false) throws -> Pair {
        try Self.issue(in: directory, file: file, names: names, rsa: rsa, client: client)
    }

    /// The SHA-256 fingerprint of a certificate file, as `openssl x509 -fingerprint` prints it.
    public func fingerprint(of certificate: String) throws -> String {
        let out = try Self.openssl(["x509", "-in", certificate, "-noout", "-fingerprint", "-sha256"], in: directory)
        return out.split(separator: "=").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
    }

    private static func issue(in directory: TempDir, file: String, names: [String], rsa: Bool, client: Bool = false) throws -> Pair {
        let key = directory.file("\(file).key")
        let csr = directory.file("\(file).csr")
        let certificate = directory.file("\(file).pem")
        let keyArguments = rsa ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        try openssl(["req"] + keyArguments + ["-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=\(names[0])"], in: directory)
        let extensions = try directory.write("\(file).ext", """
            subjectAltName=\(names.map { $0.allSatisfy { $0.isNumber || $0 == "." } ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ","))
            basicConstraints=CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth\(client ? ",clientAuth" : "")
            crlDistributionPoints=URI:http://127.0.0.1:9/switchyard-test-ca.crl

            """)
        try openssl(["x509", "-req", "-in", csr, "-CA", directory.file("ca.pem"), "-CAkey", directory.file("ca.key"),
                     "-set_serial", "\(UInt32.random(in: 1...UInt32.max))", "-days", "90", "-sha256",
                     "-extfile", extensions, "-out", certificate], in: directory)
        return Pair(certificate: certificate, key: key)
    }

    @discardableResult
    private static func openssl(_ arguments: [String], in directory: TempDir) throws -> String {
        let runner = try ProcessRunner("/usr/bin/openssl", arguments: arguments, workingDirectory: directory.path)
        defer { runner.stop() }
        let status = try runner.waitForExit(deadline: .seconds(30))
        guard status == .exited(0) else {
            throw TestSupportError("openssl \(arguments.prefix(2).joined(separator: " ")) \(status)\n\(runner.outputSummary)")
        }
        return runner.stdout
    }
}
