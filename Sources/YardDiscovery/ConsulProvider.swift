// The Consul provider: services from Consul's catalog with their health, followed by
// blocking queries on /v1/health/service/NAME (and /v1/catalog/services to learn the
// names when every service is wanted).

import Foundation
import Synchronization
import YardModel
import YardControlHTTP

/// Watches a Consul agent and pushes complete catalogs of the chosen services.
///
/// How it follows Consul (features/blocking in Consul's API docs):
/// - one blocking query per service on `/v1/health/service/NAME?index=N&wait=W`
///   (`&passing` when `passingOnly`), each on its own thread, as consul-template does;
///   with `services == nil`, one more on `/v1/catalog/services` adds and drops those
///   watches as services appear and disappear;
/// - the index follows `BlockingIndex`: reset to 0 when it goes backwards, 0 treated as 1;
/// - two queries of one watch start at least `minimumInterval` apart, so a server (or a
///   proxy in between) that answers at once, again and again, cannot make it spin;
/// - the first snapshot waits until every watched service has answered once, so the
///   consumer never sees a half-known catalog.
///
/// Tags: `track-green` or `track=green` set the track, `weight=3` the weight; `Meta`
/// keys `switchyard.rule.host`, `switchyard.rule.path`, `switchyard.health.path` work as
/// on containers (see `ConsulCatalog.instances`).
///
/// While Consul is unreachable or answers garbage, it reports `.failing`, keeps quiet
/// about services (the last snapshot keeps serving), and retries with `Backoff`.
///
/// Threading: see `DiscoveryProvider`. A thread per watch; callbacks on a private serial
/// queue. `stop()` returns at once; a watch blocked in a query ends when that query
/// returns (at most `wait` later) and delivers nothing more.
public final class ConsulProvider: DiscoveryProvider {
    public struct Options: Sendable {
        /// The agent's HTTP API: `http://127.0.0.1:8500`.
        public var endpoint: ControlHTTPTarget
        /// The services to follow; nil follows every service in the catalog.
        public var services: [String]?
        /// Ask Consul for instances whose checks all pass (`?passing`); false takes every
        /// registered instance and leaves health to Switchyard's own checks.
        public var passingOnly: Bool
        public var datacenter: String?
        /// Sent as `X-Consul-Token`.
        public var token: String?
        /// For an `https://` endpoint: the CA and client certificate (nil: system CAs).
        public var tls: ControlTLS?
        /// Set when the options could not be prepared (a TLS or token file that does not
        /// load): the provider reports it as failing and does not start.
        public var setupProblem: String?
        /// How long Consul may hold a blocking query (it adds up to wait/16 of jitter).
        public var wait: Duration
        /// The floor between the starts of two queries of one watch.
        public var minimumInterval: Duration
        /// Bound on connecting and on non-blocking work; added to `wait` for queries.
        public var requestTimeout: Duration
        public var backoffInitialMs: Int64
        public var backoffMaximumMs: Int64

        public init(
            endpoint: ControlHTTPTarget = .tcp(host: "127.0.0.1", port: 8500), services: [String]? = nil,
            passingOnly: Bool = true, datacenter: String? = nil, token: String? = nil,
            wait: Duration = .seconds(60), minimumInterval: Duration = .milliseconds(200),
            requestTimeout: Duration = .seconds(5), backoffInitialMs: Int64 = 200, backoffMaximumMs: Int64 = 10_000
        ) {
            self.endpoint = endpoint
            self.services = services
            self.passingOnly = passingOnly
            self.datacenter = datacenter
            self.token = token
            self.wait = wait
            self.minimumInterval = minimumInterval
            self.requestTimeout = requestTimeout
            self.backoffInitialMs = backoffInitialMs
            self.backoffMaximumMs = backoffMaximumMs
        }
    }

    public let name: String
    public var source: String {
        options.endpoint.description + (options.services.map { " services \($0.joined(separator: ","))" } ?? " all services")
    }
    private let options: Options
    private let run: ProviderRun
    private let client: ControlHTTPClient
    /// What every watch has seen. Held while publishing, so snapshots go out in the
    /// order the state changed (lock order: this, then the run's).
    private let state = Mutex<WatchTable>(WatchTable())

    private struct WatchTable {
        /// False until `/v1/catalog/services` answered (always true with a fixed list).
        var namesKnown = false
        var watches: [String: Watch] = [:]
        var nextGeneration = 0
    }

    private struct Watch {
        /// A watch thread keeps running only while its generation is the current one.
        var generation: Int
        /// nil until the first answer.
        var items: [LabeledInstance]?
        var problems: [LabelProblem] = []
    }

    public init(name: String = "consul", options: Options, callbacks: ProviderCallbacks) {
        self.name = name
        self.options = options
        self.run = ProviderRun(name: name, callbacks: callbacks)
        var headers: [(String, String)] = []
        if let token = options.token { headers.append(("X-Consul-Token", token)) }
        let blockingTimeout = options.wait + options.wait / 16 + options.requestTimeout
        self.client = ControlHTTPClient(target: options.endpoint, timeout: blockingTimeout, headers: headers, tls: options.tls)
    }

    public func start() {
        guard run.begin() else { return }
        if let problem = options.setupProblem {
            run.fail(problem)
            return
        }
        if let fixed = options.services {
            let generations = state.withLock { table in
                table.namesKnown = true
                return Set(fixed).sorted().map { name in (name, add(name, to: &table)) }
            }
            for (service, generation) in generations { spawnWatch(service, generation) }
        } else {
            run.spawn("catalog") { [self] in catalogLoop() }
        }
    }

