// The Swarm provider: services with `switchyard.*` deploy labels and their tasks, read
// from a Swarm manager's Engine API. No Registrator (which does not know Swarm services).

import Foundation
import Synchronization
import YardModel
import YardControlHTTP

/// Watches a Swarm manager and pushes complete catalogs of its labelled services' tasks.
///
/// How it follows the swarm:
/// - one thread lists `/services`, `/tasks?filters={"desired-state":["running"]}` and
///   `/nodes` every `refreshInterval`, and at once when an event arrives;
/// - a second thread reads `/events` (service and node events) to trigger those lists.
///   Docker has no task events: a task whose desired state turns to `shutdown` (a
///   rolling update or a scale-down, *before* the container gets its stop signal) is
///   seen by the next list, so `refreshInterval` bounds how long it may still receive
///   requests; the default 500 ms is well inside a typical `stop_grace_period`. For
///   `updateWindow` after a service event (a rolling update starts with one) it lists
///   every `updateRefreshInterval` (100 ms) instead, as tasks are replaced one by one.
///
/// At start it checks `/info`: an engine that is not an active Swarm manager is reported
/// as `.failing` (and retried), since workers cannot list services.
///
/// While the manager is unreachable or answers garbage, it reports `.failing`, keeps
/// quiet about services (the last snapshot keeps serving) and retries with `Backoff`.
///
/// Threading: see `DiscoveryProvider`. Two threads of its own; callbacks on a private
/// serial queue.
public final class SwarmProvider: DiscoveryProvider {
    public struct Options: Sendable {
        /// A manager's Engine API: `unix:///var/run/docker.sock` or `http://host:port`.
        public var endpoint: ControlHTTPTarget
        /// The network whose task addresses are used; nil picks each task's only
        /// attachment other than `ingress`.
        public var network: String?
        public var refreshInterval: Duration
        /// The faster refresh while a service is being updated, and for how long after
        /// its last service event.
        public var updateRefreshInterval: Duration = .milliseconds(100)
        public var updateWindow: Duration = .seconds(30)
        public var requestTimeout: Duration
        public var backoffInitialMs: Int64
        public var backoffMaximumMs: Int64

        public init(
            endpoint: ControlHTTPTarget = .unix(path: "/var/run/docker.sock"), network: String? = nil,
            refreshInterval: Duration = .milliseconds(500), requestTimeout: Duration = .seconds(5),
            backoffInitialMs: Int64 = 200, backoffMaximumMs: Int64 = 10_000
        ) {
            self.endpoint = endpoint
            self.network = network
            self.refreshInterval = refreshInterval
            self.requestTimeout = requestTimeout
            self.backoffInitialMs = backoffInitialMs
            self.backoffMaximumMs = backoffMaximumMs
        }
    }

    public let name: String
    public var source: String { options.endpoint.description + (options.network.map { " network \($0)" } ?? "") }
    private let options: Options
    private let run: ProviderRun
    private let client: ControlHTTPClient
    /// Until when (monotonic ms) to list at `updateRefreshInterval`. Guarded by its mutex.
    private let updateUntilMs = Mutex<Int64>(0)

    static let apiPrefix = "/v1.41"

    public init(name: String = "swarm", options: Options, callbacks: ProviderCallbacks) {
        self.name = name
        self.options = options
        self.run = ProviderRun(name: name, callbacks: callbacks)
        self.client = ControlHTTPClient(target: options.endpoint, timeout: options.requestTimeout)
    }

    public func start() {
        guard run.begin() else { return }
        run.spawn("list") { [self] in listLoop() }
        run.spawn("events") { [self] in eventLoop() }
    }

    public func stop() { run.stop() }

    // MARK: Listing

    private func listLoop() {
        let backoff = Backoff(initialMs: options.backoffInitialMs, maximumMs: options.backoffMaximumMs, seed: 0x5A4)
        var checkedManager = false
        run.listLoop(backoff: backoff, intervalMs: {
            let updating = updateUntilMs.withLock { $0 } > Self.nowMs()
            return (updating ? min(options.updateRefreshInterval, options.refreshInterval) : options.refreshInterval).wholeMilliseconds
        }) {
            // After a failure, check again that this is still a manager.
            let result = checkedManager ? listOnce() : checkManager().flatMap { listOnce() }
            checkedManager = (try? result.get()) != nil
            return result
        }
    }

    private func checkManager() -> Result<Void, AnswerProblem> {
        get("/info", as: DockerInfo.self).flatMap { info in
            let state = info.swarm?.localNodeState ?? "inactive"
            guard state == "active" else {
                return .failure(AnswerProblem("\(source): this engine is not in a swarm (Swarm.LocalNodeState is '\(state)'); point the swarm provider at a manager"))
            }
            guard info.swarm?.controlAvailable ?? false else {
                return .failure(AnswerProblem("\(source): this engine is a swarm worker; services and tasks can only be listed on a manager"))
            }
            return .success(())
        }
    }

    /// One listing of services, running tasks and nodes: the snapshot, or what failed.
    func listOnce() -> Result<Void, AnswerProblem> {
        let desired = queryEncoded(#"{"desired-state":["running"]}"#)
        return get("/services", as: [SwarmService].self).flatMap { services in
            get("/tasks?filters=\(desired)", as: [SwarmTask].self).flatMap { tasks in
                get("/nodes", as: [SwarmNode].self).map { nodes in
                    let (catalog, problems) = SwarmCatalog.catalog(services: services, tasks: tasks, nodes: nodes, network: options.network)
                    run.publish(catalog, problems: problems)
                }
            }
        }
    }

    private func get<T: Decodable>(_ path: String, as type: T.Type) -> Result<T, AnswerProblem> {
        client.getJSON(Self.apiPrefix + path, shown: "\(options.endpoint)\(path.prefix { $0 != "?" })", as: type).map(\.0)
    }

    // MARK: Events

    private func eventLoop() {
        let path = "\(Self.apiPrefix)/events?filters=\(queryEncoded(#"{"type":["service","node"]}"#))"
        let backoff = Backoff(initialMs: options.backoffInitialMs, maximumMs: min(options.backoffMaximumMs, 1_000), seed: 0xE7)
        run.followLines(client, path, backoff: backoff) { line in
            if case .success(let event) = JSONAnswer.decode(DockerEvent.self, from: line, what: "event"), event.type == "service" {
                let until = Self.nowMs() + options.updateWindow.wholeMilliseconds
                updateUntilMs.withLock { $0 = max($0, until) }
            }
            run.poke()
        }
    }

    private static func nowMs() -> Int64 {
        Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
    }
}

// MARK: - From the config

extension SwarmProvider {
    /// A provider for a `{type: swarm, ...}` entry (validated by the config loader).
    public convenience init(name: String, config: SwarmSourceConfig, callbacks: ProviderCallbacks) {
        self.init(name: name, options: Options(
            endpoint: ControlHTTPTarget(validated: config.endpoint), network: config.network,
            refreshInterval: .milliseconds(config.refreshIntervalMs), requestTimeout: .milliseconds(config.timeoutMs)
        ), callbacks: callbacks)
    }
}
