// How Switchyard reaches etcd and Consul securely: TLS files and credentials, the same
// options (and the same names) for the etcd provider and the etcd state store, and for the
// Consul provider and the Consul state store.

/// TLS and credentials for a connection to etcd or Consul.
///
/// YAML: `ca_file`, `cert_file`, `key_file` (paths relative to the config file) with
/// `https://` endpoints; etcd: `username`, `password`; Consul: `token`, `token_file` or
/// `token_env` (one of them).
public struct StoreAccessConfig: Sendable, Equatable {
    /// PEM CA bundle for the server's certificate; nil: the system store.
    public var caFile: String?
    /// Client certificate and key, for servers that require one (`--client-cert-auth`).
    public var certFile: String?
    public var keyFile: String?
    /// etcd v3 authentication (`/v3/auth/authenticate`).
    public var username: String?
    public var password: String?
    /// Consul's ACL token: given inline, read from a file at startup, or from an
    /// environment variable at startup (the file and the variable keep the secret out of
    /// the config file).
    public var token: String?
    public var tokenFile: String?
    public var tokenEnvironment: String?

    public init(
        caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, username: String? = nil, password: String? = nil,
        token: String? = nil, tokenFile: String? = nil, tokenEnvironment: String? = nil
    ) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.username = username
        self.password = password
        self.token = token
        self.tokenFile = tokenFile
        self.tokenEnvironment = tokenEnvironment
    }

    /// Whether any TLS file is set.
    public var hasTLSFiles: Bool { caFile != nil || certFile != nil || keyFile != nil }

    /// The TLS files in the order `switchyard check` reports them, with their option names.
    public var tlsFiles: [(option: String, path: String)] {
        [("ca_file", caFile), ("cert_file", certFile), ("key_file", keyFile)].compactMap { option, path in path.map { (option, $0) } }
    }
}

extension StoreAccessConfig {
    /// The option names `parse` reads for a store of `kind`.
    static func optionNames(_ kind: StoreKind) -> [String] {
        let tls = ["ca_file", "cert_file", "key_file"]
        switch kind {
        case .etcd: return tls + ["username", "password"]
        case .consul: return tls + ["token", "token_file", "token_env"]
        }
    }

    enum StoreKind { case etcd, consul }

    /// Reads the access options of one provider or state store entry. `urls` are its
    /// endpoints (to check that TLS files come with `https://`).
    static func parse(_ fields: Fields, kind: StoreKind, urls: [(text: String, node: ConfigNode)], directory: String) throws(ConfigError) -> StoreAccessConfig {
        var access = StoreAccessConfig()
        func path(_ name: String) throws(ConfigError) -> String? {
            guard let node = fields.optional(name) else { return nil }
            let text = try node.string(expected: "a PEM file path")
            guard !text.isEmpty else { throw node.error("\(name) is empty; give a PEM file path") }
            return ConfigLoader.resolve(text, against: directory)
        }
        access.caFile = try path("ca_file")
        access.certFile = try path("cert_file")
        access.keyFile = try path("key_file")
        if let cert = fields.optional("cert_file"), access.keyFile == nil { throw cert.error("cert_file needs key_file (the client certificate's private key)") }
        if let key = fields.optional("key_file"), access.certFile == nil { throw key.error("key_file needs cert_file (the client certificate)") }
        if access.hasTLSFiles, let plain = urls.first(where: { !$0.text.hasPrefix("https://") }) {
            throw plain.node.error("'\(plain.text)': ca_file, cert_file and key_file are for TLS; write https://HOST:PORT")
        }
        switch kind {
        case .etcd:
            access.username = try fields.optional("username")?.string(expected: "an etcd user name")
            access.password = try fields.optional("password")?.string(expected: "the etcd user's password")
            if let user = fields.optional("username"), access.password == nil { throw user.error("username needs password") }
            if let password = fields.optional("password"), access.username == nil { throw password.error("password needs username") }
        case .consul:
            access.token = try fields.optional("token")?.string(expected: "a Consul ACL token")
            if let file = try path("token_file") { access.tokenFile = file }
            access.tokenEnvironment = try fields.optional("token_env")?.string(expected: "an environment variable name like CONSUL_HTTP_TOKEN")
            let given = ["token", "token_file", "token_env"].compactMap { fields.optional($0) }
            if given.count > 1 { throw given[1].error("give one of token, token_file and token_env") }
        }
        return access
    }
}
