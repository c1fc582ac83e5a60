import Foundation
import Testing
@testable import YardDiscovery
import YardModel
import YardTestSupport
import YardControlHTTP

// MARK: - Health entries to instances, and the index rules (pure)

@Suite struct ConsulCatalogTests {
    private func entry(
        _ id: String, node: String = "n1", nodeAddress: String = "10.0.0.1", address: String = "", port: UInt16 = 8080,
        tags: [String] = [], meta: [String: String] = [:], weights: ConsulHealthEntry.Weights? = nil, checks: [String] = ["passing"]
    ) -> ConsulHealthEntry {
        ConsulHealthEntry(
            node: .init(node: node, address: nodeAddress),
            service: .init(id: id, service: "web", tags: tags, address: address, port: port, meta: meta, weights: weights),
            checks: checks.map { .init(status: $0) }
        )
    }

    @Test func tagsGiveTrackAndWeightInEitherSpellingAndTheNodeAddressStandsInForAnEmptyOne() {
        let (items, problems) = ConsulCatalog.instances([
            entry("a", tags: ["track-green", "weight=3", "v2"]),
            entry("b", address: "10.0.0.9", tags: ["track=blue"]),
        ], service: "web")
        #expect(problems.isEmpty)
        #expect(items.map { "\($0.instance.address):\($0.instance.port)/\($0.instance.track ?? "")/\($0.instance.weight)" }
            == ["10.0.0.1:8080/green/3", "10.0.0.9:8080/blue/1"])
        #expect(items[0].instance.tags == ["track-green", "weight=3", "v2"])
        #expect(items[0].instance.id == "a")
    }

    @Test func consulWeightsApplyWithoutAWeightTagAndTheWarningWeightWhileACheckWarns() {
        let weights = ConsulHealthEntry.Weights(passing: 5, warning: 1)
        let (items, _) = ConsulCatalog.instances([
            entry("ok", weights: weights), entry("warn", nodeAddress: "10.0.0.2", weights: weights, checks: ["passing", "warning"]),
        ], service: "web")
        #expect(items.map(\.instance.weight) == [5, 1])
    }

    @Test func metaCarriesRulesAndHealthPathAndABadWeightTagIsReportedNamingTheInstance() {
        let (items, problems) = ConsulCatalog.instances([
            entry("a", meta: ["switchyard.rule.host": "shop.example", "switchyard.health.path": "/ready"]),
            entry("b", nodeAddress: "10.0.0.2", tags: ["weight=lots"]),
        ], service: "web")
        #expect(items.count == 1)
        #expect(items[0].route == DiscoveredRoute(host: "shop.example", pathPrefix: "/"))
        #expect(items[0].healthPath == "/ready")
        #expect(problems.count == 1)
        #expect(problems[0].description.contains("Consul service web instance b on node n1"))
        #expect(problems[0].description.contains("switchyard.weight 'lots'"))
    }

    @Test func theIndexResetsToZeroWhenItGoesBackwardsAndZeroCountsAsOne() {
        var index = BlockingIndex()
        #expect(index.next == 0)
        #expect(index.accept(10) == .advanced)
        #expect(index.next == 10)
        #expect(index.accept(10) == .unchanged)
        #expect(index.accept(12) == .advanced)
        #expect(index.accept(3) == .wentBackwards)
        #expect(index.next == 0, "the next query must not block on a future that never comes")
        #expect(index.accept(0) == .advanced)
        #expect(index.next == 1, "an index of 0 is treated as 1, never sent as a blocking 0")
        #expect(index.accept(nil) == .unchanged)
    }
}

// MARK: - Against the Consul emulator

/// The Consul provider against Tests/Fixtures/consul_emulator.py (no Consul agent can run
/// on the test machines). Queries wait at most 5 s so stopped watches end quickly.
@Suite(.timeLimit(.minutes(2)))
struct ConsulProviderTests {
    private func provider(
        _ emulator: EmulatorProcess, _ recorder: TimedRecorder, services: [String]? = ["web"], passingOnly: Bool = true
    ) throws -> ConsulProvider {
        ConsulProvider(
            options: .init(endpoint: try ControlHTTPTarget(url: emulator.url), services: services, passingOnly: passingOnly,
                           wait: .seconds(5), backoffInitialMs: 20, backoffMaximumMs: 200),
            callbacks: recorder.callbacks
        )
    }

