// Loading `conf/switchyard.yml` into a `SwitchyardConfig`, validating every key.
//
// Every failure is a `ConfigError` naming the file, the 1-based line, the key path and what
// to do, because the operator reading it is usually mid-incident and should not have to
// guess which of three `address:` keys is wrong.

internal import Yams

/// Loads and validates Switchyard's configuration files.
///
/// Threading: the `text:` functions are pure and may be called from any thread; the
/// `path:` functions do blocking file I/O and belong on the control plane.
public enum ConfigLoader {
    // MARK: switchyard.yml

    /// Reads and validates the config file at `path`. A relative discovery file is
    /// resolved against the config file's folder and made absolute.
    public static func loadConfig(path: String) throws(ConfigError) -> SwitchyardConfig {
        let text = try readText(path: path)
        return try parseConfig(text: text, path: path, directory: directory(of: absolutePath(path)))
    }

    /// Validates `text` as the config file `path` (used for messages and to resolve a
    /// relative discovery file against `path`'s folder).
    public static func loadConfig(text: String, path: String) throws(ConfigError) -> SwitchyardConfig {
        try parseConfig(text: text, path: path, directory: directory(of: path))
    }

    static let rootKeys = ["listeners", "routes", "discovery", "admin", "workers", "timeouts", "limits", "upstream", "access_log", "log", "state_store", "templates", "trusted_proxies", "middlewares"]

    private static func parseConfig(text: String, path: String, directory: String) throws(ConfigError) -> SwitchyardConfig {
        let root = try document(text: text, path: path, expecting: "keys like 'listeners' and 'routes'")
        let fields = try root.fields(allowed: rootKeys)

        let listenersNode = try fields.required("listeners", hint: "add at least one, e.g. '- {name: web, address: 127.0.0.1:8080}'")
        let listeners = try parseListeners(listenersNode, directory: directory)
        let middlewares = try parseMiddlewares(fields.optional("middlewares"), directory: directory)
        let routes = try parseRoutes(fields.optional("routes"), middlewares: middlewares)
        var discovery = try parseDiscovery(fields.optional("discovery"), directory: directory)
        discovery.middlewares = middlewares
        let admin = try parseAdmin(fields.optional("admin"))
        let workers = try parseWorkers(fields.optional("workers"))
        var proxy = ProxySettings()
        try parseTimeouts(fields.optional("timeouts"), into: &proxy)
        try parseLimits(fields.optional("limits"), into: &proxy)
        try parseUpstream(fields.optional("upstream"), into: &proxy)
        proxy.trustedProxies = try parseNetworks(fields.optional("trusted_proxies"))

        var config = SwitchyardConfig(
            listeners: listeners, routes: routes, discovery: discovery, admin: admin,
            workers: workers, proxy: proxy, sourcePath: path
        )
        config.stateStore = try parseStateStore(fields.optional("state_store"), directory: directory)
        if !config.admin.isLoopback, config.admin.enabled, config.admin.tokenFile == nil, let node = fields.optional("admin") {
            throw node.error("the admin API binds \(config.admin.host), beyond loopback, without a token: set 'token_file:' (writes then need 'Authorization: Bearer TOKEN'), or bind 127.0.0.1")
        }
        if let file = config.admin.tokenFile { config.admin.tokenFile = resolve(file, against: directory) }
        config.templates = try parseTemplates(fields.optional("templates"), directory: directory)
        if let logNode = fields.optional("log") {
            let logFields = try logNode.fields(allowed: ["format", "level"])
            if let node = logFields.optional("format") {
                let format = try node.string(expected: "text or json")
                guard ["text", "json"].contains(format) else { throw node.error("log.format is text or json, not '\(format)'") }
                config.log.format = format
            }
            if let node = logFields.optional("level") {
                let level = try node.string(expected: "debug, info, warn or error")
                guard ["debug", "info", "warn", "error"].contains(level) else { throw node.error("log.level is debug, info, warn or error, not '\(level)'") }
                config.log.level = level
            }
        }
        if let logNode = fields.optional("access_log") {
            let logFields = try logNode.fields(allowed: ["enabled", "path"])
            config.accessLog.enabled = try logFields.optional("enabled")?.boolean() ?? true
            if let pathNode = logFields.optional("path") {
                let text = try pathNode.string(expected: "stdout, stderr or a file path")
                switch text {
                case "stdout", "-": config.accessLog.path = nil
                case "stderr": config.accessLog.path = "/dev/stderr"
                default: config.accessLog.path = resolve(text, against: directory)
                }
            }
        }
        return config
    }

