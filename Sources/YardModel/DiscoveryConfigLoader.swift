// Parsing the `discovery:` section of switchyard.yml. Two forms are valid:
//
//   discovery: {provider: file, file: services.yml}          # one file provider
//   discovery:
//     quiescence: {min: 100ms, max: 1s}
//     providers:
//       - {type: file, file: services.yml}
//       - {type: etcd, endpoints: [http://127.0.0.1:2379], prefix: /switchyard/}
//       - {type: dns, server: 127.0.0.1:53, services: {web: {name: tasks.web, port: 8080}}}
//
// Every error names the file, the line and the key path, like the rest of the loader.

extension ConfigLoader {
    /// The provider types this build knows (a `type:` not in it is refused).
    static let providerTypes = ["file", "etcd", "dns", "docker", "swarm", "consul"]

    // MARK: discovery

    static func parseDiscovery(_ node: ConfigNode?, directory: String) throws(ConfigError) -> DiscoveryConfig {
        let defaultFile = "services.yml"
        guard let node else { return .file(path: resolve(defaultFile, against: directory)) }
        let fields = try node.fields(allowed: ["provider", "file", "providers", "quiescence"])
        var config: DiscoveryConfig
        if let providersNode = fields.optional("providers") {
            for key in ["provider", "file"] {
                if let legacy = fields.optional(key) {
                    throw legacy.error("'\(key)' and 'providers' cannot be combined; list the file provider under 'providers' as '- {type: file, file: ...}'")
                }
            }
            config = DiscoveryConfig(providers: try parseProviders(providersNode, directory: directory))
        } else {
            if let providerNode = fields.optional("provider") {
                let provider = try providerNode.string(expected: "a provider name")
                guard provider == "file" else {
                    let advice = providerTypes.contains(provider)
                        ? "; '\(provider)' takes settings: write 'providers: [{type: \(provider), ...}]'"
                        : "; this build supports: \(providerTypes.joined(separator: ", "))"
                    throw providerNode.error("unsupported provider '\(provider)'\(advice)")
                }
            }
            let file = try fields.optional("file")?.string(expected: "a file path like services.yml") ?? defaultFile
            config = .file(path: resolve(file, against: directory))
        }
        if let quiescenceNode = fields.optional("quiescence") {
            let window = try quiescenceNode.fields(allowed: ["min", "max"])
            config.quiescenceMinMs = try window.optional("min")?.durationMilliseconds(allowZero: true) ?? DiscoveryConfig.defaultQuiescenceMinMs
            config.quiescenceMaxMs = try window.optional("max")?.durationMilliseconds(allowZero: true) ?? max(config.quiescenceMinMs, DiscoveryConfig.defaultQuiescenceMaxMs)
            if config.quiescenceMaxMs < config.quiescenceMinMs {
                throw (window.optional("max") ?? quiescenceNode).error("max (\(config.quiescenceMaxMs) ms) must be at least min (\(config.quiescenceMinMs) ms)")
            }
        }
        return config
    }

    private static func parseProviders(_ node: ConfigNode, directory: String) throws(ConfigError) -> [ProviderConfig] {
        let items = try node.list()
        guard !items.isEmpty else {
            throw node.error("at least one provider is required, e.g. '- {type: file, file: services.yml}'")
        }
        var providers: [ProviderConfig] = []
        var names: [String: Int?] = [:]
        var typeCounts: [String: Int] = [:]
        for item in items {
            guard case .mapping = item.node else {
                throw item.error("expected a provider like '{type: file, file: services.yml}', found \(item.kind)")
            }
            let typeNode = try item.fields(allowed: Self.anyKey(item)).required("type", hint: "one of \(providerTypes.joined(separator: ", "))")
            let type = try typeNode.string(expected: "a provider type")
            let source: ProviderSource
            switch type {
            case "file": source = .file(try parseFileSource(item, directory: directory))
            case "etcd": source = .etcd(try parseEtcdSource(item, directory: directory))
            case "dns": source = .dns(try parseDNSSource(item))
            case "docker": source = .docker(try parseDockerSource(item))
            case "swarm": source = .swarm(try parseSwarmSource(item))
            case "consul": source = .consul(try parseConsulSource(item, directory: directory))
            default:
                let near = Suggestion.closest(to: type, among: providerTypes).map { " (did you mean '\($0)'?)" } ?? ""
                throw typeNode.error("unsupported provider type '\(type)'\(near); this build supports: \(providerTypes.joined(separator: ", "))")
            }
            typeCounts[type, default: 0] += 1
            let nameNode = try item.fields(allowed: Self.anyKey(item)).optional("name")
            let count = typeCounts[type]!
            let name = try nameNode?.string(expected: "a provider name") ?? (count == 1 ? type : "\(type)#\(count)")
            if let previous = names[name] {
                throw (nameNode ?? item).error("duplicate provider name '\(name)' (also\(lineSuffix(previous))); give each a distinct 'name:'")
            }
            names[name] = item.line
            providers.append(ProviderConfig(name: name, source: source))
        }
        return providers
    }

