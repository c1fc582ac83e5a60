// The configuration model: plain values, validated by `ConfigLoader`, no I/O here.

/// Timeouts and limits of the data plane. Defaults are production values.
///
/// Durations are whole milliseconds because the event loops compare them against a
/// millisecond monotonic clock.
public struct ProxySettings: Sendable, Equatable {
    /// Time a client has to send a complete request head (from its first byte, or from
    /// the end of the previous response on a keep-alive connection). 408 after it.
    public var clientHeaderTimeoutMs = 10_000
    /// Time a keep-alive client connection may sit idle between requests. Also bounds an
    /// HTTP/2 stream (or connection) that makes no progress.
    public var clientIdleTimeoutMs = 60_000
    /// Longest wait between two reads of a request body (HTTP/1.1 and HTTP/2). 408 after it,
    /// and the upstream connection is closed, not pooled.
    public var clientBodyTimeoutMs = 60_000
    /// Time to establish an upstream TCP connection. 502 (and a retry elsewhere) after it.
    public var upstreamConnectTimeoutMs = 5_000
    /// Time between sending a request and the upstream's response head. 504 after it.
    public var upstreamResponseTimeoutMs = 60_000
    /// Time an idle pooled upstream connection is kept.
    public var upstreamIdleTimeoutMs = 60_000
    /// On SIGTERM: time in-flight requests get before the process exits anyway.
    public var drainTimeoutMs = 30_000
    /// After a flip (or a drain, an ejection): how long a long-lived connection (a TCP
    /// tunnel, an upgraded WebSocket) to an endpoint that takes no new connections may go
    /// on before it is closed. 0: until it ends by itself.
    public var flipDrainMs = 30_000
    /// A TCP tunnel with no byte in either direction for this long is closed.
    public var tunnelIdleTimeoutMs = 3_600_000
    /// How long a request waits for a free endpoint slot (services with `max_connections`)
    /// unless the service sets `queue_timeout`. 503 with Retry-After after it.
    public var queueTimeoutMs = 3_000
    /// Longest request line (method, target, version). 414 beyond it.
    public var maxRequestLineBytes = 8_192
    /// Largest request head (request line plus header fields). 431 beyond it.
    public var maxHeaderBytes = 32_768
    /// Most header fields in one request. 431 beyond it.
    public var maxHeaders = 100
    /// Most client connections per process; further ones are accepted and closed.
    public var maxConnections = 10_000
    /// Idle keep-alive upstream connections kept per endpoint, per event loop, at least: a
    /// pool keeps more while the recent peak of concurrent exchanges to the endpoint needs
    /// them (so steady load does not churn connections); idle ones expire after
    /// `upstreamIdleTimeoutMs`.
    public var maxIdlePerEndpoint = 64
    /// Slowest average request-body rate accepted once `minBodyRateGraceMs` has passed since
    /// the body began, in bytes per second; 0: no minimum. 408 below it.
    public var minBodyRate = 1_024
    /// How long a body may take before `minBodyRate` applies.
    public var minBodyRateGraceMs = 10_000
    /// Most client connections from one source address (per process); 0: no limit. Further
    /// ones are accepted, counted and closed.
    public var maxConnectionsPerClient = 0
    /// Peers whose `Forwarded`/`X-Forwarded-*` fields are kept and extended; from any other
    /// client those fields are replaced. Empty: no peer is trusted.
    public var trustedProxies: [Network] = []

    public init() {}
}

/// What a listener speaks: HTTP (routed by host and path), or raw TCP to one service.
public enum ListenerProtocol: String, Sendable, Equatable { case http, tcp }

/// A listening socket.
public struct ListenerConfig: Sendable, Equatable {
    /// Kept for source compatibility; it cannot be named qualified (`ListenerConfig.Protocol`
    /// means the metatype), so outside this struct use `ListenerProtocol`.
    public typealias `Protocol` = ListenerProtocol
    public var name: String
    /// IP literal to bind (`127.0.0.1`, `0.0.0.0`, `::`).
    public var host: String
    /// 0 picks a free port (tests).
    public var port: UInt16
    public var `protocol`: `Protocol`
    /// For `tcp` listeners: the service every connection goes to.
    public var service: String?
    /// TLS termination, nil for plain HTTP.
    public var tls: ListenerTLSConfig?

    public init(
        name: String, host: String, port: UInt16, protocol: `Protocol` = .http, service: String? = nil,
        tls: ListenerTLSConfig? = nil
    ) {
        self.name = name
        self.host = host
        self.port = port
        self.protocol = `protocol`
        self.service = service
        self.tls = tls
    }
}

/// A routing rule as configured: what it matches (RouteMatch.swift) and the service it sends to.
public struct RouteConfig: Sendable, Equatable {
    public var match: RouteMatch
    public var service: String
    /// `name:` for explain and messages; nil when not given.
    public var name: String?
    /// The middlewares it runs, in order, resolved from `middlewares:` (Middleware.swift).
    public var middlewares: [RouteMiddleware] = []
    /// Body limit, timeouts and retries of its own (RouteSettings.swift).
    public var settings = RouteSettings()

