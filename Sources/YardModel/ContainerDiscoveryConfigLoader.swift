// Parsing the Docker, Swarm and Consul provider entries of `discovery.providers`:
//
//   - {type: docker, socket: /var/run/docker.sock, network: backend}
//   - {type: swarm, socket: /var/run/docker.sock, network: app_net}
//   - {type: consul, address: http://127.0.0.1:8500, services: [web, api], passing_only: true}
//
// Every error names the file, the line and the key path, like the rest of the loader.

extension ConfigLoader {
    // MARK: Docker and Swarm

    static func parseDockerSource(_ node: ConfigNode) throws(ConfigError) -> DockerSourceConfig {
        let fields = try node.fields(allowed: ["type", "name", "socket", "network", "host_address", "resync", "timeout"])
        var config = DockerSourceConfig()
        if let socket = fields.optional("socket") { config.endpoint = try engineEndpoint(socket) }
        config.network = try fields.optional("network")?.string(expected: "a network name")
        if let host = fields.optional("host_address") {
            let text = try host.string(expected: "an IP address like 127.0.0.1")
            guard ConfigValues.isIPLiteral(text), !ConfigValues.isUnspecifiedAddress(text) else {
                throw host.error("'\(text)' is not an IP address this machine can connect to, like 127.0.0.1")
            }
            config.hostAddress = text
        }
        if let resync = fields.optional("resync") { config.resyncIntervalMs = try resync.durationMilliseconds() }
        if let timeout = fields.optional("timeout") { config.timeoutMs = try timeout.durationMilliseconds() }
        return config
    }

    static func parseSwarmSource(_ node: ConfigNode) throws(ConfigError) -> SwarmSourceConfig {
        let fields = try node.fields(allowed: ["type", "name", "socket", "network", "refresh", "timeout"])
        var config = SwarmSourceConfig()
        if let socket = fields.optional("socket") { config.endpoint = try engineEndpoint(socket) }
        config.network = try fields.optional("network")?.string(expected: "an overlay network name")
        if let refresh = fields.optional("refresh") { config.refreshIntervalMs = try refresh.durationMilliseconds() }
        if let timeout = fields.optional("timeout") { config.timeoutMs = try timeout.durationMilliseconds() }
        return config
    }

    /// An Engine API address: a socket path, `unix:///path`, or `http://host:port`.
    private static func engineEndpoint(_ node: ConfigNode) throws(ConfigError) -> String {
        let text = try node.string(expected: "a socket path like /var/run/docker.sock")
        if text.hasPrefix("/") { return "unix://" + text }
        if text.hasPrefix("unix:///") { return text }
        if text.hasPrefix("http://"), isHostPort(String(text.dropFirst(7).prefix { $0 != "/" })) { return text }
        if text.hasPrefix("tcp://"), isHostPort(String(text.dropFirst(6))) { return "http://" + text.dropFirst(6) }
        let hint = text.hasPrefix("https://") || text.contains(":2376") ? " (TLS to the engine is not supported yet)" : ""
        throw node.error("'\(text)' is not an engine address\(hint); write a socket path (/var/run/docker.sock), unix:///path or http://HOST:PORT")
    }

    // MARK: Consul

    static func parseConsulSource(_ node: ConfigNode, directory: String) throws(ConfigError) -> ConsulSourceConfig {
        let fields = try node.fields(allowed: [
            "type", "name", "address", "services", "passing_only", "datacenter", "wait", "min_interval", "timeout",
        ] + StoreAccessConfig.optionNames(.consul))
        var config = ConsulSourceConfig()
        if let addressNode = fields.optional("address") {
            config.address = try consulAddress(addressNode)
        }
        config.access = try StoreAccessConfig.parse(
            fields, kind: .consul, urls: [(config.address, fields.optional("address") ?? node)], directory: directory)
        if let servicesNode = fields.optional("services") {
            if case .scalar = servicesNode.node {
                let word = try servicesNode.string(expected: "'all' or a list of service names")
                guard word == "all" else {
                    throw servicesNode.error("expected 'all' or a list like [web, api], found '\(word)'")
                }
                config.services = nil
            } else {
                var names: [String] = []
                for item in try servicesNode.list() {
                    let name = try item.string(expected: "a Consul service name")
                    guard !names.contains(name) else { throw item.error("service '\(name)' is listed twice") }
                    names.append(name)
                }
                guard !names.isEmpty else { throw servicesNode.error("list at least one service, or write 'services: all'") }
                config.services = names
            }
        }
        if let passing = fields.optional("passing_only") { config.passingOnly = try passing.boolean() }
        config.datacenter = try fields.optional("datacenter")?.string(expected: "a datacenter name like dc1")
        if let wait = fields.optional("wait") {
            config.waitMs = try wait.durationMilliseconds()
            guard config.waitMs >= 1_000, config.waitMs <= 600_000 else {
                throw wait.error("wait must be from 1s to 10m (Consul caps blocking queries at 10 minutes)")
            }
        }
        if let floor = fields.optional("min_interval") { config.minimumIntervalMs = try floor.durationMilliseconds() }
        if let timeout = fields.optional("timeout") { config.timeoutMs = try timeout.durationMilliseconds() }
        return config
    }

    /// Consul's HTTP address: `http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT` (http),
    /// normalised to scheme and authority.
    static func consulAddress(_ node: ConfigNode) throws(ConfigError) -> String {
        var text = try node.string(expected: "an address like http://127.0.0.1:8500")
        if !text.contains("://") { text = "http://" + text }
        let scheme = text.hasPrefix("https://") ? "https://" : "http://"
        let hostPort = String(text.dropFirst(scheme.count).prefix { $0 != "/" })
        guard text.hasPrefix(scheme), isHostPort(hostPort) else {
            throw node.error("'\(text)' is not a Consul address; write http://HOST:PORT or https://HOST:PORT, like http://127.0.0.1:8500")
        }
        return scheme + hostPort
    }

    /// `host:port` or `[v6]:port` with a host of name characters and a port 1-65535.
    private static func isHostPort(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else {
            return false
        }
        var host = Substring(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return !host.isEmpty && host.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" || $0 == ":" }
    }
}
