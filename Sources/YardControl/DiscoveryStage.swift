// The runtime's discovery: builds the configured providers, merges and debounces their
// snapshots through a `DiscoveryAggregator`, logs every provider's health, and hands the
// merged catalog to the runtime once it is connected.

import Dispatch
import Synchronization
import YardDiscovery
import YardIO
import YardModel

/// The providers of one `discovery:` config, their aggregator, and their statuses.
///
/// Life: `init` builds the providers (nothing runs), `start(waitMs:)` starts them and
/// waits for their first reports, `connect(_:)` starts delivering merged catalogs (and
/// delivers at once any that arrived between `start` and `connect`), `stop()` ends it all
/// (a config reload that changes `discovery:` replaces the stage).
///
/// Threading: every method may be called from any thread. The `connect` handler and
/// `onProblem` run on `queue` (serial), never concurrently with each other.
final class DiscoveryStage: Sendable {
    let config: DiscoveryConfig
    private let aggregator: DiscoveryAggregator
    private let providers: [any DiscoveryProvider]
    private let delivery = Delivery()
    private let outages = OutageCounter()

    /// The connected handler and a catalog waiting for it. A class so the aggregator's
    /// callback, built before `self` exists, can share it. The lock is never held while
    /// calling the handler.
    private final class Delivery: Sendable {
        struct State {
            var handler: (@Sendable (ServiceCatalog) -> Void)?
            var pending: ServiceCatalog?
            var stopped = false
        }
        let state = Mutex<State>(State())
    }

    /// - Parameters:
    ///   - queue: the runtime's control queue: merged catalogs and status changes run on it.
    ///   - onProblem: a line for the dashboard's recent changes (failures and recoveries).
    init(config: DiscoveryConfig, queue: DispatchQueue, onProblem: @escaping @Sendable (String) -> Void) {
        self.config = config
        let delivery = delivery
        let outages = outages
        aggregator = DiscoveryAggregator(
            providers: config.providers.map { ($0.name, Self.source(of: $0)) },
            quiescence: Quiescence(minMs: Int64(config.quiescenceMinMs), maxMs: Int64(config.quiescenceMaxMs)),
            queue: queue,
            onApply: { catalog in
                let handler = delivery.state.withLock { state -> (@Sendable (ServiceCatalog) -> Void)? in
                    guard !state.stopped else { return nil }
                    if state.handler == nil { state.pending = catalog }
                    return state.handler
                }
                handler?(catalog)
            },
            onStatusChange: { [outages] status, condition in
                let failures = outages.record(status, condition)
                onProblem(Self.report(status, condition, failures: failures))
            },
            onRejected: { provider, problems in
                for problem in problems {
                    let line = "discovery provider '\(provider)' left out a workload (\(problem.field)): \(problem.message)"
                    logger.warning("\(line)")
                    onProblem(line)
                }
            },
            middlewares: config.middlewares)
        let aggregator = aggregator
        providers = config.providers.map { Self.makeProvider($0, callbacks: aggregator.callbacks(for: $0.name)) }
    }

    // MARK: Lifecycle

    /// Starts every provider and waits up to `waitMs` for each one's first snapshot or
    /// failure. Returns the merge of what arrived: the catalog to serve first, or nil when
    /// no provider delivered a snapshot (the caller keeps what it has). A provider that
    /// has not answered is logged and joins when it does (through the debounce window,
    /// like any change).
    func start(waitMs: Int64) -> ServiceCatalog? {
        for provider in providers { provider.start() }
        let first = aggregator.waitForFirstReports(timeoutMs: waitMs)
        for warning in first.warnings { logger.warning("discovery: \(warning)") }
        for name in first.missing {
            logger.warning("discovery provider '\(name)' has not answered within \(waitMs) ms; starting without its services, they join when it answers")
        }
        return first.delivered ? first.catalog : nil
    }