    public init(host: String?, pathPrefix: String, service: String) {
        self.init(match: RouteMatch(hosts: host.map { [$0] } ?? [], path: pathPrefix), service: service)
    }

    public init(match: RouteMatch, service: String, name: String? = nil) {
        self.match = match
        self.service = service
        self.name = name
    }

    /// The first host, or nil for any host.
    public var host: String? { match.hosts.first }
    /// The path prefix (or exact path).
    public var pathPrefix: String { match.path }
}

/// A middleware a route lists: its name and what it does.
public struct RouteMiddleware: Sendable, Equatable {
    public var name: String
    public var kind: MiddlewareKind

    public init(name: String, kind: MiddlewareKind) {
        self.name = name
        self.kind = kind
    }
}

/// The admin listener: status, metrics, the dashboard, and the traffic writes.
public struct AdminConfig: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var enabled: Bool
    /// A file holding the bearer tokens writes must carry: `NAME:TOKEN` lines, or one bare
    /// token line (named "admin"); only its owner may read it (mode & 0o077 == 0). nil:
    /// writes need no token, which is allowed on loopback only.
    public var tokenFile: String?
    /// Host names (or `name:port`) the admin API answers to besides localhost, 127.0.0.1,
    /// [::1] and its bound address; any other Host gets 421 (DNS rebinding).
    public var allowedHosts: [String] = []
    /// Admin connections served at once; beyond it a connection gets 503 and is closed.
    public var maxConnections = 64

    public init(host: String = "127.0.0.1", port: UInt16 = 9901, enabled: Bool = false, tokenFile: String? = nil) {
        self.host = host
        self.port = port
        self.enabled = enabled
        self.tokenFile = tokenFile
    }

    /// Whether the listener is reachable from this machine only.
    public var isLoopback: Bool {
        host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }
}

/// Where traffic states are kept and how this replica reports itself.
public struct StateStoreConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// One JSON file, atomically replaced (the default: `state.json` beside the config).
        case file(path: String)
        /// Keys under `prefix` in an etcd v3 cluster.
        case etcd(endpoints: [String], prefix: String)
        /// Keys under `prefix` in Consul's KV store.
        case consul(address: String, prefix: String, token: String?)
    }
    public var kind: Kind
    /// etcd and Consul: TLS files and credentials (the Consul token is also in `kind`).
    public var access = StoreAccessConfig()
    /// This replica's name in the store; nil: `HOSTNAME-PID`.
    public var replicaID: String?
    /// A replica whose report is older than this is not live.
    public var replicaTTLSeconds: Int

    public init(kind: Kind, replicaID: String? = nil, replicaTTLSeconds: Int = 10) {
        self.kind = kind
        self.replicaID = replicaID
        self.replicaTTLSeconds = replicaTTLSeconds
    }
}

/// `conf/switchyard.yml` as a value.
public struct SwitchyardConfig: Sendable, Equatable {
    public var listeners: [ListenerConfig]
    public var routes: [RouteConfig]
    public var discovery: DiscoveryConfig
    public var admin: AdminConfig
    /// Event loops to run; nil means one per available core.
    public var workers: Int?
    public var proxy: ProxySettings
    /// The file this was loaded from (for messages), or nil.
    public var sourcePath: String?
    public var accessLog = AccessLogConfig()
    /// The `log:` section: the process's own log lines (not the access log).
    public var log = ProcessLogConfig()
    public var stateStore = StateStoreConfig(kind: .file(path: "state.json"))
    /// The `templates:` section; nil when absent (discovery's catalog is routed as is).
    public var templates: TemplatesConfig?

    public init(
        listeners: [ListenerConfig], routes: [RouteConfig], discovery: DiscoveryConfig,
        admin: AdminConfig = AdminConfig(), workers: Int? = nil, proxy: ProxySettings = ProxySettings(),
        sourcePath: String? = nil
    ) {
        self.listeners = listeners
        self.routes = routes
        self.discovery = discovery
        self.admin = admin
        self.workers = workers
        self.proxy = proxy
        self.sourcePath = sourcePath
    }
}

/// The process log: `format` text (one line: time, level, message) or json (one object
/// per line: ts, level, msg, fields); `level` the least severe kept. Applied at start.
public struct ProcessLogConfig: Sendable, Equatable {
    public var format = "text"
    public var level = "info"

    public init(format: String = "text", level: String = "info") {
        self.format = format
        self.level = level
    }
}

/// The access log: one JSON line per request.
public struct AccessLogConfig: Sendable, Equatable {
    public var enabled = false
    /// A file (reopened on SIGUSR1, for logrotate) or nil for standard output.
    public var path: String?

