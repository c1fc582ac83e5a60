import Testing
@testable import YardModel

// MARK: - Valid catalogs

@Suite struct CatalogLoaderAcceptsValidFiles {
    @Test func shippedServicesYmlHasTheDemoShopWithBlueActive() throws {
        let catalog = try ConfigLoader.loadCatalog(path: shippedConfPath("services.yml"))
        #expect(catalog.services.map(\.name) == ["shop"])
        let shop = try #require(catalog.services.first)
        #expect(shop.activeTrack == "blue")
        #expect(shop.instances.map { "\($0.address):\($0.port)/\($0.track ?? "-")" } == [
            "127.0.0.1:9101/blue", "127.0.0.1:9102/blue", "127.0.0.1:9201/green", "127.0.0.1:9202/green",
        ])
        #expect(shop.instances.allSatisfy { $0.weight == 1 })
        #expect(shop.instances[3].labels == ["zone": "a"])
    }

    @Test func instancesCarryTagsAndIdsAndServicesDeclareTheirOwnRoutes() throws {
        let yaml = """
            services:
              shop:
                routes: [{host: Shop.Example, path: /cart}, {path: /}]
                instances:
                  - {address: 127.0.0.1, port: 9101, tags: [track-blue, weight-2], id: web-1}
            """
        let shop = try #require(try ConfigLoader.loadCatalog(text: yaml, path: "s.yml").services.first)
        #expect(shop.routes == [DiscoveredRoute(host: "shop.example", pathPrefix: "/cart"), DiscoveredRoute(pathPrefix: "/")])
        #expect(shop.instances[0].tags == ["track-blue", "weight-2"])
        #expect(shop.instances[0].id == "web-1")

        let table = buildRoutingTable(
            version: 1, routes: [RouteConfig(host: nil, pathPrefix: "/", service: "other")], catalog: ServiceCatalog(services: [shop]))
        // The config file's catch-all wins over the service's own; its /cart route is added.
        #expect(table.routes.map { "\($0.host.map { String(decoding: $0, as: UTF8.self) } ?? "*")\(String(decoding: $0.pathPrefix, as: UTF8.self))->\($0.serviceName)" } == ["shop.example/cart->shop", "*/->other"])
    }

    @Test func jsonCatalogLoadsLikeYaml() throws {
        let json = """
            {
            \t"services": {
            \t\t"shop": {
            \t\t\t"active": "green",
            \t\t\t"instances": [
            \t\t\t\t{"address": "127.0.0.1", "port": 9101, "track": "blue"},
            \t\t\t\t{"address": "::1", "port": 9201, "track": "green", "weight": 0, "labels": {"zone": "b"}}
            \t\t\t]
            \t\t},
            \t\t"api": {"instances": [{"address": "localhost", "port": 7000}]}
            \t}
            }
            """
        let catalog = try ConfigLoader.loadCatalog(text: json, path: "services.json")
        #expect(catalog == ServiceCatalog(services: [
            ServiceDefinition(name: "shop", activeTrack: "green", instances: [
                InstanceDefinition(address: "127.0.0.1", port: 9101, track: "blue"),
                InstanceDefinition(address: "::1", port: 9201, track: "green", weight: 0, labels: ["zone": "b"]),
            ]),
            ServiceDefinition(name: "api", instances: [InstanceDefinition(address: "localhost", port: 7000)]),
        ]))
    }

    @Test func jsonSyntaxErrorNamesTheLine() {
        let json = "{\n  \"services\": {\n    \"shop\": {\"instances\": [}\n  }\n}\n"
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadCatalog(text: json, path: "services.json") }) else { return }
        #expect(error.line == 3, "\(error)")
        #expect(error.message.contains("YAML syntax error"))
    }

    @Test func explicitlyEmptyServicesIsAnEmptyCatalog() throws {
        #expect(try ConfigLoader.loadCatalog(text: "services: {}\n", path: "s.yml") == ServiceCatalog(services: []))
    }

    @Test func serviceOrderFollowsTheFile() throws {
        let text = "services:\n  zeta: {}\n  alpha: {}\n  mid: {}\n"
        #expect(try ConfigLoader.loadCatalog(text: text, path: "s.yml").services.map(\.name) == ["zeta", "alpha", "mid"])
    }

    @Test func bracketedIPv6InstanceAddressIsUnwrapped() throws {
        let text = "services:\n  s:\n    instances: [{address: '[::1]', port: 80}]\n"
        #expect(try ConfigLoader.loadCatalog(text: text, path: "s.yml").services[0].instances[0].address == "::1")
    }
}

// MARK: - Errors

