// Health-check, ejection, slow-start and balancing settings of a service: plain values.

/// How a service's endpoints are checked and balanced. Defaults are production values.
public struct HealthPolicy: Sendable, Equatable {
    /// `grpc`: `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or h2 over TLS).
    public enum CheckKind: String, Sendable, Equatable { case http, tcp, grpc, none }
    public enum InitialState: String, Sendable, Equatable {
        /// A new endpoint gets traffic only after its first passing check (the default).
        case afterFirstPass = "after_first_pass"
        /// A new endpoint gets traffic at once; checks can take it out.
        case healthy
        /// A new endpoint needs `rise` passing checks.
        case unhealthy
    }

    // MARK: Active checks
    public var kind: CheckKind = .none
    public var method = "GET"
    public var path = "/"
    /// Host header for HTTP checks; nil sends the endpoint's address.
    public var host: String?
    /// The service a `grpc` check asks about; empty: the server as a whole.
    public var grpcService = ""
    /// Accepted status codes (inclusive).
    public var expectedStatus: ClosedRange<Int> = 200...399
    public var intervalMs = 2_000
    public var timeoutMs = 1_000
    /// Each interval is randomised by ± this percentage, so checks of many proxies and
    /// endpoints do not line up.
    public var jitterPercent = 10
    /// Consecutive passes that make an unhealthy endpoint healthy (HAProxy `rise`).
    public var rise = 2
    /// Consecutive failures that make a healthy endpoint unhealthy (HAProxy `fall`).
    public var fall = 3
    public var initial: InitialState = .afterFirstPass

    // MARK: Passive checks (outlier ejection)
    /// Consecutive failed requests (connect errors, 5xx, timeouts) that eject an endpoint;
    /// 0 disables passive ejection.
    public var consecutiveFailures = 5
    /// The first ejection lasts this long; each further one doubles it up to `maxEjectionMs`.
    public var baseEjectionMs = 10_000
    public var maxEjectionMs = 300_000
    /// At most this share of a service's endpoints is ejected at once (by any rule).
    public var maxEjectedPercent = 50

    // MARK: Outlier detection (Envoy semantics; docs/health.md)
    /// How often the success-rate and latency rules judge the traffic of the last interval
    /// (Envoy's `interval`).
    public var outlierIntervalMs = 10_000
    /// An endpoint whose success rate is below the service's mean by this many standard
    /// deviations is ejected (Envoy's `success_rate_stdev_factor` / 1000); 0 turns the
    /// rule off.
    public var successRateStdevFactor = 1.9
    /// The success-rate rule judges only when at least this many endpoints had
    /// `successRateRequestVolume` exchanges in the interval.
    public var successRateMinimumHosts = 5
    public var successRateRequestVolume = 100
    /// An endpoint whose p99 latency is above this many times the median p99 of the
    /// service's endpoints is ejected; 0 (the default) turns the rule off.
    public var latencyP99Factor = 0.0
    public var latencyMinimumHosts = 3
    public var latencyRequestVolume = 100

    /// Whether the success-rate or latency rule is on (the data plane's traffic counters
    /// must then be fed to the health checker).
    public var detectsOutliers: Bool { successRateStdevFactor > 0 || latencyP99Factor > 0 }

    // MARK: Weights
    /// A new or recovered endpoint's weight ramps from 10 % to 100 % over this window; 0 is off.
    public var slowStartMs = 0
    /// When no endpoint is healthy, send to all of them rather than answer 503.
    public var panicMode = false

    public init() {}
}

/// How a service chooses among its endpoints.
public enum BalancerKind: String, Sendable, Equatable {
    case roundRobin = "round_robin"
    case leastConnections = "least_conn"
    case p2cEWMA = "p2c_ewma"
    case consistentHash = "consistent_hash"
}

/// What a consistent-hash balancer hashes.
public enum HashSource: Sendable, Equatable {
    case header(String)
    case cookie(String)
    case sourceAddress
}

/// A percentage canary: share `permille`/1000 of new requests goes to `track`, the rest to
/// the active (stable) track.
public struct CanaryConfig: Sendable, Equatable {
    public var track: String
    /// Share in tenths of a percent (0.1 % granularity): 0 sends nothing, 1000 everything.
    public var permille: Int
    /// With stickiness, a client (by cookie or header) hashes to a point in [0, 1000) and
    /// goes to the canary when the point is below `permille`: raising the share only moves
    /// clients from stable to canary, lowering it only moves them back.
    public var sticky: StickySource?
    /// With a `cookie:NAME` sticky key: the proxy assigns a client without a valid cookie
    /// its point itself (by the exact split) and sets the signed cookie (StickyCookie.swift).
    public var stickyCookie: StickyCookieSettings?
    /// The steps `canary step` walks through, in tenths of a percent, ascending, ending
    /// at 1000 (the state store keeps its own copy once the canary is changed).
    public var plan: [Int]

    public init(track: String, permille: Int, sticky: StickySource? = nil, stickyCookie: StickyCookieSettings? = nil,
                plan: [Int] = [50, 250, 500, 1000]) {
        self.track = track
        self.permille = permille
        self.sticky = sticky
        self.stickyCookie = stickyCookie
        self.plan = plan
    }
}

/// The request header that pins a request to a track (for testing a track before it gets
/// traffic), and which client networks may use it.
public struct TrackOverride: Sendable, Equatable {
    /// Header name, e.g. `X-Switchyard-Track`; its value names a track.
    public var header: String
    /// Client networks allowed to use it; empty means any client.
    public var allow: [Network]

    public init(header: String = "X-Switchyard-Track", allow: [Network] = []) {
        self.header = header
        self.allow = allow
    }
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `::1/128`) as address bytes and a prefix length.
public struct Network: Sendable, Equatable {
    public var bytes: [UInt8]
    public var prefix: Int

    public init(bytes: [UInt8], prefix: Int) {
        self.bytes = bytes
        self.prefix = prefix
    }

    /// Whether `address` (4 or 16 bytes) is inside this network.
    public func contains(_ address: UnsafeRawBufferPointer) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = prefix
        for i in 0..<bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if address[i] & mask != bytes[i] & mask { return false }
            remaining -= bits
        }
        return true
    }
}

/// What identifies a client for a sticky canary.
public enum StickySource: Sendable, Equatable {
    case cookie(String)
    case header(String)
}

/// Retry settings of a service.
public struct RetryPolicy: Sendable, Equatable {
    /// Extra attempts after the first (connect failures and, for idempotent requests,
    /// failures before any response byte).
    public var attempts = 2
    /// Retries may add at most this share of extra load (a token bucket per event loop).
    public var budgetPercent = 20
    /// Time one attempt may wait for the response head before it counts as failed and, if
    /// idempotent, is retried; 0 means the service's upstream response timeout.
    public var perTryTimeoutMs = 0

    public init() {}
}
