import Testing
import YardModel

// MARK: - Helpers

/// A routing table written out line by line, so a fixture's expected table reads like a
/// table and a mismatch shows which line differs.
private func describe(_ table: RoutingTable) -> [String] {
    var lines = ["version \(table.version)"]
    for service in table.services {
        lines.append("service \(service.index) \(service.name) active=\(service.activeTrack ?? "*")")
        for endpoint in service.endpoints {
            let isActive = service.activeEndpoints.contains { $0 === endpoint }
            lines.append("  \(isActive ? "+" : "-") \(endpoint.id) track=\(endpoint.track ?? "-") weight=\(endpoint.weight) key=\(endpoint.poolKey)")
        }
    }
    for route in table.routes {
        let host = route.host.map { String(decoding: $0, as: UTF8.self) } ?? "*"
        let target = route.service.map { "\($0.name)#\($0.index)" } ?? "nil"
        lines.append("route \(host)\(String(decoding: route.pathPrefix, as: UTF8.self)) -> \(route.serviceName) (\(target))")
    }
    return lines
}

/// The service name the table routes `host` + `path` to, "404" without a route, "503"
/// for a route whose service is missing.
private func match(_ table: RoutingTable, host: String, path: String) -> String {
    let hostBytes = Array(host.utf8)
    let pathBytes = Array(path.utf8)
    let route = hostBytes.withUnsafeBytes { h in pathBytes.withUnsafeBytes { p in table.route(host: h, path: p) } }
    guard let route else { return "404" }
    return route.service?.name ?? "503"
}

private func instance(_ port: UInt16, _ track: String? = nil, weight: Int = 1) -> InstanceDefinition {
    InstanceDefinition(address: "127.0.0.1", port: port, track: track, weight: weight)
}

// MARK: - Fixtures → tables

@Suite struct TableBuilderFixtures {
    @Test func blueGreenFixtureBuildsTheExpectedTable() {
        let keys = PoolKeys()
        let catalog = ServiceCatalog(services: [
            ServiceDefinition(name: "shop", activeTrack: "blue", instances: [
                instance(9101, "blue"), instance(9102, "blue", weight: 0), instance(9201, "green"),
            ]),
            ServiceDefinition(name: "api", instances: [
                InstanceDefinition(address: "::1", port: 7000), instance(7001, weight: 3),
            ]),
        ])
        let routes = [
            RouteConfig(host: nil, pathPrefix: "/", service: "shop"),
            RouteConfig(host: "api.example.com", pathPrefix: "/", service: "api"),
            RouteConfig(host: nil, pathPrefix: "/old", service: "legacy"),
        ]
        let table = buildRoutingTable(version: 7, routes: routes, catalog: catalog, poolKeys: keys)
        #expect(describe(table) == [
            "version 7",
            "service 0 shop active=blue",
            "  + shop/127.0.0.1:9101 track=blue weight=1 key=0",
            "  - shop/127.0.0.1:9102 track=blue weight=0 key=1",
            "  - shop/127.0.0.1:9201 track=green weight=1 key=2",
            "service 1 api active=*",
            "  + api/[::1]:7000 track=- weight=1 key=3",
            "  + api/127.0.0.1:7001 track=- weight=3 key=4",
            "route api.example.com/ -> api (api#1)",
            "route */old -> legacy (nil)",
            "route */ -> shop (shop#0)",
        ])
    }

    @Test func shippedConfigAndServicesBuildTheDemoTable() throws {
        let config = try ConfigLoader.loadConfig(path: shippedConfPath("switchyard.yml"))
        let catalog = try ConfigLoader.loadCatalog(path: shippedConfPath("services.yml"))
        let table = buildRoutingTable(version: 1, routes: config.routes, catalog: catalog, poolKeys: PoolKeys())
        #expect(describe(table) == [
            "version 1",
            "service 0 shop active=blue",
            "  + shop/127.0.0.1:9101 track=blue weight=1 key=0",
            "  + shop/127.0.0.1:9102 track=blue weight=1 key=1",
            "  - shop/127.0.0.1:9201 track=green weight=1 key=2",
            "  - shop/127.0.0.1:9202 track=green weight=1 key=3",
            "route */ -> shop (shop#0)",
        ])
    }

    @Test func emptyInputsBuildAnEmptyTable() {
        let table = buildRoutingTable(version: 0, routes: [], catalog: ServiceCatalog(services: []), poolKeys: PoolKeys())
        #expect(describe(table) == ["version 0"])
        #expect(match(table, host: "a", path: "/") == "404")
    }
}

