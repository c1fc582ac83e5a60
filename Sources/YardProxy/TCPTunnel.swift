#if canImport(Glibc)
import Glibc
#endif
import CYardLinux
import YardBalancing
import YardIO
import YardModel

// TCP mode: a listener with `protocol: tcp` forwards each connection's bytes, untouched, to
// one endpoint of its service. The endpoint is chosen per connection with the service's
// track split (blue/green, exact canary share) and balancer; a refused connect moves to
// another endpoint. Bytes move with splice(2) through a pipe per direction, so they never
// enter user space. A half-close is passed on (shutdown of the other side's write half).
//
// After a flip, a tunnel to an endpoint that takes no new connections keeps going until it
// ends, or until `flip_drain` passes (then it is closed).

/// One direction of a tunnel: a pipe holding bytes read from `from` and not yet written to `to`.
struct TunnelDirection {
    var pipeRead: Int32 = -1
    var pipeWrite: Int32 = -1
    /// Bytes spliced into the pipe and not yet out of it.
    var inPipe = 0
    /// The reading side sent EOF.
    var sourceEOF = false
    /// The write half of the destination was shut down (after EOF and an empty pipe).
    var shutDown = false
    /// Waiting for the destination to become writable.
    var blocked = false
    /// Bytes already read into user space (an upgrade's leftovers) to write before the pipe.
    var pending: [UInt8] = []

    var done: Bool { shutDown }
}

/// A client connection tunnelled to one endpoint. Confined to its worker, like the other
/// connection classes; epoll carries its pointer tagged for the client or upstream side.
final class TunnelConnection {
    let clientFD: Int32
    /// The client's place in `max_connections_per_client` (PerClientLimit.swift), held
    /// as long as this tunnel.
    var perClientTicket: PerClientTicket?
    var upstreamFD: Int32 = -1
    var slot = 0
    var endpoint: Endpoint?
    let service: Service
    /// Still connecting to `endpoint`.
    var connecting = true
    var attempts = 0
    var triedEndpoints: UInt64 = 0
    var balancer: ServiceBalancer?
    var balancerIndex = -1
    /// The endpoint slot it holds when its service has `max_connections` (EndpointLimits.swift).
    var slotClaim: EndpointSlots?
    /// Idle deadline, or the connect deadline while connecting (monotonic ms).
    var deadline: Int64 = 0
    /// Set when the endpoint stopped taking new connections: closed at this time (0: none).
    var drainDeadline: Int64 = 0
    var up = TunnelDirection()      // client -> upstream
    var down = TunnelDirection()    // upstream -> client
    var clientInterest: UInt32 = 0
    var upstreamInterest: UInt32 = 0
    var closed = false
    let sourceHash: UInt64
    /// The connection's track, decided at its first attempt (retries stay on it).
    var onCanary: Bool?
    /// An upgrade on a TLS client connection: bytes move through user space and OpenSSL
    /// (TLSTunnel.swift) instead of the pipes. Nil for plain tunnels.
    var tlsSide: TLSTunnelBuffers?

    init(clientFD: Int32, service: Service, sourceHash: UInt64) {
        self.clientFD = clientFD
        self.service = service
        self.sourceHash = sourceHash
    }
}

extension Worker {
    static let pipeCapacity = 65_536

    // MARK: Accept

    /// A new connection on a TCP listener for `serviceName`.
    func acceptTunnel(_ fd: Int32, peer: SocketAddress, serviceName: String, ticket: PerClientTicket? = nil) {
        guard let service = table.services.first(where: { $0.name == serviceName }) else {
            Log.warning("tcp listener for '\(serviceName)': no such service is discovered; connection closed")
            Socket.close(fd)
            gate.leave()
            return
        }
        let hash = Array(peer.ipText.utf8).withUnsafeBytes { HashKey.hash($0) }
        let t = TunnelConnection(clientFD: fd, service: service, sourceHash: hash)
        t.perClientTicket = ticket
        guard makePipes(&t.up), makePipes(&t.down) else {
            Log.error("tcp tunnel: cannot create pipes (errno \(yard_errno())); connection closed")
            closePipes(t)
            Socket.close(fd)
            gate.leave()
            return
        }
        t.slot = tunnels.count
        tunnels.append(t)
        t.clientInterest = 0
        epoll.add(fd, events: 0, token: Token.tunnelClient(t))
        connectTunnel(t)
    }

    private func makePipes(_ direction: inout TunnelDirection) -> Bool {
        var fds: [Int32] = [-1, -1]
        guard pipe2(&fds, Int32(O_NONBLOCK | O_CLOEXEC)) == 0 else { return false }
        direction.pipeRead = fds[0]
        direction.pipeWrite = fds[1]
        return true
    }

