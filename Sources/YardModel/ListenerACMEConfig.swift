// A TLS listener's `acme:` block: certificates the proxy orders itself. Pure.

/// How a TLS listener gets certificates from an ACME CA (Let's Encrypt, ZeroSSL, step-ca).
///
/// Threading: a value.
public struct ListenerACMEConfig: Sendable, Equatable {
    public enum Challenge: String, Sendable, CaseIterable {
        /// The CA fetches `http://NAME/.well-known/acme-challenge/TOKEN` (port 80).
        case http01 = "http-01"
        /// The CA connects to NAME:443 with ALPN `acme-tls/1` (RFC 8737).
        case tlsALPN01 = "tls-alpn-01"
    }

    /// The kind of key each certificate gets.
    public enum KeyType: String, Sendable, CaseIterable {
        case ecdsaP256 = "ecdsa-p256"
        /// For clients that cannot do ECDSA (old embedded devices, some Java 7 era stacks).
        case rsa2048 = "rsa2048"
    }

    /// The CA's directory URL.
    public var directory: String
    /// Contact addresses for the account.
    public var email: [String] = []
    /// PEM CAs to trust for the directory's HTTPS (a private CA); nil: the system store.
    public var caFile: String?
    public var challenge: Challenge = .http01
    /// Names ordered whatever the routes say (each its own certificate).
    public var names: [String] = []
    /// Which route hosts (from the config file and discovery labels) get a certificate:
    /// `shop.example.com` exactly, `*.example.com` any name below example.com. Empty:
    /// route hosts are not used, only `names`. A label cannot make the proxy order a
    /// certificate for a name no pattern allows.
    public var domains: [String] = []
    /// The account key, the issued certificates and keys (0600), the default certificate.
    public var storage: String
    /// External account binding: the key id, and a file holding the base64url MAC key.
    public var eabKeyID: String?
    public var eabMACKeyFile: String?
    /// The key (32 bytes, hex or base64) sealing certificate keys in the state store.
    /// Set: the fleet shares one order per name and its certificate through the state
    /// store. Nil: this replica orders and keeps its certificates alone.
    public var storeKeyFile: String?
    /// How long a name's order lease (fleet) lasts unless its holder renews it: the holder
    /// renews it every third of this while its order runs, so it only bounds how long a
    /// replica that died mid-order holds the name back.
    public var leaseMs = 60_000
    public var keyType: KeyType = .ecdsaP256
    /// The wait after a failed order, doubled per failure up to an hour.
    public var retryMs = 60_000
    /// `file:line key` of the block, for messages.
    public var origin: String = ""

    public init(directory: String, storage: String) {
        self.directory = directory
        self.storage = storage
    }

    public static let defaultStorage = "/var/lib/switchyard/acme"

    /// Whether a route host may get a certificate (the `domains` allow-list).
    public func allowsRouteHost(_ host: String) -> Bool {
        let name = host.lowercased()
        return domains.contains { pattern in
            let pattern = pattern.lowercased()
            if pattern.hasPrefix("*.") { return name.hasSuffix(String(pattern.dropFirst(1))) && name.count > pattern.count - 1 }
            return name == pattern
        }
    }

    /// The names to hold certificates for: `names`, then the allowed route hosts, each once
    /// (lower-cased, in that order).
    public func managedNames(routeHosts: [String]) -> [String] {
        var out: [String] = []
        for name in names + routeHosts.filter(allowsRouteHost) {
            let lowered = name.lowercased()
            if !out.contains(lowered) { out.append(lowered) }
        }
        return out
    }

    /// Equal when they order the same thing (where the block is written does not matter).
    public static func == (lhs: ListenerACMEConfig, rhs: ListenerACMEConfig) -> Bool {
        lhs.directory == rhs.directory && lhs.email == rhs.email && lhs.caFile == rhs.caFile && lhs.challenge == rhs.challenge
            && lhs.names == rhs.names && lhs.domains == rhs.domains && lhs.storage == rhs.storage
            && lhs.eabKeyID == rhs.eabKeyID && lhs.eabMACKeyFile == rhs.eabMACKeyFile && lhs.storeKeyFile == rhs.storeKeyFile
            && lhs.leaseMs == rhs.leaseMs && lhs.keyType == rhs.keyType && lhs.retryMs == rhs.retryMs
    }
}

