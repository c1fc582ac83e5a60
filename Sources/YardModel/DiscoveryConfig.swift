// The `discovery:` section of switchyard.yml as values: which providers run, in which
// order (the first wins a merge conflict), and the debounce window of their merge.

// MARK: - DiscoveryConfig

/// Where services come from: one or more providers, merged and debounced.
public struct DiscoveryConfig: Sendable, Equatable {
    /// In config order; names are unique.
    public var providers: [ProviderConfig]
    /// A change waits this long for further changes (restarted by each)...
    public var quiescenceMinMs: Int
    /// ...but never longer than this after the first change of a burst.
    public var quiescenceMaxMs: Int
    /// switchyard.yml's `middlewares:`, which `switchyard.route.NAME.middlewares` labels
    /// name (part of the discovery config, so a reload that changes them restarts the
    /// providers and every label is checked again).
    public var middlewares: [String: MiddlewareKind] = [:]

    public static let defaultQuiescenceMinMs = 100
    public static let defaultQuiescenceMaxMs = 1_000

    public init(
        providers: [ProviderConfig], quiescenceMinMs: Int = Self.defaultQuiescenceMinMs,
        quiescenceMaxMs: Int = Self.defaultQuiescenceMaxMs
    ) {
        self.providers = providers
        self.quiescenceMinMs = quiescenceMinMs
        self.quiescenceMaxMs = quiescenceMaxMs
    }

    /// One file provider (the embedded default, `provider: file`).
    public static func file(path: String) -> DiscoveryConfig {
        DiscoveryConfig(providers: [ProviderConfig(name: "file", source: .file(FileSourceConfig(path: path)))])
    }

    /// The services files of the file providers, in order (for `check` and `demo`).
    public var filePaths: [String] {
        providers.compactMap { provider in
            if case .file(let file) = provider.source { return file.path }
            return nil
        }
    }
}

/// One configured provider.
public struct ProviderConfig: Sendable, Equatable {
    /// Unique: `name:` if given, else the type (`etcd`), then `etcd#2`, `etcd#3`.
    public var name: String
    public var source: ProviderSource

    public init(name: String, source: ProviderSource) {
        self.name = name
        self.source = source
    }
}

/// A provider's type and its settings.
public enum ProviderSource: Sendable, Equatable {
    case file(FileSourceConfig)
    case etcd(EtcdSourceConfig)
    case dns(DNSSourceConfig)
    case docker(DockerSourceConfig)
    case swarm(SwarmSourceConfig)
    case consul(ConsulSourceConfig)

    /// The `type:` word in the config.
    public var typeName: String {
        switch self {
        case .file: "file"
        case .etcd: "etcd"
        case .dns: "dns"
        case .docker: "docker"
        case .swarm: "swarm"
        case .consul: "consul"
        }
    }
}

// MARK: - File

/// A YAML or JSON services file, watched for changes.
public struct FileSourceConfig: Sendable, Equatable {
    /// Absolute (resolved against the config file's folder when loaded).
    public var path: String
    public var pollIntervalMs: Int

    public init(path: String, pollIntervalMs: Int = 250) {
        self.path = path
        self.pollIntervalMs = pollIntervalMs
    }
}

// MARK: - etcd

/// etcd v3 through its JSON gateway: keys under `prefix` (layout in docs/discovery.md).
public struct EtcdSourceConfig: Sendable, Equatable {
    /// `http://host:port` or `https://host:port` of each member; tried in order, the next
    /// on failure.
    public var endpoints: [String]
    /// TLS files and username/password.
    public var access = StoreAccessConfig()
    /// Ends with `/`; default `/switchyard/`.
    public var prefix: String
    /// Per request (range); a watch has no timeout, but notices a lost leader.
    public var requestTimeoutMs: Int

    public init(endpoints: [String], prefix: String = "/switchyard/", requestTimeoutMs: Int = 5_000) {
        self.endpoints = endpoints
        self.prefix = prefix
        self.requestTimeoutMs = requestTimeoutMs
    }
}

// MARK: - DNS

/// DNS A/AAAA and SRV lookups, re-polled by TTL within bounds.
public struct DNSSourceConfig: Sendable, Equatable {
    /// The resolver: an IP literal (no names: resolving the resolver is a loop).
    public var serverHost: String
    public var serverPort: UInt16
    /// One query attempt (UDP, then TCP on truncation).
    public var timeoutMs: Int
    /// A record's TTL is clamped into `ttlMinMs...ttlMaxMs` to get the next poll.
    public var ttlMinMs: Int
    public var ttlMaxMs: Int
    /// In config order; a service may have several (one per track).
    public var queries: [DNSQueryConfig]

    public init(
        serverHost: String, serverPort: UInt16 = 53, timeoutMs: Int = 2_000, ttlMinMs: Int = 1_000,
        ttlMaxMs: Int = 30_000, queries: [DNSQueryConfig]
    ) {
        self.serverHost = serverHost
        self.serverPort = serverPort
        self.timeoutMs = timeoutMs
        self.ttlMinMs = ttlMinMs
        self.ttlMaxMs = ttlMaxMs
        self.queries = queries
    }
}

/// What to ask for one service (or one track of it).
public struct DNSQueryConfig: Sendable, Equatable {
    public enum Lookup: Sendable, Equatable {
        /// A (and/or AAAA) records of `name`, all at `port` (Swarm's `tasks.NAME`).
        case address(name: String, port: UInt16, family: AddressFamily)
        /// SRV records of `name` (Consul's `_NAME._tcp.service.consul`): target and port
        /// from each record, the target's addresses from A records.
        case srv(name: String)
    }

    public enum AddressFamily: String, Sendable, Equatable {
        case ipv4, ipv6, both
    }

    public var service: String
    public var lookup: Lookup
    public var track: String?
    public var weight: Int

    public init(service: String, lookup: Lookup, track: String? = nil, weight: Int = 1) {
        self.service = service
        self.lookup = lookup
        self.track = track
        self.weight = weight
    }
}
