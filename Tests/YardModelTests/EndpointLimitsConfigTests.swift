// `max_connections`, `max_pending` and `queue_timeout` in services.yml, `timeouts.queue` in
// switchyard.yml, and what the table carries for the data plane.

import Testing
@testable import YardModel

@Suite struct EndpointLimitsConfigTests {
    private func load(_ service: String) throws(ConfigError) -> ServiceDefinition? {
        try ConfigLoader.loadCatalog(text: "services:\n  shop:\n\(service)    instances: [{address: 127.0.0.1, port: 9101}]\n", path: "s.yml").services.first
    }

    @Test func theThreeKeysAreRead() throws {
        let shop = try #require(try load("    max_connections: 4\n    max_pending: 20\n    queue_timeout: 500ms\n"))
        #expect(shop.limits == EndpointLimits(maxConnections: 4, maxPending: 20, queueTimeoutMs: 500))
    }

    @Test func noKeysMeansNoLimitAndTheTableCountsNothing() throws {
        let shop = try #require(try load(""))
        #expect(!shop.limits.limited)
        let table = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [shop]))
        #expect(table.services.first?.waitLine == nil)
        #expect(table.services.first?.endpoints.allSatisfy { $0.slots == nil } == true)
    }

    @Test func aLimitedServiceSharesItsCountersAcrossTables() throws {
        let shop = try #require(try load("    max_connections: 2\n    max_pending: 1\n"))
        let first = buildRoutingTable(version: 1, routes: [], catalog: ServiceCatalog(services: [shop]))
        let second = buildRoutingTable(version: 2, routes: [], catalog: ServiceCatalog(services: [shop]))
        let a = try #require(first.services.first?.endpoints.first?.slots)
        let b = try #require(second.services.first?.endpoints.first?.slots)
        #expect(a === b, "a slot claimed on one table is released on the same counter after a swap")
        #expect(first.services.first?.waitLine === second.services.first?.waitLine)
    }

    @Test func maxPendingWithoutMaxConnectionsIsRefusedWithAReason() {
        guard let error = configError({ () throws(ConfigError) in try load("    max_pending: 5\n") }) else { return }
        #expect(error.message.contains("set max_connections too"), "\(error)")
        #expect(error.line == 3)
    }

    @Test func outOfRangeValuesAreRefused() {
        #expect(configError({ () throws(ConfigError) in try load("    max_connections: -1\n") }) != nil)
        #expect(configError({ () throws(ConfigError) in try load("    max_connections: 99999999999999999999999\n") }) != nil)
        #expect(configError({ () throws(ConfigError) in try load("    max_connections: 2\n    queue_timeout: 11m\n") })?.message.contains("10m") == true)
        #expect(configError({ () throws(ConfigError) in try load("    max_connections: 2\n    queue_timeout: soon\n") }) != nil)
    }

    @Test func timeoutsQueueIsTheDefaultWait() throws {
        let text = "listeners: [{name: web, address: 127.0.0.1:0}]\ntimeouts:\n  queue: 750ms\n"
        #expect(try ConfigLoader.loadConfig(text: text, path: "switchyard.yml").proxy.queueTimeoutMs == 750)
        #expect(ProxySettings().queueTimeoutMs == 3_000)
    }

    @Test func labelValuesAreCheckedWithoutTrapping() {
        #expect(EndpointLimits.count("4") == 4)
        #expect(EndpointLimits.count("0") == 0)
        for bad in ["", "-1", "4.5", "1e3", "99999999999999999999", "1000001", " 4"] { #expect(EndpointLimits.count(bad) == nil, "\(bad)") }
        #expect(EndpointLimits.queueTimeout("250ms") == 250)
        #expect(EndpointLimits.queueTimeout("2s") == 2_000)
        for bad in ["0", "11m", "forever", "9999999999999999999h"] { #expect(EndpointLimits.queueTimeout(bad) == nil, "\(bad)") }
    }
}
