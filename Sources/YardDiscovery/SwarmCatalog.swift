// What the Swarm provider reads from a manager's Engine API (GET /services, /tasks,
// /nodes), and the pure mapping from services and tasks to a catalog. Field names follow
// Docker's Engine API reference (Service, Task, Node).

import YardModel

// MARK: - Engine API values

/// One entry of `GET /services` (only the fields Switchyard reads).
struct SwarmService: Decodable, Sendable, Equatable {
    var id: String
    var spec: Spec

    struct Spec: Decodable, Sendable, Equatable {
        var name: String
        /// The service's own labels: a stack file's `deploy.labels`.
        var labels: [String: String]?
        var taskTemplate: TaskTemplate?
        var endpointSpec: EndpointSpec?
        enum CodingKeys: String, CodingKey {
            case name = "Name", labels = "Labels", taskTemplate = "TaskTemplate", endpointSpec = "EndpointSpec"
        }
    }

    struct TaskTemplate: Decodable, Sendable, Equatable {
        var containerSpec: ContainerSpec?
        enum CodingKeys: String, CodingKey { case containerSpec = "ContainerSpec" }
    }

    struct ContainerSpec: Decodable, Sendable, Equatable {
        /// The containers' labels: a stack file's service-level `labels`.
        var labels: [String: String]?
        enum CodingKeys: String, CodingKey { case labels = "Labels" }
    }

    struct EndpointSpec: Decodable, Sendable, Equatable {
        var ports: [PortConfig]?
        enum CodingKeys: String, CodingKey { case ports = "Ports" }
    }

    struct PortConfig: Decodable, Sendable, Equatable {
        var targetPort: UInt16?
        var `protocol`: String?
        enum CodingKeys: String, CodingKey { case targetPort = "TargetPort", `protocol` = "Protocol" }
    }

    enum CodingKeys: String, CodingKey { case id = "ID", spec = "Spec" }
}

/// One entry of `GET /tasks`.
struct SwarmTask: Decodable, Sendable, Equatable {
    var id: String
    var serviceID: String
    var nodeID: String?
    var slot: Int?
    /// What the orchestrator wants: `running`, or `shutdown` once the task is being
    /// replaced or scaled away (set *before* the container gets its stop signal).
    var desiredState: String?
    var status: Status?
    var networksAttachments: [Attachment]?

    struct Status: Decodable, Sendable, Equatable {
        var state: String?
        enum CodingKeys: String, CodingKey { case state = "State" }
    }

    struct Attachment: Decodable, Sendable, Equatable {
        var network: Network?
        /// CIDR notation: `10.0.1.7/24`.
        var addresses: [String]?
        enum CodingKeys: String, CodingKey { case network = "Network", addresses = "Addresses" }
    }

    struct Network: Decodable, Sendable, Equatable {
        var id: String?
        var spec: NetworkSpec?
        enum CodingKeys: String, CodingKey { case id = "ID", spec = "Spec" }
    }

    struct NetworkSpec: Decodable, Sendable, Equatable {
        var name: String?
        enum CodingKeys: String, CodingKey { case name = "Name" }
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID", serviceID = "ServiceID", nodeID = "NodeID", slot = "Slot"
        case desiredState = "DesiredState", status = "Status", networksAttachments = "NetworksAttachments"
    }
}

/// One entry of `GET /nodes`.
struct SwarmNode: Decodable, Sendable, Equatable {
    var id: String
    var status: Status?

    struct Status: Decodable, Sendable, Equatable {
        /// `ready`, `down`, `disconnected`, `unknown`.
        var state: String?
        enum CodingKeys: String, CodingKey { case state = "State" }
    }

    enum CodingKeys: String, CodingKey { case id = "ID", status = "Status" }
}

/// `GET /info`: only whether this engine is a Swarm node.
struct DockerInfo: Decodable, Sendable, Equatable {
    var swarm: Swarm?

    struct Swarm: Decodable, Sendable, Equatable {
        var localNodeState: String?
        var controlAvailable: Bool?
        enum CodingKeys: String, CodingKey { case localNodeState = "LocalNodeState", controlAvailable = "ControlAvailable" }
    }

    enum CodingKeys: String, CodingKey { case swarm = "Swarm" }
}

// MARK: - Mapping

enum SwarmCatalog {
    /// Tasks of labelled services that should get traffic, as a catalog, plus one
    /// message per service or task that cannot be used.
    ///
    /// A task is in rotation only while its desired state *and* its state are
    /// `running`, and its node is not `down`: a task the orchestrator is replacing
    /// (desired `shutdown`) leaves before its container is stopped, and a task still
    /// `starting` joins only once it runs. Labels are the service's deploy labels over
    /// its container labels (deploy labels win).
    ///
    /// - Parameter network: the network whose task address is used; nil picks the
    ///   task's only attachment other than `ingress`.
    static func catalog(
        services: [SwarmService], tasks: [SwarmTask], nodes: [SwarmNode], network: String?
    ) -> (catalog: ServiceCatalog, problems: [LabelProblem]) {
        let downNodes = Set(nodes.filter { $0.status?.state == "down" }.map(\.id))
        var tasksByService: [String: [SwarmTask]] = [:]
        for task in tasks { tasksByService[task.serviceID, default: []].append(task) }
        var items: [LabeledInstance] = []
        var problems: [LabelProblem] = []
        for service in services.sorted(by: { $0.spec.name < $1.spec.name }) {
            var labels = service.spec.taskTemplate?.containerSpec?.labels ?? [:]
            for (key, value) in service.spec.labels ?? [:] { labels[key] = value }
            guard labels[SwitchyardLabels.service] != nil else { continue }
            let targets = Set((service.spec.endpointSpec?.ports ?? []).filter { ($0.protocol ?? "tcp") == "tcp" }.compactMap(\.targetPort))
            let live = (tasksByService[service.id] ?? []).filter { task in
                task.desiredState == "running" && task.status?.state == "running" && !downNodes.contains(task.nodeID ?? "")
            }
            for task in live.sorted(by: { ($0.slot ?? 0, $0.id) < ($1.slot ?? 0, $1.id) }) {
                let owner = "task \(service.spec.name).\(task.slot ?? 0) (\(task.id.prefix(12)))"
                let address = self.address(of: task, network: network)
                let result = SwitchyardLabels.read(
                    labels: labels, owner: owner, address: address,
                    defaultPort: targets.count == 1 ? targets.first : nil, id: task.id
                )
                switch result {
                case .success(let item?): items.append(item)
                case .success(nil): break
                case .failure(let problem):
                    var problem = problem
                    if let network { problem.description += " (network '\(network)')" }
                    problems.append(problem)
                }
            }
        }
        return (LabeledCatalog.assemble(items), problems)
    }

    /// The task's address on `network` (without the prefix length).
    static func address(of task: SwarmTask, network: String?) -> String? {
        let attachments = task.networksAttachments ?? []
        let chosen: SwarmTask.Attachment?
        if let network {
            chosen = attachments.first { $0.network?.spec?.name == network }
        } else {
            let candidates = attachments.filter { $0.network?.spec?.name != "ingress" }
            chosen = candidates.count == 1 ? candidates[0] : nil
        }
        guard let cidr = chosen?.addresses?.first else { return nil }
        return String(cidr.prefix { $0 != "/" })
    }
}