    public init(enabled: Bool = false, path: String? = nil) {
        self.enabled = enabled
        self.path = path
    }
}

/// One replica as the file provider (and later other providers) describes it.
public struct InstanceDefinition: Sendable, Equatable {
    public var address: String
    public var port: UInt16
    public var track: String?
    public var weight: Int
    public var labels: [String: String]
    /// In drain: no new requests (also set by the label `switchyard.drain=true`).
    public var drain: Bool
    /// Free-form tags (Consul service tags, the file's `tags:`), in the provider's order.
    public var tags: [String] = []
    /// A provider's own identity for the instance (container or task id, Consul service
    /// id, etcd key), or nil. For logs, templates and `status`; routing ignores it.
    public var id: String?

    public init(
        address: String, port: UInt16, track: String? = nil, weight: Int = 1, labels: [String: String] = [:],
        drain: Bool = false, tags: [String] = [], id: String? = nil
    ) {
        self.address = address
        self.port = port
        self.track = track
        self.weight = weight
        self.labels = labels
        self.drain = drain || labels["switchyard.drain"] == "true"
        self.tags = tags
        self.id = id
    }
}

/// A discovered service: its instances and (optionally) which track is active.
public struct ServiceDefinition: Sendable, Equatable {
    public var name: String
    public var activeTrack: String?
    public var instances: [InstanceDefinition]
    public var health: HealthPolicy
    public var balancer: BalancerKind
    public var hashOn: HashSource?
    public var retry: RetryPolicy
    public var canary: CanaryConfig?
    /// The track-override header; nil disables it. On by default (any client), like a
    /// test header should be on a private ingress; restrict it with `override.allow`.
    public var trackOverride: TrackOverride? = TrackOverride()
    /// Routes the discovery source declares for this service (Docker labels
    /// `switchyard.rule.host`/`.path`, the file's `routes:`). They are added after the
    /// config file's routes; `RoutingTable` orders all routes by specificity.
    public var routes: [DiscoveredRoute] = []
    /// How the endpoints are spoken to (HTTP/1.1 or HTTP/2, plain or TLS).
    public var upstream = UpstreamTransport()
    /// Concurrent requests per endpoint and the wait queue (`max_connections`, `max_pending`).
    public var limits = EndpointLimits()

    public init(
        name: String, activeTrack: String? = nil, instances: [InstanceDefinition],
        health: HealthPolicy = HealthPolicy(), balancer: BalancerKind = .roundRobin,
        hashOn: HashSource? = nil, retry: RetryPolicy = RetryPolicy()
    ) {
        self.name = name
        self.activeTrack = activeTrack
        self.instances = instances
        self.health = health
        self.balancer = balancer
        self.hashOn = hashOn
        self.retry = retry
    }
}

/// A route a discovery source declares for its own service: host (nil: any) and path
/// prefix, and from `switchyard.route.NAME.*` labels a name, a priority and middlewares.
public struct DiscoveredRoute: Sendable, Equatable, Hashable {
    public var host: String?
    public var pathPrefix: String
    public var name: String?
    /// As `routes[].priority`: higher first, 0 by default.
    public var priority: Int
    /// The middlewares its `.middlewares` label names, in order (defined in switchyard.yml).
    public var middlewareNames: [String] = []
    /// A `.path_regex` label's pattern (instead of a path prefix), checked when read.
    public var pathRegex: String?
    /// `middlewareNames` resolved against switchyard.yml's `middlewares:` by the
    /// aggregator (`DiscoveredRouteMiddlewares.resolve`); a route whose names are not all
    /// resolved never reaches the routing table.
    public var middlewares: [RouteMiddleware] = []
    /// Who declared it and by which label (`container web-1 (3f2a9c1b): label
    /// switchyard.route.api.middlewares`), for messages about it; nil without middlewares.
    public var declaredBy: String?

    public init(host: String? = nil, pathPrefix: String = "/", name: String? = nil, priority: Int = 0) {
        self.host = host
        self.pathPrefix = pathPrefix
        self.name = name
        self.priority = priority
    }

    /// Whether every named middleware is resolved (always, without names).
    public var middlewaresResolved: Bool { middlewares.map(\.name) == middlewareNames }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(host)
        hasher.combine(pathPrefix)
        hasher.combine(name)
        hasher.combine(priority)
        hasher.combine(middlewareNames)
        hasher.combine(declaredBy)
    }
}

/// A complete snapshot of discovered services (what a provider pushes).
public struct ServiceCatalog: Sendable, Equatable {
    public var services: [ServiceDefinition]

    public init(services: [ServiceDefinition]) {
        self.services = services
    }
}

/// A configuration error that names the file, the line and the key, and says what to do.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based line, or nil when the error is about the whole file.
    public var line: Int?
    /// Dotted key path, e.g. `listeners[0].address`.
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let key { text += ": \(key)" }
        return text + ": " + message
    }
}
