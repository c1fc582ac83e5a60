// A listener's `tls:` block: the model, and its validation.

/// TLS termination on a listener, as configured. Paths are absolute (resolved against the
/// config file's folder); loading the files is the control plane's job (YardTLS).
///
/// Threading: a value.
public struct ListenerTLSConfig: Sendable, Equatable {
    /// One certificate chain and its key; `names` overrides the names read from the
    /// certificate for SNI.
    public struct Certificate: Sendable, Equatable {
        public var cert: String
        public var key: String
        public var names: [String]
        /// `file:line key` of the entry, for messages about the files it names.
        public var origin: String

        public init(cert: String, key: String, names: [String] = [], origin: String = "") {
            self.cert = cert
            self.key = key
            self.names = names
            self.origin = origin
        }

        /// Equal when they load the same thing (where they are written does not matter).
        public static func == (lhs: Certificate, rhs: Certificate) -> Bool {
            lhs.cert == rhs.cert && lhs.key == rhs.key && lhs.names == rhs.names
        }
    }

    /// Protocols ALPN can offer; the data plane offers those it serves.
    public static let knownALPN = ["h2", "http/1.1"]
    public static let knownVersions = ["1.2", "1.3"]

    /// The first is the default certificate (no SNI, or a name none claims). May be empty
    /// with `acme` (then a self-signed default is made at start).
    public var certificates: [Certificate]
    /// Certificates the proxy orders itself from an ACME CA (docs/acme.md).
    public var acme: ListenerACMEConfig?
    public var alpn: [String] = ListenerTLSConfig.knownALPN
    /// "1.2" or "1.3".
    public var minVersion = "1.2"
    /// OpenSSL cipher list for TLS 1.2; nil for Switchyard's default (Mozilla intermediate).
    public var ciphers: String?
    /// OpenSSL TLS 1.3 ciphersuites; nil for OpenSSL's default.
    public var ciphersuites: String?
    /// How often session-ticket keys rotate (the previous key is still accepted).
    public var ticketRotationMs = 3_600_000

    public init(certificates: [Certificate]) {
        self.certificates = certificates
    }
}

extension ConfigLoader {
    static let tlsKeys = ["certificates", "alpn", "min_version", "ciphers", "ciphersuites", "session_ticket_rotation", "acme"]

    static func parseTLS(_ node: ConfigNode, directory: String) throws(ConfigError) -> ListenerTLSConfig {
        let fields = try node.fields(allowed: tlsKeys)
        let acme = try fields.optional("acme").map { node throws(ConfigError) in try parseACME(node, directory: directory) }
        let listNode = acme != nil ? fields.optional("certificates")
            : try fields.required("certificates", hint: "e.g. 'certificates: [{cert: site.pem, key: site.key}]', or 'acme: {...}' to order them")
        var certificates: [ListenerTLSConfig.Certificate] = []
        for item in try listNode?.list() ?? [] {
            let entry = try item.fields(allowed: ["cert", "key", "names"])
            let cert = try entry.required("cert", hint: "the PEM certificate chain, leaf first, e.g. 'cert: site.pem'")
                .string(expected: "a PEM file path")
            let key = try entry.required("key", hint: "the PEM private key, e.g. 'key: site.key'")
                .string(expected: "a PEM file path")
            var names: [String] = []
            if let namesNode = entry.optional("names") {
                for nameNode in try namesNode.list() {
                    let name = try nameNode.string(expected: "a server name like shop.example.com or *.example.com")
                    guard !name.contains(" "), !name.dropFirst(name.hasPrefix("*.") ? 2 : 0).contains("*") else {
                        throw nameNode.error("'\(name)' is not a server name; a wildcard may only be the whole first label (*.example.com)")
                    }
                    names.append(name)
                }
            }
            let origin = "\(item.file)\(item.line.map { ":\($0)" } ?? "") \(item.path)"
            certificates.append(ListenerTLSConfig.Certificate(
                cert: resolve(cert, against: directory), key: resolve(key, against: directory), names: names, origin: origin))
        }
        if let listNode, certificates.isEmpty, acme == nil {
            throw listNode.error("at least one certificate is required; the first is the default")
        }
        var tls = ListenerTLSConfig(certificates: certificates)
        tls.acme = acme
        if let alpnNode = fields.optional("alpn") {
            var alpn: [String] = []
            for item in try alpnNode.list() {
                let text = try item.string(expected: "a protocol: h2 or http/1.1")
                guard ListenerTLSConfig.knownALPN.contains(text) else {
                    let near = Suggestion.closest(to: text, among: ListenerTLSConfig.knownALPN)
                    throw item.error("unknown ALPN protocol '\(text)'" + (near.map { " (did you mean '\($0)'?)" } ?? "; expected h2 or http/1.1"))
                }
                if !alpn.contains(text) { alpn.append(text) }
            }
            guard !alpn.isEmpty else { throw alpnNode.error("list at least one protocol, e.g. [h2, http/1.1]") }
            tls.alpn = alpn
        }
        if let versionNode = fields.optional("min_version") {
            let text = try versionNode.string(expected: "a TLS version: 1.2 or 1.3")
            var normalized = Substring(text.lowercased())
            for prefix in ["tlsv", "tls"] where normalized.hasPrefix(prefix) { normalized = normalized.dropFirst(prefix.count) }
            guard ListenerTLSConfig.knownVersions.contains(String(normalized)) else {
                throw versionNode.error("unsupported min_version '\(text)'; expected 1.2 or 1.3 (TLS 1.0 and 1.1 are insecure and not offered)")
            }
            tls.minVersion = String(normalized)
        }
        tls.ciphers = try fields.optional("ciphers")?.string(expected: "an OpenSSL cipher list")
        tls.ciphersuites = try fields.optional("ciphersuites")?.string(expected: "OpenSSL TLS 1.3 ciphersuites")
        if let rotation = fields.optional("session_ticket_rotation") {
            tls.ticketRotationMs = try rotation.durationMilliseconds()
        }
        return tls
    }
}
