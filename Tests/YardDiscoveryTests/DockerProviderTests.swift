import Foundation
import Testing
@testable import YardDiscovery
import YardModel
import YardTestSupport
import YardControlHTTP

// MARK: - Labels to catalog (pure)

@Suite struct DockerCatalogTests {
    private func container(
        _ id: String, _ labels: [String: String], state: String = "running", status: String = "Up 2 minutes",
        networks: [String: String]? = nil, ports: [UInt16] = []
    ) -> DockerContainer {
        DockerContainer(
            id: id, names: ["/\(id)"], state: state, status: status, labels: labels,
            ports: ports.map { DockerContainer.Port(ip: nil, privatePort: $0, publicPort: nil, type: "tcp") },
            hostConfig: nil,
            networkSettings: DockerContainer.NetworkSettings(networks: networks.map { $0.mapValues { DockerContainer.Network(ipAddress: $0) } })
        )
    }

    @Test func labelledRunningContainersBecomeInstancesWithTrackWeightRouteAndHealthPath() {
        let containers = [
            container("b2", ["switchyard.service": "web", "switchyard.port": "8081", "switchyard.track": "green",
                             "switchyard.weight": "3", "switchyard.rule.host": "Shop.Example", "switchyard.rule.path": "/api",
                             "switchyard.health.path": "/healthz"], networks: ["app": "10.0.0.2"]),
            container("a1", ["switchyard.service": "web", "switchyard.port": "8080", "switchyard.track": "blue"], networks: ["app": "10.0.0.1"]),
            container("c3", ["other": "x"]),
        ]
        let (catalog, problems) = DockerCatalog.catalog(containers, mapping: DockerMapping())
        #expect(problems.isEmpty)
        #expect(catalog.services.map(\.name) == ["web"])
        let web = catalog.services[0]
        #expect(web.instances.map { "\($0.address):\($0.port)/\($0.track ?? "-")/\($0.weight)" } == ["10.0.0.1:8080/blue/1", "10.0.0.2:8081/green/3"])
        #expect(web.instances.map(\.id) == ["a1", "b2"])
        #expect(web.routes == [DiscoveredRoute(host: "shop.example", pathPrefix: "/api")])
        #expect(web.health.kind == .http && web.health.path == "/healthz")
    }

    @Test func stoppedUnhealthyStartingAndLeavingContainersAreLeftOut() {
        let labels = ["switchyard.service": "web", "switchyard.port": "80"]
        let containers = [
            container("up", labels, networks: ["n": "10.0.0.1"]),
            container("exited", labels, state: "exited", networks: ["n": "10.0.0.2"]),
            container("sick", labels, status: "Up 1 minute (unhealthy)", networks: ["n": "10.0.0.3"]),
            container("warming", labels, status: "Up 1 second (health: starting)", networks: ["n": "10.0.0.4"]),
            container("going", labels, networks: ["n": "10.0.0.5"]),
            container("fine", labels, status: "Up 1 minute (healthy)", networks: ["n": "10.0.0.6"]),
        ]
        let (catalog, _) = DockerCatalog.catalog(containers, mapping: DockerMapping(), leaving: ["going"])
        #expect(catalog.services[0].instances.map(\.address) == ["10.0.0.1", "10.0.0.6"])
    }

    @Test func hostNetworkContainersAreReachedAtTheHostAddressAndANamedNetworkIsPreferred() {
        let labels = ["switchyard.service": "web", "switchyard.port": "80"]
        let hostNet = container("h", labels, networks: nil)
        let twoNets = container("t", labels, networks: ["back": "10.1.0.7", "front": "10.2.0.7"])
        #expect(DockerCatalog.address(of: hostNet, mapping: DockerMapping()) == "127.0.0.1")
        #expect(DockerCatalog.address(of: twoNets, mapping: DockerMapping(network: "front")) == "10.2.0.7")
        #expect(DockerCatalog.address(of: twoNets, mapping: DockerMapping(network: "missing")) == nil)
    }

