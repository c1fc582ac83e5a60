#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Synchronization
import YardDiscovery
import YardHealth
import YardIO
import YardModel
import YardProxy

/// `switchyard run`: the data plane plus the control plane that feeds it.
///
/// Loads the config, starts the workers on the first good catalog (or an empty one), keeps
/// the file provider publishing new routing tables, reloads the config on SIGHUP, and
/// drains on SIGTERM/SIGINT, or once a new process has taken its listening sockets over
/// (SIGUSR2 or `run --takeover`: RuntimeTakeover.swift).
///
/// Threading: control-plane state lives behind one mutex and is touched only from the
/// control queue, signal handlers (also on that queue) and `run`'s caller.
public final class Runtime: Sendable {
    let configPath: String
    private let workersOverride: Int?
    /// `run --admin ADDRESS`, applied over the config file's admin address.
    private let adminOverride: String?
    let queue = DispatchQueue(label: "switchyard.control")
    let state = Mutex<State>(State())
    /// Serialises handing tables to the workers (`hand`), outside the state lock.
    private let publisher = DispatchQueue(label: "switchyard.publish")
    /// The version of the last table handed to the workers; written only on `publisher`.
    private let publishedVersion = Atomic<UInt64>(1)
    private let stopSignal = DispatchSemaphore(value: 0)
    private let health: HealthChecker
    /// Pools template, guards and output files between discovery and routing (TemplateStage.swift).
    let templateStage = TemplateStage()
    private let startedUnix = Date().timeIntervalSince1970
    /// Kept alive for the process's life. Written once by `run` before any signal can be
    /// delivered to them, never read: no synchronisation needed.
    private nonisolated(unsafe) var signalSources: [DispatchSourceSignal] = []
    /// Set once by `run` before signals are installed; read by the SIGUSR1 handler.
    private nonisolated(unsafe) var accessLogWriter: AccessLogWriter?
    /// Set once by `run` before the first table is built and before the admin listener
    /// starts; only read afterwards.
    nonisolated(unsafe) var traffic: TrafficControl?
    /// The admin tokens (nil: writes need none); set by `run` before the admin listener
    /// starts, replaced on SIGHUP, read by admin connection threads.
    let adminTokens = Mutex<AdminTokens?>(nil)
    /// Per-track counters over a sliding window, sampled every second (the canary gate).
    let window = TrackWindow()
    /// Taking over from a running process, offering to the next (RuntimeTakeover.swift).
    let takeover: TakeoverSettings
    /// ACME certificates (ACMEManager.swift); set once by `run` before the first table.
    nonisolated(unsafe) var acme: ACMEManager?
    /// The sticky-canary cookie's key (StickyCookieKeeper.swift); set once by `run` before
    /// the first table.
    nonisolated(unsafe) var stickyCookies: StickyCookieKeeper?

    struct State {
        var config: SwitchyardConfig?
        var catalog = ServiceCatalog(services: [])
        var version: UInt64 = 0
        var lastSummary = ""
        var changes: [ChangeRecord] = []
        var admin: AdminServer?
        var server: ProxyServer?
        var discovery: DiscoveryStage?
        var tls: TLSListeners?
        var stopping = false
        /// The traffic revision in the last published table, per service.
        var applied: [String: Int64] = [:]
        var adminAddress: String?
        /// Offers the listening sockets to a process that takes over (nil: not offering).
        var offer: TakeoverOffer?
        /// Sockets were sent to another process: they are shared from then on, so
        /// stopping closes this process's copies and never shuts them down.
        var socketsShared = false
        /// The process that took over; set once, then this one drains.
        var handedOverTo: Int32?
        /// The process SIGUSR2 started, until it takes over or exits.
        var relaunched: Int32?
    }

    /// Called with the bound listener addresses once the proxy is listening.
    public typealias ReadyHandler = @Sendable ([SocketAddress]) -> Void

