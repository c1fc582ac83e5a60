// What the Docker provider reads from the Engine API (GET /containers/json and the
// /events stream), and the pure mapping from running containers to a catalog.
// Field names follow Docker's Engine API reference (ContainerSummary, EventMessage).

import YardModel

// MARK: - Engine API values

/// One entry of `GET /containers/json` (only the fields Switchyard reads).
struct DockerContainer: Decodable, Sendable, Equatable {
    var id: String
    var names: [String]?
    var state: String?
    /// Human text: `Up 5 minutes (healthy)`, `(unhealthy)`, `(health: starting)`.
    var status: String?
    var labels: [String: String]?
    var ports: [Port]?
    var hostConfig: HostConfig?
    var networkSettings: NetworkSettings?

    struct Port: Decodable, Sendable, Equatable {
        var ip: String?
        var privatePort: UInt16
        var publicPort: UInt16?
        var type: String?
        enum CodingKeys: String, CodingKey {
            case ip = "IP", privatePort = "PrivatePort", publicPort = "PublicPort", type = "Type"
        }
    }

    struct HostConfig: Decodable, Sendable, Equatable {
        var networkMode: String?
        enum CodingKeys: String, CodingKey { case networkMode = "NetworkMode" }
    }

    struct NetworkSettings: Decodable, Sendable, Equatable {
        var networks: [String: Network]?
        enum CodingKeys: String, CodingKey { case networks = "Networks" }
    }

    struct Network: Decodable, Sendable, Equatable {
        var ipAddress: String?
        var globalIPv6Address: String?
        enum CodingKeys: String, CodingKey { case ipAddress = "IPAddress", globalIPv6Address = "GlobalIPv6Address" }
    }

    enum CodingKeys: String, CodingKey {
        case id = "Id", names = "Names", state = "State", status = "Status", labels = "Labels"
        case ports = "Ports", hostConfig = "HostConfig", networkSettings = "NetworkSettings"
    }

    /// `web-1` from `["/web-1"]`, or the short id.
    var displayName: String {
        if let first = names?.first { return first.hasPrefix("/") ? String(first.dropFirst()) : first }
        return String(id.prefix(12))
    }
}

/// One line of `GET /events` (Docker's EventMessage; podman sends the same shape).
struct DockerEvent: Decodable, Sendable, Equatable {
    var type: String?
    var action: String?
    var actor: Actor?
    /// The pre-1.22 field names, still sent by Docker and podman.
    var status: String?
    var id: String?

    struct Actor: Decodable, Sendable, Equatable {
        var id: String?
        var attributes: [String: String]?
        enum CodingKeys: String, CodingKey { case id = "ID", attributes = "Attributes" }
    }

    enum CodingKeys: String, CodingKey {
        case type = "Type", action = "Action", actor = "Actor", status, id
    }

    var containerID: String? { actor?.id ?? id }
    /// `health_status: healthy` is reported as its first word.
    var verb: String {
        let text = action ?? status ?? ""
        return String(text.prefix { $0 != ":" })
    }
}

// MARK: - Mapping

/// How the Docker provider turns containers into instances.
public struct DockerMapping: Sendable, Equatable {
    /// The network whose IP address is used; nil picks the only network with an address
    /// (or the host address for `--network host`).
    public var network: String?
    /// The address of containers on the host network (and of `switchyard.address`-less
    /// published ports): where this machine reaches them.
    public var hostAddress: String

    public init(network: String? = nil, hostAddress: String = "127.0.0.1") {
        self.network = network
        self.hostAddress = hostAddress
    }
}

enum DockerCatalog {
    /// The events that may change what `/containers/json` lists or how it reads. Others
    /// (exec_*, attach, resize, top, commit) are ignored.
    static let relevantEvents: Set<String> = [
        "create", "start", "restart", "stop", "kill", "die", "destroy", "pause", "unpause",
        "health_status", "update", "rename", "oom", "cleanup", "remove",
    ]
    /// A container that received one of these is on its way out: it leaves rotation at
    /// once, before the engine lists it as stopped (SIGTERM is already on its way).
    static let leavingEvents: Set<String> = ["kill", "stop", "pause", "die", "oom"]
    /// A container that received one of these is back.
    static let returningEvents: Set<String> = ["start", "restart", "unpause"]

    /// Running containers with a `switchyard.service` label, as a catalog, plus one
    /// message per container whose labels are malformed (that container is skipped).
    ///
    /// Left out: containers not running, containers whose health check says
    /// `unhealthy` or `health: starting` (they join once healthy), and `leaving` ones.
    static func catalog(
        _ containers: [DockerContainer], mapping: DockerMapping, leaving: Set<String> = []
    ) -> (catalog: ServiceCatalog, problems: [LabelProblem]) {
        var items: [LabeledInstance] = []
        var problems: [LabelProblem] = []
        for container in containers.sorted(by: { $0.id < $1.id }) {
            guard let labels = container.labels, labels[SwitchyardLabels.service] != nil else { continue }
            guard container.state == nil || container.state == "running", !leaving.contains(container.id) else { continue }
            if let status = container.status, status.contains("(unhealthy)") || status.contains("(health: starting)") { continue }
            let owner = "container \(container.displayName) (\(container.id.prefix(12)))"
            let privatePorts = Set((container.ports ?? []).filter { $0.type == nil || $0.type == "tcp" }.map(\.privatePort))
            let result = SwitchyardLabels.read(
                labels: labels, owner: owner, address: address(of: container, mapping: mapping),
                defaultPort: privatePorts.count == 1 ? privatePorts.first : nil, id: container.id
            )
            switch result {
            case .success(let item?): items.append(item)
            case .success(nil): break
            case .failure(let problem): problems.append(problem)
            }
        }
        return (LabeledCatalog.assemble(items), problems)
    }

    /// The address to reach `container` at: its IP on the configured network; the host
    /// address on the host network (or with no network address at all); else its first
    /// network's IP, by network name.
    static func address(of container: DockerContainer, mapping: DockerMapping) -> String? {
        let networks = container.networkSettings?.networks ?? [:]
        func ip(_ network: DockerContainer.Network?) -> String? {
            let v4 = network?.ipAddress ?? ""
            if !v4.isEmpty { return v4 }
            let v6 = network?.globalIPv6Address ?? ""
            return v6.isEmpty ? nil : v6
        }
        if let name = mapping.network { return ip(networks[name]) }
        if container.hostConfig?.networkMode == "host" || networks.keys.contains("host") { return mapping.hostAddress }
        // No address on any network (podman lists `--network host` as `"Networks": null`):
        // the container shares this machine's network.
        return networks.keys.sorted().lazy.compactMap { ip(networks[$0]) }.first ?? mapping.hostAddress
    }
}