private let header = "services:\n  shop:\n    instances:\n"

private let badCatalogs: [BadConfig] = [
    BadConfig(name: "active track that no instance has",
              text: "services:\n  shop:\n    active: green\n    instances:\n      - {address: 127.0.0.1, port: 9101, track: blue}\n",
              line: 3, key: "services.shop.active",
              says: "active track 'green' has no instance (known tracks: blue)"),
    BadConfig(name: "port zero",
              text: header + "      - address: 127.0.0.1\n        port: 0\n", line: 5, key: "services.shop.instances[0].port",
              says: "out of range; expected 1...65535"),
    BadConfig(name: "port not a number",
              text: header + "      - address: 127.0.0.1\n        port: http\n", line: 5, key: "services.shop.instances[0].port",
              says: "expected a port number"),
    BadConfig(name: "host name as instance address",
              text: header + "      - address: shop.internal\n        port: 80\n", line: 4, key: "services.shop.instances[0].address",
              says: "is not an IP address"),
    BadConfig(name: "port inside the address",
              text: header + "      - address: 127.0.0.1:9101\n        port: 9101\n", line: 4, key: "services.shop.instances[0].address",
              says: "put the port under 'port:'"),
    BadConfig(name: "unspecified address",
              text: header + "      - address: 0.0.0.0\n        port: 80\n", line: 4, key: "services.shop.instances[0].address",
              says: "cannot be connected to"),
    BadConfig(name: "duplicate instance",
              text: header + "      - {address: 127.0.0.1, port: 80}\n      - {address: 127.0.0.1, port: 80}\n",
              line: 5, key: "services.shop.instances[1]", says: "duplicate instance 127.0.0.1:80 (also at line 4)"),
    BadConfig(name: "weight too large",
              text: header + "      - {address: 127.0.0.1, port: 80, weight: 1001}\n", line: 4,
              key: "services.shop.instances[0].weight", says: "expected 0...1000"),
    BadConfig(name: "missing port",
              text: header + "      - address: 127.0.0.1\n", line: 4, key: "services.shop.instances[0].port",
              says: "missing required key 'port'"),
    BadConfig(name: "misspelt instance key",
              text: header + "      - {address: 127.0.0.1, port: 80, trak: blue}\n", line: 4,
              key: "services.shop.instances[0].trak", says: "did you mean 'track'?"),
    BadConfig(name: "track holding a newline and an nginx block",
              text: header + "      - {address: 127.0.0.1, port: 80, track: \"blue\\n}\\nserver { listen 80; }\"}\n", line: 4,
              key: "services.shop.instances[0].track", says: "track name \"blue\\n}\\nserver { listen 80; }\" may only use"),
    BadConfig(name: "label value with a control character",
              text: header + "      - {address: 127.0.0.1, port: 80, labels: {zone: \"a\\u001b[0m\"}}\n", line: 4,
              key: "services.shop.instances[0].labels.zone", says: "holds a control character"),
    BadConfig(name: "tag with a newline",
              text: header + "      - {address: 127.0.0.1, port: 80, tags: [\"a\\nb\"]}\n", line: 4,
              key: "services.shop.instances[0].tags[0]", says: "holds a control character"),
    BadConfig(name: "health path with a space",
              text: "services:\n  shop:\n    health: {path: \"/ok server\"}\n", line: 3,
              key: "services.shop.health.path", says: "no whitespace or control character"),
    BadConfig(name: "route path with a newline",
              text: "services:\n  shop:\n    routes: [{path: \"/a\\n\"}]\n", line: 3,
              key: "services.shop.routes[0]", says: "no whitespace or control character"),
    BadConfig(name: "bad service name",
              text: "services:\n  'my shop': {}\n", line: 2, key: "services.my shop", says: "may only use letters"),
    BadConfig(name: "top-level key other than services",
              text: "service:\n  shop: {}\n", line: 1, key: "service", says: "did you mean 'services'?"),
    BadConfig(name: "empty file (a truncated rewrite) is not an empty catalog",
              text: "", line: nil, key: nil, says: "write 'services: {}' for none"),
]

@Suite struct CatalogLoaderNamesFileLineAndKey {
    @Test(arguments: badCatalogs)
    func badCatalogIsRejectedWithFileLineKeyAndAdvice(_ bad: BadConfig) {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadCatalog(text: bad.text, path: "conf/services.yml") }) else { return }
        #expect(error.file == "conf/services.yml")
        #expect(error.line == bad.line, "\(error)")
        #expect(error.key == bad.key, "\(error)")
        #expect(error.message.contains(bad.says), "\(error)")
    }
}