extension ConfigLoader {
    static let acmeKeys = ["directory", "email", "ca_file", "challenge", "names", "domains", "storage", "eab", "store_key_file", "lease", "key_type", "retry"]

    static func parseACME(_ node: ConfigNode, directory: String) throws(ConfigError) -> ListenerACMEConfig {
        let fields = try node.fields(allowed: acmeKeys)
        let url = try fields.required("directory", hint: "the CA's directory URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory")
            .string(expected: "an https:// URL")
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw node.error("acme.directory '\(url)' is not an http(s) URL")
        }
        let storage = try fields.optional("storage")?.string(expected: "a directory for the account key and certificates")
        var acme = ListenerACMEConfig(directory: url, storage: resolve(storage ?? ListenerACMEConfig.defaultStorage, against: directory))
        acme.origin = "\(node.file)\(node.line.map { ":\($0)" } ?? "") \(node.path)"
        if let emailNode = fields.optional("email") {
            let items = (try? emailNode.list()) ?? [emailNode]
            for item in items {
                let email = try item.string(expected: "an e-mail address")
                guard email.contains("@"), !email.contains(" "), !email.contains(",") else {
                    throw item.error("'\(email)' is not an e-mail address")
                }
                acme.email.append(email)
            }
        }
        acme.caFile = try fields.optional("ca_file").map { node throws(ConfigError) in
            resolve(try node.string(expected: "a PEM file of CAs"), against: directory)
        }
        if let challengeNode = fields.optional("challenge") {
            let text = try challengeNode.string(expected: "http-01 or tls-alpn-01")
            guard let challenge = ListenerACMEConfig.Challenge(rawValue: text.lowercased()) else {
                throw challengeNode.error("unknown challenge '\(text)'; expected http-01 or tls-alpn-01")
            }
            acme.challenge = challenge
        }
        for (key, target) in [("names", \ListenerACMEConfig.names), ("domains", \ListenerACMEConfig.domains)] {
            guard let listNode = fields.optional(key) else { continue }
            for item in try listNode.list() {
                let name = try item.string(expected: "a DNS name like shop.example.com")
                let body = key == "domains" && name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
                guard !body.isEmpty, body.contains("."), body.utf8.allSatisfy({ byte in
                    (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2D || byte == 0x2E
                }) else {
                    throw item.error("'\(name)' is not a DNS name" + (key == "domains" ? " or pattern (shop.example.com, *.example.com)" : "")
                        + " (letters, digits, '-', '.')")
                }
                acme[keyPath: target].append(name.lowercased())
            }
        }
        if let eabNode = fields.optional("eab") {
            let eab = try eabNode.fields(allowed: ["kid", "hmac_key_file"])
            acme.eabKeyID = try eab.required("kid", hint: "the key id the CA shows with the MAC key").string(expected: "a key id")
            acme.eabMACKeyFile = resolve(try eab.required("hmac_key_file", hint: "a file (mode 0600) holding the base64url MAC key")
                .string(expected: "a file path"), against: directory)
        }
        acme.storeKeyFile = try fields.optional("store_key_file").map { node throws(ConfigError) in
            resolve(try node.string(expected: "a file holding 32 random bytes (openssl rand -hex 32)"), against: directory)
        }
        if let leaseNode = fields.optional("lease") {
            acme.leaseMs = try leaseNode.durationMilliseconds()
            guard acme.leaseMs >= 1000 else { throw leaseNode.error("lease must be at least 1s (an order takes seconds to minutes)") }
        }
        if let keyTypeNode = fields.optional("key_type") {
            let text = try keyTypeNode.string(expected: "ecdsa-p256 or rsa2048")
            guard let keyType = ListenerACMEConfig.KeyType(rawValue: text.lowercased()) else {
                throw keyTypeNode.error("unknown key_type '\(text)'; expected ecdsa-p256 or rsa2048")
            }
            acme.keyType = keyType
        }
        if let retryNode = fields.optional("retry") {
            acme.retryMs = try retryNode.durationMilliseconds()
            guard acme.retryMs >= 1000, acme.retryMs <= 3_600_000 else {
                throw retryNode.error("retry must be between 1s and 1h (the first wait after a failed order; it doubles up to 1h)")
            }
        }
        guard !acme.names.isEmpty || !acme.domains.isEmpty else {
            throw node.error("acme needs 'names' (certificates to order) or 'domains' (route hosts allowed a certificate)")
        }
        return acme
    }
}
