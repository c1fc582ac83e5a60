// The Docker, Swarm and Consul providers' settings in the `discovery:` section, as
// values (parsed by ContainerDiscoveryConfigLoader.swift).

// MARK: - Docker

/// A Docker engine's containers with `switchyard.*` labels (Engine API, usually over
/// its unix socket; podman's Docker-compatible service works too).
public struct DockerSourceConfig: Sendable, Equatable {
    /// `unix:///var/run/docker.sock`, a socket path, or `http://host:port`.
    public var endpoint: String
    /// The network whose container IP is used; nil picks the only one (see docs/discovery.md).
    public var network: String?
    /// Where containers on the host network are reached.
    public var hostAddress: String
    public var resyncIntervalMs: Int
    public var timeoutMs: Int

    public init(
        endpoint: String = "unix:///var/run/docker.sock", network: String? = nil, hostAddress: String = "127.0.0.1",
        resyncIntervalMs: Int = 30_000, timeoutMs: Int = 5_000
    ) {
        self.endpoint = endpoint
        self.network = network
        self.hostAddress = hostAddress
        self.resyncIntervalMs = resyncIntervalMs
        self.timeoutMs = timeoutMs
    }
}

// MARK: - Swarm

/// A Swarm manager's services (deploy labels `switchyard.*`) and their tasks.
public struct SwarmSourceConfig: Sendable, Equatable {
    /// A manager's Engine API: `unix:///var/run/docker.sock` or `http://host:port`.
    public var endpoint: String
    /// The overlay network whose task addresses are used; nil picks each task's only
    /// attachment other than `ingress`.
    public var network: String?
    /// Tasks are listed this often (Docker has no task events).
    public var refreshIntervalMs: Int
    public var timeoutMs: Int

    public init(endpoint: String = "unix:///var/run/docker.sock", network: String? = nil, refreshIntervalMs: Int = 500, timeoutMs: Int = 5_000) {
        self.endpoint = endpoint
        self.network = network
        self.refreshIntervalMs = refreshIntervalMs
        self.timeoutMs = timeoutMs
    }
}

// MARK: - Consul

/// Consul's catalog and health, followed with blocking queries.
public struct ConsulSourceConfig: Sendable, Equatable {
    /// The agent's HTTP API, `http://host:port` or `https://host:port`.
    public var address: String
    /// TLS files and the ACL token (`token`, `token_file`, `token_env`).
    public var access = StoreAccessConfig()
    /// The services to follow; nil follows all (`services: all`).
    public var services: [String]?
    /// Only instances whose checks all pass.
    public var passingOnly: Bool
    public var datacenter: String?
    /// The blocking queries' `wait`.
    public var waitMs: Int
    /// The floor between two queries of one watch.
    public var minimumIntervalMs: Int
    public var timeoutMs: Int

    public init(
        address: String = "http://127.0.0.1:8500", services: [String]? = nil, passingOnly: Bool = true,
        datacenter: String? = nil, access: StoreAccessConfig = StoreAccessConfig(), waitMs: Int = 60_000,
        minimumIntervalMs: Int = 200, timeoutMs: Int = 5_000
    ) {
        self.address = address
        self.services = services
        self.passingOnly = passingOnly
        self.datacenter = datacenter
        self.access = access
        self.waitMs = waitMs
        self.minimumIntervalMs = minimumIntervalMs
        self.timeoutMs = timeoutMs
    }
}
