#if canImport(Glibc)
import Glibc
#endif
import CYardLinux
import Synchronization
import YardHTTP
import YardHTTP2
import YardIO
import YardModel
import YardTLS

/// Counts client connections across every worker, to enforce `maxConnections` (and, with
/// `perClient`, `maxConnectionsPerClient`).
///
/// Threading: any worker; an atomic touched once per accept and once per close.
final class ConnectionGate: Sendable {
    let limit: Int
    let open = Atomic<Int>(0)
    /// Per source address, nil when `max_connections_per_client` is 0 (off).
    let perClient: PerClientLimit?

    init(limit: Int, perClient: Int = 0) {
        self.limit = limit
        self.perClient = perClient > 0 ? PerClientLimit(limit: perClient) : nil
    }

    func tryEnter() -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        if now > limit {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func leave() { open.wrappingSubtract(1, ordering: .relaxed) }
}

/// One event loop: an epoll instance on its own thread, owning its listeners, client
/// connections, upstream connections and upstream pools.
///
/// Threading: every method runs on the worker's thread except `inbox.post`, which is how
/// other threads reach it (new routing tables, drain). `@unchecked Sendable` because the
/// object is handed to its thread once at start; after that only that thread touches it.
final class Worker: @unchecked Sendable {
    let id: Int
    let epoll: Epoll
    let inbox: LoopInbox
    let gate: ConnectionGate
    let settings: ProxySettings
    let limits: HTTPLimits
    /// Limits for upstream response heads (more generous: upstreams are trusted more).
    let responseLimits: HTTPLimits
    /// Read/write buffer size per connection side.
    let bufferSize = 32 * 1024
    /// First size of an HTTP/1.1 upstream connection's buffers: it holds a request head and a
    /// small response, and grows toward `bufferSize` only on connections that carry large
    /// bodies (`readUpstream`, `pumpRequestBody`). 512 busy connections hold 2 MiB, not 32.
    static let upstreamFirstBuffer = 2_048
    /// Body runs at least this long are written to a plain client straight from the upstream's
    /// buffer (`relayBodyBytes`); shorter ones are cheaper to copy and send with the head.
    static let writeThroughMinimum = 8_192
    /// Buffers and field arrays of idle client connections (ClientBufferPool.swift).
    var bufferPool: ClientBufferPool

    var listeners: [Int32]
    /// Per listener (same order): the service of a TCP listener, nil for HTTP.
    let listenerServices: [String?]
    /// TLS per listener (same index as `listeners`), nil for plain ones. Replaced on a
    /// certificate reload; connections keep the context they started with.
    var listenerTLS: [TLSServerContext?]
    /// TLS connections whose decrypted input is buffered inside OpenSSL (their buffer was
    /// full), so no epoll event will announce it: read again after the batch.
    var tlsPendingReads: [ClientConnection] = []
    /// The same for upstream connections (UpstreamTLS.swift).
    var tlsPendingUpstreamReads: [UpstreamConnection] = []
    /// Client contexts of the services with upstream TLS, for the current `table`
    /// (replaced with it: both are posted together).
    var upstreamTLS: UpstreamTLSContexts
    var table: RoutingTable
    /// Balancing state per service (indexed by `Service.index`).
    var balancers: [ServiceBalancer] = []
    /// Rotation for requests pinned to a track by the override header.
    var overrideRotation = 0
    /// The mirror middleware's copies in flight and counters (Mirror.swift).
    let mirrors = MirrorRoom()
    /// Upstream pools indexed by `Endpoint.poolKey`.
    var pools: [UpstreamPool?] = []
    /// Consecutive failed exchanges per endpoint (indexed by `poolKey`), for passive ejection.
    var failureStreak: [Int32] = []
    /// Retry budget: each request adds `budgetPercent / 100` of a token, each retry spends one.
    var retryTokens: Double = 10
    /// Request-path counters of this worker (see `WorkerMetrics`).
    var metrics = WorkerMetrics()
    /// Requests waiting for an endpoint slot (`max_connections`; EndpointLimits.swift).
    let waitLines = WorkerWaitLines()
    let onEndpointFailing: @Sendable (String, Int) -> Void
    /// The access-log writer, or nil when the access log is off.
    let accessLog: AccessLogWriter?
    /// Lines formatted by this worker, handed to the writer in batches.
    var logBuffer = ByteBuffer()
    /// Field lines of an answer a route's middleware gives itself (RouteMiddlewares.swift).
    var answerFields = ByteBuffer()
    /// Finished gzip streams kept for the next compressed response (ResponseCompression.swift).
    var gzipSpares: [GzipStream] = []