    // MARK: Listeners

    private static func parseListeners(_ node: ConfigNode, directory: String) throws(ConfigError) -> [ListenerConfig] {
        let items = try node.list()
        guard !items.isEmpty else {
            throw node.error("at least one listener is required, e.g. '- {name: web, address: 127.0.0.1:8080}'")
        }
        var listeners: [ListenerConfig] = []
        var nameLines: [String: Int?] = [:]
        var addressLines: [String: (name: String, line: Int?)] = [:]
        for (index, item) in items.enumerated() {
            let fields = try item.fields(allowed: ["name", "address", "protocol", "service", "tls"])
            let name = try fields.optional("name")?.string(expected: "a listener name") ?? "listener-\(index)"
            if let previous = nameLines[name] {
                let at = fields.optional("name") ?? item
                throw at.error("duplicate listener name '\(name)' (first used\(lineSuffix(previous))); give each listener its own name")
            }
            nameLines[name] = (fields.optional("name") ?? item).line

            let addressNode = try fields.required("address", hint: "e.g. 'address: 127.0.0.1:8080'")
            let (host, port) = try listenAddress(addressNode)
            if port != 0, let previous = addressLines["\(host)|\(port)"] {
                throw addressNode.error("\(host):\(port) is already used by listener '\(previous.name)'\(lineSuffix(previous.line)); each listener needs its own address")
            }
            addressLines["\(host)|\(port)"] = (name, addressNode.line)

            var proto = ListenerProtocol.http
            if let protoNode = fields.optional("protocol") {
                let text = try protoNode.string(expected: "a protocol")
                guard let known = ListenerProtocol(rawValue: text.lowercased()) else {
                    throw protoNode.error("unsupported protocol '\(text)'; supported: http, tcp")
                }
                proto = known
            }
            var service: String?
            if let serviceNode = fields.optional("service") {
                guard proto == .tcp else {
                    throw serviceNode.error("'service' is for tcp listeners; an http listener routes with 'routes:'")
                }
                service = try serviceNode.string(expected: "a service name")
            } else if proto == .tcp {
                throw item.error("a tcp listener needs 'service:', the service its connections go to")
            }
            let tls = try fields.optional("tls").flatMap { node throws(ConfigError) in
                node.isNull ? nil : try parseTLS(node, directory: directory)
            }
            if proto == .tcp, tls != nil, let tlsNode = fields.optional("tls") {
                throw tlsNode.error("'tls' is not supported on a tcp listener (it forwards bytes untouched); terminate TLS on an http listener, or remove 'tls:' to pass TLS through to the service")
            }
            listeners.append(ListenerConfig(name: name, host: host, port: port, protocol: proto, service: service, tls: tls))
        }
        return listeners
    }

    private static func listenAddress(_ node: ConfigNode) throws(ConfigError) -> (String, UInt16) {
        let text = try node.string(expected: "an address like 127.0.0.1:8080")
        switch ConfigValues.parseListenAddress(text) {
        case .success(let address): return (address.host, address.port)
        case .failure(let problem): throw node.error(problem.message)
        }
    }

    // MARK: Routes

    static let routeKeys = [
        "name", "host", "path", "path_exact", "path_regex", "methods", "headers", "headers_present", "query", "query_present",
        "priority", "service", "middlewares",
    ] + routeSettingKeys

