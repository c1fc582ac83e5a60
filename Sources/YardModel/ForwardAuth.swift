// The `forward_auth` middleware: before a request is forwarded, a sub-request asks an auth
// service; its 2xx lets the request through (copying some of its fields into the request),
// anything else is the client's answer. Sources/YardProxy/ForwardAuthCheck.swift runs it.
//
//   middlewares:
//     sso: {forward_auth: {address: http://auth/verify, auth_response_headers: [X-User], timeout: 2s}}

/// A `forward_auth` middleware as configured.
public struct ForwardAuth: Sendable, Equatable {
    /// The auth service: a service of the discovery (`http://NAME/path`), or an address and
    /// port (`http://10.0.0.5:9000/path`, `http://auth.internal:9000/path`), which the routing
    /// table adds as a service of that name; asked over plain HTTP/1.1.
    public var service: String
    /// The IP address a host name in `service` resolved to (`resolvingHostNames`, done by
    /// the control plane at load and reload; nil for an IP address or a service name).
    public var resolvedAddress: String?
    /// The path (and query) the sub-request asks for.
    public var path: String
    /// Request fields sent on to the auth service.
    public var requestHeaders: [String]
    /// Fields of the auth service's 2xx copied into the forwarded request (the client's own
    /// fields of these names are always dropped).
    public var responseHeaders: [String]
    public var timeoutMs: Int

    public init(service: String, path: String = "/", requestHeaders: [String] = ["Authorization", "Cookie"],
                responseHeaders: [String] = [], timeoutMs: Int = 5_000) {
        self.service = service
        self.path = path
        self.requestHeaders = requestHeaders
        self.responseHeaders = responseHeaders
        self.timeoutMs = timeoutMs
    }

    /// The address and port of an `address` given as `IP:port`, or `host:port` with the
    /// host's resolved address once known (nil for a service name).
    public var fixedAddress: (host: String, port: UInt16)? {
        guard let (host, port) = hostAndPort else { return nil }
        return (resolvedAddress ?? host, port)
    }

    /// The host (brackets of an IPv6 address removed) and port of `service`, as written.
    public var hostAndPort: (host: String, port: UInt16)? {
        guard let colon = service.lastIndex(of: ":"), let port = UInt16(service[service.index(after: colon)...]), port > 0 else { return nil }
        var host = String(service[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// The host name to resolve: `service` is `host:port` and the host is not an IP address.
    public var hostName: String? {
        guard let (host, _) = hostAndPort, !ForwardAuth.isAddressAndPort(service) else { return nil }
        return host
    }

    /// The largest auth answer (head and body) passed back to a client; a bigger one is a 502.
    public static let maxAnswerBytes = 64 * 1024
}

/// A `forward_auth` in the byte form the data plane reads.
/// Threading: immutable, `Sendable`, read by every event loop.
public struct ForwardAuthStep: Sendable {
    public let service: String
    /// `GET <path> HTTP/1.1\r\nHost: <service>\r\n`: the start of every sub-request.
    public let requestStart: [UInt8]
    /// Lower-cased names of the client's fields to send on.
    public let requestHeaders: [[UInt8]]
    /// Lower-cased names of the auth answer's fields to copy.
    public let responseHeaders: [[UInt8]]
    public let timeoutMs: Int

    init(_ settings: ForwardAuth) {
        service = settings.service
        requestStart = Array("GET \(settings.path) HTTP/1.1\r\nHost: \(settings.service)\r\n".utf8)
        requestHeaders = settings.requestHeaders.map { Array($0.lowercased().utf8) }
        responseHeaders = settings.responseHeaders.map { Array($0.lowercased().utf8) }
        timeoutMs = settings.timeoutMs
    }

    /// Whether `name` (any case) is one of `names` (lower-cased).
    @inlinable
    public static func lists(_ names: [[UInt8]], _ name: UnsafeRawBufferPointer) -> Bool {
        RouteSteps.listed(name, in: names)
    }
}

extension ForwardAuth {
    /// `name:port`: a DNS host name (letters, digits, `-` and `.`, labels of 1...63, not
    /// starting or ending with `-`, the last not all digits, so a mistyped IPv4 address is
    /// not taken for a name), the port 1...65535.
    static func isHostNameAndPort(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else { return false }
        let host = text[..<colon]
        guard !host.isEmpty, host.utf8.count <= 253 else { return false }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        guard let last = labels.last, !last.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        return labels.allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }
        }
    }

    /// `IPv4:port` or `[IPv6]:port`, the port 1...65535.
    static func isAddressAndPort(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else { return false }
        let host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") {
            let inner = host.dropFirst().dropLast()
            return !inner.isEmpty && inner.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
        }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber) && (Int(part) ?? 256) <= 255
        }
    }
}