    public init(configPath: String, workers: Int? = nil, admin: String? = nil, takeover: TakeoverSettings = TakeoverSettings()) {
        self.configPath = configPath
        self.takeover = takeover
        self.workersOverride = workers
        self.adminOverride = admin
        let rebuild = RebuildTrigger()
        self.health = HealthChecker(onChange: { rebuild.fire() })
        rebuild.target = self
    }

    /// Runs until SIGTERM/SIGINT, then drains. Returns the process exit code.
    public func run(onReady: ReadyHandler? = nil) throws -> Int32 {
        // Before anything is printed: a signal right after "listening" must be handled,
        // not kill the process with its default action.
        installSignals()
        var config = try ConfigLoader.loadConfig(path: configPath)
        if let adminOverride { try ConfigLoader.overrideAdmin(address: adminOverride, in: &config) }
        try Self.resolveForwardAuthHosts(&config, previous: nil)
        let tokens = try Self.loadTokens(config.admin)
        adminTokens.withLock { $0 = tokens }
        traffic = try startTraffic(config)
        let trafficControl = traffic
        templateStage.configure(
            config.templates, health: { [health] in Self.templateHealth(health.readings(), catalog: $0) },
            traffic: { $0.applying(trafficControl?.states ?? [:]) })
        let discovery = makeDiscovery(config.discovery)
        let discovered = discovery.start(waitMs: Self.discoveryStartupWaitMs) ?? ServiceCatalog(services: [])
        let initialCatalog = templateStage.admit(discovered, running: ServiceCatalog(services: [])) ?? ServiceCatalog(services: [])
        health.update(targets: Self.healthTargets(initialCatalog))
        health.start()
        health.waitForFirstResults()
        acme = try ACMEManager(config.listeners, stateStore: config.stateStore,
                               replicaID: traffic?.replicaID ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())")
        stickyCookies = StickyCookieKeeper(stateStore: config.stateStore)
        let table = makeTable(version: 1, routes: config.routes, catalog: initialCatalog)
        let workers = workersOverride ?? config.workers ?? availableCPUs()
        let checker = health
        let tls = try TLSListeners(config.listeners)
        let accessLog = config.accessLog.enabled ? try AccessLogWriter(path: config.accessLog.path) : nil
        accessLogWriter = accessLog
        // Last before binding: the running process serves until this one is ready.
        let (predecessor, inherited) = try takeOverSockets()
        let server = try ProxyServer(
            listeners: config.listeners, tls: tls.contexts, table: table, settings: config.proxy, workers: workers,
            onEndpointFailing: { service, poolKey in
                checker.reportFailures(HealthKey(service: service, endpointKey: poolKey))
            },
            accessLog: accessLog, inherited: inherited)
        state.withLock {
            $0.config = config
            $0.catalog = initialCatalog
            $0.version = 1
            $0.server = server
            $0.discovery = discovery
            $0.applied = Self.revisions(initialCatalog, traffic?.states ?? [:])
            $0.tls = tls.startTimers(config.listeners, server: server, queue: queue)
        }
        server.start()
        acme?.start(server: server, tls: tls)
        startWindowSampler()
        OutlierFeed.start(checker: checker, server: server) { [weak self] in self?.isStopping ?? true }
        let addresses = server.boundAddresses.map(\.description).joined(separator: ", ")
        logger.info("switchyard listening on \(addresses) with \(server.workerCount) worker(s); \(describe(table))")
        let admin = try startAdmin(config, inherited: config.admin.enabled ? inherited.claimAdmin(host: config.admin.host, port: config.admin.port) : nil)
        closeUnclaimed(inherited)
        if let admin {
            state.withLock { $0.adminAddress = "http://\(admin.address)" }
            traffic?.reportSoon()
            FileHandle.standardOutput.write(Data("admin listening \(admin.address)\n".utf8))
            logger.info("admin API on http://\(admin.address)/ (status, metrics, dashboard)")
        }
        onReady?(server.boundAddresses)
        finishTakeover(from: predecessor)
        startOffering()
        discovery.connect { [weak self] catalog in self?.apply(catalog: catalog) }

        stopSignal.wait()
        let (handedOver, shared) = state.withLock { ($0.handedOverTo, $0.socketsShared) }
        if let handedOver {
            logger.info("draining: pid \(handedOver) accepts now; in-flight requests and keep-alive connections get \(config.proxy.drainTimeoutMs) ms")
        } else {
            SystemdNotify.notify(.stopping)
            logger.info("draining: no new connections; in-flight requests get \(config.proxy.drainTimeoutMs) ms")
        }
        state.withLock { $0.offer }?.stop()
        state.withLock { $0.discovery?.stop() }
        traffic?.stop()
        acme?.stop()
        health.stop()
        state.withLock { $0.admin?.stop(handingOver: shared) }
        let clean = server.drain(timeoutMs: config.proxy.drainTimeoutMs, handingOver: handedOver != nil)
        accessLog?.stop()
        logger.info("\(clean ? "drained; exiting" : "drain deadline passed; exiting with connections cut")")
        return 0
    }

