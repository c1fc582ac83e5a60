import Synchronization
import Testing
import YardDiscovery
import YardIO
import YardModel
import YardTestSupport

// MARK: - Helpers

/// What a provider reported. The mutex protects both lists: callbacks run on the
/// provider's queue, the test reads from its own thread.
final class ProviderRecorder: Sendable {
    private let state = Mutex<(snapshots: [(Int64, ServiceCatalog)], conditions: [ProviderCondition])>(([], []))

    var callbacks: ProviderCallbacks {
        ProviderCallbacks(
            onSnapshot: { catalog in self.state.withLock { $0.snapshots.append((monotonicMilliseconds(), catalog)) } },
            onStatus: { condition in self.state.withLock { $0.conditions.append(condition) } })
    }

    var snapshots: [ServiceCatalog] { state.withLock { $0.snapshots.map(\.1) } }
    var last: ServiceCatalog? { snapshots.last }
    var conditions: [ProviderCondition] { state.withLock { $0.conditions } }
    var failures: [String] {
        conditions.compactMap { if case .failing(let message) = $0 { return message } else { return nil } }
    }

    /// When the first snapshot satisfying `match` arrived (monotonic ms).
    func arrival(where match: (ServiceCatalog) -> Bool) -> Int64? {
        state.withLock { $0.snapshots.first { match($0.1) }?.0 }
    }
}

func endpoints(_ catalog: ServiceCatalog?, _ service: String) -> [String] {
    catalog?.services.first { $0.name == service }?.instances.map { "\($0.address):\($0.port)" } ?? []
}

private func dnsConfig(_ server: UnboundServer, ttlMinMs: Int = 100, ttlMaxMs: Int = 1_000, _ queries: [DNSQueryConfig]) -> DNSSourceConfig {
    DNSSourceConfig(serverHost: "127.0.0.1", serverPort: server.port, timeoutMs: 1_000, ttlMinMs: ttlMinMs, ttlMaxMs: ttlMaxMs, queries: queries)
}

// MARK: - Against a real unbound

@Suite(.serialized, .timeLimit(.minutes(2)))
struct DNSProviderAgainstUnbound {
    @Test func tasksARecordsBecomeInstancesAtTheConfiguredPort() throws {
        let server = try UnboundServer(records: [.a("tasks.web", "127.0.0.12"), .a("tasks.web", "127.0.0.11")])
        let recorder = ProviderRecorder()
        let provider = DNSProvider(
            name: "dns", config: dnsConfig(server, [DNSQueryConfig(service: "web", lookup: .address(name: "tasks.web", port: 8080, family: .ipv4), track: "blue")]),
            callbacks: recorder.callbacks)
        provider.start()
        defer { provider.stop() }
        try waitUntil("a snapshot", deadline: .seconds(5)) { recorder.last != nil }
        #expect(endpoints(recorder.last, "web") == ["127.0.0.11:8080", "127.0.0.12:8080"])
        #expect(recorder.last?.services.first?.instances.allSatisfy { $0.track == "blue" } == true)
    }

    @Test func srvRecordsGiveEachTargetsAddressAndPort() throws {
        let server = try UnboundServer(records: [
            .srv("_web._tcp.service.consul", port: 9001, target: "web-1.node.consul"),
            .srv("_web._tcp.service.consul", port: 9002, target: "web-2.node.consul"),
            .a("web-1.node.consul", "127.0.0.21"), .a("web-2.node.consul", "127.0.0.22"),
        ])
        let recorder = ProviderRecorder()
        let provider = DNSProvider(
            name: "dns", config: dnsConfig(server, [DNSQueryConfig(service: "web", lookup: .srv(name: "_web._tcp.service.consul"))]),
            callbacks: recorder.callbacks)
        provider.start()
        defer { provider.stop() }
        try waitUntil("a snapshot", deadline: .seconds(5)) { recorder.last != nil }
        #expect(endpoints(recorder.last, "web") == ["127.0.0.21:9001", "127.0.0.22:9002"])
    }

