#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import YardIO
import YardModel
import YardTLS

/// The data plane: N event loops (workers), each with its own SO_REUSEPORT listener per
/// configured listener, serving HTTP/1.1 reverse proxying from the current routing table.
///
/// Threading: `start`, `publish`, `drain` and `stop` may be called from any thread (the
/// control plane). Workers run on their own threads and are reached only through their
/// inboxes; a new table is posted to every worker, which swaps its reference between events.
public final class ProxyServer: Sendable {
    private let workers: [Worker]
    private let threads = Mutex<[Thread]>([])
    private let tableBox: Mutex<RoutingTable>
    /// Upstream TLS: contexts shared by every table that needs the same trust, and the
    /// contexts of the table published last (with the problems already logged).
    private let upstreamTLSCache = TLSClientContextCache()
    private let upstreamTLSBox: Mutex<(contexts: UpstreamTLSContexts, logged: Set<String>)>
    /// Services served by TCP listeners (relayed as bytes: upstream TLS does not apply).
    private let tcpServices: Set<String>
    /// Each worker's last counters, for scrapes a worker is too busy to answer in time.
    private let lastSnapshots = Mutex<[Int: MetricsSnapshot]>([:])
    /// The addresses the listeners are bound to, in configuration order (ports resolved
    /// when 0 was asked for).
    public let boundAddresses: [SocketAddress]
    /// Which socket each worker accepts on, for which listener.
    private let slots: ListenerSlots

    /// The ALPN protocols the data plane serves over TLS, in preference order. A TLS
    /// listener offers only these (h2 goes to the HTTP/2 codec over TLS records), so a
    /// client is never steered to a protocol no handler speaks.
    public static let servedApplicationProtocols = ["h2", "http/1.1"]

    /// Binds every listener on every worker, or takes the sockets `inherited` holds for it
    /// (a takeover: see `ListenerSlots`). Throws if an address cannot be bound.
    /// `onEndpointFailing` is called (from a worker thread, rarely) when a worker saw an
    /// endpoint fail `health.consecutive_failures` requests in a row: the control plane
    /// decides whether to eject it.
    public init(
        listeners: [ListenerConfig], tls: [TLSServerContext?] = [], table: RoutingTable, settings: ProxySettings, workers count: Int,
        onEndpointFailing: @escaping @Sendable (_ service: String, _ poolKey: Int) -> Void = { _, _ in },
        accessLog: AccessLogWriter? = nil, inherited: InheritedSockets = InheritedSockets()
    ) throws {
        let count = max(1, count)
        let slots = try ListenerSlots(listeners: listeners, workers: count, inherited: inherited)
        let services = listeners.map { $0.protocol == .tcp ? $0.service : nil }
        let gate = ConnectionGate(limit: settings.maxConnections, perClient: settings.maxConnectionsPerClient)
        tcpServices = Set(services.compactMap { $0 })
        let contexts = UpstreamTLSContexts.build(for: table, cache: upstreamTLSCache, previous: nil)
        upstreamTLSBox = Mutex((contexts, []))
        var made: [Worker] = []
        do {
            for w in 0..<count {
                let indices = slots.listenerIndex[w]
                made.append(try Worker(id: w, listeners: slots.fds[w], listenerServices: indices.map { services[$0] },
                                       tls: indices.map { $0 < tls.count ? tls[$0] : nil }, table: table, settings: settings, gate: gate,
                                       onEndpointFailing: onEndpointFailing, accessLog: accessLog, upstreamTLS: contexts))
            }
        } catch {
            slots.closeAll()
            throw error
        }
        // Each loop can wake the others for requests waiting on an endpoint slot.
        let doorbells = LimitDoorbells(inboxes: made.map(\.inbox))
        for worker in made { worker.waitLines.doorbells = doorbells }
        self.workers = made
        self.slots = slots
        self.boundAddresses = slots.bound
        self.tableBox = Mutex(table)
        _ = logUpstreamTLSProblems(contexts, table: table)
    }

    /// Every listening socket of every worker, for a process taking over from this one.
    /// Valid until `drain` (the workers close them as they stop accepting).
    public var listeningSockets: [ListeningSocket] { slots.sockets }

    /// Starts one thread per worker.
    public func start() {
        threads.withLock { threads in
            for worker in workers {
                let thread = Thread { worker.run() }
                thread.name = "switchyard-loop-\(worker.id)"
                thread.stackSize = 1 << 20
                threads.append(thread)
                thread.start()
            }
        }
    }

    /// Publishes a new routing table to every worker. Requests in flight finish on the
    /// endpoints they already have.
    public func publish(_ table: RoutingTable) {
        let contexts = upstreamContexts(for: table)
        tableBox.withLock { $0 = table }
        for worker in workers {
            worker.inbox.post {
                worker.upstreamTLS = contexts
                worker.adoptTable(table)
            }
        }
    }

    /// Publishes `table` and waits until every worker has adopted it (or `timeoutMs`
    /// passed: then false). A flip answers after this, so "flipped" means new requests on
    /// this replica already go to the new track.
    @discardableResult
    public func publishAndWait(_ table: RoutingTable, timeoutMs: Int = 1_000) -> Bool {
        let contexts = upstreamContexts(for: table)
        tableBox.withLock { $0 = table }
        let adopted = DispatchSemaphore(value: 0)
        for worker in workers {
            worker.inbox.post {
                worker.upstreamTLS = contexts
                worker.adoptTable(table)
                adopted.signal()
            }
        }
        let deadline = DispatchTime.now() + .milliseconds(timeoutMs)
        for _ in workers where adopted.wait(timeout: deadline) == .timedOut { return false }
        return true
    }

