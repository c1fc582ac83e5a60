// Loading `middlewares:` of switchyard.yml: each entry a name and one type key.
//
//   middlewares:
//     strip-shop: {strip_prefix: [/shop]}
//     v2:         {add_prefix: /v2}
//     legacy:     {replace_path: /index.php}
//     security:   {headers: {set: {X-Frame-Options: DENY}, remove: [X-Powered-By]}}
//     ids:        {request_id: {header: X-Request-ID}}
//     office:     {ip_allow: [10.0.0.0/8, "fd00::/8"]}

extension ConfigLoader {
    static let middlewareTypes = ["strip_prefix", "add_prefix", "replace_path", "headers", "request_id", "ip_allow"]

    static func parseMiddlewares(_ node: ConfigNode?) throws(ConfigError) -> [String: MiddlewareKind] {
        var result: [String: MiddlewareKind] = [:]
        for (name, body) in try node?.entries() ?? [] {
            guard !name.isEmpty, name.utf8.allSatisfy({ RouteText.isTokenCharacter($0) }) else {
                throw body.error("'\(name)' is not a middleware name; use letters, digits, '-' and '_'")
            }
            let fields = try body.fields(allowed: middlewareTypes)
            let given = middlewareTypes.compactMap { type in fields.optional(type).map { (type, $0) } }
            guard given.count == 1, let (type, value) = given.first else {
                throw body.error("a middleware has exactly one type key, one of: \(middlewareTypes.joined(separator: ", "))")
            }
            result[name] = try parseMiddleware(type: type, value)
        }
        return result
    }

    private static func parseMiddleware(type: String, _ node: ConfigNode) throws(ConfigError) -> MiddlewareKind {
        switch type {
        case "strip_prefix":
            let items: [ConfigNode]
            if case .sequence = node.node { items = try node.list() } else { items = [node] }
            guard !items.isEmpty else { throw node.error("list at least one prefix to strip, e.g. [/shop]") }
            var prefixes: [String] = []
            for item in items {
                let prefix = try middlewarePath(item)
                guard prefix != "/" else { throw item.error("stripping '/' changes nothing; name a prefix like /shop") }
                prefixes.append(prefix)
            }
            return .stripPrefix(prefixes)
        case "add_prefix":
            let prefix = try middlewarePath(node)
            guard prefix != "/" else { throw node.error("adding '/' changes nothing; name a prefix like /v2") }
            return .addPrefix(prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix)
        case "replace_path":
            return .replacePath(try middlewarePath(node))
        case "headers":
            let fields = try node.fields(allowed: ["set", "remove"])
            var set: [HeaderSetting] = []
            for (name, valueNode) in try fields.optional("set")?.entries() ?? [] {
                try checkFieldName(name, at: valueNode)
                let value = try valueNode.text(expected: "the header's value")
                guard value.utf8.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) else {
                    throw valueNode.error("the value of \(name) has a control character; a header value cannot carry it")
                }
                set.append(HeaderSetting(name: name, value: value))
            }
            var remove: [String] = []
            for item in try fields.optional("remove")?.list() ?? [] {
                let name = try item.string(expected: "a header name")
                try checkFieldName(name, at: item)
                remove.append(name)
            }
            guard !set.isEmpty || !remove.isEmpty else { throw node.error("give 'set:' or 'remove:' (or both)") }
            return .headers(set: set, remove: remove)
        case "ip_allow":
            let networks = try parseNetworks(node)
            guard !networks.isEmpty else { throw node.error("list the networks allowed, e.g. [10.0.0.0/8, 192.168.1.0/24]; an empty list would refuse everyone") }
            return .ipAllow(networks)
        default:  // request_id
            let fields = try node.fields(allowed: ["header"])
            let header = try fields.optional("header")?.string(expected: "a header name") ?? "X-Request-ID"
            if let headerNode = fields.optional("header") { try checkFieldName(header, at: headerNode) }
            return .requestID(header: header)
        }
    }

    /// Fields the proxy itself writes or frames the message with cannot be set or removed.
    private static func checkFieldName(_ name: String, at node: ConfigNode) throws(ConfigError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ RouteText.isTokenCharacter($0) }) else {
            throw node.error("'\(name)' is not a header name")
        }
        let reserved = ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive",
                        "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "via"]
        if reserved.contains(name.lowercased()) {
            throw node.error("\(name) is set by the proxy or frames the message; a headers middleware cannot change it")
        }
    }

    private static func middlewarePath(_ node: ConfigNode) throws(ConfigError) -> String {
        let path = try node.string(expected: "a path like /shop")
        guard path.hasPrefix("/") else { throw node.error("'\(path)' must start with '/'") }
        guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }) else {
            throw node.error("'\(path)' has a space, a control character, '?' or '#'; a path here is plain /segments")
        }
        return path
    }
}