    /// Asks a running `run` to drain and return (what SIGTERM does).
    public func requestStop() {
        let first = state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        if first { stopSignal.signal() }
    }

    // MARK: Discovery

    /// How long startup waits for every provider's first snapshot or failure.
    static let discoveryStartupWaitMs: Int64 = 3_000

    /// The providers of `config` (DiscoveryStage.swift), not yet started.
    private func makeDiscovery(_ config: DiscoveryConfig) -> DiscoveryStage {
        DiscoveryStage(config: config, queue: queue, onProblem: { [weak self] line in self?.recordChange(line) })
    }

    /// Routes a discovered catalog if the template stage admits it; false when it does not.
    @discardableResult
    func apply(catalog discovered: ServiceCatalog, force: Bool = false) -> Bool {
        guard let catalog = templateStage.admit(discovered, running: state.withLock { $0.catalog }, force: force) else { return false }
        let changed = state.withLock { state -> Bool in
            guard catalog != state.catalog else { return false }
            state.catalog = catalog
            return true
        }
        guard changed else { return true }
        health.update(targets: Self.healthTargets(catalog))
        republish(reason: .discovery)
        return true
    }

    /// Rebuilds the routing table from the current config, catalog and health, and
    /// publishes it if it differs from the last one.
    ///
    /// Threading: any thread. The table is built under the state lock and handed to the
    /// workers after it is released (`hand`), so a flip waiting for the workers never
    /// blocks the admin API, the reporter or discovery.
    func republish(reason: PublishReason) {
        if reason.refreshesTemplates { templateStage.healthChanged() }
        let built: (table: RoutingTable, server: ProxyServer, quiet: Bool)? = state.withLock { state in
            guard let config = state.config, let server = state.server else { return nil }
            state.version += 1
            let table = makeTable(version: state.version, routes: config.routes, catalog: state.catalog)
            state.applied = Self.revisions(state.catalog, traffic?.states ?? [:])
            let summary = describe(table)
            // Same routing apart from weights (slow start): publish quietly.
            let quiet = summary == state.lastSummary && reason == .health
            if !quiet { state.lastSummary = summary }
            return (table, server, quiet)
        }
        guard let built else {
            if reason != .health { traffic?.reportSoon() }
            return
        }
        hand(built.table, to: built.server, wait: reason.waitsForWorkers)
        if reason != .health { traffic?.reportSoon() }
        if !built.quiet {
            let message = "routing table v\(built.table.version) published (\(reason.rawValue)): \(describe(built.table))"
            logger.info("\(message)", metadata: ["table_version": "\(built.table.version)", "reason": .string(reason.rawValue)])
            recordChange(message)
        }
    }