    // MARK: Upstream TLS

    /// The client contexts `table` needs (built from the shared cache; a CA file that does
    /// not load keeps the previous table's context for its service), with each new problem
    /// logged once.
    private func upstreamContexts(for table: RoutingTable) -> UpstreamTLSContexts {
        let contexts = upstreamTLSBox.withLock { box in
            let built = UpstreamTLSContexts.build(for: table, cache: upstreamTLSCache, previous: box.contexts)
            box.contexts = built
            return built
        }
        let logged = logUpstreamTLSProblems(contexts, table: table)
        upstreamTLSBox.withLock { $0.logged = logged }
        return contexts
    }

    /// Logs the problems of `contexts` not logged for the previous table; returns them all.
    private func logUpstreamTLSProblems(_ contexts: UpstreamTLSContexts, table: RoutingTable) -> Set<String> {
        var problems = contexts.problems
        for service in table.services where service.upstream.tls != nil && tcpServices.contains(service.name) {
            problems.append("service \(service.name): upstream TLS applies to HTTP listeners; its TCP listener relays bytes as they come (TLS passthrough)")
        }
        let before = upstreamTLSBox.withLock { $0.logged }
        for problem in problems where !before.contains(problem) { Log.error(problem) }
        return Set(problems)
    }

    /// The client contexts of the table published last (the ones the workers use), for
    /// the control plane and tests.
    public var currentUpstreamTLS: UpstreamTLSContexts { upstreamTLSBox.withLock { $0.contexts } }

    /// Swaps the TLS context of listener `index` (in configuration order): handshakes from
    /// now on use it; established connections keep the one they started with.
    public func publishTLS(_ context: TLSServerContext, listener index: Int) {
        for worker in workers {
            let listenerIndex = slots.listenerIndex[worker.id]
            worker.inbox.post {
                for (slot, listener) in listenerIndex.enumerated() where listener == index && slot < worker.listenerTLS.count {
                    worker.listenerTLS[slot] = context
                }
            }
        }
    }

    /// Stops accepting and lets in-flight requests finish; returns once every worker has
    /// exited or `timeoutMs` has passed (then returns false: connections were cut).
    ///
    /// `handingOver`: another process took the listening sockets over (a takeover), so a
    /// keep-alive connection between requests is not closed at once (its client may be
    /// sending the next request right now, and would see a reset) but answered once more
    /// with `Connection: close`, or closed after a short grace if it stays idle.
    @discardableResult
    public func drain(timeoutMs: Int, handingOver: Bool = false) -> Bool {
        for worker in workers {
            worker.inbox.post { worker.beginDrain(keepIdleConnections: handingOver) }
        }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        while monotonicMilliseconds() < deadline {
            if workers.allSatisfy({ $0.finished.load(ordering: .acquiring) }) { return true }
            usleep(10_000)
        }
        return workers.allSatisfy { $0.finished.load(ordering: .acquiring) }
    }

    public var workerCount: Int { workers.count }

    /// Sums every worker's counters. Each worker copies its own counters on its own
    /// thread (through its inbox), so the request path never shares memory with a scrape.
    /// A worker that does not answer within `timeoutMs` (busy or stopped) contributes its
    /// last copy, so counters never go backwards between scrapes.
    public func collectMetrics(timeoutMs: Int = 1_000) -> MetricsSnapshot {
        let collected = Mutex<[Int: MetricsSnapshot]>([:])
        let done = DispatchSemaphore(value: 0)
        for worker in workers {
            worker.inbox.post {
                let snapshot = worker.metricsSnapshot()
                collected.withLock { $0[worker.id] = snapshot }
                done.signal()
            }
        }
        let deadline = DispatchTime.now() + .milliseconds(timeoutMs)
        for _ in workers {
            if done.wait(timeout: deadline) == .timedOut { break }
        }
        let fresh = collected.withLock { $0 }
        let merged = lastSnapshots.withLock { last -> [MetricsSnapshot] in
            for (id, snapshot) in fresh { last[id] = snapshot }
            return Array(last.values)
        }
        var total = MetricsSnapshot.empty
        for snapshot in merged { total.add(snapshot) }
        return total
    }

    /// The routing table the workers serve (the last one published).
    public var currentTable: RoutingTable { tableBox.withLock { $0 } }
}

/// Errors starting the data plane.
public enum ProxyError: Error, CustomStringConvertible {
    case badAddress(String)
    /// Binding or listening failed (the port is taken, or needs privileges).
    case cannotListen(listener: String, address: String, IOError)

    public var description: String {
        switch self {
        case .badAddress(let text): return "cannot listen on '\(text)': expected an IP literal and a port"
        case .cannotListen(let listener, let address, let error):
            let hint = error.errno == EADDRINUSE ? "; another process (or another listener here) holds the port"
                : error.errno == EACCES ? "; ports below 1024 need CAP_NET_BIND_SERVICE" : ""
            return "listener '\(listener)' cannot listen on \(address): \(error)\(hint)"
        }
    }
}
