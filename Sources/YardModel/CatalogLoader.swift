// Loading the file provider's services (`conf/services.yml`, or the same shape as JSON)
// into a `ServiceCatalog`.
//
// JSON goes through the same YAML parser: JSON is a subset of YAML's flow style, so one
// code path gives both formats the same line numbers and the same messages.

extension ConfigLoader {
    // MARK: services.yml

    /// Reads and validates the services file at `path` (YAML or JSON).
    ///
    /// Threading: blocking file I/O; call from the control plane.
    public static func loadCatalog(path: String) throws(ConfigError) -> ServiceCatalog {
        try loadCatalog(text: readText(path: path), path: path)
    }

    /// Validates `text` (YAML or JSON) as the services file `path`. Pure.
    ///
    /// Services keep their order in the file, which becomes their order (and index) in
    /// the routing table.
    public static func loadCatalog(text: String, path: String) throws(ConfigError) -> ServiceCatalog {
        let root = try document(text: text, path: path, expecting: "a 'services' mapping (write 'services: {}' for none)")
        let fields = try root.fields(allowed: ["services"])
        let servicesNode = try fields.required("services", hint: "e.g. 'services: {shop: {instances: [...]}}'")
        var services: [ServiceDefinition] = []
        for (name, node) in try servicesNode.entries() {
            try validateServiceName(name, at: node)
            services.append(try parseService(name: name, node: node))
        }
        return ServiceCatalog(services: services)
    }

    // MARK: Services

    private static func validateServiceName(_ name: String, at node: ConfigNode) throws(ConfigError) {
        let valid = !name.isEmpty && name.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                || "-_.".unicodeScalars.contains(scalar)
        }
        guard valid else {
            throw node.error("service name '\(name)' may only use letters, digits, '-', '_' and '.'")
        }
    }

    private static func parseService(name: String, node: ConfigNode) throws(ConfigError) -> ServiceDefinition {
        let fields = try node.fields(allowed: ["active", "instances"])
        var instances: [InstanceDefinition] = []
        var seen: [String: Int?] = [:]
        for item in try fields.optional("instances")?.list() ?? [] {
            let instance = try parseInstance(item)
            let identity = "\(instance.address.lowercased())|\(instance.port)"
            if let previous = seen[identity] {
                throw item.error("duplicate instance \(instance.address):\(instance.port) (also\(lineSuffix(previous))); list each address:port once per service")
            }
            seen[identity] = item.line
            instances.append(instance)
        }

        var activeTrack: String?
        if let activeNode = fields.optional("active") {
            let track = try activeNode.string(expected: "a track name like blue")
            guard instances.contains(where: { $0.track == track }) else {
                let tracks = Set(instances.compactMap(\.track)).sorted()
                let known = tracks.isEmpty ? "no instance has a track" : "known tracks: \(tracks.joined(separator: ", "))"
                throw activeNode.error("active track '\(track)' has no instance (\(known)); add 'track: \(track)' to an instance or change 'active'")
            }
            activeTrack = track
        }
        return ServiceDefinition(name: name, activeTrack: activeTrack, instances: instances)
    }

    // MARK: Instances

    private static func parseInstance(_ node: ConfigNode) throws(ConfigError) -> InstanceDefinition {
        let fields = try node.fields(allowed: ["address", "port", "track", "weight", "labels"])

        let addressNode = try fields.required("address", hint: "e.g. 'address: 127.0.0.1'")
        var address = try addressNode.string(expected: "an IP address like 127.0.0.1 or ::1")
        if address.hasPrefix("["), address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        let beforeColon = String(address.prefix { $0 != ":" })
        if address.contains(":"), beforeColon == "localhost" || ConfigValues.isIPv4Literal(beforeColon) {
            throw addressNode.error("'\(address)' includes a port; put the port under 'port:'")
        }
        guard address == "localhost" || ConfigValues.isIPLiteral(address) else {
            throw addressNode.error("'\(address)' is not an IP address; expected an IPv4 or IPv6 literal (127.0.0.1, ::1) or localhost")
        }
        if ConfigValues.isUnspecifiedAddress(address) {
            throw addressNode.error("'\(address)' means 'any address' and cannot be connected to; use the instance's own address")
        }

        let portNode = try fields.required("port", hint: "e.g. 'port: 9001'")
        let port = try portNode.integer(in: 1...65_535, expected: "a port number")

        var track: String?
        if let trackNode = fields.optional("track") {
            track = try trackNode.string(expected: "a track name like blue or green")
        }
        let weight = try fields.optional("weight")?.integer(in: 0...1_000, expected: "a weight (0 takes no new requests)") ?? 1

        var labels: [String: String] = [:]
        for (key, value) in try fields.optional("labels")?.entries() ?? [] {
            labels[key] = try value.text(expected: "a label value")
        }
        return InstanceDefinition(address: address, port: UInt16(port), track: track, weight: weight, labels: labels)
    }
}
