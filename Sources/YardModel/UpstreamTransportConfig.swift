// A service's `upstream:` block: how Switchyard talks to the service's endpoints (HTTP/1.1
// or HTTP/2, plain or TLS), the model and its validation.

/// The protocol and transport to a service's endpoints.
///
/// ```yaml
/// upstream:
///   protocol: h2c        # http1 (default) | h2c (HTTP/2, prior knowledge) | h2 (HTTP/2 over TLS, ALPN)
///   tls:                 # TLS to the endpoints (required by h2, refused with h2c)
///     ca_file: ca.pem    # trusted CAs (PEM), relative to the services file; default: the system store
///     server_name: api.internal   # SNI and the name the certificate must carry; default: the instance address
///     verify: true       # false only for tests and migrations: the certificate is not checked
/// ```
///
/// Threading: a value.
public struct UpstreamTransport: Sendable, Hashable {
    public enum WireProtocol: String, Sendable, Hashable {
        /// HTTP/1.1 keep-alive connections, one exchange at a time (the default).
        case http1
        /// HTTP/2 with prior knowledge over plain TCP; streams multiplexed on few connections.
        case h2c
        /// HTTP/2 over TLS, negotiated by ALPN.
        case h2
    }

    public var `protocol`: WireProtocol = .http1
    public var tls: UpstreamTLS?

    public init(protocol: WireProtocol = .http1, tls: UpstreamTLS? = nil) {
        self.protocol = `protocol`
        self.tls = tls
    }

    /// Requests are multiplexed as HTTP/2 streams.
    public var multiplexed: Bool { `protocol` != .http1 }

    /// Distinguishes connection pools: endpoints at one address reached in different ways
    /// (plain, TLS with another CA or name, HTTP/2) never share a pooled connection.
    /// Empty for the default (plain HTTP/1.1), so existing pool keys stay as they were.
    public var poolFlavor: String {
        var flavor = `protocol` == .http1 ? "" : `protocol`.rawValue
        if let tls {
            flavor += "|tls:\(tls.caFile ?? "-")|\(tls.serverName ?? "-")|\(tls.verify)"
        }
        return flavor
    }
}

/// TLS from Switchyard to a service's endpoints.
public struct UpstreamTLS: Sendable, Hashable {
    /// Trusted CAs (absolute path to a PEM file); nil for the system's default store.
    public var caFile: String?
    /// Sent as SNI and checked against the certificate; nil for the instance's address
    /// (checked as an IP address, or as a name for a host name).
    public var serverName: String?
    /// Check the certificate chain and name (the default). Off only for tests.
    public var verify = true

    public init(caFile: String? = nil, serverName: String? = nil, verify: Bool = true) {
        self.caFile = caFile
        self.serverName = serverName
        self.verify = verify
    }
}

extension ConfigLoader {
    static func parseUpstream(_ node: ConfigNode, directory: String) throws(ConfigError) -> UpstreamTransport {
        let fields = try node.fields(allowed: ["protocol", "tls"])
        var transport = UpstreamTransport()
        if let protoNode = fields.optional("protocol") {
            let text = try protoNode.string(expected: "http1, h2c or h2")
            let aliases: [String: UpstreamTransport.WireProtocol] = ["http/1.1": .http1, "http1.1": .http1, "http": .http1]
            guard let proto = UpstreamTransport.WireProtocol(rawValue: text) ?? aliases[text] else {
                throw protoNode.error("unknown upstream protocol '\(text)'; expected http1, h2c (HTTP/2 without TLS) or h2 (HTTP/2 over TLS)")
            }
            transport.protocol = proto
        }
        if let tlsNode = fields.optional("tls") {
            transport.tls = try parseUpstreamTLS(tlsNode, directory: directory)
        }
        switch (transport.protocol, transport.tls) {
        case (.h2, nil):
            throw node.error("protocol h2 is HTTP/2 over TLS and needs a 'tls:' block (e.g. 'tls: {ca_file: ca.pem}'); use h2c for HTTP/2 over plain TCP")
        case (.h2c, .some):
            throw node.error("protocol h2c is HTTP/2 over plain TCP; with 'tls:' write 'protocol: h2'")
        default:
            return transport
        }
    }

    private static func parseUpstreamTLS(_ node: ConfigNode, directory: String) throws(ConfigError) -> UpstreamTLS? {
        if case .scalar = node.node {
            // `tls: true` is TLS against the system store; `tls: false` is no TLS.
            return try node.boolean() ? UpstreamTLS() : nil
        }
        let fields = try node.fields(allowed: ["ca_file", "server_name", "verify"])
        var tls = UpstreamTLS()
        if let v = fields.optional("ca_file") {
            tls.caFile = resolve(try v.string(expected: "a PEM file of trusted CAs"), against: directory)
        }
        if let v = fields.optional("server_name") {
            let name = try v.string(expected: "a server name like api.internal")
            guard !name.isEmpty, !name.contains(" "), !name.contains("/"), !name.contains(":") || name.contains("::") else {
                throw v.error("'\(name)' is not a server name; write the name the certificate carries, e.g. api.internal")
            }
            tls.serverName = name
        }
        if let v = fields.optional("verify") { tls.verify = try v.boolean() }
        if !tls.verify && tls.caFile != nil {
            throw node.error("'verify: false' ignores 'ca_file'; remove one of them")
        }
        return tls
    }
}