    private static func parseRoutes(_ node: ConfigNode?, middlewares: [String: MiddlewareKind]) throws(ConfigError) -> [RouteConfig] {
        guard let node else { return [] }
        var routes: [RouteConfig] = []
        var seen: [RouteMatch: Int?] = [:]
        for item in try node.list() {
            let fields = try item.fields(allowed: routeKeys)
            var match = RouteMatch()
            if let pathNode = fields.optional("path") {
                match.path = try routePath(pathNode)
            }
            if let exactNode = fields.optional("path_exact") {
                if fields.optional("path") != nil {
                    throw exactNode.error("a route has either 'path' (a prefix) or 'path_exact' (the whole path), not both")
                }
                match.path = try routePath(exactNode)
                match.exactPath = true
            }
            if let regexNode = fields.optional("path_regex") {
                if fields.optional("path") != nil || fields.optional("path_exact") != nil {
                    throw regexNode.error("a route has one of 'path' (a prefix), 'path_exact' or 'path_regex', not two")
                }
                match.pathRegex = try regex(regexNode, what: "path_regex")
            }
            if let hostNode = fields.optional("host") {
                match.hosts = try scalarOrList(hostNode).map { (node) throws(ConfigError) in try routeHost(node) }
            }
            if let methodsNode = fields.optional("methods") {
                match.methods = try scalarOrList(methodsNode).map { (node) throws(ConfigError) in try routeMethod(node) }
            }
            match.headers = try routeConditions(fields.optional("headers"), present: fields.optional("headers_present"), header: true)
            match.query = try routeConditions(fields.optional("query"), present: fields.optional("query_present"), header: false)
            if let priorityNode = fields.optional("priority") {
                let text = try priorityNode.string(expected: "a priority from -1000 to 1000 (higher wins)")
                let negative = text.hasPrefix("-")
                guard let magnitude = ConfigValues.parseInteger(negative ? String(text.dropFirst()) : text), magnitude <= 1000 else {
                    throw priorityNode.error("expected a priority from -1000 to 1000 (higher wins), found '\(text)'")
                }
                match.priority = negative ? -magnitude : magnitude
            }
            let name = try fields.optional("name")?.string(expected: "a route name like shop-api")
            let serviceNode = try fields.required("service", hint: "name the service this route sends to, e.g. 'service: shop'")
            let service = try serviceNode.string(expected: "a service name")

            if let previous = seen[match] {
                throw item.error("duplicates the route\(lineSuffix(previous)) with the same match (\(match.summary)); the first one would always win")
            }
            seen[match] = item.line
            var route = RouteConfig(match: match, service: service, name: name)
            route.settings = try parseRouteSettings(fields)
            if let listNode = fields.optional("middlewares") {
                let names = try listNode.list().map { (item) throws(ConfigError) in try item.string(expected: "a middleware name") }
                switch RouteSteps.build(names: names, defined: middlewares) {
                case .success: route.middlewares = names.compactMap { name in middlewares[name].map { RouteMiddleware(name: name, kind: $0) } }
                case .failure(let problem): throw listNode.error(problem.message)
                }
            }
            routes.append(route)
        }
        return routes
    }

    /// One value or a list of them (`host: a.example` or `host: [a.example, b.example]`).
    private static func scalarOrList(_ node: ConfigNode) throws(ConfigError) -> [ConfigNode] {
        if case .sequence = node.node {
            let items = try node.list()
            guard !items.isEmpty else { throw node.error("expected at least one value, found an empty list") }
            return items
        }
        return [node]
    }

    private static func routePath(_ node: ConfigNode) throws(ConfigError) -> String {
        let path = try node.string(expected: "a path like /api")
        guard path.hasPrefix("/") else {
            throw node.error("path '\(path)' must start with '/', e.g. /\(path)")
        }
        if let bad = path.first(where: { $0 == " " || $0 == "\t" || $0 == "?" || $0 == "#" }) {
            throw node.error("path '\(path)' contains '\(bad)'; a route matches a path without query or fragment (use 'query:' for parameters)")
        }
        return path
    }

