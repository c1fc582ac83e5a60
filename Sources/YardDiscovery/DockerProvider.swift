// The Docker provider: containers with `switchyard.*` labels, read from the Engine API
// over its unix socket (Docker, or podman's Docker-compatible service). No Registrator:
// Switchyard lists the containers itself, follows /events, and resyncs periodically.

import Foundation
import Synchronization
import YardModel
import YardControlHTTP

/// Watches a Docker engine and pushes complete catalogs of its labelled containers.
///
/// How it follows the engine:
/// - one thread lists `GET /containers/json` (running containers) at start, whenever an
///   event may have changed the list, and every `resyncInterval` regardless (every
///   second while the event stream is down, since events are being missed);
/// - a second thread reads the `GET /events` stream (container events). A `kill`,
///   `stop`, `pause` or `die` takes the container out of rotation *at once*, before the
///   engine lists it as stopped: the SIGTERM is already on its way, and a request sent
///   now would meet a closing backend. A `start` brings it back;
/// - a container whose health check says `unhealthy` or `starting` is left out until
///   healthy (`health_status` events make that quick).
///
/// While the engine is unreachable or answers garbage, it reports `.failing` once per
/// attempt, keeps quiet about services (the last snapshot keeps serving), and retries
/// with `Backoff`; after it recovers it delivers a fresh snapshot.
///
/// Threading: see `DiscoveryProvider`. Two threads of its own; callbacks on a private
/// serial queue.
public final class DockerProvider: DiscoveryProvider {
    public struct Options: Sendable {
        /// `unix:///var/run/docker.sock`, a socket path, or `http://host:port`.
        public var endpoint: ControlHTTPTarget
        public var mapping: DockerMapping
        /// Full re-list period, whatever the events say.
        public var resyncInterval: Duration
        /// Bound on each request (the event stream's opening included).
        public var requestTimeout: Duration
        public var backoffInitialMs: Int64
        public var backoffMaximumMs: Int64

        public init(
            endpoint: ControlHTTPTarget = .unix(path: "/var/run/docker.sock"), mapping: DockerMapping = DockerMapping(),
            resyncInterval: Duration = .seconds(30), requestTimeout: Duration = .seconds(5),
            backoffInitialMs: Int64 = 200, backoffMaximumMs: Int64 = 10_000
        ) {
            self.endpoint = endpoint
            self.mapping = mapping
            self.resyncInterval = resyncInterval
            self.requestTimeout = requestTimeout
            self.backoffInitialMs = backoffInitialMs
            self.backoffMaximumMs = backoffMaximumMs
        }
    }

    public let name: String
    public var source: String { options.endpoint.description }
    private let options: Options
    private let run: ProviderRun
    private let client: ControlHTTPClient
    /// Containers that got a kill/stop/die event and are still listed. Guarded by its mutex.
    private let leaving = Mutex<Set<String>>([])

    static let apiPrefix = "/v1.41"

    public init(name: String = "docker", options: Options, callbacks: ProviderCallbacks) {
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
        let backoff = Backoff(initialMs: options.backoffInitialMs, maximumMs: options.backoffMaximumMs, seed: 0xD0C)
        let resyncMs = options.resyncInterval.wholeMilliseconds
        // Without the event stream, changes are only seen by listing: list every second.
        run.listLoop(backoff: backoff, intervalMs: { run.isStreamUp ? resyncMs : min(resyncMs, 1_000) }) { listOnce() }
    }

    /// One listing: the snapshot, or what went wrong.
    func listOnce() -> Result<Void, AnswerProblem> {
        let filter = #"{"label":["switchyard.service"]}"#
        let path = "\(Self.apiPrefix)/containers/json?filters=\(queryEncoded(filter))"
        return client.getJSON(path, shown: "\(source)/containers/json", as: [DockerContainer].self).map { containers, _ in
            let listed = Set(containers.map(\.id))
            let leavingNow = leaving.withLock { set in
                set.formIntersection(listed)
                return set
            }
            let (catalog, problems) = DockerCatalog.catalog(containers, mapping: options.mapping, leaving: leavingNow)
            run.publish(catalog, problems: problems)
        }
    }

    // MARK: Events

    private func eventLoop() {
        let path = "\(Self.apiPrefix)/events?filters=\(queryEncoded(#"{"type":["container"]}"#))"
        // Reconnecting is cheap (a local socket): at most a second apart.
        let backoff = Backoff(initialMs: options.backoffInitialMs, maximumMs: min(options.backoffMaximumMs, 1_000), seed: 0xE7D)
        run.followLines(client, path, backoff: backoff) { handle(eventLine: $0) }
    }

    private func handle(eventLine line: [UInt8]) {
        guard case .success(let event) = JSONAnswer.decode(DockerEvent.self, from: line, what: "event"),
              event.type == nil || event.type == "container",
              DockerCatalog.relevantEvents.contains(event.verb) else { return }
        if let id = event.containerID {
            let labelled = event.actor?.attributes?[SwitchyardLabels.service] != nil
            if DockerCatalog.leavingEvents.contains(event.verb) {
                if labelled { leaving.withLock { _ = $0.insert(id) } }
            } else if DockerCatalog.returningEvents.contains(event.verb) {
                leaving.withLock { _ = $0.remove(id) }
            }
        }
        run.poke()
    }
}

// MARK: - From the config

extension DockerProvider {
    /// A provider for a `{type: docker, ...}` entry (validated by the config loader).
    public convenience init(name: String, config: DockerSourceConfig, callbacks: ProviderCallbacks) {
        self.init(name: name, options: Options(
            endpoint: ControlHTTPTarget(validated: config.endpoint),
            mapping: DockerMapping(network: config.network, hostAddress: config.hostAddress),
            resyncInterval: .milliseconds(config.resyncIntervalMs), requestTimeout: .milliseconds(config.timeoutMs)
        ), callbacks: callbacks)
    }
}

extension ControlHTTPTarget {
    /// An endpoint the config loader has already checked; a path stands for a socket.
    init(validated text: String) {
        self = (try? ControlHTTPTarget(url: text)) ?? .unix(path: text)
    }
}