    /// Picks an endpoint (track split, then the balancer) and starts connecting; a refusal
    /// moves to another endpoint, up to three tries.
    private func connectTunnel(_ t: TunnelConnection) {
        let service = t.service
        while t.attempts < 3 {
            t.attempts += 1
            releaseTunnelEndpoint(t)
            guard let endpoint = chooseTunnelEndpoint(t) else { break }
            guard endpoint.poolKey < pools.count, let address = pools[endpoint.poolKey]?.address else { continue }
            switch Socket.connect(to: address) {
            case .connected(let fd), .inProgress(let fd):
                t.endpoint = endpoint
                t.upstreamFD = fd
                t.connecting = true
                t.deadline = now + Int64(settings.upstreamConnectTimeoutMs)
                t.upstreamInterest = Epoll.writable
                epoll.add(fd, events: t.upstreamInterest, token: Token.tunnelUpstream(t))
                metrics.add(endpoint.poolKey, WorkerMetrics.Field.active)
                return
            case .failed(let err):
                Log.warning("tcp tunnel: connect to \(endpoint.id) failed: \(IOError(call: "connect", errno: err))")
                metrics.add(endpoint.poolKey, WorkerMetrics.Field.connectFailures)
                recordOutcome(endpoint, service: service, failed: true)
            }
        }
        Log.warning("tcp tunnel for \(service.name): no endpoint accepted the connection; closed")
        closeTunnel(t)
    }

    /// The stable/canary split per connection, then the track's balancer.
    private func chooseTunnelEndpoint(_ t: TunnelConnection) -> Endpoint? {
        let service = t.service
        guard service.index < balancers.count, balancers[service.index].service === service else {
            let endpoints = service.activeEndpoints.isEmpty ? service.canaryEndpoints : service.activeEndpoints
            return endpoints.isEmpty ? nil : endpoints[t.attempts % endpoints.count]
        }
        let top = balancers[service.index]
        if t.onCanary == nil {
            // A tunnel carries no header: the canary share (or the active track's absence) decides.
            t.onCanary = top.canaryState != nil
                && top.split.decide(override: .absent, stickyPoint: -1, activeHasEndpoints: !top.endpoints.isEmpty, now: now).track == .canary
        }
        let balancer = ServiceBalancer.track(of: top, onCanary: t.onCanary == true)
        let endpoints = balancer.endpoints
        guard !endpoints.isEmpty else { return nil }
        let excluding = ServiceBalancer.excluding(tried: t.triedEndpoints, of: endpoints.count)
        guard let index = service.limits.limited ? claimTunnelPick(t, balancer, endpoints, excluding: excluding)
            : balancer.pick(excluding: excluding, hash: t.sourceHash) else { return nil }
        balancer.picked(index, tried: &t.triedEndpoints)
        t.balancer = balancer
        t.balancerIndex = index
        return endpoints[index]
    }

    private func releaseTunnelEndpoint(_ t: TunnelConnection) {
        if t.slotClaim != nil { releaseTunnelHold(t) }
        if let balancer = t.balancer, t.balancerIndex >= 0 { balancer.finished(t.balancerIndex, startNanos: 0) }
        t.balancer = nil
        t.balancerIndex = -1
        if t.upstreamFD >= 0 {
            epoll.remove(t.upstreamFD)
            Socket.close(t.upstreamFD)
            t.upstreamFD = -1
            if let endpoint = t.endpoint { metrics.subtract(endpoint.poolKey, WorkerMetrics.Field.active) }
        }
        t.endpoint = nil
    }

    // MARK: Upgrades