    /// Hands `table` to the workers, waiting until every one adopted it when `wait` (a flip
    /// answers after that). Publications go out one at a time on `publisher`, in version
    /// order: a table older than one already handed over is not sent (the newer one was
    /// built later, from newer state), so workers never go back to an older version.
    ///
    /// Threading: any thread, never with the state lock held.
    func hand(_ table: RoutingTable, to server: ProxyServer, wait: Bool) {
        publisher.sync {
            if table.version > publishedVersion.load(ordering: .relaxed) {
                publishedVersion.store(table.version, ordering: .relaxed)
                if wait { server.publishAndWait(table) } else { server.publish(table) }
            } else if wait {
                // Superseded: wait for the newer table (sent again; adopting it twice keeps
                // the balancers), which carries this caller's state too.
                server.publishAndWait(server.currentTable)
            }
        }
    }

    /// Keeps the last 50 routing changes for the dashboard.
    func recordChange(_ message: String) {
        state.withLock { state in
            state.changes.append(ChangeRecord(timeUnix: Date().timeIntervalSince1970, message: message))
            if state.changes.count > 50 { state.changes.removeFirst(state.changes.count - 50) }
        }
    }

    // MARK: Admin API

    private func startAdmin(_ config: SwitchyardConfig, inherited: ListeningSocket? = nil) throws -> AdminServer? {
        guard config.admin.enabled else { return nil }
        let admin = try AdminServer(
            host: config.admin.host, port: config.admin.port, allowedHosts: config.admin.allowedHosts,
            maxConnections: config.admin.maxConnections,
            tokens: { [weak self] in self?.adminTokens.withLock { $0 } }, inherited: inherited?.fd,
            handler: { [weak self] request in
                self?.handleAdmin(request) ?? AdminResponse(status: 500, text: "shutting down\n")
            })
        admin.start()
        state.withLock { $0.admin = admin }
        return admin
    }

    private func observe() -> ObservedState? {
        let snapshot = state.withLock { state in
            (state.server, state.discovery?.statuses ?? [], state.changes, state.applied)
        }
        guard let server = snapshot.0 else { return nil }
        let templates = templateStage.report()
        return ObservedState(
            table: server.currentTable, metrics: server.collectMetrics(), health: health.readings(),
            providers: snapshot.1, changes: snapshot.2, startedUnix: startedUnix, workers: server.workerCount,
            accessLogDropped: accessLogWriter?.droppedBatches ?? 0,
            store: traffic?.status, replicaID: traffic?.replicaID, traffic: traffic?.states ?? [:],
            applied: snapshot.3, templates: templates.configured ? templates : nil)
    }

    func handleAdmin(_ request: AdminRequest) -> AdminResponse {
        switch (request.method, request.path) {
        case ("GET", "/healthz"):
            return AdminResponse(text: "ok\n")
        case ("GET", "/metrics"):
            guard let observed = observe() else { return AdminResponse(status: 503, text: "starting\n") }
            return AdminResponse(status: 200, text: PrometheusText.render(observed) + (acme?.metricsText() ?? ""),
                                 contentType: "text/plain; version=0.0.4; charset=utf-8")
        case ("GET", "/certs"):
            return AdminResponse(status: 200, text: acme?.statusJSON() ?? "{\"certificates\":[]}\n", contentType: "application/json")
        case ("GET", "/status"), ("GET", "/services"):
            guard let observed = observe() else { return AdminResponse(status: 503, text: "starting\n") }
            return .json(StatusDocument(observed))
        case ("GET", "/explain"):
            guard let server = state.withLock({ $0.server }) else { return AdminResponse(status: 503, text: "starting\n") }
            return .json(Explanation.explain(table: server.currentTable, query: request.query))
        case (_, "/render"):
            return handleRenderRequest(request)
        case ("GET", "/"), ("GET", "/dashboard"):
            return AdminResponse(status: 200, text: DashboardPage.html, contentType: "text/html; charset=utf-8")
        default:
            return handleTraffic(request) ?? .error(404, "no such endpoint: \(request.method) \(request.path)")
        }
    }