    @Test func aMalformedLabelSkipsThatContainerWithAMessageNamingItAndTheLabel() {
        let containers = [
            container("good", ["switchyard.service": "web", "switchyard.port": "80"]),
            container("badweight", ["switchyard.service": "web", "switchyard.port": "80", "switchyard.weight": "heavy"]),
            container("noport", ["switchyard.service": "web"], ports: [80, 443]),
            container("oneport", ["switchyard.service": "api"], ports: [9000]),
        ]
        let (catalog, problems) = DockerCatalog.catalog(containers, mapping: DockerMapping())
        #expect(catalog.services.map(\.name) == ["api", "web"])
        #expect(catalog.services[0].instances.map(\.port) == [9000])
        #expect(problems.count == 2)
        #expect(problems.contains { $0.description.contains("container badweight") && $0.description.contains("switchyard.weight 'heavy'") })
        #expect(problems.contains { $0.description.contains("container noport") && $0.description.contains("switchyard.port") })
    }

    @Test func garbageJSONIsRefusedWithTheRequestAndThePathThatFailed() {
        let body = Array(#"[{"Id":"x","Labels":{"switchyard.service":7}}]"#.utf8)
        guard case .failure(let problem) = JSONAnswer.decode([DockerContainer].self, from: body, what: "GET /containers/json") else {
            Issue.record("a label that is a number must not decode"); return
        }
        #expect(problem.description.contains("GET /containers/json"))
        #expect(problem.description.contains("[0].Labels"))
        guard case .failure(let truncated) = JSONAnswer.decode([DockerContainer].self, from: Array("[{\"Id\":".utf8), what: "GET x") else {
            Issue.record("truncated JSON must not decode"); return
        }
        #expect(truncated.description.contains("invalid JSON"))
    }
}

// MARK: - Against a real engine (podman)

/// The Docker provider against podman's Docker-compatible API, with busybox httpd
/// containers on the host network.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct DockerProviderTests {
    private func provider(_ engine: PodmanEngine, _ recorder: TimedRecorder, resync: Duration = .seconds(30)) -> DockerProvider {
        DockerProvider(
            options: .init(endpoint: .unix(path: engine.socketPath), resyncInterval: resync, backoffInitialMs: 50, backoffMaximumMs: 400),
            callbacks: recorder.callbacks
        )
    }

    @Test func aContainerStartAndStopReachTheCatalogWithinOneSecond() throws {
        let engine = try PodmanEngine()
        let recorder = TimedRecorder()
        let docker = provider(engine, recorder)
        docker.start()
        defer { docker.stop() }
        try recorder.waitForSnapshot("the first (empty) snapshot") { _ in true }

        let port = try freePort()
        let id = try engine.createHTTPContainer(
            name: "web-1", port: port,
            labels: ["switchyard.service": "web", "switchyard.port": "\(port)", "switchyard.track": "blue", "switchyard.rule.path": "/shop"]
        )
        let startedAt = ContinuousClock.now
        try engine.start(id)
        // `podman start` returns once the container runs (its own 100-400 ms are not
        // Switchyard's); the event may even arrive before it returns.
        let runningAt = ContinuousClock.now
        let seenAt = try recorder.waitForSnapshot("web-1 in the catalog", deadline: .seconds(5)) { _ in
            recorder.endpoints("web") == ["127.0.0.1:\(port)"]
        }
        let startLatency = max(.zero, seenAt - runningAt)
        let startTotal = seenAt - startedAt
        let web = try #require(recorder.latest?.services.first)
        #expect(web.instances.first?.track == "blue")
        #expect(web.instances.first?.id == id)
        #expect(web.routes == [DiscoveredRoute(pathPrefix: "/shop")])
        // The instance is real: the container answers on the host network (its httpd may
        // bind a moment after the engine reports it running).
        try waitUntil("web-1's httpd answers", deadline: .seconds(5)) { (try? httpGet(port: port))?.text == "web-1\n" }

        let stoppedAt = ContinuousClock.now
        try engine.stop(id)
        let goneAt = try recorder.waitForSnapshot("web-1 out of the catalog", deadline: .seconds(5)) { _ in
            recorder.endpoints("web").isEmpty
        }
        let stopLatency = goneAt - stoppedAt
        print("docker provider: running -> catalog \(startLatency.milliseconds) ms (\(startTotal.milliseconds) ms with podman start), stop command -> out \(stopLatency.milliseconds) ms")
        #expect(startLatency < .seconds(1))
        // The kill event takes it out before podman's `stop` even returns.
        #expect(stopLatency < .seconds(1))
    }