    @Test func anAnswerTooBigForUDPIsFetchedAgainOverTCP() throws {
        // 60 A records do not fit in 512 bytes: unbound sets TC on the UDP answer.
        let records = (1...60).map { UnboundServer.Record.a("tasks.big", "127.0.1.\($0)") }
        let server = try UnboundServer(records: records)
        let client = DNSClient(server: SocketAddress(host: "127.0.0.1", port: server.port)!, timeoutMs: 2_000)
        let answer = try client.lookup("tasks.big", .a)
        #expect(!answer.truncated)
        #expect(answer.answers.count == 60)
    }

    @Test func aRecordChangeAfterSIGHUPArrivesWithinTheTTLBound() throws {
        let server = try UnboundServer(records: [.a("tasks.web", "127.0.0.11")])
        let recorder = ProviderRecorder()
        let provider = DNSProvider(
            name: "dns", config: dnsConfig(server, ttlMinMs: 200, ttlMaxMs: 500,
                                          [DNSQueryConfig(service: "web", lookup: .address(name: "tasks.web", port: 80, family: .ipv4))]),
            callbacks: recorder.callbacks)
        provider.start()
        defer { provider.stop() }
        try waitUntil("the first snapshot", deadline: .seconds(5)) { recorder.last != nil }
        let changed = monotonicMilliseconds()
        try server.set([.a("tasks.web", "127.0.0.11"), .a("tasks.web", "127.0.0.12")])
        try waitUntil("the new record", deadline: .seconds(5)) { endpoints(recorder.last, "web").count == 2 }
        let seen = recorder.arrival { endpoints($0, "web").count == 2 }!
        // TTL 0 is clamped to the 200 ms minimum, so the next poll sees the change; the
        // bound is the 500 ms maximum, plus slack for unbound's reload on a busy machine.
        #expect(seen - changed <= 1_000, "took \(seen - changed) ms")
        print("dns: change seen \(seen - changed) ms after SIGHUP (ttl min 200 ms)")
    }

    @Test func noSuchNameIsAnEmptyServiceNotAFailure() throws {
        let server = try UnboundServer(records: [.a("tasks.web", "127.0.0.11")])
        let recorder = ProviderRecorder()
        let provider = DNSProvider(
            name: "dns", config: dnsConfig(server, [DNSQueryConfig(service: "gone", lookup: .address(name: "tasks.gone.web", port: 80, family: .ipv4))]),
            callbacks: recorder.callbacks)
        provider.start()
        defer { provider.stop() }
        try waitUntil("a snapshot", deadline: .seconds(5)) { recorder.last != nil }
        #expect(recorder.last?.services.first?.instances.isEmpty == true)
        #expect(recorder.failures.isEmpty)
    }

    @Test func aDeadResolverIsReportedTheLastSnapshotStaysAndItsReturnRecovers() throws {
        let server = try UnboundServer(records: [.a("tasks.web", "127.0.0.11")])
        let recorder = ProviderRecorder()
        let provider = DNSProvider(
            name: "dns", config: dnsConfig(server, ttlMinMs: 100, ttlMaxMs: 300,
                                          [DNSQueryConfig(service: "web", lookup: .address(name: "tasks.web", port: 80, family: .ipv4))]),
            callbacks: recorder.callbacks)
        provider.start()
        defer { provider.stop() }
        try waitUntil("the first snapshot", deadline: .seconds(5)) { recorder.last != nil }
        let port = server.port
        server.kill()
        try waitUntil("a failure report", deadline: .seconds(5)) { !recorder.failures.isEmpty }
        let delivered = recorder.snapshots.count
        #expect(recorder.failures[0].contains("127.0.0.1:\(port)"))
        #expect(endpoints(recorder.last, "web") == ["127.0.0.11:80"])
        let again = try UnboundServer(records: [.a("tasks.web", "127.0.0.13")], port: port)
        try waitUntil("recovery", deadline: .seconds(10)) { endpoints(recorder.last, "web") == ["127.0.0.13:80"] }
        #expect(recorder.snapshots.count > delivered)
        _ = again
    }
}
