import Foundation
import Testing
@testable import YardDiscovery
import YardModel
import YardTestSupport
import YardControlHTTP

// MARK: - Services and tasks to catalog (pure)

@Suite struct SwarmCatalogTests {
    private func service(_ id: String, _ labels: [String: String], container: [String: String] = [:], ports: [UInt16] = []) -> SwarmService {
        SwarmService(id: id, spec: .init(
            name: id, labels: labels,
            taskTemplate: .init(containerSpec: .init(labels: container)),
            endpointSpec: .init(ports: ports.map { .init(targetPort: $0, protocol: "tcp") })
        ))
    }

    private func task(
        _ id: String, service: String, slot: Int, desired: String = "running", state: String = "running",
        node: String = "n1", addresses: [String: String] = ["app": "10.0.1.9/24"]
    ) -> SwarmTask {
        SwarmTask(
            id: id, serviceID: service, nodeID: node, slot: slot, desiredState: desired, status: .init(state: state),
            networksAttachments: addresses.sorted { $0.key < $1.key }.map { name, address in
                .init(network: .init(id: "net-\(name)", spec: .init(name: name)), addresses: [address])
            }
        )
    }

    @Test func onlyTasksThatShouldAndDoRunOnLiveNodesAreInRotation() {
        let services = [service("web", ["switchyard.service": "web", "switchyard.port": "8080"])]
        let tasks = [
            task("t1", service: "web", slot: 1, addresses: ["app": "10.0.1.1/24"]),
            task("t2", service: "web", slot: 2, desired: "shutdown", addresses: ["app": "10.0.1.2/24"]),
            task("t3", service: "web", slot: 3, state: "starting", addresses: ["app": "10.0.1.3/24"]),
            task("t4", service: "web", slot: 4, node: "dead", addresses: ["app": "10.0.1.4/24"]),
        ]
        let nodes = [SwarmNode(id: "n1", status: .init(state: "ready")), SwarmNode(id: "dead", status: .init(state: "down"))]
        let (catalog, problems) = SwarmCatalog.catalog(services: services, tasks: tasks, nodes: nodes, network: "app")
        #expect(problems.isEmpty)
        #expect(catalog.services.first?.instances.map(\.address) == ["10.0.1.1"])
        #expect(catalog.services.first?.instances.first?.id == "t1")
    }

    @Test func blueAndGreenServicesJoinOneServiceAsTwoTracks() {
        let services = [
            service("web-blue", ["switchyard.service": "web", "switchyard.track": "blue", "switchyard.active": "blue"], ports: [8080]),
            service("web-green", ["switchyard.service": "web", "switchyard.track": "green", "switchyard.port": "9090", "switchyard.active": "blue"]),
        ]
        let tasks = [
            task("b1", service: "web-blue", slot: 1, addresses: ["app": "10.0.1.1/24"]),
            task("g1", service: "web-green", slot: 1, addresses: ["app": "10.0.1.2/24"]),
        ]
        let (catalog, _) = SwarmCatalog.catalog(services: services, tasks: tasks, nodes: [], network: "app")
        #expect(catalog.services.map(\.name) == ["web"])
        #expect(catalog.services[0].instances.map { "\($0.address):\($0.port)/\($0.track ?? "")" } == ["10.0.1.1:8080/blue", "10.0.1.2:9090/green"])
        #expect(catalog.services[0].activeTrack == "blue")
    }

    @Test func deployLabelsWinOverContainerLabelsAndTheNamedNetworkGivesTheAddress() {
        let services = [service("web", ["switchyard.service": "web", "switchyard.port": "80"],
                                container: ["switchyard.service": "other", "switchyard.track": "canary"])]
        let tasks = [task("t1", service: "web", slot: 1, addresses: ["ingress": "10.255.0.5/16", "front": "10.0.2.5/24", "back": "10.0.3.5/24"])]
        let (catalog, _) = SwarmCatalog.catalog(services: services, tasks: tasks, nodes: [], network: "back")
        #expect(catalog.services.map(\.name) == ["web"])
        #expect(catalog.services[0].instances.first?.address == "10.0.3.5")
        #expect(catalog.services[0].instances.first?.track == "canary")
    }

    @Test func aTaskWithoutAnAddressOnTheNetworkIsReportedNamingTheTaskAndTheNetwork() {
        let services = [service("web", ["switchyard.service": "web", "switchyard.port": "80"])]
        let tasks = [task("t1", service: "web", slot: 1, addresses: ["other": "10.0.9.1/24"])]
        let (catalog, problems) = SwarmCatalog.catalog(services: services, tasks: tasks, nodes: [], network: "app")
        #expect(catalog.services.isEmpty)
        #expect(problems.count == 1)
        #expect(problems.first?.description.contains("task web.1") == true)
        #expect(problems.first?.description.contains("network 'app'") == true)
    }
}

