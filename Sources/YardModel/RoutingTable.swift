// The immutable routing graph the data plane reads.
//
// Threading: a `RoutingTable` and everything it references is immutable after `init` and
// is `Sendable`; the control plane builds a new one and posts it to every event loop, which
// swaps its own reference between events. A request keeps the `Endpoint` it was given, so
// in-flight work finishes on the graph it started with (the Traefik/Envoy snapshot model).

/// One replica of a service: where it listens, its track, and its routing state.
public final class Endpoint: Sendable {
    /// Stable across tables for the same `address:port` (see `PoolKeys`); the data plane
    /// indexes its per-loop upstream connection pools by it, so keep-alive connections
    /// survive a table swap.
    public let poolKey: Int
    /// IP literal (v4 or v6) or `localhost`.
    public let address: String
    public let port: UInt16
    /// The track (`blue`, `green`, …) or nil when the service has no tracks.
    public let track: String?
    /// Configured weight (1 by default, 0 means "no new requests").
    public let weight: Int
    /// Weight the balancer uses now, scaled by 100: the configured weight, ramped during
    /// slow start, 0 when unhealthy, ejected or draining.
    public let effectiveWeight: Int
    /// Health as last checked: "healthy", "unhealthy", "unknown" (for status output).
    public let health: String
    /// In drain: no new requests; in-flight ones finish.
    public let draining: Bool
    /// Passively ejected after consecutive failures (for status output).
    public let ejected: Bool
    /// `service/address:port`, for logs and status.
    public let id: String
    /// `,"service":…,"track":…,"endpoint":…` pre-encoded for access-log lines.
    public let logFragment: [UInt8]
    /// Its requests in flight across event loops, when its service has `max_connections`
    /// (nil: no limit, nothing counted).
    public let slots: EndpointSlots?

    public init(
        poolKey: Int, address: String, port: UInt16, track: String?, weight: Int, service: String,
        effectiveWeight: Int? = nil, health: String = "healthy", draining: Bool = false, ejected: Bool = false,
        slots: EndpointSlots? = nil
    ) {
        self.slots = slots
        self.poolKey = poolKey
        self.address = address
        self.port = port
        self.track = track
        self.weight = weight
        self.effectiveWeight = draining ? 0 : (effectiveWeight ?? weight * 100)
        self.health = health
        self.draining = draining
        self.ejected = ejected
        let hostPart = address.contains(":") ? "[\(address)]" : address
        self.id = "\(service)/\(hostPart):\(port)"
        self.logFragment = Array(",\"service\":\"\(jsonEscaped(service))\",\"track\":\"\(jsonEscaped(track ?? ""))\",\"endpoint\":\"\(jsonEscaped(hostPart)):\(port)\"".utf8)
    }
}

/// A service: its endpoints across tracks, those that receive new requests, and how.
public final class Service: Sendable {
    public let name: String
    /// Position in `RoutingTable.services`; the data plane keeps per-loop balancer state
    /// in arrays indexed by it.
    public let index: Int
    /// The track that gets new requests, or nil for "every endpoint" (no tracks).
    public let activeTrack: String?
    /// Every endpoint of every track.
    public let endpoints: [Endpoint]
    /// The endpoints new requests may go to: those of the active track with an effective
    /// weight > 0 (healthy, not ejected, not draining). In panic mode, when none is
    /// healthy, every non-draining endpoint of the active track.
    public let activeEndpoints: [Endpoint]
    /// The canary's share in tenths of a percent, 0 when there is no canary (or it has no
    /// routable endpoint).
    public var canaryPermille: Int {
        guard let canary, !canaryEndpoints.isEmpty else { return 0 }
        return canary.permille
    }

