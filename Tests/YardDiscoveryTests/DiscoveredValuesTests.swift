// Values from discovery that reach templates and the routing table are checked where
// they enter: a workload whose track, address, path or label breaks the rules is left
// out and reported; the rest of the snapshot keeps working.

import Dispatch
import Synchronization
import Testing
@testable import YardDiscovery
import YardModel
import YardTestSupport

/// The track an attacker who can start a container would like nginx to read.
let injectedTrack = "blue;\n}\nserver { listen 80; location / { return 200 owned; } }\nupstream x {"

@Suite struct DiscoveredValueRules {
    @Test func addressesAreIPLiteralsOrRFC1123HostNames() {
        for good in ["10.0.0.1", "::1", "fe80::1", "web-1.internal", "db", "a.b.c.", "3com.example"] {
            #expect(DiscoveredValues.checkAddress(good) == nil, "\(good)")
        }
        for bad in ["", "web_1", "-web", "web-", "a..b", "10.0.0.1;", "host name", "x\ny", "[::1]", String(repeating: "a", count: 64),
                    String(repeating: "a.", count: 127) + "ab"] {
            #expect(DiscoveredValues.checkAddress(bad)?.field == "address", "\(bad)")
        }
    }

    @Test func trackAndServiceNamesAreLettersDigitsDashUnderscoreDotAndBounded() {
        #expect(DiscoveredValues.checkName("green_2.v-1", field: "track") == nil)
        #expect(DiscoveredValues.checkName(injectedTrack, field: "track")?.field == "track")
        #expect(DiscoveredValues.checkName("", field: "service")?.field == "service")
        #expect(DiscoveredValues.checkName("a b", field: "track") != nil)
        #expect(DiscoveredValues.checkName(String(repeating: "x", count: 129), field: "track") != nil)
        #expect(DiscoveredValues.checkName(String(repeating: "x", count: 128), field: "track") == nil)
    }

    @Test func pathsStartWithASlashAndHoldNoWhitespaceOrControlCharacter() {
        #expect(DiscoveredValues.checkPath("/healthz?full=1", field: "health_path") == nil)
        for bad in ["healthz", "/health z", "/h\nx", "/h\u{0}", "/h\u{85}", "/h\u{2028}"] {
            #expect(DiscoveredValues.checkPath(bad, field: "health_path")?.field == "health_path", "\(bad)")
        }
    }

    @Test func portsAreOneTo65535() {
        #expect(DiscoveredValues.checkPort(0)?.field == "port")
        #expect(DiscoveredValues.checkPort(65_536)?.field == "port")
        #expect(DiscoveredValues.checkPort(1) == nil && DiscoveredValues.checkPort(65_535) == nil)
    }

    @Test func labelValuesTagsAndIdsHoldNoControlCharacter() {
        let instance = InstanceDefinition(address: "10.0.0.1", port: 80, labels: ["team": "a\nb"])
        #expect(DiscoveredValues.check(instance)?.field == "label")
        #expect(DiscoveredValues.check(InstanceDefinition(address: "10.0.0.1", port: 80, tags: ["x\u{7f}"]))?.field == "tag")
        #expect(DiscoveredValues.check(InstanceDefinition(address: "10.0.0.1", port: 80, id: "a\rb"))?.field == "id")
        #expect(DiscoveredValues.check(InstanceDefinition(address: "10.0.0.1", port: 80, labels: ["note": "ünïcode ok { }"])) == nil)
    }

    @Test func messagesShowTheBadValueEscapedOnOneLine() {
        let problem = DiscoveredValues.checkName(injectedTrack, field: "track")
        #expect(problem?.message.contains("\n") == false)
        #expect(problem?.message.contains("blue;\\n}\\nserver") == true)
    }

    @Test func screenDropsTheBadInstanceAndKeepsTheRestOfTheSnapshot() {
        var shop = ServiceDefinition(name: "shop", activeTrack: "blue", instances: [
            InstanceDefinition(address: "10.0.0.1", port: 8080, track: "blue", id: "good"),
            InstanceDefinition(address: "10.0.0.2", port: 8080, track: injectedTrack, id: "evil"),
        ])
        shop.canary = nil
        var api = ServiceDefinition(name: "api", activeTrack: nil, instances: [InstanceDefinition(address: "10.0.0.3", port: 9000)])
        api.health.kind = .http
        api.health.path = "/ok\nserver {"
        let web = ServiceDefinition(name: "web", activeTrack: nil, instances: [InstanceDefinition(address: "web.internal", port: 80)])
        let (catalog, rejections) = DiscoveredValues.screen(ServiceCatalog(services: [shop, api, web]))
        #expect(catalog.services.map(\.name) == ["shop", "web"])
        #expect(catalog.services[0].instances.map(\.id) == ["good"])
        #expect(catalog.services[0].activeTrack == "blue")
        #expect(rejections.map(\.problem.field) == ["track", "health_path"])
        #expect(rejections[0].description.hasPrefix("dropped instance evil of service \"shop\": track name"))
        #expect(rejections[1].instance == nil)
    }