    /// Every key of a mapping node (to read `type` and `name` before the type's schema
    /// checks the rest).
    private static func anyKey(_ node: ConfigNode) -> [String] {
        guard case .mapping(let mapping) = node.node else { return [] }
        return mapping.compactMap { key, _ in key.scalar?.string }
    }

    // MARK: Providers

    /// An etcd member URL, `http://HOST:PORT` or `https://HOST:PORT` with an IP address (or
    /// `localhost`), normalised to scheme and authority.
    static func etcdEndpoint(_ text: String, _ item: ConfigNode) throws(ConfigError) -> String {
        let scheme = text.hasPrefix("https://") ? "https://" : "http://"
        guard text.hasPrefix(scheme) else { throw item.error("'\(text)' is not an http:// or https:// URL; write http://HOST:PORT or https://HOST:PORT") }
        let hostPort = String(text.dropFirst(scheme.count).prefix { $0 != "/" })
        guard case .success(let address) = ConfigValues.parseListenAddress(hostPort), ConfigValues.isIPLiteral(address.host) || address.host == "localhost",
              !ConfigValues.isUnspecifiedAddress(address.host)
        else {
            throw item.error("'\(text)' needs an IP address and a port, like \(scheme)127.0.0.1:2379")
        }
        return scheme + hostPort
    }

    private static func parseFileSource(_ node: ConfigNode, directory: String) throws(ConfigError) -> FileSourceConfig {
        let fields = try node.fields(allowed: ["type", "name", "file", "poll"])
        let file = try fields.required("file", hint: "e.g. 'file: services.yml'").string(expected: "a file path like services.yml")
        var config = FileSourceConfig(path: resolve(file, against: directory))
        if let poll = fields.optional("poll") { config.pollIntervalMs = try poll.durationMilliseconds() }
        return config
    }

    private static func parseEtcdSource(_ node: ConfigNode, directory: String) throws(ConfigError) -> EtcdSourceConfig {
        let fields = try node.fields(allowed: ["type", "name", "endpoints", "prefix", "timeout"] + StoreAccessConfig.optionNames(.etcd))
        let endpointsNode = try fields.required("endpoints", hint: "e.g. 'endpoints: [http://127.0.0.1:2379]'")
        var endpoints: [String] = []
        var urls: [(text: String, node: ConfigNode)] = []
        let items = endpointsNode.isNull ? [] : (try? endpointsNode.list()) ?? [endpointsNode]
        for item in items {
            let text = try item.string(expected: "a URL like http://127.0.0.1:2379")
            endpoints.append(try etcdEndpoint(text, item))
            urls.append((text, item))
        }
        guard !endpoints.isEmpty else { throw endpointsNode.error("at least one endpoint is required, e.g. [http://127.0.0.1:2379]") }
        var config = EtcdSourceConfig(endpoints: endpoints)
        config.access = try StoreAccessConfig.parse(fields, kind: .etcd, urls: urls, directory: directory)
        if let prefixNode = fields.optional("prefix") {
            var prefix = try prefixNode.string(expected: "a key prefix like /switchyard/")
            guard prefix.hasPrefix("/") else { throw prefixNode.error("prefix '\(prefix)' must start with '/'") }
            if !prefix.hasSuffix("/") { prefix += "/" }
            config.prefix = prefix
        }
        if let timeout = fields.optional("timeout") { config.requestTimeoutMs = try timeout.durationMilliseconds() }
        return config
    }