// MARK: - Endpoints and tracks

@Suite struct TableBuilderTracksAndPoolKeys {
    @Test func flippingTheActiveTrackMovesActiveEndpointsButKeepsPoolKeys() {
        let keys = PoolKeys()
        let instances = [instance(9101, "blue"), instance(9201, "green")]
        let blue = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [
            ServiceDefinition(name: "shop", activeTrack: "blue", instances: instances),
        ]), poolKeys: keys)
        let green = buildRoutingTable(version: 2, routes: [], catalog: ServiceCatalog(services: [
            ServiceDefinition(name: "shop", activeTrack: "green", instances: instances),
        ]), poolKeys: keys)
        #expect(blue.services[0].activeEndpoints.map(\.port) == [9101])
        #expect(green.services[0].activeEndpoints.map(\.port) == [9201])
        #expect(blue.services[0].endpoints.map(\.poolKey) == green.services[0].endpoints.map(\.poolKey))
    }

    @Test func weightZeroTakesNoNewRequestsButStaysAnEndpoint() {
        let table = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [
            ServiceDefinition(name: "shop", instances: [instance(1, weight: 0), instance(2)]),
        ]), poolKeys: PoolKeys())
        #expect(table.services[0].endpoints.map(\.port) == [1, 2])
        #expect(table.services[0].activeEndpoints.map(\.port) == [2])
    }

    @Test func sameAddressAndPortInTwoServicesShareAPoolKey() {
        let table = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [
            ServiceDefinition(name: "a", instances: [instance(80)]),
            ServiceDefinition(name: "b", instances: [instance(80), instance(81)]),
        ]), poolKeys: PoolKeys())
        #expect(table.services[0].endpoints[0].poolKey == table.services[1].endpoints[0].poolKey)
        #expect(table.services[1].endpoints[0].poolKey != table.services[1].endpoints[1].poolKey)
    }

    @Test func duplicateServiceNameKeepsTheFirstDefinition() {
        let table = buildRoutingTable(version: 1, routes: [RouteConfig(host: nil, pathPrefix: "/", service: "a")],
                                      catalog: ServiceCatalog(services: [
                                          ServiceDefinition(name: "a", instances: [instance(1)]),
                                          ServiceDefinition(name: "a", instances: [instance(2)]),
                                      ]), poolKeys: PoolKeys())
        #expect(table.services.count == 1)
        #expect(table.routes[0].service?.endpoints.map(\.port) == [1])
    }
}

// MARK: - Route matching

@Suite struct RoutingTableMatchOrder {
    let table = buildRoutingTable(
        version: 1,
        routes: [
            RouteConfig(host: nil, pathPrefix: "/", service: "catchall"),
            RouteConfig(host: nil, pathPrefix: "/api", service: "api"),
            RouteConfig(host: nil, pathPrefix: "/api/v2", service: "api-v2"),
            RouteConfig(host: "Shop.Example.com", pathPrefix: "/", service: "shop"),
            RouteConfig(host: "shop.example.com", pathPrefix: "/api", service: "shop-api"),
            RouteConfig(host: nil, pathPrefix: "/gone", service: "missing"),
        ],
        catalog: ServiceCatalog(services: ["catchall", "api", "api-v2", "shop", "shop-api"].map {
            ServiceDefinition(name: $0, instances: [])
        }),
        poolKeys: PoolKeys()
    )

    @Test func hostSpecificRouteBeatsCatchAllEvenWithAShorterPrefix() {
        #expect(match(table, host: "shop.example.com", path: "/api/v2/items") == "shop-api")
        #expect(match(table, host: "shop.example.com", path: "/cart") == "shop")
    }

    @Test func longerPrefixWinsAmongCatchAllRoutes() {
        #expect(match(table, host: "other.example.com", path: "/api/v2/items") == "api-v2")
        #expect(match(table, host: "other.example.com", path: "/api/v1") == "api")
        #expect(match(table, host: "other.example.com", path: "/") == "catchall")
    }

    @Test func hostHeaderMatchesWithAPortAndInAnyCase() {
        #expect(match(table, host: "SHOP.example.COM:8080", path: "/api") == "shop-api")
        #expect(match(table, host: "shop.example.com:443", path: "/") == "shop")
        #expect(match(table, host: "shop.example.com.evil", path: "/") == "catchall")
    }

    @Test func routeToAnUnknownServiceMatchesWithoutAService() {
        #expect(match(table, host: "x", path: "/gone/away") == "503")
        #expect(table.routes.first { $0.serviceName == "missing" }?.service == nil)
    }
}
