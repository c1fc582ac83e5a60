// Building the immutable `RoutingTable` from configured routes and a discovered catalog.
//
// A pure function (the Traefik model): the control plane calls it with the latest values
// whenever any of them changes and publishes the result; tests pin it down as
// fixture → expected table.

// MARK: - Building

/// The routing table for `routes` over `catalog`.
///
/// - Services keep catalog order; each one's `index` is its position.
/// - Endpoints keep instance order and get their `poolKey` from `poolKeys`, so an
///   `address:port` keeps its key (and its pooled connections) across tables.
/// - A route naming a service the catalog does not have gets `service == nil` (its
///   requests get 503) instead of failing the build: discovery is eventually consistent,
///   and one missing service must not block updates to every other route.
/// - Route match order is `RoutingTable`'s: host-specific first, then longest prefix.
/// - A service name that appears twice in `catalog` keeps its first definition.
///
/// Threading: pure apart from `poolKeys` (which is thread-safe); call from any thread.
public func buildRoutingTable(
    version: UInt64, routes: [RouteConfig], catalog: ServiceCatalog, poolKeys: PoolKeys = .shared,
    stickyCookies: StickyCookieValues? = nil,
    health: (_ service: String, _ poolKey: Int, _ configuredWeight: Int) -> EndpointState? = { _, _, _ in nil }
) -> RoutingTable {
    var services: [Service] = []
    var byName: [String: Service] = [:]
    for definition in catalog.services where byName[definition.name] == nil {
        let service = buildService(definition, index: services.count, poolKeys: poolKeys, health: health)
        services.append(service)
        byName[definition.name] = service
    }
    // forward_auth to an address and port: a service of that name with the one instance,
    // unless discovery has one (ForwardAuth.swift).
    for route in routes {
        for middleware in route.middlewares {
            guard case .forwardAuth(let auth) = middleware.kind, byName[auth.service] == nil, let fixed = auth.fixedAddress else { continue }
            let service = buildService(ServiceDefinition(name: auth.service, instances: [InstanceDefinition(address: fixed.host, port: fixed.port)]),
                                       index: services.count, poolKeys: poolKeys, health: health)
            services.append(service)
            byName[auth.service] = service
        }
    }
    var resolved = routes.map { route in
        Route(match: route.match, name: route.name, serviceName: route.service, service: byName[route.service],
              middlewares: route.middlewares, settings: route.settings)
    }
    // Routes a service declares through discovery come after the config file's; an exact
    // duplicate of a configured match is dropped so the config file wins.
    var taken = Set(routes.map(\.match))
    for definition in catalog.services {
        // A route whose middlewares were not resolved (`DiscoveredRouteMiddlewares`) is
        // left out rather than served without them.
        for route in definition.routes where route.middlewaresResolved {
            // A label's path_regex was compiled when it was read; one that no longer compiles is left out.
            let pathRegex = route.pathRegex.flatMap { try? LinearRegex($0) }
            if route.pathRegex != nil && pathRegex == nil { continue }
            let match = RouteMatch(hosts: route.host.map { [$0.lowercased()] } ?? [], path: route.pathPrefix, priority: route.priority,
                                   pathRegex: pathRegex)
            guard taken.insert(match).inserted else { continue }
            resolved.append(Route(match: match, name: route.name, serviceName: definition.name, service: byName[definition.name],
                                  middlewares: route.middlewares))
        }
    }
    return RoutingTable(version: version, routes: resolved, services: services, stickyCookies: stickyCookies)
}

private func buildService(
    _ definition: ServiceDefinition, index: Int, poolKeys: PoolKeys,
    health: (String, Int, Int) -> EndpointState?
) -> Service {
    let endpoints = definition.instances.map { instance in
        let key = poolKeys.key(address: instance.address, port: instance.port, flavor: definition.upstream.poolFlavor)
        let state = health(definition.name, key, instance.weight)
        return Endpoint(
            poolKey: key, address: instance.address, port: instance.port, track: instance.track,
            weight: instance.weight, service: definition.name,
            effectiveWeight: state?.effectiveWeight, health: state?.health ?? "healthy",
            draining: instance.drain, ejected: state?.ejected ?? false,
            slots: definition.limits.limited ? LimitCounters.shared.slots(service: definition.name, poolKey: key) : nil
        )
    }
    return Service(
        name: definition.name, index: index, activeTrack: definition.activeTrack, endpoints: endpoints,
        balancer: definition.balancer, hashOn: definition.hashOn, retry: definition.retry, health: definition.health,
        canary: definition.canary, trackOverride: definition.trackOverride, upstream: definition.upstream,
        limits: definition.limits)
}

/// An endpoint's routing state as the health checker sees it, for `buildRoutingTable`.
public struct EndpointState: Sendable, Equatable {
    /// Scaled by 100 (see `Endpoint.effectiveWeight`); 0 keeps new requests away.
    public var effectiveWeight: Int
    public var health: String
    public var ejected: Bool

    public init(effectiveWeight: Int, health: String, ejected: Bool) {
        self.effectiveWeight = effectiveWeight
        self.health = health
        self.ejected = ejected
    }
}