    private static func parseDNSSource(_ node: ConfigNode) throws(ConfigError) -> DNSSourceConfig {
        let fields = try node.fields(allowed: ["type", "name", "server", "timeout", "ttl", "services"])
        let serverNode = try fields.required("server", hint: "the resolver, e.g. 'server: 127.0.0.1:53'")
        let serverText = try serverNode.string(expected: "an address like 127.0.0.1:53")
        // `127.0.0.1` and `::1` mean port 53; `127.0.0.1:5353` and `[::1]:5353` carry one.
        let candidates = [serverText, "\(serverText):53", "[\(serverText)]:53"]
        let parsed = candidates.lazy.compactMap { text -> (host: String, port: UInt16)? in
            guard case .success(let address) = ConfigValues.parseListenAddress(text) else { return nil }
            return address
        }.first
        guard let server = parsed, ConfigValues.isIPLiteral(server.host), !ConfigValues.isUnspecifiedAddress(server.host) else {
            throw serverNode.error("'\(serverText)' is not a resolver address; write an IP and optional port, like 127.0.0.1:53 or [::1]:5353")
        }
        var queries: [DNSQueryConfig] = []
        let servicesNode = try fields.required("services", hint: "e.g. 'services: {web: {name: tasks.web, port: 8080}}'")
        for (service, value) in try servicesNode.entries() {
            let lookups = (try? value.list()) ?? [value]
            for lookup in lookups { queries.append(try parseDNSQuery(service: service, node: lookup)) }
        }
        guard !queries.isEmpty else { throw servicesNode.error("at least one service is required") }
        var config = DNSSourceConfig(serverHost: server.host, serverPort: server.port, queries: queries)
        if let timeout = fields.optional("timeout") { config.timeoutMs = try timeout.durationMilliseconds() }
        if let ttlNode = fields.optional("ttl") {
            let ttl = try ttlNode.fields(allowed: ["min", "max"])
            if let min = ttl.optional("min") { config.ttlMinMs = try min.durationMilliseconds() }
            if let max = ttl.optional("max") { config.ttlMaxMs = try max.durationMilliseconds() }
            if config.ttlMaxMs < config.ttlMinMs {
                throw (ttl.optional("max") ?? ttlNode).error("max (\(config.ttlMaxMs) ms) must be at least min (\(config.ttlMinMs) ms)")
            }
        }
        return config
    }

    private static func parseDNSQuery(service: String, node: ConfigNode) throws(ConfigError) -> DNSQueryConfig {
        let fields = try node.fields(allowed: ["name", "port", "srv", "family", "track", "weight"])
        let lookup: DNSQueryConfig.Lookup
        if let srvNode = fields.optional("srv") {
            for key in ["name", "port", "family"] {
                if let extra = fields.optional(key) {
                    throw extra.error("'\(key)' does not apply to an SRV lookup (its records carry target and port); remove it or use 'name:' instead of 'srv:'")
                }
            }
            lookup = .srv(name: try dnsName(srvNode))
        } else {
            let nameNode = try fields.required("name", hint: "an A/AAAA name with 'port:' (e.g. name: tasks.web, port: 8080), or 'srv: _web._tcp.service.consul'")
            let port = try fields.required("port", hint: "A and AAAA records carry no port; e.g. 'port: 8080'").integer(in: 1...65_535, expected: "a port number")
            var family = DNSQueryConfig.AddressFamily.ipv4
            if let familyNode = fields.optional("family") {
                let text = try familyNode.string(expected: "ipv4, ipv6 or both")
                guard let known = DNSQueryConfig.AddressFamily(rawValue: text) else {
                    throw familyNode.error("unknown family '\(text)'; expected ipv4 (A), ipv6 (AAAA) or both")
                }
                family = known
            }
            lookup = .address(name: try dnsName(nameNode), port: UInt16(port), family: family)
        }
        let track = try fields.optional("track")?.string(expected: "a track name like blue")
        let weight = try fields.optional("weight")?.integer(in: 0...1_000, expected: "a weight") ?? 1
        return DNSQueryConfig(service: service, lookup: lookup, track: track, weight: weight)
    }

    /// A DNS name of labels of 1-63 bytes, 253 bytes at most, without the trailing dot.
    private static func dnsName(_ node: ConfigNode) throws(ConfigError) -> String {
        var name = try node.string(expected: "a DNS name like tasks.web")
        if name.hasSuffix(".") { name.removeLast() }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let valid = name.utf8.count <= 253 && labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.unicodeScalars.allSatisfy { $0.isASCII && $0 != " " }
        }
        guard valid else {
            throw node.error("'\(name)' is not a DNS name; labels of 1-63 characters separated by '.', 253 at most")
        }
        return name
    }
}
