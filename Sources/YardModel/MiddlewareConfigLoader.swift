// Loading `middlewares:` of switchyard.yml: each entry a name and one type key.
//
//   middlewares:
//     strip-shop: {strip_prefix: [/shop]}
//     v2:         {add_prefix: /v2}
//     legacy:     {replace_path: /index.php}
//     security:   {headers: {set: {X-Env: prod}, remove: [X-Debug], response: {set: {X-Frame-Options: DENY}}}}
//     ids:        {request_id: {header: X-Request-ID, traceparent: true}}
//     office:     {ip_allow: [10.0.0.0/8, "fd00::/8"]}
//     to-https:   {redirect_scheme: {scheme: https, permanent: true}}
//     moved:      {redirect: {from: /blog, to: "https://blog.example.com/"}}
//     www:        {redirect: {regex: "^https?://www\\.(.+)", replacement: "https://${1}"}}
//     per-client: {rate_limit: {rate: 10/s, burst: 20}}
//     staff:      {basic_auth: {file: staff.htpasswd, realm: staff}}
//     gzip:       {compress: {min_bytes: 1024, level: 5}}
//     sso:        {forward_auth: {address: http://auth/verify, auth_response_headers: [X-User]}}

extension ConfigLoader {
    static let middlewareTypes = [
        "strip_prefix", "add_prefix", "replace_path", "headers", "request_id", "ip_allow", "redirect_scheme", "redirect", "rate_limit", "basic_auth",
        "compress", "forward_auth", "mirror",
    ]