// MARK: - Against the Swarm emulator

/// The Swarm provider against Tests/Fixtures/swarm_emulator.py (no Swarm manager can run
/// on the test machines), with real HTTP backends on 127.0.0.1 where a test needs one.
@Suite(.timeLimit(.minutes(2)))
struct SwarmProviderTests {
    private func provider(_ emulator: EmulatorProcess, _ recorder: TimedRecorder, refresh: Duration = .milliseconds(500)) throws -> SwarmProvider {
        SwarmProvider(
            options: .init(endpoint: try ControlHTTPTarget(url: emulator.url), network: "app", refreshInterval: refresh,
                           backoffInitialMs: 20, backoffMaximumMs: 200),
            callbacks: recorder.callbacks
        )
    }

    /// A plain HTTP server on 127.0.0.1 standing in for a task's container.
    private func backend() throws -> (ProcessRunner, UInt16) {
        let port = try freePort()
        let server = try ProcessRunner("/usr/bin/env", arguments: ["python3", "-m", "http.server", "--bind", "127.0.0.1", String(port)])
        try waitUntil("the backend on \(port)", deadline: .seconds(10)) { (try? httpGet(port: port, timeout: .seconds(1)))?.status == 200 }
        return (server, port)
    }

    @Test func aTaskWhoseDesiredStateTurnsToShutdownLeavesRotationWithinOneSecondWhileItStillAnswers() throws {
        let emulator = try EmulatorProcess(script: "swarm_emulator.py")
        let (server, port) = try backend()
        defer { server.stop() }
        let web = try emulator.create("/_emulator/services", json: #"{"Name":"web","Labels":{"switchyard.service":"web","switchyard.port":"\#(port)"},"Networks":["app"]}"#)
        let old = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(web)","Addresses":{"app":"127.0.0.1/8"}}"#)
        _ = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(web)","Addresses":{"app":"127.0.0.2/8"}}"#)

        let recorder = TimedRecorder()
        let swarm = try provider(emulator, recorder)
        swarm.start()
        defer { swarm.stop() }
        try recorder.waitForSnapshot("both tasks") { _ in recorder.endpoints("web") == ["127.0.0.1:\(port)", "127.0.0.2:\(port)"] }

        // A rolling update begins: the orchestrator marks the old task for shutdown. Its
        // container is still running and answering.
        let markedAt = ContinuousClock.now
        try emulator.call("PUT", "/_emulator/tasks/\(old)", json: #"{"DesiredState":"shutdown"}"#)
        let goneAt = try recorder.waitForSnapshot("the old task out of rotation", deadline: .seconds(3)) { _ in
            recorder.endpoints("web") == ["127.0.0.2:\(port)"]
        }
        let latency = goneAt - markedAt
        print("swarm provider: desired shutdown -> out of rotation \(latency.milliseconds) ms (refresh 500 ms)")
        #expect(latency < .seconds(1))
        // Out of rotation while it still runs: no request can meet it as it stops.
        #expect(try httpGet(port: port).status == 200)
    }

    @Test func aServiceUpdateEventReachesTheCatalogWithinOneSecondWithoutWaitingForARefresh() throws {
        let emulator = try EmulatorProcess(script: "swarm_emulator.py")
        let web = try emulator.create("/_emulator/services", json: #"{"Name":"web-blue","Labels":{"switchyard.service":"web","switchyard.port":"80","switchyard.track":"blue"},"Networks":["app"]}"#)
        _ = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(web)","Addresses":{"app":"127.0.0.5/8"}}"#)
        let recorder = TimedRecorder()
        let swarm = try provider(emulator, recorder, refresh: .seconds(60))
        swarm.start()
        defer { swarm.stop() }
        try recorder.waitForSnapshot("the blue task") { catalog in catalog.services.first?.instances.first?.track == "blue" }
        // Wait until the event stream is open, so the update is not missed by design.
        try waitUntil("the provider's event stream", deadline: .seconds(5)) {
            try emulator.call("GET", "/_emulator/stats").text.contains(#""streams":1"#)
        }
        let updatedAt = ContinuousClock.now
        try emulator.call("POST", "/_emulator/services/\(web)/update", json: #"{"Labels":{"switchyard.service":"web","switchyard.port":"80","switchyard.track":"green"}}"#)
        let seenAt = try recorder.waitForSnapshot("the track change", deadline: .seconds(3)) { catalog in
            catalog.services.first?.instances.first?.track == "green"
        }
        print("swarm provider: service update event -> catalog \((seenAt - updatedAt).milliseconds) ms (refresh 60 s)")
        #expect(seenAt - updatedAt < .seconds(1))
    }

    @Test func duringARollingUpdateTasksMarkedForShutdownLeaveWithinTheFastRefresh() throws {
        let emulator = try EmulatorProcess(script: "swarm_emulator.py")
        let web = try emulator.create("/_emulator/services", json: #"{"Name":"web","Labels":{"switchyard.service":"web","switchyard.port":"80"},"Networks":["app"]}"#)
        let old = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(web)","Addresses":{"app":"127.0.0.3/8"}}"#)
        _ = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(web)","Addresses":{"app":"127.0.0.4/8"}}"#)
        let recorder = TimedRecorder()
        // A slow steady refresh: only the update window can make this fast.
        let swarm = try provider(emulator, recorder, refresh: .seconds(60))
        swarm.start()
        defer { swarm.stop() }
        try recorder.waitForSnapshot("both tasks") { _ in recorder.endpoints("web").count == 2 }
        try waitUntil("the provider's event stream", deadline: .seconds(5)) {
            try emulator.call("GET", "/_emulator/stats").text.contains(#""streams":1"#)
        }
        // `docker service update --image ...`: the service event comes first, then the
        // orchestrator marks tasks for shutdown one by one (no event for those).
        try emulator.call("POST", "/_emulator/services/\(web)/update", json: #"{"Labels":{"switchyard.service":"web","switchyard.port":"80"}}"#)
        try recorder.waitForSnapshot("the update seen") { _ in true }
        let markedAt = ContinuousClock.now
        try emulator.call("PUT", "/_emulator/tasks/\(old)", json: #"{"DesiredState":"shutdown"}"#)
        let goneAt = try recorder.waitForSnapshot("the old task out", deadline: .seconds(3)) { _ in recorder.endpoints("web") == ["127.0.0.4:80"] }
        print("swarm provider: during an update, desired shutdown -> out \((goneAt - markedAt).milliseconds) ms (refresh 60 s, update refresh 100 ms)")
        #expect(goneAt - markedAt < .milliseconds(500))
    }

    /// An emulator with service `web` (port 80) and one task at `address`, and a started
    /// provider (refresh 100 ms) that has delivered it. The caller stops the provider.
    private func runningWithOneTask(at address: String) throws -> (EmulatorProcess, TimedRecorder, SwarmProvider) {
        let emulator = try EmulatorProcess(script: "swarm_emulator.py")
        let web = try emulator.create("/_emulator/services", json: #"{"Name":"web","Labels":{"switchyard.service":"web","switchyard.port":"80"},"Networks":["app"]}"#)
        _ = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(web)","Addresses":{"app":"\#(address)/8"}}"#)
        let recorder = TimedRecorder()
        let swarm = try provider(emulator, recorder, refresh: .milliseconds(100))
        swarm.start()
        do {
            try recorder.waitForSnapshot("the task") { _ in recorder.endpoints("web") == ["\(address):80"] }
        } catch {
            swarm.stop()
            throw error
        }
        return (emulator, recorder, swarm)
    }

    @Test func garbageJSONIsReportedAndTheLastSnapshotStays() throws {
        let (emulator, recorder, swarm) = try runningWithOneTask(at: "127.0.0.7")
        defer { swarm.stop() }
        try emulator.call("PUT", "/_emulator/garbage?count=2&path=/tasks")
        try recorder.waitForFailure(containing: "/tasks: invalid JSON")
        #expect(recorder.endpoints("web") == ["127.0.0.7:80"])
    }

    @Test func aManagerOutageKeepsTheLastSnapshotAndTheProviderConvergesAfterTheRestart() throws {
        let (emulator, recorder, swarm) = try runningWithOneTask(at: "127.0.0.8")
        defer { swarm.stop() }

        emulator.kill()
        try recorder.waitForFailure(containing: "cannot connect")
        let count = recorder.snapshots.count
        #expect(recorder.endpoints("web") == ["127.0.0.8:80"])

        try emulator.restart()
        // The new manager knows a different task set: the provider converges to it.
        let again = try emulator.create("/_emulator/services", json: #"{"Name":"web","Labels":{"switchyard.service":"web","switchyard.port":"80"},"Networks":["app"]}"#)
        _ = try emulator.create("/_emulator/tasks", json: #"{"ServiceID":"\#(again)","Addresses":{"app":"127.0.0.9/8"}}"#)
        try recorder.waitForSnapshot("the new task set", deadline: .seconds(10)) { _ in recorder.endpoints("web") == ["127.0.0.9:80"] }
        #expect(recorder.snapshots.count > count)
    }
}