    private func makeTable(version: UInt64, routes configured: [RouteConfig], catalog found: ServiceCatalog) -> RoutingTable {
        let (routes, discovered) = acme?.withChallengeRoutes(configured, found) ?? (configured, found)
        let catalog = discovered.applying(traffic?.states ?? [:])
        let now = monotonicMilliseconds()
        let readings = health.readings(now: now)
        let policies = Dictionary(catalog.services.map { ($0.name, $0.health) }, uniquingKeysWith: { first, _ in first })
        let signed = stickyCookies?.values(for: catalog)
        return buildRoutingTable(version: version, routes: routes, catalog: catalog, stickyCookies: signed) { service, key, weight in
            guard let reading = readings[HealthKey(service: service, endpointKey: key)], let policy = policies[service] else {
                return nil
            }
            return EndpointState(
                effectiveWeight: reading.health.effectiveWeight(configured: weight, policy: policy, now: now),
                health: reading.status.rawValue, ejected: reading.ejected)
        }
    }

    private static func healthTargets(_ catalog: ServiceCatalog) -> [HealthTarget] {
        catalog.services.flatMap { service in
            service.instances.map { instance in
                HealthTarget(
                    service: service.name,
                    endpointKey: PoolKeys.shared.key(address: instance.address, port: instance.port, flavor: service.upstream.poolFlavor),
                    address: instance.address, port: instance.port, policy: service.health, transport: service.upstream)
            }
        }
    }

    /// SIGHUP: reload the config file; an invalid file is rejected and the running config
    /// stays. The admin token file is read again either way.
    private func reloadConfig() {
        SystemdNotify.notify(.reloading)
        defer { SystemdNotify.notify(.ready) }
        reloadAdminTokens()
        do {
            var config = try ConfigLoader.loadConfig(path: configPath)
            if let adminOverride { try ConfigLoader.overrideAdmin(address: adminOverride, in: &config) }
            try Self.resolveForwardAuthHosts(&config, previous: state.withLock { $0.config })
            let reloaded: (table: RoutingTable, server: ProxyServer)? = state.withLock { state in
                guard let old = state.config, let server = state.server else { return nil }
                // Certificates (and a TLS listener's tls settings) apply now; the rest of a
                // listener (address, TLS on or off) and its acme block at the next restart.
                let (listeners, acmeChanged) = ACMEManager.keepingRunningACME(config.listeners, running: old.listeners)
                for name in acmeChanged {
                    logger.warning("config reload: listener '\(name)': the acme block changed and applies at the next restart; until then certificates are ordered and renewed as before")
                }
                state.tls?.reload(listeners, server: server)
                var applied = old
                for index in applied.listeners.indices where index < listeners.count
                    && applied.listeners[index].name == listeners[index].name
                    && applied.listeners[index].tls != nil && listeners[index].tls != nil {
                    applied.listeners[index].tls = listeners[index].tls
                }
                let restart = Self.keysApplyingAtRestart(running: applied, reloaded: config)
                if !restart.isEmpty {
                    logger.warning("config reload: \(restart.joined(separator: ", ")) changed and apply at the next restart (the running values stay); routes, discovery, templates and certificates apply now")
                }
                applied.routes = config.routes
                applied.discovery = config.discovery
                templateStage.configure(config.templates)
                state.config = applied
                state.version += 1
                let table = makeTable(version: state.version, routes: applied.routes, catalog: state.catalog)
                if old.discovery != config.discovery {
                    state.discovery?.stop()
                    state.discovery = nil
                }
                return (table, server)
            }
            if let (table, server) = reloaded {
                hand(table, to: server, wait: false)
                logger.info("config reloaded; routing table v\(table.version) published: \(describe(table))")
                let needsDiscovery = state.withLock { $0.discovery == nil }
                if needsDiscovery {
                    // The running catalog serves until a new provider delivers.
                    let discovery = makeDiscovery(config.discovery)
                    let first = discovery.start(waitMs: Self.discoveryStartupWaitMs)
                    state.withLock { $0.discovery = discovery }
                    if let first { apply(catalog: first) }
                    discovery.connect { [weak self] catalog in self?.apply(catalog: catalog) }
                }
            }
        } catch {
            logger.error("config reload rejected: \(error); the running config stays")
        }
    }