    var clients: ContiguousArray<ClientConnection> = []
    var upstreams: ContiguousArray<UpstreamConnection> = []
    var tunnels: ContiguousArray<TunnelConnection> = []
    /// HTTP/2 connections (their streams are `ClientConnection`s outside `clients`).
    var h2Connections: ContiguousArray<H2Connection> = []
    /// HTTP/2 connections with frames to send, flushed after each batch of events.
    var h2FlushQueue: [H2Connection] = []
    /// Connections whose flush left work for the next turn of the loop (`flushH2`).
    var h2FlushCarry: [H2Connection] = []
    /// HTTP/2 connections to upstreams (their exchanges are `UpstreamConnection`s in
    /// `upstreams` without a socket), and those with frames to send after the batch.
    var h2Upstreams: ContiguousArray<H2UpstreamConnection> = []
    var h2UpstreamFlushQueue: [H2UpstreamConnection] = []
    let h2Settings: H2Settings
    /// Connections closed during the current batch of events; released after it, because
    /// a later event of the same batch may still carry their (unretained) pointer.
    var graveyard: [AnyObject] = []
    /// HTTP/2 upstream streams closed during this turn of the loop (`recycleH2Streams`).
    var retiredH2Streams: ContiguousArray<UpstreamConnection> = []
    /// Empty pipes for spliced response bodies (ResponseSplice.swift).
    var pipes: [SplicePipe] = []

    var now: Int64 = monotonicMilliseconds()
    var nextTick: Int64 = 0
    /// Most client connections seen (sampled per tick) since the heap was last trimmed, and
    /// when that was: a burst that ended gives its memory back (`trimHeapAfterBurst`).
    var peakClientsSinceTrim = 0
    var lastHeapTrim: Int64 = 0
    var draining = false
    var stopped = false
    /// Set by the worker when it has exited its loop.
    let finished = Atomic<Bool>(false)

    static let tickMs: Int64 = 100
    /// How long a closing connection reads and discards input after its last response.
    static let lingerMs: Int64 = 1_000
    /// While draining, how long a connection that was accepted but has sent nothing yet
    /// gets to send its request.
    static let freshConnectionGraceMs: Int64 = 2_000
    static let eventCapacity: Int32 = 256
    let events: UnsafeMutablePointer<epoll_event>

    init(
        id: Int, listeners: [Int32], listenerServices: [String?] = [], tls: [TLSServerContext?], table: RoutingTable, settings: ProxySettings, gate: ConnectionGate,
        onEndpointFailing: @escaping @Sendable (String, Int) -> Void, accessLog: AccessLogWriter?,
        upstreamTLS: UpstreamTLSContexts = .none
    ) throws(IOError) {
        self.id = id
        self.upstreamTLS = upstreamTLS
        self.accessLog = accessLog
        if accessLog != nil { logBuffer = ByteBuffer(capacity: 64 * 1024) }
        self.onEndpointFailing = onEndpointFailing
        self.epoll = try Epoll()
        self.inbox = try LoopInbox()
        self.gate = gate
        self.settings = settings
        self.bufferPool = ClientBufferPool(bufferSize: 32 * 1024, maxHeaders: settings.maxHeaders)
        self.limits = HTTPLimits(
            maxStartLine: settings.maxRequestLineBytes,
            maxHeadBytes: settings.maxHeaderBytes,
            maxHeaders: settings.maxHeaders)
        self.responseLimits = HTTPLimits(
            maxStartLine: 8_192,
            maxHeadBytes: max(settings.maxHeaderBytes, 65_536),
            maxHeaders: settings.maxHeaders)
        var h2Settings = H2Settings()
        h2Settings.maxHeaderListSize = max(settings.maxHeaderBytes, 16_384)
        self.h2Settings = h2Settings
        self.listeners = listeners
        self.listenerServices = listenerServices + Array(repeating: nil, count: max(0, listeners.count - listenerServices.count))
        self.listenerTLS = tls + Array(repeating: nil, count: max(0, listeners.count - tls.count))
        self.table = table
        self.events = .allocate(capacity: Int(Worker.eventCapacity))
        self.events.initialize(repeating: epoll_event(), count: Int(Worker.eventCapacity))
        adoptTable(table)
        for (index, fd) in listeners.enumerated() {
            epoll.add(fd, events: Epoll.readable, token: Token.listener(index))
        }
        epoll.add(inbox.eventFD, events: Epoll.readable, token: Token.inbox)
    }