    /// A 101 answer to an upgrade request: the client and upstream connections leave the
    /// HTTP machinery and become one tunnel, carrying what each side had buffered (the 101
    /// head and any bytes after it for the client; early frames for the upstream).
    func becomeTunnel(_ c: ClientConnection, _ u: UpstreamConnection) {
        guard let service = c.exchange.route?.service else {
            abortExchange(c, status: 502, reason: "upgrade without a routed service")
            return
        }
        let t = TunnelConnection(clientFD: c.fd, service: service, sourceHash: 0)
        t.perClientTicket = c.perClientTicket
        if let tls = c.tls {
            // Bytes OpenSSL decrypted ahead stay in it: the first pump reads them.
            let b = TLSTunnelBuffers(tls: tls)
            _ = b.down.reserve(c.outBuf.readableBytes + u.inBuf.readableBytes)
            b.down.append(c.outBuf.readable)
            b.down.append(u.inBuf.readable)
            _ = b.up.reserve(c.inBuf.readableBytes)
            b.up.append(c.inBuf.readable)
            t.tlsSide = b
        } else if !makePipes(&t.up) || !makePipes(&t.down) {
            closePipes(t)
            abortExchange(c, status: 502, reason: "cannot create pipes for the upgraded connection (errno \(yard_errno()))")
            return
        }
        t.upstreamFD = u.fd
        t.endpoint = u.endpoint
        t.connecting = false
        t.balancer = c.exchange.balancer
        t.balancerIndex = c.exchange.balancerIndex
        t.slotClaim = c.hold.claim
        c.hold.claim = nil
        if t.tlsSide == nil {
            t.down.pending = Array(c.outBuf.readable) + Array(u.inBuf.readable)
            t.up.pending = Array(c.inBuf.readable)
        }
        t.deadline = now + Int64(settings.tunnelIdleTimeoutMs)
        // Detach both connections without closing their sockets: the tunnel owns them now.
        // They stay in the graveyard until the batch ends, marked closed, so a later event
        // of this batch carrying their old tokens is ignored.
        c.exchange.balancer = nil
        c.exchange.balancerIndex = -1
        c.upstream = nil
        u.client = nil
        c.phase = .closed
        u.phase = .closed
        removeSlot(c, from: &clients)
        removeSlot(u, from: &upstreams)
        graveyard.append(c)
        graveyard.append(u)
        t.slot = tunnels.count
        tunnels.append(t)
        t.clientInterest = Epoll.readable | Epoll.writable
        t.upstreamInterest = Epoll.readable | Epoll.writable
        epoll.modify(t.clientFD, events: t.clientInterest, token: Token.tunnelClient(t))
        epoll.modify(t.upstreamFD, events: t.upstreamInterest, token: Token.tunnelUpstream(t))
        pumpTunnel(t)
    }

    // MARK: Events

    func tunnelEvent(_ t: TunnelConnection, upstreamSide: Bool, _ flags: UInt32) {
        guard !t.closed else { return }
        if t.connecting {
            guard upstreamSide else { return }
            let err = Socket.pendingError(t.upstreamFD)
            if err != 0 || flags & (Epoll.error | Epoll.hangup) != 0 && flags & Epoll.writable == 0 {
                if let endpoint = t.endpoint {
                    Log.warning("tcp tunnel: connect to \(endpoint.id) failed: \(IOError(call: "connect", errno: err))")
                    metrics.add(endpoint.poolKey, WorkerMetrics.Field.connectFailures)
                    recordOutcome(endpoint, service: t.service, failed: true)
                }
                connectTunnel(t)
                return
            }
            t.connecting = false
            t.deadline = now + Int64(settings.tunnelIdleTimeoutMs)
            if let endpoint = t.endpoint { recordOutcome(endpoint, service: t.service, failed: false) }
        }
        pumpTunnel(t)
    }

    /// Moves what can move in both directions, then updates interest or closes.
    func pumpTunnel(_ t: TunnelConnection) {
        guard !t.closed, !t.connecting else { return }
        var moved = 0
        if let b = t.tlsSide {
            let ok = pumpTLSTunnel(t, b, moved: &moved)
            if moved > 0 { t.deadline = now + Int64(settings.tunnelIdleTimeoutMs) }
            guard ok, !(t.up.done && t.down.done) else {
                closeTunnel(t)
                return
            }
            updateTLSTunnelInterest(t, b)
            return
        }
        let upOK = move(&t.up, from: t.clientFD, to: t.upstreamFD, moved: &moved)
        let downOK = move(&t.down, from: t.upstreamFD, to: t.clientFD, moved: &moved)
        if moved > 0 { t.deadline = now + Int64(settings.tunnelIdleTimeoutMs) }
        guard upOK && downOK, !(t.up.done && t.down.done) else {
            closeTunnel(t)
            return
        }
        updateTunnelInterest(t)
    }