    /// The config keys that differ between the running config and a reloaded one but that
    /// SIGHUP does not apply, by their names in the file.
    static func keysApplyingAtRestart(running: SwitchyardConfig, reloaded: SwitchyardConfig) -> [String] {
        var keys: [String] = []
        if running.listeners != reloaded.listeners { keys.append("listeners") }
        if running.workers != reloaded.workers { keys.append("workers") }
        if running.proxy != reloaded.proxy { keys.append("timeouts/limits/upstream/trusted_proxies") }
        if running.admin != reloaded.admin { keys.append("admin") }
        if running.stateStore != reloaded.stateStore { keys.append("state_store") }
        if running.accessLog != reloaded.accessLog { keys.append("access_log") }
        return keys
    }

    // MARK: Signals

    private func installSignals() {
        signal(SIGPIPE, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for (number, action) in [(SIGTERM, "stop"), (SIGINT, "stop"), (SIGHUP, "reload"), (SIGUSR1, "reopen"), (SIGUSR2, "relaunch")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            switch action {
            case "stop":
                source.setEventHandler { [weak self] in self?.requestStop() }
            case "reload":
                source.setEventHandler { [weak self] in self?.reloadConfig() }
            case "relaunch":
                source.setEventHandler { [weak self] in self?.relaunch() }
            default:
                source.setEventHandler { [weak self] in
                    self?.accessLogWriter?.reopen()
                    logger.info("SIGUSR1: access log reopened")
                }
            }
            source.resume()
            sources.append(source)
        }
        signalSources = sources
    }
}

/// Breaks the init-time cycle between the health checker's callback and the runtime.
///
/// Threading: `target` is set once in `Runtime.init` before the checker starts; `fire`
/// runs on the checker's queue.
final class RebuildTrigger: @unchecked Sendable {
    weak var target: Runtime?
    func fire() { target?.republish(reason: .health) }
}

/// Why the routing table is rebuilt: decides how it is handed to the workers and how the
/// publication is logged (`routing table v7 published (traffic): …`).
enum PublishReason: String, Sendable {
    /// A provider delivered a new catalog.
    case discovery
    /// A health reading or a slow-start weight changed; a table that routes the same apart
    /// from weights is published without a log line.
    case health
    /// The state store changed a service's traffic: a flip, a step, a canary or an
    /// endpoint override. Answered only once every worker serves the new table.
    case traffic

    /// Template guards read health and traffic, so those changes refresh them.
    var refreshesTemplates: Bool { self == .health || self == .traffic }
    /// Whether publishing waits until every worker adopted the table.
    var waitsForWorkers: Bool { self == .traffic }
}

/// One line summarising a table for logs.
func describe(_ table: RoutingTable) -> String {
    let services = table.services.map { service in
        let track = service.activeTrack.map { " active=\($0)" } ?? ""
        let panic = service.panicking ? " PANIC" : ""
        let canary = service.canary.map { " canary=\($0.track):\(Double($0.permille) / 10)%" } ?? ""
        return "\(service.name)[\(service.activeEndpoints.count)/\(service.endpoints.count)\(track)\(canary)\(panic)]"
    }
    return "\(table.routes.count) route(s), services: " + (services.isEmpty ? "none" : services.joined(separator: " "))
}