    deinit {
        events.deallocate()
        logBuffer.deallocate()
        bufferPool.releaseAll()
    }

    // MARK: Tokens

    /// epoll tokens: an object pointer with a tag in its low bits (objects are 16-byte
    /// aligned, so three bits are free), or a small number for listeners and the inbox.
    enum Token {
        static let mask: UInt64 = 7
        static let clientTag: UInt64 = 0
        static let upstreamTag: UInt64 = 1
        static let listenerTag: UInt64 = 2
        static let inbox: UInt64 = 3
        static let tunnelClientTag: UInt64 = 4
        static let tunnelUpstreamTag: UInt64 = 5
        static let h2Tag: UInt64 = 6
        static let h2UpstreamTag: UInt64 = 7

        @inline(__always) static func client(_ c: ClientConnection) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(c).toOpaque()))
        }
        @inline(__always) static func upstream(_ u: UpstreamConnection) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(u).toOpaque())) | upstreamTag
        }
        @inline(__always) static func listener(_ index: Int) -> UInt64 {
            UInt64(index) << 3 | listenerTag
        }
        @inline(__always) static func tunnelClient(_ t: TunnelConnection) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(t).toOpaque())) | tunnelClientTag
        }
        @inline(__always) static func tunnelUpstream(_ t: TunnelConnection) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(t).toOpaque())) | tunnelUpstreamTag
        }
        /// A mirror copy: the inbox tag with a pointer (the inbox itself has none).
        @inline(__always) static func mirror(_ m: MirrorExchange) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(m).toOpaque())) | inbox
        }
        @inline(__always) static func h2(_ h: H2Connection) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(h).toOpaque())) | h2Tag
        }
        @inline(__always) static func h2Upstream(_ h: H2UpstreamConnection) -> UInt64 {
            UInt64(UInt(bitPattern: Unmanaged.passUnretained(h).toOpaque())) | h2UpstreamTag
        }
    }

    // MARK: The loop

    /// Runs until drained (or stopped). Called on the worker's own thread.
    func run() {
        while !stopped {
            // Work carried over from the last turn (HTTP/2 flushes) does not wait for an event.
            let timeout = h2FlushQueue.isEmpty ? Int32(max(0, min(Worker.tickMs, nextTick - now))) : 0
            let count = epoll.wait(events, capacity: Worker.eventCapacity, timeoutMs: timeout)
            now = monotonicMilliseconds()
            for i in 0..<count {
                let event = events[i]
                let token = event.data.u64
                let flags = event.events
                switch token & Token.mask {
                case Token.clientTag:
                    let c = Unmanaged<ClientConnection>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(token))!).takeUnretainedValue()
                    clientEvent(c, flags)
                case Token.upstreamTag:
                    let u = Unmanaged<UpstreamConnection>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(token & ~Token.mask))!).takeUnretainedValue()
                    upstreamEvent(u, flags)
                case Token.listenerTag:
                    // A drain earlier in this batch may have closed the listeners.
                    let index = Int(token >> 3)
                    if index < listeners.count { acceptConnections(index) }
                case Token.tunnelClientTag, Token.tunnelUpstreamTag:
                    let t = Unmanaged<TunnelConnection>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(token & ~Token.mask))!).takeUnretainedValue()
                    tunnelEvent(t, upstreamSide: token & Token.mask == Token.tunnelUpstreamTag, flags)
                case Token.h2Tag:
                    let h = Unmanaged<H2Connection>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(token & ~Token.mask))!).takeUnretainedValue()
                    h2Event(h, flags)
                case Token.h2UpstreamTag:
                    let h = Unmanaged<H2UpstreamConnection>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(token & ~Token.mask))!).takeUnretainedValue()
                    h2UpstreamEvent(h, flags)
                case Token.inbox where token != Token.inbox:
                    if let mirror = UnsafeRawPointer(bitPattern: UInt(token & ~Token.mask)) {
                        mirrorEvent(Unmanaged<MirrorExchange>.fromOpaque(mirror).takeUnretainedValue(), flags)
                    }
                default:
                    for task in inbox.drain() { task() }
                    answerDoorbell()
                }
            }
            if !tlsPendingReads.isEmpty { readPendingTLS() }
            if !tlsPendingUpstreamReads.isEmpty { readPendingUpstreamTLS() }
            if !h2FlushQueue.isEmpty { flushQueuedH2() }
            if !h2UpstreamFlushQueue.isEmpty { flushQueuedH2Upstreams() }
            if waitLines.wakePending { serveWaiters() }
            if !retiredH2Streams.isEmpty { recycleH2Streams() }
            if !graveyard.isEmpty { graveyard.removeAll(keepingCapacity: true) }
            if now >= nextTick {
                nextTick = now + Worker.tickMs
                if let accessLog { flushAccessLog(accessLog) }
                expireTimeouts()
                if waitLines.waiting > 0 { serveWaiters() }
                if !tunnels.isEmpty { expireTunnels() }
                if !mirrors.exchanges.isEmpty { expireMirrors() }
                trimHeapAfterBurst()
                if draining && clients.isEmpty && tunnels.isEmpty && h2Connections.isEmpty { stopped = true }
            }
        }
        for h in h2Connections { closeH2(h) }
        for c in clients { closeClient(c) }
        for u in upstreams { closeUpstream(u) }
        for h in h2Upstreams { closeH2Upstream(h) }
        for t in tunnels { closeTunnel(t) }
        closeMirrors()
        graveyard.removeAll()
        retiredH2Streams.removeAll()
        for pool in pools.compactMap({ $0 }) { pool.spareH2Streams.removeAll() }
        if let accessLog { flushAccessLog(accessLog) }
        finished.store(true, ordering: .releasing)
    }

    // MARK: Accept

    /// `readAtOnce`: HTTP listeners defer accept until the client's first bytes arrived
    /// (TCP_DEFER_ACCEPT), so a new connection is read straight away, saving one turn of
    /// the loop per connection.
    func acceptConnections(_ index: Int, readAtOnce: Bool = true) {
        let listenFD = listeners[index]
        let tunnelService = listenerServices[index]
        let tls = listenerTLS[index]
        // Bounded batch so one busy listener cannot starve the other connections.
        for _ in 0..<64 {
            switch Socket.accept(listenFD) {
            case .accepted(let fd, let peer):
                guard !draining, gate.tryEnter() else {
                    if !draining { metrics.refusedOverLimit &+= 1 }
                    Socket.close(fd)
                    continue
                }
                var ticket: PerClientTicket?
                if let perClient = gate.perClient {
                    ticket = perClient.enter(peer)
                    if ticket == nil {
                        metrics.refusedPerClient &+= 1
                        Socket.close(fd)
                        gate.leave()
                        continue
                    }
                }
                // TCP_NODELAY comes from the listener (ListenerSlots).
                if let tunnelService {
                    acceptTunnel(fd, peer: peer, serviceName: tunnelService, ticket: ticket)
                    continue
                }
                metrics.accepted &+= 1
                let c = ClientConnection(fd: fd, peer: peer, maxHeaders: settings.maxHeaders, bufferSize: bufferSize)
                c.perClientTicket = ticket
                c.trustedPeer = isTrustedProxy(c.peerBytes)
                c.slot = clients.count
                clients.append(c)
                // Until its first request head is complete, a new connection gets the header
                // timeout from accept (TLS handshake included), not the idle timeout: a
                // connection that never sends a byte is not a keep-alive connection.
                c.deadline = now + Int64(settings.clientHeaderTimeoutMs)
                if let tls {
                    guard let connection = TLSConnection(accepting: fd, context: tls) else {
                        closeClient(c)
                        continue
                    }
                    c.tls = connection
                    c.secure = true
                    c.phase = .handshaking
                }
                if readAtOnce && tls == nil {
                    // Its first bytes are in (TCP_DEFER_ACCEPT): read them now; the socket
                    // joins epoll when the connection has to wait on its client.
                    clientEvent(c, Epoll.readable)
                    continue
                }
                registerClient(c, Epoll.readable)
                if readAtOnce { clientEvent(c, Epoll.readable) }
            case .wouldBlock:
                return
            case .failed(let err):
                if err == EMFILE || err == ENFILE {
                    Log.error("accept: out of file descriptors (errno \(err)); raise the fd limit or limits.max_connections")
                }
                return
            }
        }
    }

    /// Whether a peer's forwarding fields are trusted (`trusted_proxies`). An IPv4-mapped
    /// IPv6 address (a v4 client of a `::` listener) is checked as the IPv4 address it is.
    func isTrustedProxy(_ address: [UInt8]) -> Bool {
        guard !settings.trustedProxies.isEmpty else { return false }
        return address.withUnsafeBytes { raw in
            let mapped = raw.count == 16 && raw[0..<10].allSatisfy { $0 == 0 } && raw[10] == 0xFF && raw[11] == 0xFF
            let checked = mapped ? UnsafeRawBufferPointer(rebasing: raw[12..<16]) : raw
            return settings.trustedProxies.contains { $0.contains(checked) || (mapped && $0.contains(raw)) }
        }
    }

    // MARK: Closing

    func closeClient(_ c: ClientConnection) {
        guard c.phase != .closed else { return }
        if c.h2 != nil {
            abandonStream(c)
            return
        }
        releaseEndpoint(c)
        c.phase = .closed
        if let u = c.upstream {
            unbind(c, u)
            orphanOrClose(u, leftBy: c)
        }
        if c.registered { epoll.remove(c.fd) }
        Socket.close(c.fd)
        gate.leave()
        c.perClientTicket = nil
        removeSlot(c, from: &clients)
        graveyard.append(c)
    }

    func closeUpstream(_ u: UpstreamConnection) {
        guard u.phase != .closed else { return }
        if let link = u.h2 {
            closeH2Stream(u, link)
            return
        }
        if u.phase == .idle, let pool = pools[u.endpoint.poolKey], let index = pool.idle.firstIndex(where: { $0 === u }) {
            pool.idle.remove(at: index)
        }
        if u.tls != nil { endUpstreamTLS(u) }
        if u.splice != nil { dropSplice(u) }
        u.phase = .closed
        u.client = nil
        epoll.remove(u.fd)
        Socket.close(u.fd)
        removeSlot(u, from: &upstreams)
        graveyard.append(u)
    }

    /// Removes `item` from its slot-indexed array in O(1): the last element takes its slot.
    /// Generic, not existential: specialised per connection class.
    @inline(__always)
    func removeSlot<T: Slotted>(_ item: T, from array: inout ContiguousArray<T>) {
        let last = array.count - 1
        if item.slot != last {
            let moved = array[last]
            moved.slot = item.slot
            array[item.slot] = moved
        }
        array.removeLast()
    }

    // MARK: Interest

    /// Registers what a client connection waits for: input while its buffer has room and it
    /// is still reading, output while it has bytes queued.
    func updateInterest(_ c: ClientConnection) {
        guard c.phase != .closed else { return }
        if let link = c.h2 {
            streamProgressed(c, link)
            return
        }
        var want: UInt32 = c.tlsWant
        if c.phase == .handshaking {
            // Only what the handshake asked for.
        } else if c.phase == .lingering {
            want = Epoll.readable
        } else if !c.readClosed && c.phase != .closingAfterFlush && (c.inBuf.writableBytes > 0 || c.buffersParked) {
            want |= Epoll.readable
        }
        if !c.outBuf.isEmpty || c.upstream?.splice?.inPipe ?? 0 > 0 { want |= Epoll.writable }
        guard c.registered else {
            // Nothing to wait for from a plain client that asked for the close and sent its
            // whole request: the answer is written when the upstream's comes, and the
            // connection closes after it, with no epoll_ctl on either side (as HAProxy
            // without `abortonclose`: a client that leaves is seen when its answer is
            // written). An upgrade may become a tunnel, which modifies the registration.
            if want == 0 || (want == Epoll.readable && c.phase == .forwarding && c.exchange.clientAskedClose
                             && c.exchange.requestBodyDone && c.tls == nil && !c.exchange.upgradeRequested) {
                c.interest = want
                return
            }
            registerClient(c, want)
            return
        }
        if want != c.interest {
            c.interest = want
            epoll.modify(c.fd, events: want, token: Token.client(c))
        }
    }

    /// Puts a client connection's socket in the epoll set (once) with `events`; the one way
    /// in, also for a connection that becomes an HTTP/2 connection.
    func registerClient(_ c: ClientConnection, _ events: UInt32) {
        if c.registered {
            if events != c.interest { epoll.modify(c.fd, events: events, token: Token.client(c)) }
        } else {
            epoll.add(c.fd, events: events, token: Token.client(c))
            c.registered = true
        }
        c.interest = events
    }

    func updateInterest(_ u: UpstreamConnection) {
        guard u.phase != .closed else { return }
        if u.h2 != nil {
            settleH2Stream(u)
            return
        }
        var want: UInt32 = u.tlsWant
        if u.handshaking {
            // Only what the TLS handshake asked for.
        } else {
            if let pipe = u.splice {
                if pipe.inPipe < Worker.pipeCapacity && !u.responseDone { want |= Epoll.readable }
            } else if u.inBuf.writableBytes > 0 {
                want |= Epoll.readable
            }
            if u.phase == .connecting || u.sentIndex < u.outBuf.writerIndex { want |= Epoll.writable }
        }
        if want != u.interest {
            u.interest = want
            epoll.modify(u.fd, events: want, token: Token.upstream(u))
        }
    }

    // MARK: Timeouts

    /// Runs every tick: fires the deadlines that passed. A scan, not a timer heap: with a
    /// 100 ms tick and 10k connections it costs well under a millisecond per second, and it
    /// needs no allocation when deadlines move on every request.
    func expireTimeouts() {
        var i = 0
        while i < clients.count {
            let c = clients[i]
            if c.deadline != 0 && now >= c.deadline {
                clientTimedOut(c)
            }
            if i < clients.count && clients[i] === c { i += 1 }
        }
        i = 0
        while i < upstreams.count {
            let u = upstreams[i]
            if u.deadline != 0 && now >= u.deadline {
                upstreamTimedOut(u)
            }
            if i < upstreams.count && upstreams[i] === u { i += 1 }
        }
        if !h2Connections.isEmpty { expireH2Timeouts() }
        if !h2Upstreams.isEmpty { expireH2UpstreamTimeouts() }
    }

    // MARK: Metrics

    /// Copies this worker's counters (runs on the worker, through its inbox).
    func metricsSnapshot() -> MetricsSnapshot {
        var snapshot = metrics.snapshot()
        snapshot.openConnections = clients.count + h2Connections.count
        snapshot.addMirrors(mirrors)
        return snapshot
    }

    /// Counts an answer the proxy gave itself.
    func countOwnAnswer(_ status: Int) {
        switch status {
        case 404: metrics.ownAnswers.0 &+= 1
        case 503: metrics.ownAnswers.1 &+= 1
        case 502: metrics.ownAnswers.3 &+= 1
        case 504: metrics.ownAnswers.4 &+= 1
        case 301, 302, 307, 308: metrics.ownAnswers.5 &+= 1
        case 401: metrics.ownAnswers.6 &+= 1
        case 429: metrics.ownAnswers.7 &+= 1
        default: metrics.ownAnswers.2 &+= 1
        }
    }

    // MARK: Passive health

    /// Records how an exchange with `endpoint` went. A run of failures as long as the
    /// service's `consecutive_failures` is reported to the control plane (which ejects).
    func recordOutcome(_ endpoint: Endpoint, service: Service?, failed: Bool) {
        let key = endpoint.poolKey
        guard key < failureStreak.count,
              PassiveFailureStreak.record(&failureStreak[key], failed: failed, threshold: service?.health.consecutiveFailures ?? 0),
              let service else { return }
        onEndpointFailing(service.name, key)
    }

    /// Takes a retry from the budget, or refuses when retries would exceed the share of
    /// extra load the service allows (counted against the endpoint that failed, `failedKey`).
    func spendRetry(failedKey: Int) -> Bool {
        guard retryTokens >= 1 else {
            metrics.add(failedKey, WorkerMetrics.Field.retriesRefused)
            return false
        }
        retryTokens -= 1
        return true
    }

    // MARK: Control plane

    /// Swaps in a new routing table. In-flight exchanges keep the endpoints they hold; idle
    /// pooled connections to endpoints that left the table are closed.
    func adoptTable(_ newTable: RoutingTable) {
        table = newTable
        adoptBalancers(newTable)
        var live = Set<Int>()
        for service in newTable.services {
            for endpoint in service.endpoints {
                live.insert(endpoint.poolKey)
                if endpoint.poolKey >= pools.count {
                    pools.append(contentsOf: repeatElement(nil, count: endpoint.poolKey - pools.count + 1))
                }
                if endpoint.poolKey >= failureStreak.count {
                    failureStreak.append(contentsOf: repeatElement(0, count: endpoint.poolKey - failureStreak.count + 1))
                }
                metrics.ensure(endpoint.poolKey)
                if pools[endpoint.poolKey] == nil {
                    pools[endpoint.poolKey] = UpstreamPool(address: SocketAddress(host: endpoint.address, port: endpoint.port))
                }
            }
        }
        // Endpoints that take no new request (a flip left their track, drained, ejected)
        // lose their idle connections now; busy ones close when their exchange ends.
        // Requests pinned to such a track by the override header connect afresh: they are
        // tests, and keeping pools warm for them would keep the old track's connections.
        var routable = Set<Int>()
        for service in newTable.services {
            for endpoint in service.activeEndpoints { routable.insert(endpoint.poolKey) }
            for endpoint in service.canaryEndpoints { routable.insert(endpoint.poolKey) }
        }
        if !tunnels.isEmpty { drainTunnels(routable: routable) }
        for key in pools.indices {
            guard let pool = pools[key] else { continue }
            if live.contains(key) {
                pool.routable = routable.contains(key)
                if pool.routable { continue }
                for u in pool.idle { closeUpstream(u) }
                pool.idle.removeAll()
                for h in pool.h2 { retireH2Upstream(h) }
                continue
            }
            for u in pool.idle { closeUpstream(u) }
            pool.idle.removeAll()
            for h in pool.h2 { retireH2Upstream(h) }
            pools[key] = nil
        }
    }

    /// Stops accepting, closes idle connections, and lets in-flight exchanges finish; the
    /// loop exits when no client connection is left. `keepIdleConnections` (a takeover:
    /// another process now accepts): a keep-alive connection between requests gets the
    /// fresh-connection grace instead of closing at once, since its client may be sending
    /// its next request now; that request is answered with `Connection: close`.
    func beginDrain(keepIdleConnections: Bool = false) {
        guard !draining else { return }
        draining = true
        for (index, fd) in listeners.enumerated() {
            acceptConnectionsBeforeClose(index)
            epoll.remove(fd)
            Socket.close(fd)
        }
        listeners.removeAll()
        listenerTLS.removeAll()
        for pool in pools.compactMap({ $0 }) {
            for u in pool.idle { closeUpstream(u) }
            for h in pool.h2 { retireH2Upstream(h) }
        }
        for h in h2Connections { beginH2Shutdown(h) }
        var i = 0
        while i < clients.count {
            let c = clients[i]
            // A keep-alive connection between requests closes now; a fresh one (accepted but
            // not yet served) gets to send its request and is closed after the answer.
            if !keepIdleConnections && c.phase == .idle && c.served > 0 && c.inBuf.isEmpty && c.outBuf.isEmpty {
                closeClient(c)
            } else {
                if c.phase == .idle {
                    c.deadline = min(c.deadline, now + Worker.freshConnectionGraceMs)
                }
                i += 1
            }
        }
        nextTick = now
    }

    /// Connections already in this listener's queue were accepted by the kernel: serve them
    /// rather than reset them.
    private func acceptConnectionsBeforeClose(_ index: Int) {
        let wasDraining = draining
        draining = false
        acceptConnections(index, readAtOnce: false)
        draining = wasDraining
    }
}