    static func parseMiddlewares(_ node: ConfigNode?, directory: String) throws(ConfigError) -> [String: MiddlewareKind] {
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
            result[name] = try parseMiddleware(type: type, value, directory: directory)
        }
        return result
    }

    private static func parseMiddleware(type: String, _ node: ConfigNode, directory: String) throws(ConfigError) -> MiddlewareKind {
        switch type {
        case "basic_auth":
            let fields = try node.fields(allowed: ["file", "realm", "forward_authorization"])
            let fileNode = try fields.required("file", hint: "the htpasswd file, e.g. 'file: users.htpasswd' (make it with htpasswd -B)")
            let file = resolve(try fileNode.string(expected: "an htpasswd file path"), against: directory)
            let text = try readText(path: file)
            if case .failure(let problem) = Htpasswd.parse(text, path: file) { throw fileNode.error(problem.message) }
            let realm = try fields.optional("realm")?.string(expected: "a realm name") ?? "switchyard"
            guard realm.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) else {
                throw (fields.optional("realm") ?? node).error("the realm '\(realm)' has a quote, a backslash or a non-ASCII character")
            }
            return .basicAuth(BasicAuth(file: file, realm: realm,
                                        forwardAuthorization: try fields.optional("forward_authorization")?.boolean() ?? false))
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
            let fields = try node.fields(allowed: ["set", "add", "remove", "response"])
            var edits = HeaderEdits()
            (edits.set, edits.add, edits.remove) = try headerEdits(fields, response: false)
            if let responseNode = fields.optional("response") {
                let response = try responseNode.fields(allowed: ["set", "add", "remove"])
                (edits.responseSet, edits.responseAdd, edits.responseRemove) = try headerEdits(response, response: true)
                guard !edits.responseSet.isEmpty || !edits.responseAdd.isEmpty || !edits.responseRemove.isEmpty else {
                    throw responseNode.error("give 'set:', 'add:' or 'remove:' for the response")
                }
            }
            guard edits != HeaderEdits() else { throw node.error("give 'set:', 'add:', 'remove:' or 'response:'") }
            return .headers(edits)
        case "redirect_scheme":
            if case .scalar = node.node { return .redirectScheme(RedirectScheme(scheme: try redirectSchemeName(node))) }
            let fields = try node.fields(allowed: ["scheme", "port", "permanent"])
            return .redirectScheme(RedirectScheme(
                scheme: try fields.optional("scheme").map { (n) throws(ConfigError) in try redirectSchemeName(n) } ?? "https",
                port: try fields.optional("port")?.integer(in: 1...65_535, expected: "a port"),
                permanent: try fields.optional("permanent")?.boolean() ?? true))
        case "redirect":
            let fields = try node.fields(allowed: ["from", "exact", "to", "permanent", "regex", "replacement"])
            if let regexNode = fields.optional("regex") {
                return .redirectRegex(try regexRedirect(fields, regexNode: regexNode))
            }
            if let replacementNode = fields.optional("replacement") {
                throw replacementNode.error("'replacement' goes with 'regex'; a prefix redirect takes 'from' and 'to'")
            }
            let from = try middlewarePath(try fields.required("from", hint: "the path prefix to redirect, e.g. 'from: /blog'"))
            let toNode = try fields.required("to", hint: "where to, a path or a URL, e.g. 'to: https://blog.example.com/'")
            let to = try toNode.string(expected: "a path or an absolute URL")
            let absolute = to.hasPrefix("https://") || to.hasPrefix("http://")
            guard to.hasPrefix("/") || absolute else {
                throw toNode.error("'\(to)' must be a path (/new) or an http(s):// URL")
            }
            guard to.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }), !to.contains("#") else {
                throw toNode.error("'\(to)' has a space, a control character or '#'; a Location cannot carry it")
            }
            if to.contains("$") {
                throw toNode.error("'\(to)' has '$': redirect takes a prefix, not a regex, with 'from' and 'to' (the rest of the path is appended to 'to'); for $1 write 'regex:' and 'replacement:'")
            }
            let redirect = PathRedirect(from: from, to: to, exact: try fields.optional("exact")?.boolean() ?? false,
                                        permanent: try fields.optional("permanent")?.boolean() ?? true)
            let target = String(to.split(separator: "?", maxSplits: 1).first ?? "")
            if !absolute, Array(target.utf8).withUnsafeBytes({ redirect.matchedLength($0) }) != nil {
                throw toNode.error("'\(to)' is itself under '\(from)': every redirect would be redirected again")
            }
            return .redirect(redirect)
        case "mirror":
            return .mirror(try parseMirror(node))
        case "rate_limit":
            let fields = try node.fields(allowed: ["rate", "burst", "header", "table_size"])
            let rate = try rateValue(try fields.required("rate", hint: "requests per time, e.g. 'rate: 10/s' or '600/m'"))
            let burst = try fields.optional("burst")?.integer(in: 1...1_000_000, expected: "a request count") ?? max(Int(exactly: rate.rounded(.up)) ?? 1, 1)
            var header: String?
            if let headerNode = fields.optional("header") {
                let name = try headerNode.string(expected: "a header name")
                guard name.utf8.allSatisfy({ RouteText.isTokenCharacter($0) }) else { throw headerNode.error("'\(name)' is not a header name") }
                header = name
            }
            let size = try fields.optional("table_size")?.integer(in: 1_024...16_777_216, expected: "a slot count (a power of two)") ?? 65_536
            if size & (size - 1) != 0, let sizeNode = fields.optional("table_size") {
                throw sizeNode.error("table_size \(size) is not a power of two, e.g. 65536")
            }
            return .rateLimit(RateLimit(rate: rate, burst: burst, header: header, tableSize: size))
        case "compress":
            return .compress(try parseCompress(node))
        case "forward_auth":
            return .forwardAuth(try parseForwardAuth(node))
        case "ip_allow":
            let networks = try parseNetworks(node)
            guard !networks.isEmpty else { throw node.error("list the networks allowed, e.g. [10.0.0.0/8, 192.168.1.0/24]; an empty list would refuse everyone") }
            return .ipAllow(networks)
        default:  // request_id
            let fields = try node.fields(allowed: ["header", "traceparent", "sampled"])
            let header = try fields.optional("header")?.string(expected: "a header name") ?? "X-Request-ID"
            if let headerNode = fields.optional("header") { try checkFieldName(header, at: headerNode) }
            return .requestID(header: header, traceparent: try fields.optional("traceparent")?.boolean() ?? true,
                              sampled: try fields.optional("sampled")?.boolean() ?? false)
        }
    }

    /// `redirect: {regex: ..., replacement: ..., permanent: ...}`.
    private static func regexRedirect(_ fields: Fields, regexNode: ConfigNode) throws(ConfigError) -> RegexRedirect {
        for key in ["from", "to", "exact"] {
            if let other = fields.optional(key) {
                throw other.error("a redirect has either 'regex' and 'replacement' or 'from' and 'to'; '\(key)' does not go with 'regex'")
            }
        }
        let regex = try regex(regexNode, what: "the redirect regex")
        let replacementNode = try fields.required("replacement", hint: "the Location, with $1..$9 for the regex's groups, e.g. 'replacement: https://example.com/${1}'")
        let replacement = try replacementNode.string(expected: "a Location with $1..$9 for the regex's groups")
        let permanent = try fields.optional("permanent")?.boolean() ?? true
        do {
            return try RegexRedirect(regex: regex, replacement: replacement, permanent: permanent)
        } catch {
            throw replacementNode.error("replacement '\(replacement)': \(error.message)")
        }
    }

    /// `set:` / `add:` (name: value maps) and `remove:` (names) of a headers middleware.
    private static func headerEdits(_ fields: Fields, response: Bool) throws(ConfigError)
        -> ([HeaderSetting], [HeaderSetting], [String]) {
        var lists: [[HeaderSetting]] = []
        for key in ["set", "add"] {
            var settings: [HeaderSetting] = []
            for (name, valueNode) in try fields.optional(key)?.entries() ?? [] {
                try checkFieldName(name, at: valueNode, response: response)
                let value = try valueNode.text(expected: "the header's value")
                guard value.utf8.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) else {
                    throw valueNode.error("the value of \(name) has a control character; a header value cannot carry it")
                }
                settings.append(HeaderSetting(name: name, value: value))
            }
            lists.append(settings)
        }
        var remove: [String] = []
        for item in try fields.optional("remove")?.list() ?? [] {
            let name = try item.string(expected: "a header name")
            try checkFieldName(name, at: item, response: response)
            remove.append(name)
        }
        return (lists[0], lists[1], remove)
    }

    private static func redirectSchemeName(_ node: ConfigNode) throws(ConfigError) -> String {
        let scheme = try node.string(expected: "https or http").lowercased()
        guard scheme == "https" || scheme == "http" else { throw node.error("the scheme is https or http, found '\(scheme)'") }
        return scheme
    }

    /// `10/s`, `600/m`, `3600/h` or a bare number (per second), as tokens per second.
    private static func rateValue(_ node: ConfigNode) throws(ConfigError) -> Double {
        let text = try node.string(expected: "a rate like 10/s")
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        let per: Double
        switch parts.count == 2 ? String(parts[1]).trimmingBlanks : "s" {
        case "s": per = 1
        case "m": per = 60
        case "h": per = 3600
        default: throw node.error("'\(text)' is not a rate; write requests per s, m or h, e.g. 10/s or 600/m")
        }
        guard parts.count <= 2, let count = Double(String(parts[0]).trimmingBlanks), count.isFinite, count > 0, count <= 1_000_000 else {
            throw node.error("'\(text)' is not a rate; write a positive count per s, m or h, e.g. 10/s or 600/m")
        }
        guard count / per >= 1.0 / 86_400 else { throw node.error("'\(text)' is slower than one request a day") }
        return count / per
    }

    /// Fields the proxy itself writes or frames the message with cannot be set or removed.
    private static func checkFieldName(_ name: String, at node: ConfigNode, response: Bool = false) throws(ConfigError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ RouteText.isTokenCharacter($0) }) else {
            throw node.error("'\(name)' is not a header name")
        }
        let reserved = response
            ? ["content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"]
            : ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive",
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