    /// One direction: pending user-space bytes first, then source → pipe → destination.
    /// False on an error that ends the tunnel.
    private func move(_ d: inout TunnelDirection, from source: Int32, to destination: Int32, moved: inout Int) -> Bool {
        if d.shutDown { return true }
        d.blocked = false
        while !d.pending.isEmpty {
            let n = d.pending.withUnsafeBytes { Glibc.write(destination, $0.baseAddress, $0.count) }
            if n > 0 { d.pending.removeFirst(n); moved += n; continue }
            let err = yard_errno()
            if n < 0 && (err == EAGAIN || err == EINTR) { d.blocked = true; return true }
            return false
        }
        let flags = UInt32(SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
        while true {
            var progress = false
            if !d.sourceEOF && d.inPipe < Worker.pipeCapacity {
                let n = splice(source, nil, d.pipeWrite, nil, Worker.pipeCapacity - d.inPipe, flags)
                if n > 0 {
                    d.inPipe += n
                    progress = true
                } else if n == 0 {
                    d.sourceEOF = true
                } else {
                    let err = yard_errno()
                    if err != EAGAIN && err != EINTR {
                        // A reset source ends this direction like an EOF would; the other
                        // direction decides whether the tunnel lives on.
                        if err == ECONNRESET { d.sourceEOF = true } else { return false }
                    }
                }
            }
            if d.inPipe > 0 {
                let n = splice(d.pipeRead, nil, destination, nil, d.inPipe, flags)
                if n > 0 {
                    d.inPipe -= n
                    moved += n
                    progress = true
                } else if n < 0 {
                    let err = yard_errno()
                    if err == EAGAIN || err == EINTR {
                        d.blocked = true
                    } else {
                        return false
                    }
                }
            }
            if !progress || d.blocked { break }
        }
        if d.sourceEOF && d.inPipe == 0 && d.pending.isEmpty && !d.shutDown {
            shutdown(destination, Int32(SHUT_WR))
            d.shutDown = true
        }
        return true
    }

    private func updateTunnelInterest(_ t: TunnelConnection) {
        var client: UInt32 = 0
        var upstream: UInt32 = 0
        if !t.up.sourceEOF && t.up.inPipe < Worker.pipeCapacity { client |= Epoll.readable }
        if t.down.blocked { client |= Epoll.writable }
        if !t.down.sourceEOF && t.down.inPipe < Worker.pipeCapacity { upstream |= Epoll.readable }
        if t.up.blocked { upstream |= Epoll.writable }
        setTunnelInterest(t, client: client, upstream: upstream)
    }

    /// Registers the interest of both sides (skipping unchanged ones).
    func setTunnelInterest(_ t: TunnelConnection, client: UInt32, upstream: UInt32) {
        if client != t.clientInterest {
            t.clientInterest = client
            epoll.modify(t.clientFD, events: client, token: Token.tunnelClient(t))
        }
        if upstream != t.upstreamInterest {
            t.upstreamInterest = upstream
            epoll.modify(t.upstreamFD, events: upstream, token: Token.tunnelUpstream(t))
        }
    }

    // MARK: Closing and time

    func closeTunnel(_ t: TunnelConnection) {
        guard !t.closed else { return }
        releaseTunnelEndpoint(t)
        t.closed = true
        epoll.remove(t.clientFD)
        Socket.close(t.clientFD)
        closePipes(t)
        gate.leave()
        removeSlot(t, from: &tunnels)
        graveyard.append(t)
    }

    private func closePipes(_ t: TunnelConnection) {
        for fd in [t.up.pipeRead, t.up.pipeWrite, t.down.pipeRead, t.down.pipeWrite] where fd >= 0 { Glibc.close(fd) }
        t.up.pipeRead = -1; t.up.pipeWrite = -1; t.down.pipeRead = -1; t.down.pipeWrite = -1
    }

    /// Every tick: connect and idle timeouts, and the flip-drain deadline.
    func expireTunnels() {
        var i = 0
        while i < tunnels.count {
            let t = tunnels[i]
            if t.connecting && now >= t.deadline {
                if let endpoint = t.endpoint {
                    Log.warning("tcp tunnel: connect to \(endpoint.id) timed out")
                    metrics.add(endpoint.poolKey, WorkerMetrics.Field.connectFailures)
                }
                connectTunnel(t)
            } else if !t.connecting && (now >= t.deadline || (t.drainDeadline != 0 && now >= t.drainDeadline)) {
                closeTunnel(t)
            }
            if i < tunnels.count && tunnels[i] === t { i += 1 }
        }
    }

    /// After a new table: tunnels whose endpoint no longer takes new connections get the
    /// flip-drain deadline (or keep going, with `flip_drain: 0`).
    func drainTunnels(routable: Set<Int>) {
        guard settings.flipDrainMs > 0 else { return }
        for t in tunnels {
            guard let endpoint = t.endpoint else { continue }
            if routable.contains(endpoint.poolKey) {
                t.drainDeadline = 0
            } else if t.drainDeadline == 0 {
                t.drainDeadline = now + Int64(settings.flipDrainMs)
            }
        }
    }
}