extension ConfigLoader {
    static func parseForwardAuth(_ node: ConfigNode) throws(ConfigError) -> ForwardAuth {
        let fields = try node.fields(allowed: ["address", "auth_request_headers", "auth_response_headers", "timeout"])
        let addressNode = try fields.required("address", hint: "the auth service as a URL, e.g. 'address: http://auth/verify' (auth: a service name)")
        let address = try addressNode.string(expected: "a URL like http://auth/verify")
        guard address.hasPrefix("http://") else {
            throw addressNode.error("'\(address)' must start with http:// (the auth service is asked over plain HTTP/1.1)")
        }
        let rest = address.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let service = String(rest[..<slash])
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        let named = !service.isEmpty && service.utf8.allSatisfy({ RouteText.isTokenCharacter($0) && $0 != UInt8(ascii: ":") })
        guard named || ForwardAuth.isAddressAndPort(service) || ForwardAuth.isHostNameAndPort(service) else {
            throw addressNode.error("'\(address)' must name a service of the discovery (http://auth/verify), "
                + "an IP address and port (http://10.0.0.5:9000/verify, http://[fd00::5]:9000/verify) "
                + "or a host name and port (http://auth.internal:9000/verify, resolved at load and reload)")
        }
        guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "#") }) else {
            throw addressNode.error("the path of '\(address)' has a space, a control character or '#'")
        }
        var settings = ForwardAuth(service: service, path: path)
        for (key, isRequest) in [("auth_request_headers", true), ("auth_response_headers", false)] {
            guard let listNode = fields.optional(key) else { continue }
            var names: [String] = []
            for item in try listNode.list() {
                let name = try item.string(expected: "a header name")
                guard !name.isEmpty, name.utf8.allSatisfy({ RouteText.isTokenCharacter($0) }) else { throw item.error("'\(name)' is not a header name") }
                let lowered = name.lowercased()
                let framing = ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"]
                let ours = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-method", "x-forwarded-uri", "forwarded", "via"]
                if framing.contains(lowered) || ours.contains(lowered) {
                    throw item.error("\(name) frames the message or is written by the proxy; forward_auth cannot copy it")
                }
                names.append(name)
            }
            if isRequest { settings.requestHeaders = names } else { settings.responseHeaders = names }
        }
        if let timeoutNode = fields.optional("timeout") { settings.timeoutMs = try timeoutNode.durationMilliseconds() }
        return settings
    }
}

// MARK: - Resolving host names

extension SwitchyardConfig {
    /// Fills in the address of every forward_auth given as `host:port` with a host name
    /// (`resolve` is getaddrinfo, called by the control plane: never on the data plane). A
    /// name that does not resolve keeps the address it had in `previous` (the running config,
    /// on a reload), with a warning returned; with no address to keep, the load is refused.
    ///
    /// Threading: pure apart from `resolve`; called from the control plane.
    public mutating func resolvingHostNames(previous: SwitchyardConfig?,
                                            resolve: (String) -> Result<String, ResolveFailure>) throws(ConfigError) -> [String] {
        var kept: [String: String] = [:]
        for route in previous?.routes ?? [] {
            for middleware in route.middlewares {
                if case .forwardAuth(let auth) = middleware.kind, let address = auth.resolvedAddress { kept[auth.service] = address }
            }
        }
        var resolved: [String: String] = [:]
        var warnings: [String] = []
        for r in routes.indices {
            for m in routes[r].middlewares.indices {
                guard case .forwardAuth(var auth) = routes[r].middlewares[m].kind, let host = auth.hostName else { continue }
                if let address = resolved[auth.service] {
                    auth.resolvedAddress = address
                } else {
                    switch resolve(host) {
                    case .success(let address):
                        auth.resolvedAddress = address
                    case .failure(let failure):
                        let name = routes[r].middlewares[m].name
                        guard let last = kept[auth.service] else {
                            throw ConfigError(file: sourcePath ?? "switchyard.yml", line: nil, key: "middlewares.\(name).forward_auth.address",
                                              message: "'\(host)' does not resolve (\(failure.reason)); give a name that resolves here, an IP address, or a service name")
                        }
                        warnings.append("forward_auth '\(name)': '\(host)' does not resolve (\(failure.reason)); keeping its last address \(last)")
                        auth.resolvedAddress = last
                    }
                    resolved[auth.service] = auth.resolvedAddress
                }
                routes[r].middlewares[m].kind = .forwardAuth(auth)
            }
        }
        return warnings
    }
}

/// Why a host name did not resolve (getaddrinfo's message).
public struct ResolveFailure: Error, Sendable {
    public var reason: String

    public init(_ reason: String) { self.reason = reason }
}
