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
    version: UInt64, routes: [RouteConfig], catalog: ServiceCatalog, poolKeys: PoolKeys = .shared
) -> RoutingTable {
    var services: [Service] = []
    var byName: [String: Service] = [:]
    for definition in catalog.services where byName[definition.name] == nil {
        let service = buildService(definition, index: services.count, poolKeys: poolKeys)
        services.append(service)
        byName[definition.name] = service
    }
    let resolved = routes.map { route in
        Route(host: route.host, pathPrefix: route.pathPrefix, serviceName: route.service, service: byName[route.service])
    }
    return RoutingTable(version: version, routes: resolved, services: services)
}

private func buildService(_ definition: ServiceDefinition, index: Int, poolKeys: PoolKeys) -> Service {
    let endpoints = definition.instances.map { instance in
        Endpoint(
            poolKey: poolKeys.key(address: instance.address, port: instance.port),
            address: instance.address, port: instance.port, track: instance.track,
            weight: instance.weight, service: definition.name
        )
    }
    return Service(name: definition.name, index: index, activeTrack: definition.activeTrack, endpoints: endpoints)
}