    private func register(_ emulator: EmulatorProcess, node: String, address: String, id: String, port: UInt16,
                          service: String = "web", tags: [String] = [], status: String = "passing") throws {
        let tagList = tags.map { "\"\($0)\"" }.joined(separator: ",")
        try emulator.call("PUT", "/v1/catalog/register", json: """
            {"Node":"\(node)","Address":"\(address)","Service":{"ID":"\(id)","Service":"\(service)","Tags":[\(tagList)],"Port":\(port)},
             "Check":{"CheckID":"service:\(id)","Name":"app","Status":"\(status)","ServiceID":"\(id)"}}
            """)
    }

    /// An emulator with `web-1` (127.0.0.1:8081) registered, and a started provider that
    /// has delivered it. The caller stops the provider.
    private func runningWithWeb1(
        arguments: [String] = [], before: (EmulatorProcess) throws -> Void = { _ in }
    ) throws -> (EmulatorProcess, TimedRecorder, ConsulProvider) {
        let emulator = try EmulatorProcess(script: "consul_emulator.py", arguments: arguments)
        try before(emulator)
        try register(emulator, node: "n1", address: "127.0.0.1", id: "web-1", port: 8081)
        let recorder = TimedRecorder()
        let consul = try provider(emulator, recorder)
        consul.start()
        do {
            try recorder.waitForSnapshot("web-1") { _ in recorder.endpoints("web") == ["127.0.0.1:8081"] }
        } catch {
            consul.stop()
            throw error
        }
        return (emulator, recorder, consul)
    }

    /// Waits until the emulator holds `count` blocking queries.
    private func waitForBlockedQueries(_ emulator: EmulatorProcess, _ count: Int = 1) throws {
        try waitUntil("\(count) blocked queries", deadline: .seconds(5)) {
            try emulator.call("GET", "/_emulator/stats").text.contains("\"blocking\":\(count)")
        }
    }