    /// A LinearRegex from the node, or the engine's refusal as the node's error.
    static func regex(_ node: ConfigNode, what: String) throws(ConfigError) -> LinearRegex {
        let pattern = try node.string(expected: "a regular expression like ^/api/v[0-9]+/")
        guard !pattern.isEmpty else { throw node.error("\(what) is empty; it would match everything") }
        do {
            return try LinearRegex(pattern)
        } catch {
            throw node.error("\(what) '\(pattern)': \(error.message)")
        }
    }

    /// A method token (RFC 9110 §9.1), kept as written: methods are case-sensitive.
    private static func routeMethod(_ node: ConfigNode) throws(ConfigError) -> String {
        let method = try node.string(expected: "a method like GET")
        guard method.utf8.allSatisfy({ RouteText.isTokenCharacter($0) }) else {
            throw node.error("'\(method)' is not an HTTP method; write a token like GET or POST")
        }
        if method != method.uppercased() {
            throw node.error("methods are case-sensitive and requests use upper case; write '\(method.uppercased())'")
        }
        return method
    }

    /// `headers: {X-Env: canary}` (equals) plus `headers_present: [X-Debug]`; the same for `query`.
    private static func routeConditions(_ equals: ConfigNode?, present: ConfigNode?, header: Bool) throws(ConfigError) -> [RouteCondition] {
        var conditions: [RouteCondition] = []
        let what = header ? "header" : "query parameter"
        for (key, valueNode) in try equals?.entries() ?? [] {
            guard !key.isEmpty, key.utf8.allSatisfy({ header ? RouteText.isTokenCharacter($0) : RouteText.isQueryNameCharacter($0) }) else {
                throw valueNode.error("'\(key)' is not a valid \(what) name")
            }
            let value = try valueNode.text(expected: "the \(what)'s exact value")
            guard value.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7f && (header || ($0 != UInt8(ascii: "&") && $0 != UInt8(ascii: " "))) }) else {
                throw valueNode.error("the \(what) value '\(value)' has a character a request cannot carry here")
            }
            conditions.append(RouteCondition(name: header ? key.lowercased() : key, value: value))
        }
        for item in try present.map({ (node) throws(ConfigError) in try scalarOrList(node) }) ?? [] {
            let key = try item.string(expected: "a \(what) name")
            guard key.utf8.allSatisfy({ header ? RouteText.isTokenCharacter($0) : RouteText.isQueryNameCharacter($0) }) else {
                throw item.error("'\(key)' is not a valid \(what) name")
            }
            conditions.append(RouteCondition(name: header ? key.lowercased() : key, value: nil))
        }
        return conditions
    }

    /// A route host: a name or IP, lower-cased, without port (Host's port is ignored when
    /// matching, so a configured port could never match).
    private static func routeHost(_ node: ConfigNode) throws(ConfigError) -> String {
        var text = try node.string(expected: "a host name like shop.example.com").lowercased()
        var wildcard = ""
        if text.hasPrefix("*.") {
            wildcard = "*"
            text.removeFirst()
            guard text.dropFirst().contains(".") else {
                throw node.error("'*\(text)' would match every name under a top-level domain; write '*.example.com'")
            }
        }
        if text.contains("*") {
            throw node.error("'\(text)': a wildcard is '*.' in front (one label, e.g. '*.example.com'), nowhere else")
        }
        if !text.hasPrefix("["), let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") {
            throw node.error("host '\(text)' has a port; routes match the Host header without its port, write '\(text[..<colon])'")
        }
        let allowed = text.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || "-.:[]_".unicodeScalars.contains(scalar)
        }
        guard allowed, wildcard.isEmpty ? !text.hasPrefix(".") : !text.hasPrefix(".."), !text.hasPrefix("-") else {
            throw node.error("'\(wildcard)\(text)' is not a valid host name; use letters, digits, '-' and '.'")
        }
        return wildcard + (text.hasSuffix(".") ? String(text.dropLast()) : text)
    }

    // MARK: Admin (discovery: DiscoveryConfigLoader.swift)

    private static func parseAdmin(_ node: ConfigNode?) throws(ConfigError) -> AdminConfig {
        guard let node else { return AdminConfig() }
        let fields = try node.fields(allowed: ["address", "enabled", "token_file", "allowed_hosts", "max_connections"])
        let enabled = try fields.optional("enabled")?.boolean() ?? true
        var admin = AdminConfig(enabled: enabled)
        admin.tokenFile = try fields.optional("token_file")?.string(expected: "a file holding the admin token")
        if let hosts = fields.optional("allowed_hosts") {
            for item in try hosts.list() {
                let name = try item.string(expected: "a host name the admin API answers to, e.g. 'switchyard.internal'")
                guard name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") }) else {
                    throw item.error("'\(name)' is not a host name (letters, digits, dots, dashes, an optional ':port')")
                }
                admin.allowedHosts.append(name.lowercased())
            }
        }
        if let limit = fields.optional("max_connections") {
            admin.maxConnections = try limit.integer(in: 1...4_096, expected: "the most admin connections served at once (default 64)")
        }
        if let addressNode = fields.optional("address") {
            (admin.host, admin.port) = try listenAddress(addressNode)
        } else if enabled {
            _ = try fields.required("address", hint: "e.g. 'address: 127.0.0.1:9901', or 'enabled: false'")
        }
        return admin
    }

    /// `switchyard run --admin ADDRESS`: binds the admin listener there instead of the
    /// config's address, with the same rule (beyond loopback only with a token file).
    public static func overrideAdmin(address text: String, in config: inout SwitchyardConfig) throws(ConfigError) {
        switch ConfigValues.parseListenAddress(text) {
        case .success(let address):
            config.admin.host = address.host
            config.admin.port = address.port
            config.admin.enabled = true
        case .failure(let problem):
            throw ConfigError(file: "--admin", line: nil, key: nil, message: problem.message)
        }
        if !config.admin.isLoopback && config.admin.tokenFile == nil {
            throw ConfigError(file: "--admin", line: nil, key: nil, message: "the admin API would bind \(config.admin.host), beyond loopback, without a token: set admin.token_file in the config (writes then need 'Authorization: Bearer TOKEN'), or bind 127.0.0.1")
        }
    }

    private static func parseStateStore(_ node: ConfigNode?, directory: String) throws(ConfigError) -> StateStoreConfig {
        guard let node else { return StateStoreConfig(kind: .file(path: resolve("state.json", against: directory))) }
        let common = ["type", "path", "endpoints", "address", "prefix", "replica_id", "replica_ttl"]
        let anyStore = common + StoreAccessConfig.optionNames(.etcd) + StoreAccessConfig.optionNames(.consul)
        let type = try node.fields(allowed: anyStore).optional("type")?.string(expected: "file, etcd or consul") ?? "file"
        // The access options of the other store are errors (`token` on etcd, `username` on Consul).
        let access: [String] = type == "etcd" ? StoreAccessConfig.optionNames(.etcd) : type == "consul" ? StoreAccessConfig.optionNames(.consul) : []
        let fields = try node.fields(allowed: common + access)
        var storeAccess = StoreAccessConfig()
        let prefix = try fields.optional("prefix")?.string(expected: "a key prefix like /switchyard/")
        let kind: StateStoreConfig.Kind
        switch type {
        case "file":
            let path = try fields.optional("path")?.string(expected: "a file path like state.json") ?? "state.json"
            kind = .file(path: resolve(path, against: directory))
        case "etcd":
            let endpointsNode = try fields.required("endpoints", hint: "e.g. 'endpoints: [http://127.0.0.1:2379]'")
            var endpoints: [String] = []
            var urls: [(text: String, node: ConfigNode)] = []
            for item in try endpointsNode.list() {
                let text = try item.string(expected: "an etcd client URL like http://127.0.0.1:2379")
                guard text.hasPrefix("http://") || text.hasPrefix("https://") else { throw item.error("'\(text)': an etcd endpoint is http://HOST:PORT or https://HOST:PORT") }
                endpoints.append(text)
                urls.append((text, item))
            }
            guard !endpoints.isEmpty else { throw endpointsNode.error("list at least one etcd endpoint") }
            kind = .etcd(endpoints: endpoints, prefix: prefix ?? "/switchyard/")
            storeAccess = try StoreAccessConfig.parse(fields, kind: .etcd, urls: urls, directory: directory)
        case "consul":
            let address = try fields.optional("address").map { node throws(ConfigError) in try consulAddress(node) } ?? "http://127.0.0.1:8500"
            storeAccess = try StoreAccessConfig.parse(
                fields, kind: .consul, urls: [(address, fields.optional("address") ?? node)], directory: directory)
            var keyPrefix = prefix ?? "switchyard/"
            while keyPrefix.hasPrefix("/") { keyPrefix.removeFirst() }
            kind = .consul(address: address, prefix: keyPrefix, token: storeAccess.token)
        default:
            throw (fields.optional("type") ?? node).error("unknown state store '\(type)'; use file, etcd or consul")
        }
        var config = StateStoreConfig(kind: kind)
        config.access = storeAccess
        config.replicaID = try fields.optional("replica_id")?.string(expected: "a replica name")
        if let ttl = fields.optional("replica_ttl") {
            config.replicaTTLSeconds = max(1, try ttl.durationMilliseconds() / 1000)
        }
        return config
    }

    private static func parseWorkers(_ node: ConfigNode?) throws(ConfigError) -> Int? {
        guard let node else { return nil }
        let text = try node.text(expected: "'auto' or a number of workers")
        if text.lowercased() == "auto" { return nil }
        return try node.integer(in: 1...256, expected: "'auto' or a number of workers")
    }

    // MARK: Timeouts and limits

    private static func parseTimeouts(_ node: ConfigNode?, into proxy: inout ProxySettings) throws(ConfigError) {
        guard let node else { return }
        let keys: [(String, WritableKeyPath<ProxySettings, Int>)] = [
            ("client_header", \.clientHeaderTimeoutMs), ("client_idle", \.clientIdleTimeoutMs),
            ("client_body", \.clientBodyTimeoutMs),
            ("upstream_connect", \.upstreamConnectTimeoutMs), ("upstream_response", \.upstreamResponseTimeoutMs),
            ("upstream_idle", \.upstreamIdleTimeoutMs), ("drain", \.drainTimeoutMs),
            ("flip_drain", \.flipDrainMs), ("tunnel_idle", \.tunnelIdleTimeoutMs), ("queue", \.queueTimeoutMs),
        ]
        let fields = try node.fields(allowed: keys.map(\.0))
        for (key, field) in keys {
            if let value = fields.optional(key) { proxy[keyPath: field] = try value.durationMilliseconds(allowZero: key == "flip_drain") }
        }
    }

    /// `trusted_proxies: [10.0.0.0/8, "::1"]`: CIDRs or bare addresses.
    static func parseNetworks(_ node: ConfigNode?) throws(ConfigError) -> [Network] {
        guard let node, !node.isNull else { return [] }
        var networks: [Network] = []
        for item in try node.list() {
            let text = try item.string(expected: "a network like 10.0.0.0/8 or an address")
            guard let network = ConfigValues.parseNetwork(text) else {
                throw item.error("'\(text)' is not a network; write a CIDR like 10.0.0.0/8 or fd00::/8, or an address")
            }
            networks.append(network)
        }
        return networks
    }

    private static func parseLimits(_ node: ConfigNode?, into proxy: inout ProxySettings) throws(ConfigError) {
        guard let node else { return }
        let fields = try node.fields(allowed: [
            "max_connections", "max_request_line", "max_header_bytes", "max_headers",
            "max_connections_per_client", "min_body_rate", "min_body_rate_after",
        ])
        if let value = fields.optional("max_connections") {
            proxy.maxConnections = try value.integer(in: 1...1_000_000)
        }
        if let value = fields.optional("max_connections_per_client") {
            proxy.maxConnectionsPerClient = try value.integer(in: 0...1_000_000)
        }
        if let value = fields.optional("min_body_rate") {
            proxy.minBodyRate = try value.bytes(in: 0...1_073_741_824)
        }
        if let value = fields.optional("min_body_rate_after") {
            proxy.minBodyRateGraceMs = try value.durationMilliseconds(allowZero: true)
        }
        if let value = fields.optional("max_request_line") {
            proxy.maxRequestLineBytes = try value.bytes(in: 64...1_048_576)
        }
        if let value = fields.optional("max_header_bytes") {
            proxy.maxHeaderBytes = try value.bytes(in: 1_024...1_048_576)
        }
        if let value = fields.optional("max_headers") {
            proxy.maxHeaders = try value.integer(in: 1...1_000)
        }
        // The request head includes the request line, so a smaller head limit would make
        // the line limit unreachable and reject valid requests with the wrong status.
        if proxy.maxHeaderBytes < proxy.maxRequestLineBytes {
            let at = fields.optional("max_header_bytes") ?? fields.optional("max_request_line") ?? node
            throw at.error("max_header_bytes (\(proxy.maxHeaderBytes)) must be at least max_request_line (\(proxy.maxRequestLineBytes)); the head includes the request line")
        }
    }

    private static func parseUpstream(_ node: ConfigNode?, into proxy: inout ProxySettings) throws(ConfigError) {
        guard let node else { return }
        let fields = try node.fields(allowed: ["max_idle_per_endpoint"])
        if let value = fields.optional("max_idle_per_endpoint") {
            proxy.maxIdlePerEndpoint = try value.integer(in: 0...10_000)
        }
    }

    // MARK: YAML documents

    /// Parses `text` into its root node, turning YAML syntax errors into `ConfigError`s with
    /// the line libyaml reports. An empty document is an error: for a watched file, an
    /// empty read is usually a writer caught mid-rewrite, and "no services" must be said
    /// explicitly (`services: {}`).
    static func document(text: String, path: String, expecting: String) throws(ConfigError) -> ConfigNode {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw syntaxError(error, path: path)
        } catch {
            throw fileError(path, "cannot parse: \(error)")
        }
        guard let root, !ConfigNode(node: root, path: "", file: path).isNull else {
            throw fileError(path, "the file is empty; expected \(expecting)")
        }
        return ConfigNode(node: root, path: "", file: path)
    }

    private static func syntaxError(_ error: YamlError, path: String) -> ConfigError {
        let hint = "check the indentation and quoting around this line"
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            let during = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return ConfigError(file: path, line: mark.line, key: nil, message: "YAML syntax error: \(problem)\(during); \(hint)")
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return ConfigError(file: path, line: context.mark.line, key: nil, message: "duplicate key \(keys) in the same mapping; keep only one")
        case let .reader(problem, offset, _, yaml):
            let line = offset.map { offset in 1 + yaml.utf8.prefix(offset).count(where: { $0 == UInt8(ascii: "\n") }) }
            return ConfigError(file: path, line: line, key: nil, message: "cannot read the text: \(problem)")
        default:
            return ConfigError(file: path, line: nil, key: nil, message: "YAML error: \(error)")
        }
    }

    static func lineSuffix(_ line: Int??) -> String {
        guard let line = line ?? nil else { return "" }
        return " at line \(line)"
    }
}