    @Test func screenClearsAnActiveTrackWhoseOnlyInstancesWereDropped() {
        let shop = ServiceDefinition(name: "shop", activeTrack: "green", instances: [
            InstanceDefinition(address: "10.0.0.1", port: 8080, track: "blue"),
            InstanceDefinition(address: "bad address", port: 8080, track: "green"),
        ])
        let (catalog, rejections) = DiscoveredValues.screen(ServiceCatalog(services: [shop]))
        #expect(catalog.services[0].activeTrack == nil)
        #expect(rejections.map(\.problem.field) == ["address"])
    }
}

@Suite struct LabelValidation {
    private func container(_ id: String, _ labels: [String: String], ip: String) -> DockerContainer {
        DockerContainer(
            id: id, names: ["/\(id)"], state: "running", status: "Up", labels: labels, ports: [], hostConfig: nil,
            networkSettings: DockerContainer.NetworkSettings(networks: ["app": DockerContainer.Network(ipAddress: ip)]))
    }

    @Test func aContainerWithAnInjectedTrackIsLeftOutAndReportedWhileItsNeighbourStays() {
        let (catalog, problems) = DockerCatalog.catalog([
            container("good", ["switchyard.service": "web", "switchyard.port": "8080", "switchyard.track": "blue"], ip: "10.0.0.1"),
            container("evil", ["switchyard.service": "web", "switchyard.port": "8080", "switchyard.track": injectedTrack], ip: "10.0.0.2"),
        ], mapping: DockerMapping())
        #expect(catalog.services.count == 1)
        #expect(catalog.services[0].instances.map(\.id) == ["good"])
        #expect(problems.count == 1)
        #expect(problems[0].field == "track")
        #expect(problems[0].description.hasPrefix("container evil (evil): track name \"blue;\\n}\\nserver"))
        #expect(!problems[0].description.contains("\n"))
    }

    @Test func everyLabelledFieldIsChecked() {
        let cases: [(String, String, String)] = [
            ("switchyard.address", "10.0.0.1\nserver", "address"),
            ("switchyard.health.path", "/ok server", "health_path"),
            ("switchyard.rule.path", "/a\n", "route"),
            ("switchyard.rule.host", "shop.example;", "route"),
            ("switchyard.active", "blue\n}", "track"),
            ("team", "a\u{1b}[31m", "label"),
        ]
        for (key, value, field) in cases {
            let result = SwitchyardLabels.read(
                labels: ["switchyard.service": "web", key: value], owner: "container c", address: "10.0.0.9", defaultPort: 80)
            guard case .failure(let problem) = result else {
                Issue.record("\(key)=\(value) was accepted")
                continue
            }
            #expect(problem.field == field, "\(key)")
        }
    }

    @Test func consulMetaAndTagsGoThroughTheSameRules() {
        let entry = ConsulHealthEntry(
            node: .init(node: "n1", address: "10.0.0.1"),
            service: .init(id: "web-1", service: "web", tags: ["track-blue\nserver {"], address: "", port: 80, meta: nil, weights: nil),
            checks: nil)
        let (items, problems) = ConsulCatalog.instances([entry], service: "web")
        #expect(items.isEmpty)
        #expect(problems.map(\.field) == ["track"])
    }

