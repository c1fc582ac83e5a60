// The `switchyard.*` labels that Docker containers, Swarm services and Consul service
// metadata carry, read into the model, and the assembly of labelled instances into one
// complete catalog. Pure: values in, values out; the providers do the I/O.

import YardModel

// MARK: - Labels

/// The label keys a container (or a Swarm service's deploy labels, or Consul `Meta`)
/// uses to join a service. Only `switchyard.service` is required; a workload without it
/// is not Switchyard's and is ignored silently.
public enum SwitchyardLabels {
    public static let service = "switchyard.service"
    public static let track = "switchyard.track"
    public static let port = "switchyard.port"
    public static let weight = "switchyard.weight"
    public static let ruleHost = "switchyard.rule.host"
    public static let rulePath = "switchyard.rule.path"
    public static let healthPath = "switchyard.health.path"
    /// Overrides the address the provider would pick (a published address, a host IP).
    public static let address = "switchyard.address"
    /// The service's active track (blue/green) until the traffic state says otherwise:
    /// put the same value on every instance of both tracks.
    public static let active = "switchyard.active"
    /// Concurrent requests per endpoint of the service (`max_connections`), the requests
    /// that may wait for a slot (`max_pending`) and how long (`queue_timeout`). Service
    /// settings: the first instance (by address and port) that carries one sets it.
    public static let maxConnections = "switchyard.max_connections"
    public static let maxPending = "switchyard.max_pending"
    public static let queueTimeout = "switchyard.queue_timeout"

    /// One workload's labels as a service instance, or nil when it carries no
    /// `switchyard.service` label.
    ///
    /// - Parameters:
    ///   - labels: the workload's labels (all of them; they become the instance's labels).
    ///   - owner: how messages name the workload, e.g. `container web-1 (3f2a9c1b)`.
    ///   - address: the address the provider chose; `switchyard.address` overrides it.
    ///   - defaultPort: the port to use without a `switchyard.port` label, if the
    ///     provider knows exactly one (a single exposed port, Consul's `Port`).
    ///   - serviceName: the service when the backend names it (Consul); the label is
    ///     then optional.
    ///   - id: the provider's identity for the instance.
    /// - Returns: `.failure` with a message naming the owner and the label when a label
    ///   is malformed; the provider skips that workload and reports the message.
    public static func read(
        labels: [String: String], owner: String, address: String?, defaultPort: UInt16?,
        serviceName: String? = nil, id: String? = nil, tags: [String] = []
    ) -> Result<LabeledInstance?, LabelProblem> {
        guard let name = labels[service].map(trimmed) ?? serviceName else { return .success(nil) }
        guard DiscoveredValues.isName(name) else {
            return .failure(LabelProblem("\(owner): \(service) '\(DiscoveredValues.shown(name, quoted: false))' may only use letters, digits, '-', '_' and '.'", field: "service"))
        }
        guard let address = labels[Self.address].map(trimmed) ?? address, !address.isEmpty else {
            return .failure(LabelProblem("\(owner): no address to reach it (no IP on the configured network); set \(Self.address) or attach it to the network"))
        }
        if let problem = DiscoveredValues.checkAddress(address) { return .failure(LabelProblem(owner, problem)) }

        let chosenPort: UInt16
        if let text = labels[port].map(trimmed) {
            guard let value = UInt16(text), value > 0 else {
                return .failure(LabelProblem("\(owner): \(port) '\(DiscoveredValues.shown(text, quoted: false))' is not a port number (1-65535)", field: "port"))
            }
            chosenPort = value
        } else if let defaultPort, defaultPort > 0 {
            chosenPort = defaultPort
        } else {
            return .failure(LabelProblem("\(owner): no \(port) label, and the port cannot be guessed; add \(port)=8080 (the port the service listens on)"))
        }

        var weight = 1
        if let text = labels[Self.weight].map(trimmed) {
            guard let value = Int(text), (0...10_000).contains(value) else {
                return .failure(LabelProblem("\(owner): \(Self.weight) '\(DiscoveredValues.shown(text, quoted: false))' is not a whole number from 0 to 10000", field: "weight"))
            }
            weight = value
        }

        let trackName = labels[track].map(trimmed).flatMap { $0.isEmpty ? nil : $0 }
        if let trackName, let problem = DiscoveredValues.checkName(trackName, field: "track") { return .failure(LabelProblem(owner, problem)) }
        var route: DiscoveredRoute?
        let host = labels[ruleHost].map(trimmed).flatMap { $0.isEmpty ? nil : $0.lowercased() }
        let path = labels[rulePath].map(trimmed).flatMap { $0.isEmpty ? nil : $0 }
        if let path, !path.hasPrefix("/") {
            return .failure(LabelProblem("\(owner): \(rulePath) '\(DiscoveredValues.shown(path, quoted: false))' must start with '/'", field: "route"))
        }
        if let problem = path.flatMap({ DiscoveredValues.checkPath($0, field: "route") }) ?? host.flatMap({ DiscoveredValues.checkRouteHost($0) }) {
            return .failure(LabelProblem(owner, problem))
        }
        if host != nil || path != nil { route = DiscoveredRoute(host: host, pathPrefix: path ?? "/") }
        let namedRoutes: [DiscoveredRoute]
        switch readRoutes(labels, owner: owner) {
        case .success(let routes): namedRoutes = routes
        case .failure(let problem): return .failure(problem)
        }
        let health = labels[healthPath].map(trimmed).flatMap { $0.isEmpty ? nil : $0 }
        if let health, !health.hasPrefix("/") {
            return .failure(LabelProblem("\(owner): \(healthPath) '\(DiscoveredValues.shown(health, quoted: false))' must start with '/'", field: "health_path"))
        }
        if let problem = health.flatMap({ DiscoveredValues.checkPath($0, field: "health_path") }) { return .failure(LabelProblem(owner, problem)) }

        let settings: ServiceLabelSettings
        switch readServiceSettings(labels, owner: owner, httpCheck: health != nil) {
        case .success(let read): settings = read
        case .failure(let problem): return .failure(problem)
        }

        let instance = InstanceDefinition(
            address: address, port: chosenPort, track: trackName, weight: weight, labels: labels, tags: tags, id: id
        )
        let activeTrack = labels[active].map(trimmed).flatMap { $0.isEmpty ? nil : $0 }
        if let activeTrack, let problem = DiscoveredValues.checkName(activeTrack, field: "track") { return .failure(LabelProblem(owner, problem)) }
        if let problem = DiscoveredValues.check(instance) { return .failure(LabelProblem(owner, problem)) }
        var labeled = LabeledInstance(service: name, instance: instance, route: route, healthPath: health, activeTrack: activeTrack)
        labeled.namedRoutes = namedRoutes
        labeled.settings = settings
        switch readLimits(labels, owner: owner) {
        case .success(let limits): labeled.limits = limits
        case .failure(let problem): return .failure(problem)
        }
        return .success(labeled)
    }

