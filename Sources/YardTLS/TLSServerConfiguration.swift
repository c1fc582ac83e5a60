/// One certificate a TLS listener presents: a PEM chain (leaf first) and its PEM key.
///
/// Threading: a value.
public struct TLSCertificateSource: Sendable, Equatable {
    public var certificatePath: String
    public var keyPath: String
    /// The names this certificate answers for under SNI. Empty: the certificate's DNS
    /// subjectAltNames (or, without any, its subject CN).
    public var serverNames: [String]

    public init(certificatePath: String, keyPath: String, serverNames: [String] = []) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.serverNames = serverNames
    }
}

/// How a TLS listener terminates TLS.
///
/// Threading: a value.
public struct TLSServerConfiguration: Sendable, Equatable {
    /// At least one. The first is the default: it answers clients that send no SNI or a
    /// name no certificate claims.
    public var certificates: [TLSCertificateSource]
    /// Protocols offered by ALPN, in the server's order of preference.
    public var alpn: [String]
    public var minimumVersion: TLSVersion
    /// OpenSSL cipher list for TLS 1.2.
    public var ciphers: String
    /// OpenSSL ciphersuites for TLS 1.3 (nil: OpenSSL's default, all AEAD).
    public var ciphersuites: String?

    /// Mozilla's "intermediate" TLS 1.2 list (v5.7), ECDHE only: forward secrecy and
    /// AEAD for every suite, no finite-field DH parameters to manage.
    public static let intermediateCiphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    public init(certificates: [TLSCertificateSource], alpn: [String] = ["h2", "http/1.1"],
                minimumVersion: TLSVersion = .tls12, ciphers: String = TLSServerConfiguration.intermediateCiphers,
                ciphersuites: String? = nil) {
        self.certificates = certificates
        self.alpn = alpn
        self.minimumVersion = minimumVersion
        self.ciphers = ciphers
        self.ciphersuites = ciphersuites
    }

    /// Every file the context is built from (for change detection).
    public var files: [String] { certificates.flatMap { [$0.certificatePath, $0.keyPath] } }
}