    /// From now on, merged catalogs go to `handler` (on the stage's queue); one that
    /// arrived since `start` is delivered at once.
    func connect(_ handler: @escaping @Sendable (ServiceCatalog) -> Void) {
        let pending = delivery.state.withLock { state -> ServiceCatalog? in
            state.handler = handler
            defer { state.pending = nil }
            return state.pending
        }
        if let pending { handler(pending) }
    }

    /// Stops every provider; no catalog is delivered after this returns (but one being
    /// delivered on the queue may finish).
    func stop() {
        delivery.state.withLock { $0.stopped = true }
        for provider in providers { provider.stop() }
    }

    /// Every provider's status, in config order.
    var statuses: [ProviderStatus] { aggregator.statuses }

    // MARK: Providers

    private static func makeProvider(_ config: ProviderConfig, callbacks: ProviderCallbacks) -> any DiscoveryProvider {
        switch config.source {
        case .file(let file):
            return FileProvider(name: config.name, path: file.path, pollInterval: .milliseconds(file.pollIntervalMs), callbacks: callbacks)
        case .etcd(let etcd):
            return EtcdProvider(name: config.name, config: etcd, callbacks: callbacks)
        case .dns(let dns):
            return DNSProvider(name: config.name, config: dns, callbacks: callbacks)
        case .docker(let docker):
            return DockerProvider(name: config.name, config: docker, callbacks: callbacks)
        case .swarm(let swarm):
            return SwarmProvider(name: config.name, config: swarm, callbacks: callbacks)
        case .consul(let consul):
            return ConsulProvider(name: config.name, config: consul, callbacks: callbacks)
        }
    }

    private static func source(of config: ProviderConfig) -> String {
        switch config.source {
        case .file(let file): file.path
        case .etcd(let etcd): etcd.endpoints.joined(separator: ",") + " " + etcd.prefix
        case .dns(let dns): "\(dns.serverHost.contains(":") ? "[\(dns.serverHost)]" : dns.serverHost):\(dns.serverPort)"
        case .docker(let docker): docker.endpoint + (docker.network.map { " network \($0)" } ?? "")
        case .swarm(let swarm): swarm.endpoint + (swarm.network.map { " network \($0)" } ?? "")
        case .consul(let consul): consul.address + (consul.services.map { " services \($0.joined(separator: ","))" } ?? " all services")
        }
    }

    // MARK: Reporting

    /// Logs a provider's failure or recovery and returns the line for recent changes.
    /// `failures`: the failed attempts of the outage that just ended (at a recovery).
    private static func report(_ status: ProviderStatus, _ condition: ProviderCondition, failures: Int) -> String {
        switch condition {
        case .failing(let message):
            let line = "discovery provider '\(status.name)' (\(status.source)) failing: \(message); its last snapshot keeps serving (retries are counted, not logged, until it recovers)"
            logger.error("\(line)")
            return line
        case .healthy:
            let last = failures > 0 ? status.lastError.map { " (the last: \($0))" } ?? "" : ""
            let line = "discovery provider '\(status.name)' healthy again after \(failures) failed attempt(s)\(last)"
            logger.info("\(line)")
            return line
        }
    }
}

/// The error count of each provider at the start of its outage, so a recovery line can say
/// how many attempts failed (the aggregator reports only the first failure and the recovery).
///
/// Threading: called on the aggregator's queue; the mutex makes it safe from any.
final class OutageCounter: Sendable {
    private let startErrors = Mutex<[String: Int]>([:])

    /// Records a reported change; returns the failed attempts of the outage a recovery ends.
    func record(_ status: ProviderStatus, _ condition: ProviderCondition) -> Int {
        startErrors.withLock { start in
            switch condition {
            case .failing:
                if start[status.name] == nil { start[status.name] = status.errors - 1 }
                return 0
            case .healthy:
                let before = start.removeValue(forKey: status.name) ?? status.errors
                return max(0, status.errors - before)
            }
        }
    }
}