    /// `switchyard.route.` — the prefix of the named-route labels:
    /// `switchyard.route.NAME.host` (one host or a comma list, `*.example.com` allowed),
    /// `.path` (a prefix, `/` by default) or `.path_regex` (a linear-time regex searched in
    /// the path, docs/routing.md), `.priority` (-1000...1000), `.middlewares`
    /// (a comma list of names defined under switchyard.yml's `middlewares:`, run in order;
    /// the aggregator resolves them, `DiscoveredRouteMiddlewares`).
    public static let routePrefix = "switchyard.route."
    static let routeFields = ["host", "path", "path_regex", "priority", "middlewares"]

    /// The routes `switchyard.route.NAME.*` labels declare (one per host), or the first
    /// broken label, named by its key.
    static func readRoutes(_ labels: [String: String], owner: String) -> Result<[DiscoveredRoute], LabelProblem> {
        var byName: [String: [String: (key: String, value: String)]] = [:]
        for (key, value) in labels where key.hasPrefix(routePrefix) {
            let rest = key.dropFirst(routePrefix.count)
            guard let dot = rest.lastIndex(of: "."), !rest[..<dot].isEmpty else {
                return .failure(LabelProblem("\(owner): label \(DiscoveredValues.shown(key)) is not switchyard.route.NAME.FIELD (FIELD one of \(routeFields.joined(separator: ", ")))", field: "route"))
            }
            let name = String(rest[..<dot])
            let field = String(rest[rest.index(after: dot)...])
            guard DiscoveredValues.isName(name) else {
                return .failure(LabelProblem("\(owner): label \(DiscoveredValues.shown(key)): the route name may only use letters, digits, '-', '_' and '.'", field: "route"))
            }
            guard routeFields.contains(field) else {
                return .failure(LabelProblem("\(owner): label \(DiscoveredValues.shown(key)): the field is one of \(routeFields.joined(separator: ", "))", field: "route"))
            }
            byName[name, default: [:]][field] = (key, trimmed(value))
        }
        var routes: [DiscoveredRoute] = []
        for name in byName.keys.sorted() {
            let fields = byName[name] ?? [:]
            var path = "/"
            if let (key, value) = fields["path"] {
                guard value.hasPrefix("/") else {
                    return .failure(LabelProblem("\(owner): label \(key) '\(DiscoveredValues.shown(value, quoted: false))' must start with '/'", field: "route"))
                }
                if let problem = DiscoveredValues.checkPath(value, field: "route") { return .failure(LabelProblem("\(owner): label \(key): \(problem.message)", field: problem.field)) }
                path = value
            }
            var pathRegex: String?
            if let (key, value) = fields["path_regex"] {
                guard fields["path"] == nil else {
                    return .failure(LabelProblem("\(owner): label \(key): a route has either .path (a prefix) or .path_regex, not both", field: "route"))
                }
                do {
                    _ = try LinearRegex(value)
                } catch {
                    return .failure(LabelProblem("\(owner): label \(key) '\(DiscoveredValues.shown(value, quoted: false))': \(error.message)", field: "route"))
                }
                pathRegex = value
            }
            var priority = 0
            if let (key, value) = fields["priority"] {
                let negative = value.hasPrefix("-")
                guard let magnitude = UInt16(negative ? String(value.dropFirst()) : value), magnitude <= 1000 else {
                    return .failure(LabelProblem("\(owner): label \(key) '\(DiscoveredValues.shown(value, quoted: false))' is not a priority from -1000 to 1000", field: "route"))
                }
                priority = negative ? -Int(magnitude) : Int(magnitude)
            }
            var hosts: [String?] = [nil]
            if let (key, value) = fields["host"] {
                hosts = []
                for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let host = trimmed(String(part)).lowercased()
                    if let problem = host.isEmpty ? DiscoveredValues.Problem(field: "route", message: "an empty host in the list")
                        : DiscoveredValues.checkRouteHost(host) {
                        return .failure(LabelProblem("\(owner): label \(key): \(problem.message)", field: problem.field))
                    }
                    hosts.append(host)
                }
            }
            var middlewares: [String] = []
            if let (key, value) = fields["middlewares"] {
                for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let middleware = trimmed(String(part))
                    guard DiscoveredValues.isName(middleware) else {
                        let problem = middleware.isEmpty ? "an empty name in the list" : "'\(DiscoveredValues.shown(middleware, quoted: false))' is not a middleware name (letters, digits, '-', '_' and '.')"
                        return .failure(LabelProblem("\(owner): label \(key): \(problem)", field: "route"))
                    }
                    middlewares.append(middleware)
                }
            }
            let declaredBy = middlewares.isEmpty ? nil : "\(owner): label \(routePrefix)\(name).middlewares"
            routes += hosts.map { host in
                var route = DiscoveredRoute(host: host, pathPrefix: path, name: name, priority: priority)
                route.pathRegex = pathRegex
                route.middlewareNames = middlewares
                route.declaredBy = declaredBy
                return route
            }
        }
        return .success(routes)
    }

    /// The limit labels' values (each nil when absent), or the first malformed one.
    static func readLimits(_ labels: [String: String], owner: String) -> Result<LabeledLimits, LabelProblem> {
        var limits = LabeledLimits()
        for (key, path) in [(maxConnections, \LabeledLimits.maxConnections), (maxPending, \LabeledLimits.maxPending)] {
            guard let text = labels[key].map(trimmed), !text.isEmpty else { continue }
            guard let value = EndpointLimits.count(text) else {
                return .failure(LabelProblem("\(owner): \(key) '\(DiscoveredValues.shown(text, quoted: false))' is not a whole number from 0 to \(EndpointLimits.maxValue)", field: "limits"))
            }
            limits[keyPath: path] = value
        }
        if let text = labels[queueTimeout].map(trimmed), !text.isEmpty {
            guard let ms = EndpointLimits.queueTimeout(text) else {
                return .failure(LabelProblem("\(owner): \(queueTimeout) '\(DiscoveredValues.shown(text, quoted: false))' is not a duration from 1ms to 10m (e.g. 500ms, 2s)", field: "limits"))
            }
            limits.queueTimeoutMs = ms
        }
        return .success(limits)
    }

    static func trimmed(_ text: String) -> String {
        var view = Substring(text)
        while view.first == " " { view.removeFirst() }
        while view.last == " " { view.removeLast() }
        return String(view)
    }

}