    @Test func theAggregatorScreensEverySnapshotAndCountsWhatItDrops() throws {
        let applied = Applied()
        let aggregator = DiscoveryAggregator(
            providers: [("dns", "test")], quiescence: Quiescence(minMs: 0, maxMs: 0),
            queue: DispatchQueue(label: "test.aggregator"), onApply: { applied.set($0) })
        let callbacks = aggregator.callbacks(for: "dns")
        callbacks.onSnapshot(ServiceCatalog(services: [ServiceDefinition(name: "web", activeTrack: nil, instances: [
            InstanceDefinition(address: "10.0.0.1", port: 80, track: "blue"),
            InstanceDefinition(address: "10.0.0.2", port: 80, track: injectedTrack),
        ])]))
        try waitUntil("the screened catalog is applied", deadline: .seconds(5)) { applied.get() != nil }
        #expect(applied.get()?.services.first?.instances.map(\.address) == ["10.0.0.1"])
        #expect(aggregator.statuses[0].rejected == ["track": 1])
        #expect(aggregator.statuses[0].lastRejected?.contains("10.0.0.2:80") == true)
        // The same snapshot again (a DNS poll): the rejection is not counted twice.
        callbacks.onSnapshot(ServiceCatalog(services: [ServiceDefinition(name: "web", activeTrack: nil, instances: [
            InstanceDefinition(address: "10.0.0.1", port: 80, track: "blue"),
            InstanceDefinition(address: "10.0.0.2", port: 80, track: injectedTrack),
        ])]))
        #expect(aggregator.statuses[0].rejected == ["track": 1])
        callbacks.onRejected([DiscoveredValues.Problem(field: "address", message: "container x: address ...")])
        #expect(aggregator.statuses[0].rejected == ["track": 1, "address": 1])
    }

    @Test func theAggregatorLeavesOutARouteNamingAnUndefinedMiddlewareAndReportsItsLabel() throws {
        let applied = Applied()
        let reported = Mutex<[String]>([])
        let aggregator = DiscoveryAggregator(
            providers: [("docker", "test")], quiescence: Quiescence(minMs: 0, maxMs: 0),
            queue: DispatchQueue(label: "test.aggregator"), onApply: { applied.set($0) },
            onRejected: { _, problems in reported.withLock { $0 += problems.map(\.message) } },
            middlewares: ["strip": .stripPrefix(["/api"])])
        var api = DiscoveredRoute(pathPrefix: "/api", name: "api")
        api.middlewareNames = ["strip"]
        api.declaredBy = "container a: label switchyard.route.api.middlewares"
        var admin = DiscoveredRoute(pathPrefix: "/admin", name: "admin")
        admin.middlewareNames = ["auth"]
        admin.declaredBy = "container a: label switchyard.route.admin.middlewares"
        var service = ServiceDefinition(name: "web", instances: [InstanceDefinition(address: "10.0.0.1", port: 80)])
        service.routes = [admin, api]
        aggregator.callbacks(for: "docker").onSnapshot(ServiceCatalog(services: [service]))
        try waitUntil("the resolved catalog is applied", deadline: .seconds(5)) { applied.get() != nil && !reported.withLock { $0.isEmpty } }
        #expect(applied.get()?.services.first?.routes.map(\.name) == ["api"])
        #expect(applied.get()?.services.first?.routes.first?.middlewares == [RouteMiddleware(name: "strip", kind: .stripPrefix(["/api"]))])
        #expect(applied.get()?.services.first?.instances.count == 1)
        #expect(aggregator.statuses[0].rejected == ["route": 1])
        #expect(reported.withLock { $0 }.contains { $0.contains("container a: label switchyard.route.admin.middlewares: no middleware named 'auth'") })
    }
}

@Suite struct RejectionReports {
    @Test func aProviderReportsEachRejectionOnceWhenItAppearsNotWithEveryLaterChange() throws {
        let reported = Mutex<[String]>([])
        let run = ProviderRun(name: "docker", callbacks: ProviderCallbacks(
            onSnapshot: { _ in }, onStatus: { _ in },
            onRejected: { problems in reported.withLock { $0 += problems.map(\.field) } }))
        defer { run.stop() }
        let track = LabelProblem("container a: track name ...", field: "track")
        let address = LabelProblem("container b: address ...", field: "address")
        let noPort = LabelProblem("container c: no switchyard.port label")
        let empty = ServiceCatalog(services: [])
        run.publish(empty, problems: [track])
        run.publish(empty, problems: [track, address, noPort])
        run.publish(ServiceCatalog(services: [ServiceDefinition(name: "web", activeTrack: nil, instances: [])]), problems: [track, address])
        try waitUntil("both rejections reported", deadline: .seconds(5)) { reported.withLock { $0.count } >= 2 }
        run.stop()
        #expect(reported.withLock { $0 } == ["track", "address"])
    }
}

/// The last applied catalog; the mutex guards it (written on the aggregator's queue,
/// read by the test).
private final class Applied: Sendable {
    private let catalog = Mutex<ServiceCatalog?>(nil)
    func set(_ value: ServiceCatalog) { catalog.withLock { $0 = value } }
    func get() -> ServiceCatalog? { catalog.withLock { $0 } }
}
