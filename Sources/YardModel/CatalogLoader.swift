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
            services.append(try parseService(name: name, node: node, directory: directory(of: path)))
        }
        return ServiceCatalog(services: services)
    }

    // MARK: Services

    private static func validateServiceName(_ name: String, at node: ConfigNode) throws(ConfigError) {
        guard DiscoveredValues.isName(name) else {
            throw node.error("service name \(DiscoveredValues.shown(name)) may only use letters, digits, '-', '_' and '.' (at most \(DiscoveredValues.maxNameLength))")
        }
    }

    private static func parseService(name: String, node: ConfigNode, directory: String) throws(ConfigError) -> ServiceDefinition {
        let fields = try node.fields(allowed: [
            "active", "instances", "health", "balancer", "hash_on", "retries", "canary", "override", "routes", "upstream",
            "max_connections", "max_pending", "queue_timeout",
        ])
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
        var definition = ServiceDefinition(name: name, activeTrack: activeTrack, instances: instances)
        if let healthNode = fields.optional("health") { definition.health = try parseHealth(healthNode) }
        if let balancerNode = fields.optional("balancer") {
            let text = try balancerNode.string(expected: "a balancer name")
            guard let kind = BalancerKind(rawValue: text) else {
                throw balancerNode.error("unknown balancer '\(text)'; expected round_robin, least_conn, p2c_ewma or consistent_hash")
            }
            definition.balancer = kind
        }
        if let hashNode = fields.optional("hash_on") {
            let text = try hashNode.string(expected: "header:NAME, cookie:NAME or source")
            if text == "source" {
                definition.hashOn = .sourceAddress
            } else if text.hasPrefix("header:"), text.count > 7 {
                definition.hashOn = .header(String(text.dropFirst(7)))
            } else if text.hasPrefix("cookie:"), text.count > 7 {
                definition.hashOn = .cookie(String(text.dropFirst(7)))
            } else {
                throw hashNode.error("expected header:NAME, cookie:NAME or source, found '\(text)'")
            }
        } else if definition.balancer == .consistentHash {
            definition.hashOn = .sourceAddress
        }
        if let retryNode = fields.optional("retries") { definition.retry = try parseRetry(retryNode) }
        definition.limits = try parseEndpointLimits(fields)
        if let upstreamNode = fields.optional("upstream") {
            definition.upstream = try parseUpstream(upstreamNode, directory: directory)
            if definition.upstream.multiplexed && definition.health.kind == .http, let healthNode = fields.optional("health") {
                throw healthNode.error("HTTP checks speak HTTP/1.1, which an HTTP/2-only (\(definition.upstream.protocol.rawValue)) endpoint does not answer; use 'type: grpc' (gRPC servers) or 'type: tcp'")
            }
        }
        if definition.health.kind == .grpc && !definition.upstream.multiplexed, let healthNode = fields.optional("health") {
            throw healthNode.error("gRPC checks speak HTTP/2, which this service's HTTP/1.1 upstream does not; set 'upstream: {protocol: h2c}' (or h2 with TLS), or use 'type: http' or 'tcp'")
        }
        if let overrideNode = fields.optional("override") {
            definition.trackOverride = try parseOverride(overrideNode)
        }
        if let canaryNode = fields.optional("canary") {
            definition.canary = try parseCanary(canaryNode, instances: instances, activeTrack: activeTrack)
        }
        for routeNode in try fields.optional("routes")?.list() ?? [] {
            definition.routes.append(try parseDiscoveredRoute(routeNode))
        }
        return definition
    }

    // MARK: Limits, health, retries

    /// `max_connections` (per endpoint, across event loops), `max_pending` (requests that
    /// may wait for a slot) and `queue_timeout` (how long they may wait).
    private static func parseEndpointLimits(_ fields: Fields) throws(ConfigError) -> EndpointLimits {
        var limits = EndpointLimits()
        let most = EndpointLimits.maxValue
        if let v = fields.optional("max_connections") {
            limits.maxConnections = try v.integer(in: 0...most, expected: "concurrent requests per endpoint (0: no limit)")
        }
        if let v = fields.optional("max_pending") {
            limits.maxPending = try v.integer(in: 0...most, expected: "requests that may wait for a free endpoint (0: none wait)")
            if limits.maxConnections == 0 && limits.maxPending > 0 {
                throw v.error("max_pending queues requests when every endpoint is at max_connections, which is not set; set max_connections too")
            }
        }
        if let v = fields.optional("queue_timeout") {
            limits.queueTimeoutMs = try v.durationMilliseconds()
            guard limits.queueTimeoutMs <= EndpointLimits.maxQueueTimeoutMs else {
                throw v.error("queue_timeout is over 10m; a request should not wait that long for a free endpoint")
            }
        }
        return limits
    }

    private static func parseHealth(_ node: ConfigNode) throws(ConfigError) -> HealthPolicy {
        let fields = try node.fields(allowed: [
            "type", "method", "path", "host", "expect", "grpc_service", "interval", "timeout", "jitter", "rise", "fall", "initial",
            "consecutive_failures", "base_ejection", "max_ejection", "max_ejected_percent", "slow_start", "panic_mode",
            "outlier_interval", "success_rate_stdev_factor", "success_rate_minimum_hosts", "success_rate_request_volume",
            "latency_p99_factor", "latency_minimum_hosts", "latency_request_volume",
        ])
        var policy = HealthPolicy()
        policy.kind = .http
        if let typeNode = fields.optional("type") {
            let text = try typeNode.string(expected: "http, tcp, grpc or none")
            guard let kind = HealthPolicy.CheckKind(rawValue: text) else {
                throw typeNode.error("unknown check type '\(text)'; expected http, tcp, grpc or none")
            }
            policy.kind = kind
        }
        if let v = fields.optional("method") {
            policy.method = try v.string(expected: "an HTTP method like GET")
            guard DiscoveredValues.isName(policy.method) else { throw v.error("\(DiscoveredValues.shown(policy.method)) is not an HTTP method like GET") }
        }
        if let v = fields.optional("path") {
            let path = try v.string(expected: "a path like /healthz")
            guard path.hasPrefix("/") else { throw v.error("the check path must start with '/', found '\(path)'") }
            if let problem = DiscoveredValues.checkPath(path, field: "health_path") { throw v.error(problem.message) }
            policy.path = path
        }
        if let v = fields.optional("host") {
            let host = try v.string(expected: "a Host header value")
            if let problem = DiscoveredValues.checkText(host, field: "health", what: "health host") { throw v.error(problem.message) }
            policy.host = host
        }
        if let v = fields.optional("expect") {
            let text = try v.text(expected: "a status or range like 200-399")
            let parts = text.split(separator: "-").map { Int($0.filter { $0 != " " }) }
            if parts.count == 1, let one = parts[0], (100...599).contains(one) {
                policy.expectedStatus = one...one
            } else if parts.count == 2, let low = parts[0], let high = parts[1], 100 <= low, low <= high, high <= 599 {
                policy.expectedStatus = low...high
            } else {
                throw v.error("expected a status or range like 200 or 200-399, found '\(text)'")
            }
        }
        if let v = fields.optional("grpc_service") {
            let service = try v.text(expected: "a gRPC service name like shop.Cart (empty: the whole server)")
            if let problem = DiscoveredValues.checkText(service, field: "health", what: "gRPC service name") { throw v.error(problem.message) }
            guard service.count <= 200 else { throw v.error("the gRPC service name is longer than 200 characters") }
            policy.grpcService = service
        }
        if let v = fields.optional("interval") { policy.intervalMs = try v.durationMilliseconds() }
        if let v = fields.optional("timeout") { policy.timeoutMs = try v.durationMilliseconds() }
        if let v = fields.optional("jitter") { policy.jitterPercent = try v.integer(in: 0...50, expected: "a percentage from 0 to 50") }
        if let v = fields.optional("rise") { policy.rise = try v.integer(in: 1...100, expected: "a count from 1 to 100") }
        if let v = fields.optional("fall") { policy.fall = try v.integer(in: 1...100, expected: "a count from 1 to 100") }
        if let v = fields.optional("initial") {
            let text = try v.string(expected: "after_first_pass, healthy or unhealthy")
            guard let initial = HealthPolicy.InitialState(rawValue: text) else {
                throw v.error("unknown initial state '\(text)'; expected after_first_pass, healthy or unhealthy")
            }
            policy.initial = initial
        }
        if let v = fields.optional("consecutive_failures") { policy.consecutiveFailures = try v.integer(in: 0...1_000, expected: "a count (0 turns passive ejection off)") }
        if let v = fields.optional("base_ejection") { policy.baseEjectionMs = try v.durationMilliseconds() }
        if let v = fields.optional("max_ejection") { policy.maxEjectionMs = try v.durationMilliseconds() }
        if let v = fields.optional("max_ejected_percent") { policy.maxEjectedPercent = try v.integer(in: 0...100, expected: "a percentage") }
        if let v = fields.optional("slow_start") { policy.slowStartMs = try v.durationMilliseconds(allowZero: true) }
        if let v = fields.optional("panic_mode") { policy.panicMode = try v.boolean() }
        try parseOutlierRules(fields, into: &policy)
        if policy.timeoutMs > policy.intervalMs {
            throw node.error("health.timeout (\(policy.timeoutMs) ms) is longer than health.interval (\(policy.intervalMs) ms); make the timeout shorter")
        }
        return policy
    }

    /// The success-rate and latency rules (Envoy's outlier detection; docs/health.md).
    private static func parseOutlierRules(_ fields: Fields, into policy: inout HealthPolicy) throws(ConfigError) {
        if let v = fields.optional("outlier_interval") { policy.outlierIntervalMs = try v.durationMilliseconds() }
        if let v = fields.optional("success_rate_stdev_factor") { policy.successRateStdevFactor = try factor(v, upTo: 100, what: "deviations (Envoy's value / 1000, e.g. 1.9; 0 turns the rule off)") }
        if let v = fields.optional("success_rate_minimum_hosts") { policy.successRateMinimumHosts = try v.integer(in: 1...10_000, expected: "a count of endpoints") }
        if let v = fields.optional("success_rate_request_volume") { policy.successRateRequestVolume = try v.integer(in: 1...1_000_000_000, expected: "a count of requests per interval") }
        if let v = fields.optional("latency_p99_factor") { policy.latencyP99Factor = try factor(v, upTo: 1_000, what: "a multiple of the median p99 like 3 (0 turns the rule off)") }
        if let v = fields.optional("latency_minimum_hosts") { policy.latencyMinimumHosts = try v.integer(in: 2...10_000, expected: "a count of endpoints from 2") }
        if let v = fields.optional("latency_request_volume") { policy.latencyRequestVolume = try v.integer(in: 1...1_000_000_000, expected: "a count of requests per interval") }
        if policy.latencyP99Factor > 0 && policy.latencyP99Factor <= 1 {
            throw (fields.optional("latency_p99_factor") ?? fields.owner).error("latency_p99_factor \(policy.latencyP99Factor) would eject endpoints no slower than the median; use a factor above 1, or 0 to turn the rule off")
        }
    }

    /// A finite decimal in 0...`upTo`.
    private static func factor(_ node: ConfigNode, upTo limit: Double, what: String) throws(ConfigError) -> Double {
        let text = try node.text(expected: what)
        guard let value = Double(text.filter { $0 != "_" }), value.isFinite, value >= 0, value <= limit else {
            throw node.error("expected \(what) from 0 to \(Int(limit)), found '\(text)'")
        }
        return value
    }

    private static func parseCanary(_ node: ConfigNode, instances: [InstanceDefinition], activeTrack: String?) throws(ConfigError) -> CanaryConfig {
        let fields = try node.fields(allowed: ["track", "percent", "sticky", "sticky_cookie", "plan"])
        let trackNode = try fields.required("track", hint: "e.g. 'track: green'")
        let track = try trackNode.string(expected: "a track name like green")
        guard instances.contains(where: { $0.track == track }) else {
            throw trackNode.error("canary track '\(track)' has no instance; add 'track: \(track)' to an instance")
        }
        guard activeTrack != nil else {
            throw trackNode.error("a canary needs an 'active' (stable) track to split from; set 'active:' on the service")
        }
        guard track != activeTrack else {
            throw trackNode.error("canary track '\(track)' is the active track; name another track")
        }
        let permille = try fields.optional("percent").map { node throws(ConfigError) in try permilleValue(node) } ?? 0
        var plan = [50, 250, 500, 1000]
        if let planNode = fields.optional("plan") {
            plan = []
            for step in try planNode.list() {
                let value = try permilleValue(step)
                guard value > (plan.last ?? 0) else { throw step.error("plan steps must rise, each above the one before (and above 0)") }
                plan.append(value)
            }
            guard plan.last == 1000 else { throw planNode.error("a plan ends at 100 (the canary takes everything), e.g. [5, 25, 50, 100]") }
        }
        var sticky: StickySource?
        if let stickyNode = fields.optional("sticky") {
            let source = try stickyNode.string(expected: "cookie:NAME or header:NAME")
            guard let source = LabelValues.sticky(source) else {
                throw stickyNode.error("expected cookie:NAME or header:NAME, found '\(source)'")
            }
            sticky = source
        }
        var stickyCookie: StickyCookieSettings?
        if let cookieNode = fields.optional("sticky_cookie") {
            stickyCookie = try StickyCookieSettings.parse(cookieNode, sticky: sticky)
        }
        return CanaryConfig(track: track, permille: permille, sticky: sticky, stickyCookie: stickyCookie, plan: plan)
    }

    /// A percentage (0…100, at most one decimal) as tenths of a percent.
    static func permilleValue(_ node: ConfigNode) throws(ConfigError) -> Int {
        let text = try node.text(expected: "a percentage like 10 or 0.5")
        if let permille = LabelValues.permille(text) { return permille }
        if let value = Double(text), value >= 0, value <= 100 {
            throw node.error("'\(text)' is finer than 0.1 %; use at most one decimal")
        }
        throw node.error("expected a percentage from 0 to 100, found '\(text)'")
    }

    private static func parseOverride(_ node: ConfigNode) throws(ConfigError) -> TrackOverride? {
        if let text = try? node.text(expected: "false"), text == "false" || text == "off" { return nil }
        let fields = try node.fields(allowed: ["header", "allow"])
        var result = TrackOverride()
        if let header = fields.optional("header") { result.header = try header.string(expected: "a header name") }
        for item in try fields.optional("allow")?.list() ?? [] {
            let text = try item.string(expected: "a network like 10.0.0.0/8 or ::1/128")
            guard let network = ConfigValues.parseNetwork(text) else {
                throw item.error("expected a network like 10.0.0.0/8, 127.0.0.1 or ::1/128, found '\(text)'")
            }
            result.allow.append(network)
        }
        return result
    }

    static func parseRetry(_ node: ConfigNode) throws(ConfigError) -> RetryPolicy {
        let fields = try node.fields(allowed: ["attempts", "budget_percent", "per_try_timeout"])
        var policy = RetryPolicy()
        if let v = fields.optional("attempts") { policy.attempts = try v.integer(in: 0...5, expected: "extra attempts from 0 to 5") }
        if let v = fields.optional("budget_percent") { policy.budgetPercent = try v.integer(in: 0...100, expected: "a percentage") }
        if let v = fields.optional("per_try_timeout") { policy.perTryTimeoutMs = try v.durationMilliseconds(allowZero: true) }
        return policy
    }

    // MARK: Instances

    private static func parseInstance(_ node: ConfigNode) throws(ConfigError) -> InstanceDefinition {
        let fields = try node.fields(allowed: ["address", "port", "track", "weight", "labels", "drain", "tags", "id"])

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
            if let problem = DiscoveredValues.checkName(track ?? "", field: "track") { throw trackNode.error(problem.message) }
        }
        let weight = try fields.optional("weight")?.integer(in: 0...1_000, expected: "a weight (0 takes no new requests)") ?? 1

        var labels: [String: String] = [:]
        for (key, value) in try fields.optional("labels")?.entries() ?? [] {
            let text = try value.text(expected: "a label value")
            if let problem = DiscoveredValues.checkText(key, field: "label", what: "label key")
                ?? DiscoveredValues.checkText(text, field: "label", what: "label \(DiscoveredValues.shown(key))") {
                throw value.error(problem.message)
            }
            labels[key] = text
        }
        let drain = try fields.optional("drain")?.boolean() ?? false
        var tags: [String] = []
        for tagNode in try fields.optional("tags")?.list() ?? [] {
            let tag = try tagNode.text(expected: "a tag")
            if let problem = DiscoveredValues.checkText(tag, field: "tag", what: "tag") { throw tagNode.error(problem.message) }
            tags.append(tag)
        }
        let idNode = fields.optional("id")
        let id = try idNode?.text(expected: "an instance id")
        if let idNode, let problem = DiscoveredValues.checkText(id ?? "", field: "id", what: "instance id") { throw idNode.error(problem.message) }
        return InstanceDefinition(
            address: address, port: UInt16(port), track: track, weight: weight, labels: labels, drain: drain,
            tags: tags, id: id)
    }

    /// `routes: [{host: shop.example, path: /}]` under a service: routes it declares itself.
    private static func parseDiscoveredRoute(_ node: ConfigNode) throws(ConfigError) -> DiscoveredRoute {
        let fields = try node.fields(allowed: ["host", "path"])
        let host = try fields.optional("host")?.string(expected: "a host name like shop.example")
        let path = try fields.optional("path")?.string(expected: "a path prefix like /api") ?? "/"
        guard path.hasPrefix("/") else {
            throw node.error("route path '\(path)' must start with '/'")
        }
        if let problem = DiscoveredValues.checkPath(path, field: "route") ?? host.flatMap({ DiscoveredValues.checkRouteHost($0) }) {
            throw node.error(problem.message)
        }
        return DiscoveredRoute(host: host?.lowercased(), pathPrefix: path)
    }
}