/// A malformed label (or tag), as a message that names the workload and the label.
public struct LabelProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    /// The field a value failed `DiscoveredValues`' rules for (the metrics' `reason`);
    /// nil for a workload that is incomplete rather than invalid (no address, no port).
    public var field: String?
    public init(_ description: String, field: String? = nil) {
        self.description = description
        self.field = field
    }

    /// `problem`, said of `owner`.
    public init(_ owner: String, _ problem: DiscoveredValues.Problem) {
        self.init("\(owner): \(problem.message)", field: problem.field)
    }

    /// The rejection to count, when a value broke the rules.
    public var rejection: DiscoveredValues.Problem? {
        field.map { DiscoveredValues.Problem(field: $0, message: description) }
    }
}

/// One workload read through its labels: the service it joins and how.
public struct LabeledInstance: Sendable, Equatable {
    public var service: String
    public var instance: InstanceDefinition
    /// The host/path rule its labels declare, if any.
    public var route: DiscoveredRoute?
    /// The HTTP health-check path its labels ask for, if any.
    public var healthPath: String?
    /// The active track its labels name (`switchyard.active`), if any.
    public var activeTrack: String? = nil
    /// The routes its `switchyard.route.NAME.*` labels declare.
    public var namedRoutes: [DiscoveredRoute] = []
    /// The service-wide settings its labels carry (balancer, health timings, retries,
    /// upstream protocol, canary).
    public var settings = ServiceLabelSettings()
    /// What its `switchyard.max_connections` / `max_pending` / `queue_timeout` labels say.
    public var limits = LabeledLimits()
}