    /// True when `activeEndpoints` holds unhealthy endpoints because of panic mode.
    public let panicking: Bool
    public let balancer: BalancerKind
    public let hashOn: HashSource?
    public let retry: RetryPolicy
    public let health: HealthPolicy
    /// The canary split, when one is set and its track exists.
    public let canary: CanaryConfig?
    /// The canary track's endpoints that take new requests (effective weight > 0).
    public let canaryEndpoints: [Endpoint]
    /// The track-override header (lower-cased name bytes) and who may use it; nil when off.
    public let trackOverride: TrackOverride?
    public let overrideHeader: [UInt8]
    /// The consistent-hash key's name (header lower-cased, or cookie) and the sticky
    /// canary key's, as bytes: the request path compares bytes and builds no array.
    public let hashKeyName: [UInt8]
    public let stickyKeyName: [UInt8]
    /// How the endpoints are spoken to (HTTP/1.1 or HTTP/2, plain or TLS).
    public let upstream: UpstreamTransport
    /// Each track's routable endpoints, for requests pinned by the override header.
    public let trackEndpoints: [(track: [UInt8], endpoints: [Endpoint])]
    /// Concurrent requests per endpoint and the wait queue (EndpointLimits.swift).
    public let limits: EndpointLimits
    /// The requests waiting for a free endpoint slot, when `limits` has `max_connections`.
    public let waitLine: ServiceWaitLine?

    public init(
        name: String, index: Int, activeTrack: String?, endpoints: [Endpoint],
        balancer: BalancerKind = .roundRobin, hashOn: HashSource? = nil,
        retry: RetryPolicy = RetryPolicy(), health: HealthPolicy = HealthPolicy(),
        canary: CanaryConfig? = nil, trackOverride: TrackOverride? = nil, upstream: UpstreamTransport = UpstreamTransport(),
        limits: EndpointLimits = EndpointLimits()
    ) {
        self.upstream = upstream
        self.limits = limits
        self.waitLine = limits.limited ? LimitCounters.shared.line(service: name) : nil
        self.canary = canary
        self.trackOverride = trackOverride
        self.overrideHeader = Array((trackOverride?.header ?? "").lowercased().utf8)
        switch hashOn {
        case .header(let name): self.hashKeyName = Array(name.lowercased().utf8)
        case .cookie(let name): self.hashKeyName = Array(name.utf8)
        case .sourceAddress, nil: self.hashKeyName = []
        }
        switch canary?.sticky {
        case .header(let name): self.stickyKeyName = Array(name.lowercased().utf8)
        case .cookie(let name): self.stickyKeyName = Array(name.utf8)
        case nil: self.stickyKeyName = []
        }
        var tracks: [(track: [UInt8], endpoints: [Endpoint])] = []
        for name in Set(endpoints.compactMap(\.track)).sorted() {
            tracks.append((Array(name.utf8), endpoints.filter { $0.track == name && $0.effectiveWeight > 0 }))
        }
        self.trackEndpoints = tracks
        if let canary, canary.track != activeTrack {
            self.canaryEndpoints = endpoints.filter { $0.track == canary.track && $0.effectiveWeight > 0 }
        } else {
            self.canaryEndpoints = []
        }
        self.name = name
        self.index = index
        self.activeTrack = activeTrack
        self.endpoints = endpoints
        self.balancer = balancer
        self.hashOn = hashOn
        self.retry = retry
        self.health = health
        let inTrack = endpoints.filter { activeTrack == nil || $0.track == activeTrack }
        let serving = inTrack.filter { $0.effectiveWeight > 0 }
        if serving.isEmpty && health.panicMode {
            let all = inTrack.filter { !$0.draining && $0.weight > 0 }
            self.activeEndpoints = all
            self.panicking = !all.isEmpty
        } else {
            self.activeEndpoints = serving
            self.panicking = false
        }
    }
}

/// A routing rule: requests that `matcher` takes go to `service` (RouteMatch.swift has
/// the matching rules).
public final class Route: Sendable {
    /// The first host (lower-cased, maybe `*.suffix`) as bytes, or nil for any host: for status output.
    public let host: [UInt8]?
    /// Path prefix (or exact path) as bytes; always starts with `/`.
    public let pathPrefix: [UInt8]
    /// What the route matches, as configured (for explain and status).
    public let match: RouteMatch
    public let matcher: RouteMatcher
    /// The route's name (`routes[].name`, a label's route name) or nil.
    public let name: String?
    /// The service name as configured (for explain and errors).
    public let serviceName: String
    /// The resolved service, or nil when no such service is discovered (requests get 503).
    public let service: Service?
    /// The route's middlewares as bytes (Middleware.swift).
    public let steps: RouteSteps
    /// The route's own body limit, timeouts and retries (RouteSettings.swift).
    public let settings: RouteSettings

    public convenience init(host: String?, pathPrefix: String, serviceName: String, service: Service?) {
        self.init(match: RouteMatch(hosts: host.map { [$0.lowercased()] } ?? [], path: pathPrefix),
                  name: nil, serviceName: serviceName, service: service)
    }

