#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardModel
import YardTLS

// TLS to upstreams (a service's `upstream.tls`): the client contexts a routing table
// needs, and on the data plane the handshake as a phase after the TCP connect and the
// reads and writes of an upstream connection through OpenSSL. A plain upstream pays one
// nil check per call (`u.tls`), nothing else.

// MARK: Contexts per table

/// The client context of every service with upstream TLS in one routing table, built on
/// the control plane when the table is published and posted with it to every event loop.
///
/// Reusable for HTTP/2 over TLS: `context(for:)` gives a service's context with the ALPN
/// list its protocol needs (`["h2"]` for `protocol: h2`, `["http/1.1"]` otherwise), and
/// `connection(fd:endpoint:service:context:)` the client `TLSConnection` for a socket.
///
/// Threading: immutable after `build`; shared read-only by every worker.
public final class UpstreamTLSContexts: Sendable {
    /// Indexed by `Service.index`: nil for plain services, and for TLS services whose
    /// trust never loaded (their requests get 502 with the reason in the log).
    private let contexts: [TLSClientContext?]
    /// The same contexts by service name, so a CA file that stops loading keeps the
    /// context that was serving (the previous table's) instead of breaking the service.
    private let byName: [String: TLSClientContext]
    /// One line per service whose context could not be built, for logs and `check`.
    public let problems: [String]

    public static let none = UpstreamTLSContexts(contexts: [], byName: [:], problems: [])

    private init(contexts: [TLSClientContext?], byName: [String: TLSClientContext], problems: [String]) {
        self.contexts = contexts
        self.byName = byName
        self.problems = problems
    }

    /// The context for `service`'s endpoints (nil when the service is plain).
    @inline(__always)
    public func context(for service: Service) -> TLSClientContext? {
        service.index < contexts.count ? contexts[service.index] : nil
    }

    /// The ALPN protocols offered to a service's endpoints.
    public static func alpn(for transport: UpstreamTransport) -> [String] {
        transport.protocol == .h2 ? ["h2"] : ["http/1.1"]
    }

    /// The name an endpoint's certificate must carry (and the SNI sent, unless it is an IP
    /// address): the service's `server_name`, else the endpoint's address.
    public static func serverName(for endpoint: Endpoint, tls: UpstreamTLS) -> String {
        tls.serverName ?? endpoint.address
    }

    /// The client side of TLS over a connecting socket to `endpoint` of `service`.
    public static func connection(
        fd: Int32, endpoint: Endpoint, service: Service, context: TLSClientContext, resuming session: TLSSession? = nil
    ) throws(TLSError) -> TLSConnection {
        let name = serverName(for: endpoint, tls: service.upstream.tls ?? UpstreamTLS())
        return try TLSConnection(connecting: fd, context: context, serverName: name, resuming: session)
    }

    /// The contexts `table` needs, from `cache`. A service whose CA file does not load
    /// keeps its context from `previous` (the table serving now) when it had one; the
    /// failure is in `problems`, naming the service and the file.
    public static func build(for table: RoutingTable, cache: TLSClientContextCache, previous: UpstreamTLSContexts?) -> UpstreamTLSContexts {
        var contexts = [TLSClientContext?](repeating: nil, count: table.services.count)
        var byName: [String: TLSClientContext] = [:]
        var problems: [String] = []
        for service in table.services {
            guard let tls = service.upstream.tls, service.index < contexts.count else { continue }
            let key = TLSClientContextCache.Key(caFile: tls.caFile, verify: tls.verify, alpn: alpn(for: service.upstream))
            do {
                let context = try cache.context(for: key)
                contexts[service.index] = context
                byName[service.name] = context
            } catch {
                let trust = tls.caFile.map { "ca_file \($0)" } ?? "the system CA store"
                if let kept = previous?.byName[service.name] {
                    contexts[service.index] = kept
                    byName[service.name] = kept
                    problems.append("service \(service.name): upstream TLS: \(trust) does not load (\(error)); the previous CA keeps serving")
                } else {
                    problems.append("service \(service.name): upstream TLS: \(trust) does not load (\(error)); its requests get 502 until it does")
                }
            }
        }
        return UpstreamTLSContexts(contexts: contexts, byName: byName, problems: problems)
    }
}