/// The limit labels of one workload; nil where the label is absent.
public struct LabeledLimits: Sendable, Equatable {
    public var maxConnections: Int?
    public var maxPending: Int?
    public var queueTimeoutMs: Int?
    public init() {}
}

// MARK: - Catalog assembly

public enum LabeledCatalog {
    /// Groups instances into services: a complete, deterministic catalog (services by
    /// name, instances by address and port, routes deduplicated and sorted), so two
    /// listings of an unchanged backend give equal snapshots.
    ///
    /// A service's routes are the union of its instances' rules; its health check is
    /// HTTP on the first health path (in instance order) when any instance names one.
    /// Two workloads with the same address and port in one service are one instance
    /// (the first, by id). The active track is the first `switchyard.active` value (in
    /// instance order) that names a track the service has; instances that disagree are
    /// a deployment mid-change, and the next snapshot settles it. The service-wide
    /// settings (`ServiceLabels.swift`) follow the same rule, field by field.
    public static func assemble(_ items: [LabeledInstance]) -> ServiceCatalog {
        var byService: [String: [LabeledInstance]] = [:]
        for item in items { byService[item.service, default: []].append(item) }
        var services: [ServiceDefinition] = []
        for name in byService.keys.sorted() {
            let members = byService[name]!.sorted { a, b in
                (a.instance.address, a.instance.port, a.instance.id ?? "") < (b.instance.address, b.instance.port, b.instance.id ?? "")
            }
            var instances: [InstanceDefinition] = []
            var seen = Set<String>()
            for member in members where seen.insert("\(member.instance.address)|\(member.instance.port)").inserted {
                instances.append(member.instance)
            }
            let tracks = Set(instances.compactMap(\.track))
            let active = members.lazy.compactMap(\.activeTrack).first { tracks.contains($0) }
            var definition = ServiceDefinition(name: name, activeTrack: active, instances: instances)
            if let path = members.lazy.compactMap(\.healthPath).first {
                definition.health.kind = .http
                definition.health.path = path
            }
            definition.apply(ServiceLabelSettings.first(members.map(\.settings)))
            definition.limits = EndpointLimits(
                maxConnections: members.lazy.compactMap(\.limits.maxConnections).first ?? 0,
                maxPending: members.lazy.compactMap(\.limits.maxPending).first ?? 0,
                queueTimeoutMs: members.lazy.compactMap(\.limits.queueTimeoutMs).first ?? 0)
            definition.routes = Set(members.compactMap(\.route) + members.flatMap(\.namedRoutes)).sorted { a, b in
                (a.name ?? "", a.host ?? "", a.pathPrefix, a.priority, a.middlewareNames.joined(separator: ","), a.declaredBy ?? "")
                    < (b.name ?? "", b.host ?? "", b.pathPrefix, b.priority, b.middlewareNames.joined(separator: ","), b.declaredBy ?? "")
            }
            services.append(definition)
        }
        return ServiceCatalog(services: services)
    }
}