    public func stop() { run.stop() }

    // MARK: Watches

    private func add(_ service: String, to table: inout WatchTable) -> Int {
        table.nextGeneration += 1
        table.watches[service] = Watch(generation: table.nextGeneration)
        return table.nextGeneration
    }

    private func spawnWatch(_ service: String, _ generation: Int) {
        run.spawn("watch-\(service)") { [self] in watchLoop(service, generation) }
    }

    private func isCurrent(_ service: String, _ generation: Int) -> Bool {
        state.withLock { $0.watches[service]?.generation == generation }
    }

    /// Follows `/v1/health/service/NAME` until the provider stops or the service leaves.
    private func watchLoop(_ service: String, _ generation: Int) {
        var path = "/v1/health/service/\(queryEncoded(service))?"
        if options.passingOnly { path += "passing=1&" }
        follow(path, what: "health of \(service)", as: [ConsulHealthEntry].self, while: { [self] in isCurrent(service, generation) }) { [self] entries in
            let (items, problems) = ConsulCatalog.instances(entries, service: service)
            state.withLock { table in
                guard table.watches[service]?.generation == generation else { return }
                table.watches[service]?.items = items
                table.watches[service]?.problems = problems
                publishIfReady(table)
            }
        }
    }

    /// Follows `/v1/catalog/services`: starts a watch per new name, drops gone ones.
    private func catalogLoop() {
        follow("/v1/catalog/services?", what: "catalog services", as: [String: [String]].self, while: { true }) { [self] names in
            let started = state.withLock { table -> [(String, Int)] in
                for gone in table.watches.keys where names[gone] == nil { table.watches[gone] = nil }
                let fresh = names.keys.sorted().filter { table.watches[$0] == nil }
                let added = fresh.map { ($0, add($0, to: &table)) }
                table.namesKnown = true
                publishIfReady(table)
                return added
            }
            for (service, generation) in started { spawnWatch(service, generation) }
        }
    }

    /// The blocking-query loop every watch runs: index rules, the wake-up floor, backoff.
    private func follow<T: Decodable>(
        _ basePath: String, what: String, as type: T.Type, while current: () -> Bool, deliver: (T) -> Void
    ) {
        var index = BlockingIndex()
        var backoff = Backoff(initialMs: options.backoffInitialMs, maximumMs: options.backoffMaximumMs, seed: UInt64(truncatingIfNeeded: what.hashValue))
        var lastStartMs: Int64 = -1_000_000
        let waitSeconds = max(1, options.wait.components.seconds)
        let shown = "\(options.endpoint)\(basePath.prefix { $0 != "?" })"
        while !run.isStopped && current() {
            let floorWait = lastStartMs + options.minimumInterval.wholeMilliseconds - Self.nowMs()
            if floorWait > 0 { guard run.sleep(milliseconds: floorWait) else { return } }
            lastStartMs = Self.nowMs()
            var path = basePath + "index=\(index.next)&wait=\(waitSeconds)s"
            if let dc = options.datacenter { path += "&dc=\(queryEncoded(dc))" }
            let result = query(path, shown: shown, as: type)
            guard !run.isStopped, current() else { return }
            switch result {
            case .success(let (value, header)):
                backoff.reset()
                _ = index.accept(header)
                deliver(value)
            case .failure(let problem):
                index.reset()
                run.fail(problem.description)
                guard run.sleep(milliseconds: backoff.nextDelayMs()) else { return }
            }
        }
    }

    private func query<T: Decodable>(_ path: String, shown: String, as type: T.Type) -> Result<(T, UInt64?), AnswerProblem> {
        client.getJSON(path, shown: shown, as: type).map { value, response in
            (value, response.header("X-Consul-Index").flatMap { UInt64($0) })
        }
    }

    // MARK: Delivery

    /// Publishes the catalog once every watch has answered. Called with `state` held.
    private func publishIfReady(_ table: WatchTable) {
        guard table.namesKnown, table.watches.values.allSatisfy({ $0.items != nil }) else { return }
        var catalog = LabeledCatalog.assemble(table.watches.values.flatMap { $0.items ?? [] })
        // A followed service with no instance is still a service (its routes answer 503).
        let present = Set(catalog.services.map(\.name))
        for service in table.watches.keys where !present.contains(service) {
            catalog.services.append(ServiceDefinition(name: service, instances: []))
        }
        catalog.services.sort { $0.name < $1.name }
        let problems = table.watches.keys.sorted().flatMap { table.watches[$0]?.problems ?? [] }
        run.publish(catalog, problems: problems)
    }

    private static func nowMs() -> Int64 {
        Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
    }
}

// MARK: - From the config

extension ConsulProvider {
    /// A provider for a `{type: consul, ...}` entry (validated by the config loader).
    /// A `token_env` or `token_file` is read now; an unset variable means no token. TLS
    /// files load now too; one that fails makes the provider report it as failing.
    public convenience init(name: String, config: ConsulSourceConfig, callbacks: ProviderCallbacks) {
        var options = Options(
            endpoint: ControlHTTPTarget(validated: config.address), services: config.services,
            passingOnly: config.passingOnly, datacenter: config.datacenter,
            wait: .milliseconds(config.waitMs), minimumInterval: .milliseconds(config.minimumIntervalMs),
            requestTimeout: .milliseconds(config.timeoutMs))
        do throws(ControlHTTPError) {
            options.token = try config.access.consulToken()
            options.tls = try config.access.loadTLS()
        } catch {
            options.setupProblem = "consul \(config.address): \(error.description)"
        }
        self.init(name: name, options: options, callbacks: callbacks)
    }
}