// MARK: The data plane

extension Worker {
    /// Puts TLS on a new connection to an endpoint of a TLS service (its handshake starts
    /// once TCP is up). False when there is no usable context: the socket is closed and
    /// counted as a connect failure, and the caller tries the next endpoint.
    func attachUpstreamTLS(_ u: UpstreamConnection, service: Service, pool: UpstreamPool) -> Bool {
        let failure: String
        if let context = upstreamTLS.context(for: service) {
            do {
                u.tls = try UpstreamTLSContexts.connection(fd: u.fd, endpoint: u.endpoint, service: service, context: context,
                                                           resuming: pool.tlsSession)
                if u.phase == .active {
                    // TCP connected at once: the handshake is the connection's next step.
                    u.phase = .connecting
                    u.handshaking = true
                }
                u.deadline = now + connectTimeout(u.client?.exchange.route)
                return true
            } catch {
                failure = "TLS to \(u.endpoint.id): \(error)"
            }
        } else {
            failure = "TLS to \(u.endpoint.id): no CA loaded for service \(service.name) (see the error at its table's publication)"
        }
        Socket.close(u.fd)
        noteTLSProblem(pool, failure)
        metrics.upstreamTLSFailures &+= 1
        metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.connectFailures)
        recordOutcome(u.endpoint, service: service, failed: true)
        return false
    }

    /// Advances the handshake; WANT_READ/WANT_WRITE become the epoll interest. True once
    /// it is done; false while it waits, or after a failure (handled as a connect failure:
    /// the request moves to another endpoint).
    func continueUpstreamHandshake(_ u: UpstreamConnection) -> Bool {
        guard let tls = u.tls else { return true }
        let pool = u.endpoint.poolKey < pools.count ? pools[u.endpoint.poolKey] : nil
        switch tls.handshake() {
        case .done:
            u.handshaking = false
            u.tlsWant = 0
            metrics.upstreamTLSHandshakes &+= 1
            if tls.resumed { metrics.upstreamTLSResumed &+= 1 }
            if let pool, pool.tlsProblem != nil {
                pool.tlsProblem = nil
                Log.info("TLS to \(u.endpoint.id) works again (\(tls.protocolVersion))")
            }
            return true
        case .wantRead:
            u.tlsWant = Epoll.readable
            return false
        case .wantWrite:
            u.tlsWant = Epoll.writable
            return false
        case .closed:
            metrics.upstreamTLSFailures &+= 1
            if let pool { noteTLSProblem(pool, "TLS handshake with \(u.endpoint.id): the endpoint closed the connection (does it speak TLS?)") }
            upstreamFailed(u, reason: "TLS handshake with \(u.endpoint.id) failed: closed by the endpoint")
            return false
        case .failed(let error):
            metrics.upstreamTLSFailures &+= 1
            let name = UpstreamTLSContexts.serverName(for: u.endpoint, tls: u.client?.exchange.route?.service?.upstream.tls ?? UpstreamTLS())
            if let pool { noteTLSProblem(pool, "TLS handshake with \(u.endpoint.id) (verifying \(name)) failed: \(error.reason.isEmpty ? error.description : error.reason)") }
            upstreamFailed(u, reason: "TLS handshake with \(u.endpoint.id) failed")
            return false
        }
    }

    /// Logs a TLS failure of an endpoint once (and again only when the reason changes),
    /// not on every request that meets it.
    func noteTLSProblem(_ pool: UpstreamPool, _ problem: String) {
        guard pool.tlsProblem != problem else { return }
        pool.tlsProblem = problem
        Log.warning(problem)
    }

    /// The epoll events as the TLS connection's last operation sees them: writable wakes
    /// a read that wanted to write, readable a write that wanted to read.
    @inline(__always)
    func tlsEventFlags(_ u: UpstreamConnection, _ events: UInt32) -> UInt32 {
        guard u.tlsWant != 0, !u.handshaking else { return events }
        var flags = events
        if u.tlsWant & Epoll.writable != 0 && events & Epoll.writable != 0 { flags |= Epoll.readable }
        if u.tlsWant & Epoll.readable != 0 && events & (Epoll.readable | Epoll.hangup) != 0 { flags |= Epoll.writable }
        return flags
    }

    /// Reads into the upstream's buffer, through TLS when the connection has it.
    @inline(__always)
    func receiveUpstream(_ u: UpstreamConnection) -> IOResult {
        guard let tls = u.tls else { return Socket.read(u.fd, into: &u.inBuf) }
        switch tls.read(into: &u.inBuf) {
        case .bytes(let n):
            u.tlsWant &= ~Epoll.writable
            if u.inBuf.writableBytes == 0 && tls.hasBufferedInput { tlsPendingUpstreamReads.append(u) }
            return .bytes(n)
        case .wantRead:
            return .wouldBlock
        case .wantWrite:
            u.tlsWant |= Epoll.writable
            return .wouldBlock
        case .closed:
            return .closed
        case .failed(let error):
            Log.warning("TLS read from \(u.endpoint.id): \(error)")
            return .failed(EPROTO)
        }
    }

    /// Writes request bytes, through TLS when the connection has it. After `.wouldBlock`
    /// the same bytes (from `sentIndex`) are offered again, as OpenSSL requires.
    @inline(__always)
    func sendUpstream(_ u: UpstreamConnection, _ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard let tls = u.tls else { return Socket.write(u.fd, bytes) }
        switch tls.write(bytes) {
        case .bytes(let n):
            u.tlsWant &= ~Epoll.readable
            return .bytes(n)
        case .wantWrite:
            return .wouldBlock
        case .wantRead:
            u.tlsWant |= Epoll.readable
            return .wouldBlock
        case .closed:
            return .closed
        case .failed(let error):
            Log.warning("TLS write to \(u.endpoint.id): \(error)")
            return .failed(EPROTO)
        }
    }

    /// Reads response bytes OpenSSL decrypted ahead while the upstream's buffer was full;
    /// a connection whose buffer is still full waits for the next batch.
    func readPendingUpstreamTLS() {
        let pending = tlsPendingUpstreamReads
        tlsPendingUpstreamReads.removeAll(keepingCapacity: true)
        for u in pending where u.phase == .active {
            guard let tls = u.tls, tls.hasBufferedInput else { continue }
            if u.inBuf.writableBytes == 0 {
                tlsPendingUpstreamReads.append(u)
                continue
            }
            upstreamEvent(u, Epoll.readable)
        }
    }

    /// A pooled TLS connection became readable: true when all it carried were TLS
    /// records without data (TLS 1.3 session tickets), so it stays pooled.
    func idleTLSRecordsOnly(_ u: UpstreamConnection) -> Bool {
        guard let tls = u.tls else { return false }
        u.inBuf.clear()
        let result = tls.read(into: &u.inBuf)
        u.inBuf.clear()
        return result == .wantRead
    }

    /// Offers the connection's session to its pool once, so the next connection to the
    /// endpoint resumes instead of doing a full handshake (called when it is pooled:
    /// by then a TLS 1.3 ticket has arrived).
    func keepTLSSession(_ u: UpstreamConnection, _ pool: UpstreamPool) {
        guard !u.sessionKept, let tls = u.tls else { return }
        u.sessionKept = true
        if let session = tls.resumableSession { pool.tlsSession = session }
    }

    /// Before the socket closes: close_notify on a connection that finished cleanly.
    func endUpstreamTLS(_ u: UpstreamConnection) {
        guard let tls = u.tls, !u.handshaking, u.phase != .connecting else { return }
        if u.phase == .idle || u.responseDone { _ = tls.shutdown() }
    }
}