    @Test func anEngineOutageKeepsTheLastSnapshotReportsFailingAndConvergesAfterTheRestart() throws {
        let engine = try PodmanEngine()
        let first = try freePort()
        let second = try freePort()
        let a = try engine.createHTTPContainer(name: "a", port: first, labels: ["switchyard.service": "web", "switchyard.port": "\(first)"])
        try engine.start(a)
        let recorder = TimedRecorder()
        let docker = provider(engine, recorder, resync: .milliseconds(300))
        docker.start()
        defer { docker.stop() }
        try recorder.waitForSnapshot("a in the catalog") { _ in recorder.endpoints("web") == ["127.0.0.1:\(first)"] }

        try engine.killService()
        try recorder.waitForFailure(containing: engine.socketPath)
        let deliveredDuringOutage = recorder.snapshots.count
        // While the engine is down, the containers go on (conmon keeps them); a change
        // made now is seen only after the restart.
        let b = try engine.createHTTPContainer(name: "b", port: second, labels: ["switchyard.service": "web", "switchyard.port": "\(second)"])
        try engine.start(b)
        #expect(recorder.snapshots.count == deliveredDuringOutage, "no snapshot while the engine is down: the last one keeps serving")
        #expect(recorder.endpoints("web") == ["127.0.0.1:\(first)"])

        try engine.restartService()
        try recorder.waitForSnapshot("both containers after the restart", deadline: .seconds(10)) { _ in
            recorder.endpoints("web") == ["127.0.0.1:\(first)", "127.0.0.1:\(second)"].sorted()
        }
    }

    @Test func theSwarmProviderPointedAtAnEngineOutsideASwarmSaysSo() throws {
        // podman answers /info with Swarm.LocalNodeState "inactive", as a plain Docker
        // engine does: a real engine, so the check is tested against the real field.
        let engine = try PodmanEngine()
        let recorder = TimedRecorder()
        let swarm = SwarmProvider(
            options: .init(endpoint: .unix(path: engine.socketPath), backoffInitialMs: 50, backoffMaximumMs: 200),
            callbacks: recorder.callbacks
        )
        swarm.start()
        defer { swarm.stop() }
        try recorder.waitForFailure(containing: "this engine is not in a swarm (Swarm.LocalNodeState is 'inactive')")
        #expect(recorder.snapshots.isEmpty)
    }

    @Test func aMalformedLabelIsReportedNamingTheContainerAndTheOthersStillServe() throws {
        let engine = try PodmanEngine()
        let good = try freePort()
        let a = try engine.createHTTPContainer(name: "good", port: good, labels: ["switchyard.service": "web", "switchyard.port": "\(good)"])
        let b = try engine.createHTTPContainer(name: "typo", port: try freePort(), labels: ["switchyard.service": "web", "switchyard.port": "eighty"])
        try engine.start(a)
        try engine.start(b)
        let recorder = TimedRecorder()
        let docker = provider(engine, recorder)
        docker.start()
        defer { docker.stop() }
        try recorder.waitForSnapshot("the good container") { _ in recorder.endpoints("web") == ["127.0.0.1:\(good)"] }
        try recorder.waitForFailure(containing: "container typo")
        #expect(recorder.failures.contains { $0.contains("switchyard.port 'eighty'") })
    }
}

/// The Docker provider against an engine answering broken JSON (the Swarm emulator
/// serves /containers/json too, with its garbage control).
@Suite(.timeLimit(.minutes(1)))
struct DockerProviderGarbageTests {
    @Test func garbageJSONIsReportedNamingTheProviderRequestAndTheSnapshotStays() throws {
        let emulator = try EmulatorProcess(script: "swarm_emulator.py")
        let recorder = TimedRecorder()
        let docker = DockerProvider(
            options: .init(endpoint: try ControlHTTPTarget(url: emulator.url), resyncInterval: .milliseconds(100), backoffInitialMs: 20, backoffMaximumMs: 100),
            callbacks: recorder.callbacks
        )
        docker.start()
        defer { docker.stop() }
        try recorder.waitForSnapshot("the first snapshot") { _ in true }
        let before = recorder.snapshots.count
        try emulator.call("PUT", "/_emulator/garbage?count=3&path=/containers/json")
        try recorder.waitForFailure(containing: "/containers/json: invalid JSON")
        #expect(recorder.snapshots.count == before)
        #expect(docker.name == "docker")
        // After the garbage, a good answer delivers again (the recovery is visible).
        try waitUntil("a snapshot after the recovery", deadline: .seconds(5)) { recorder.snapshots.count > before }
    }
}