    @Test func aRegistrationAndADeregistrationReachTheCatalogWithinOneSecond() throws {
        let (emulator, recorder, consul) = try runningWithWeb1()
        defer { consul.stop() }
        // The watch is now blocked in a query: the change must wake it.
        try waitForBlockedQueries(emulator)

        let registeredAt = ContinuousClock.now
        try register(emulator, node: "n2", address: "127.0.0.2", id: "web-2", port: 8082, tags: ["track=green", "weight=3"])
        let seenAt = try recorder.waitForSnapshot("web-2", deadline: .seconds(3)) { _ in recorder.endpoints("web").count == 2 }
        let green = recorder.latest?.services.first?.instances.first { $0.track == "green" }
        #expect(green?.weight == 3)

        let deregisteredAt = ContinuousClock.now
        try emulator.call("PUT", "/v1/catalog/deregister", json: #"{"Node":"n1","ServiceID":"web-1"}"#)
        let goneAt = try recorder.waitForSnapshot("web-1 gone", deadline: .seconds(3)) { _ in recorder.endpoints("web") == ["127.0.0.2:8082"] }
        print("consul provider: register -> catalog \((seenAt - registeredAt).milliseconds) ms, deregister -> out \((goneAt - deregisteredAt).milliseconds) ms")
        #expect(seenAt - registeredAt < .seconds(1))
        #expect(goneAt - deregisteredAt < .seconds(1))
    }

    @Test func passingOnlyFollowsTTLChecksAndTheOptionOffKeepsCriticalInstances() throws {
        let emulator = try EmulatorProcess(script: "consul_emulator.py")
        try emulator.call("PUT", "/v1/agent/service/register", json: #"{"Name":"web","ID":"web-1","Address":"127.0.0.1","Port":8081,"Check":{"TTL":"30s"}}"#)
        let passing = TimedRecorder()
        let all = TimedRecorder()
        let strict = try provider(emulator, passing)
        let lenient = try provider(emulator, all, passingOnly: false)
        strict.start()
        lenient.start()
        defer { strict.stop(); lenient.stop() }
        // A TTL check starts critical.
        try passing.waitForSnapshot("no passing instance yet") { _ in passing.endpoints("web").isEmpty }
        try all.waitForSnapshot("the critical instance") { _ in all.endpoints("web") == ["127.0.0.1:8081"] }
        #expect(passing.latest?.services.map(\.name) == ["web"], "a followed service with no instance is still listed")
        try emulator.call("PUT", "/v1/agent/check/pass/service:web-1")
        try passing.waitForSnapshot("the instance once its check passes", deadline: .seconds(3)) { _ in passing.endpoints("web") == ["127.0.0.1:8081"] }
        try emulator.call("PUT", "/v1/agent/check/fail/service:web-1")
        try passing.waitForSnapshot("out again when it fails", deadline: .seconds(3)) { _ in passing.endpoints("web").isEmpty }
        #expect(all.endpoints("web") == ["127.0.0.1:8081"])
    }

    @Test func followingAllServicesAddsAndDropsServicesAsTheCatalogChanges() throws {
        let emulator = try EmulatorProcess(script: "consul_emulator.py")
        try register(emulator, node: "n1", address: "127.0.0.1", id: "web-1", port: 8081)
        let recorder = TimedRecorder()
        let consul = try provider(emulator, recorder, services: nil)
        consul.start()
        defer { consul.stop() }
        try recorder.waitForSnapshot("web") { catalog in catalog.services.map(\.name) == ["web"] }
        try register(emulator, node: "n1", address: "127.0.0.1", id: "api-1", port: 9001, service: "api")
        try recorder.waitForSnapshot("api added", deadline: .seconds(3)) { catalog in
            catalog.services.map(\.name) == ["api", "web"] && recorder.endpoints("api") == ["127.0.0.1:9001"]
        }
        try emulator.call("PUT", "/v1/catalog/deregister", json: #"{"Node":"n1","ServiceID":"web-1"}"#)
        try recorder.waitForSnapshot("web dropped", deadline: .seconds(3)) { catalog in catalog.services.map(\.name) == ["api"] }
    }

    @Test func anIndexThatGoesBackwardsIsResetAndChangesKeepArrivingWithinOneSecond() throws {
        // Push the index well up first, so a restore to 2 is clearly backwards.
        let (emulator, recorder, consul) = try runningWithWeb1 { emulator in
            for n in 0..<20 { try emulator.call("PUT", "/v1/kv/filler/\(n)") }
        }
        defer { consul.stop() }
        try waitForBlockedQueries(emulator)

        // A snapshot restore: every index drops to 2. A client that kept waiting for an
        // index above its old one would sleep through the next changes.
        try emulator.call("PUT", "/_emulator/index/rewind?to=2")
        try emulator.call("PUT", "/_emulator/stats/reset")
        try waitForBlockedQueries(emulator)
        let changedAt = ContinuousClock.now
        try register(emulator, node: "n2", address: "127.0.0.2", id: "web-2", port: 8082)
        let seenAt = try recorder.waitForSnapshot("web-2 after the restore", deadline: .seconds(3)) { _ in recorder.endpoints("web").count == 2 }
        print("consul provider: after an index reset, register -> catalog \((seenAt - changedAt).milliseconds) ms")
        #expect(seenAt - changedAt < .seconds(1))
    }

    @Test func spuriousWakeUpsCannotMakeTheWatchSpin() throws {
        let (emulator, recorder, consul) = try runningWithWeb1()
        defer { consul.stop() }
        // Every blocking query now returns at once with unchanged data.
        try emulator.call("PUT", "/_emulator/spurious?on=1")
        try emulator.call("PUT", "/_emulator/stats/reset")
        let window = ContinuousClock.now
        try waitUntil("two seconds of spurious answers", deadline: .seconds(5), poll: .milliseconds(100)) { ContinuousClock.now - window >= .seconds(2) }
        let stats = try emulator.call("GET", "/_emulator/stats").text
        let queries = try #require(Self.count(of: "/v1/health/service/web", in: stats))
        print("consul provider: \(queries) queries in 2 s of spurious wake-ups (floor 200 ms)")
        #expect(queries <= 12, "at most one query per 200 ms, plus the one in flight")
        #expect(queries >= 5, "the watch keeps asking")
        #expect(recorder.snapshots.count == 1, "unchanged answers deliver nothing")
    }

    @Test func garbageJSONIsReportedNamingTheRequestAndTheLastSnapshotStays() throws {
        let (emulator, recorder, consul) = try runningWithWeb1()
        defer { consul.stop() }
        try emulator.call("PUT", "/_emulator/garbage?count=2&path=/v1/health/service/web")
        try emulator.call("PUT", "/_emulator/wake")
        try recorder.waitForFailure(containing: "/v1/health/service/web: invalid JSON")
        #expect(consul.name == "consul")
        #expect(recorder.endpoints("web") == ["127.0.0.1:8081"])
        // Then it recovers and delivers again (clearing the failure).
        let count = recorder.snapshots.count
        try waitUntil("a snapshot after the garbage", deadline: .seconds(5)) { recorder.snapshots.count > count }
        #expect(recorder.endpoints("web") == ["127.0.0.1:8081"])
    }

    @Test func aKilledAndRestartedAgentKeepsTheLastSnapshotMeanwhileAndThenConverges() throws {
        let data = try TempDir(prefix: "switchyard-consul")
        let (emulator, recorder, consul) = try runningWithWeb1(arguments: ["--data", data.file("state.json")])
        defer { consul.stop() }

        emulator.kill()
        try recorder.waitForFailure(containing: "cannot connect")
        let count = recorder.snapshots.count
        #expect(recorder.endpoints("web") == ["127.0.0.1:8081"])

        try emulator.restart()
        try register(emulator, node: "n2", address: "127.0.0.2", id: "web-2", port: 8082)
        try recorder.waitForSnapshot("both instances after the restart", deadline: .seconds(5)) { _ in recorder.endpoints("web").count == 2 }
        #expect(recorder.snapshots.count > count)
    }

    /// `"PATH":N` in the emulator's stats JSON.
    private static func count(of path: String, in stats: String) -> Int? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any],
              let requests = object["requests"] as? [String: Int] else { return nil }
        return requests[path] ?? 0
    }
}

// MARK: - TLS and the ACL token

/// The Consul provider, built from its config as `run` builds it, against the emulator
/// serving HTTPS with client certificates required and an ACL token required.
@Suite(.timeLimit(.minutes(1)))
struct ConsulProviderOverTLS {
    @Test func aClientCertificateAndATokenFileReachTheCatalogAndABadTokenFileIsNamed() throws {
        let certificates = try TestCertificates()
        let server = try certificates.issue(file: "consul-server", names: ["127.0.0.1"])
        let client = try certificates.issue(file: "consul-client", names: ["switchyard"], client: true)
        let emulator = try EmulatorProcess(script: "consul_emulator.py", arguments: [
            "--token", "acl-secret", "--tls-cert", server.certificate, "--tls-key", server.key, "--tls-client-ca", certificates.caFile,
        ])
        let files = ControlTLSFiles(caFile: certificates.caFile, certFile: client.certificate, keyFile: client.key)
        let admin = ControlHTTPClient(target: .https(host: "127.0.0.1", port: emulator.port), headers: [("X-Consul-Token", "acl-secret")], tls: try ControlTLS(files))
        let registered = try admin.send("PUT", "/v1/catalog/register", body: Array("""
            {"Node":"n1","Address":"127.0.0.1","Service":{"ID":"web-1","Service":"web","Port":8081},
             "Check":{"CheckID":"service:web-1","Name":"app","Status":"passing","ServiceID":"web-1"}}
            """.utf8))
        try #require(registered.status == 200, "\(registered.status) \(registered.text)")

        let tokenFile = try certificates.directory.write("consul.token", "acl-secret\n")
        var config = ConsulSourceConfig(address: "https://127.0.0.1:\(emulator.port)", services: ["web"], waitMs: 5_000)
        config.access = StoreAccessConfig(caFile: certificates.caFile, certFile: client.certificate, keyFile: client.key, tokenFile: tokenFile)
        let recorder = TimedRecorder()
        let consul = ConsulProvider(name: "consul", config: config, callbacks: recorder.callbacks)
        consul.start()
        defer { consul.stop() }
        try recorder.waitForSnapshot("web-1 over TLS") { _ in recorder.endpoints("web") == ["127.0.0.1:8081"] }

        config.access.tokenFile = certificates.directory.file("missing.token")
        let failing = TimedRecorder()
        let broken = ConsulProvider(name: "consul", config: config, callbacks: failing.callbacks)
        broken.start()
        defer { broken.stop() }
        try waitUntil("the token file failure", deadline: .seconds(5)) { !failing.failures.isEmpty }
        #expect(failing.failures[0].contains("token_file \(certificates.directory.file("missing.token"))"), "\(failing.failures)")
    }
}