    public init(match: RouteMatch, name: String?, serviceName: String, service: Service?, middlewares: [RouteMiddleware] = [],
                settings: RouteSettings = .none) {
        self.settings = settings
        self.steps = middlewares.isEmpty ? .none : RouteSteps(names: middlewares.map(\.name), kinds: middlewares.map(\.kind))
        self.match = match
        self.matcher = RouteMatcher(match)
        self.host = match.hosts.first.map { Array($0.lowercased().utf8) }
        self.pathPrefix = Array(match.path.utf8)
        self.name = name
        self.serviceName = serviceName
        self.service = service
    }

    /// How specific the route is, for the default order: exact hosts before wildcard hosts
    /// before any host, an exact path before a prefix, a longer path before a shorter one,
    /// a path regex after every prefix but before no path (`/`), more method/header/query
    /// conditions before fewer.
    fileprivate var specificity: (Int, Int, Int, Int, Int) {
        let hostRank = !matcher.exactHosts.isEmpty ? 2 : (!matcher.wildcardHosts.isEmpty ? 1 : 0)
        let conditions = (matcher.methods.isEmpty ? 0 : 1) + matcher.headers.count + matcher.query.count
        // A regex route's path is `/` (length 1): 2 * 1 + 1 sorts it between `/x` (4) and `/` (2).
        let pathRank = 2 * pathPrefix.count + (matcher.pathRegex == nil ? 0 : 1)
        return (match.priority, hostRank, match.exactPath ? 1 : 0, pathRank, conditions)
    }
}

/// The whole routing graph: routes in match order, and the services they point to.
public final class RoutingTable: Sendable {
    /// Increases with every table the control plane publishes.
    public let version: UInt64
    /// In match order: higher `priority` first, then the most specific (see
    /// `Route.specificity`), then configuration order.
    public let routes: [Route]
    public let services: [Service]
    /// The signed sticky-canary cookie values (`StickyCookie.swift`), nil until the fleet's
    /// key is loaded from the state store (no cookie is set or trusted before).
    public let stickyCookies: StickyCookieValues?

    public init(version: UInt64, routes: [Route], services: [Service], stickyCookies: StickyCookieValues? = nil) {
        self.version = version
        self.services = services
        self.stickyCookies = stickyCookies
        // Stable: ties keep configuration order.
        self.routes = routes.enumerated().sorted { lhs, rhs in
            let (l, r) = (lhs.element.specificity, rhs.element.specificity)
            if l != r { return l > r }
            return lhs.offset < rhs.offset
        }.map(\.element)
    }

    /// An empty table: every request gets 404 (no route).
    public static let empty = RoutingTable(version: 0, routes: [], services: [])

    /// The route for a request by host and path only (routes with method, header or query
    /// conditions never match here).
    @inlinable
    public func route(host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer) -> Route? {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        return route(host: host, path: path, method: empty, query: empty, fields: NoRouteFields())
    }

    /// The route for a request, matching bytes in place (no String is built, nothing is
    /// allocated).
    ///
    /// `host` is the Host header value (any case, optional `:port`), `path` the request
    /// target's path, `method` the method token, `query` the bytes after `?`.
    /// Threading: pure; call from any thread.
    @inlinable
    public func route<F: RouteFields>(
        host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer,
        method: UnsafeRawBufferPointer, query: UnsafeRawBufferPointer, fields: F
    ) -> Route? {
        let hostLength = RoutingTable.hostLengthWithoutPort(host)
        for route in routes
        where route.matcher.miss(host: host, hostLength: hostLength, path: path, method: method, query: query, fields: fields) == nil {
            return route
        }
        return nil
    }

    /// The length of `host` without its `:port` ("example.com:8080"), minding IPv6
    /// literals ("[::1]:80").
    @inlinable
    public static func hostLengthWithoutPort(_ host: UnsafeRawBufferPointer) -> Int {
        var hostLength = host.count
        if hostLength > 0 {
            var i = hostLength - 1
            while i > 0 {
                let c = host[i]
                if c == UInt8(ascii: ":") { hostLength = i; break }
                if c < UInt8(ascii: "0") || c > UInt8(ascii: "9") { break }
                i -= 1
            }
        }
        return hostLength
    }
}

/// Escapes a string for a JSON string literal (quotes, backslashes, control characters).
public func jsonEscaped(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}
