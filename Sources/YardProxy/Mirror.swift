// The `mirror` middleware on the request path: after the real request's head is written
// upstream, a share of requests (exact, like the canary split) is copied to a shadow
// endpoint; the copy's response is read and dropped. A copy never waits for the client, never
// delays or fails the real exchange: its body bytes are copied as the real body is forwarded
// (HTTP/1.1 or HTTP/2, any framing), and it is sent only once the body ended within the
// mirror's `max_body_bytes` (a longer body: no copy, counted as skipped). It has its own
// deadline, and past a bound of copies in flight per worker it is dropped and counted.

import YardBalancing
import YardHTTP
import YardIO
import YardModel

/// One copy in flight: a connection to the shadow endpoint, the bytes left to send, then
/// the response read and discarded until the endpoint closes (`Connection: close`).
/// Threading: owned by one worker.
final class MirrorExchange {
    let fd: Int32
    var out: ByteBuffer
    var connecting: Bool
    let deadline: Int64
    /// Index in `MirrorRoom.exchanges`.
    var slot = 0

    init(fd: Int32, out: ByteBuffer, connecting: Bool, deadline: Int64) {
        self.fd = fd
        self.out = out
        self.connecting = connecting
        self.deadline = deadline
    }

    deinit { out.deallocate() }
}

/// A copy whose request body is still arriving: the forwarded head, then the body bytes as
/// the real request's are forwarded (`copyMirrorBody`), held until the body ends.
/// Threading: owned by one client exchange on its worker's loop.
final class PendingMirror {
    var out: ByteBuffer
    /// Where the body starts in `out`.
    let headBytes: Int
    let settings: MirrorSettings
    let route: Route

    init(out: ByteBuffer, headBytes: Int, settings: MirrorSettings, route: Route) {
        self.out = out
        self.headBytes = headBytes
        self.settings = settings
        self.route = route
    }

    deinit { out.deallocate() }
}

/// A worker's mirror state: copies in flight, the exact split per route, the counters.
/// Threading: owned by one worker.
final class MirrorRoom {
    var exchanges: [MirrorExchange] = []
    /// The split per mirroring route of the current table (reset with the table).
    var splits: [ObjectIdentifier: SmoothWeightedRoundRobin] = [:]
    var tableVersion: UInt64 = 0
    var rotation = 0
    /// Response bytes are read into this and dropped.
    var sink = ByteBuffer(capacity: 16_384)
    /// Copies sent, dropped (too many in flight), failed (no endpoint, connect or I/O error,
    /// deadline passed before the shadow's response ended), skipped (a body over the bound).
    var mirrored: UInt64 = 0
    var dropped: UInt64 = 0
    var failed: UInt64 = 0
    var skippedBody: UInt64 = 0
}

extension Worker {
    /// Copies the request just forwarded when the route's mirror takes it. `headBytes`: how
    /// many bytes at the end of `forwarded` are the head written for the real upstream. A
    /// request with a body becomes `c.exchange.mirror`, which `copyMirrorBody` fills as the body is
    /// forwarded.
    func mirrorRequest(_ c: ClientConnection, _ settings: MirrorSettings, route: Route, forwarded: ByteBuffer, headBytes: Int) {
        c.exchange.mirror = nil
        let room = mirrors
        if room.tableVersion != table.version {
            room.splits.removeAll(keepingCapacity: true)
            room.tableVersion = table.version
        }
        let key = ObjectIdentifier(route)
        var split = room.splits[key] ?? SmoothWeightedRoundRobin(weights: [1000 - settings.permille, settings.permille])
        let taken = split.pick() == 1
        room.splits[key] = split
        guard taken, !c.exchange.upgradeRequested, headBytes >= 4 else { return }
        var bodyRoom = 0
        if !c.exchange.requestBodyDone {
            switch c.head.framing {
            case .contentLength(let length):
                guard length <= Int64(settings.maxBodyBytes) else {
                    room.skippedBody &+= 1
                    return
                }
                bodyRoom = Int(truncatingIfNeeded: length)
            default:
                // Chunked (HTTP/1.1) or a DATA stream (HTTP/2): grown as it comes, up to the bound.
                bodyRoom = min(settings.maxBodyBytes, 4_096)
            }
        }
        var out = ByteBuffer(capacity: headBytes + 24 + bodyRoom)
        let head = UnsafeRawBufferPointer(rebasing: forwarded.readable[(forwarded.readableBytes - headBytes)...])
        // The forwarded head without its blank line, then `Connection: close`: the shadow
        // ends its response by closing, so nothing needs parsing.
        out.append(UnsafeRawBufferPointer(rebasing: head[0..<(head.count - 2)]))
        out.append("Connection: close\r\n\r\n")
        if c.exchange.requestBodyDone {
            sendMirror(out, settings, route: route)
        } else {
            c.exchange.mirror = PendingMirror(out: out, headBytes: out.readableBytes, settings: settings, route: route)
        }
    }

    /// The real request forwarded `bytes` of its body: the held copy takes them too, and is
    /// sent once the body is complete; past the mirror's bound it is let go (and counted).
    func copyMirrorBody(_ c: ClientConnection, _ pending: PendingMirror, _ bytes: UnsafeRawBufferPointer) {
        guard pending.out.readableBytes - pending.headBytes + bytes.count <= pending.settings.maxBodyBytes,
              pending.out.reserve(bytes.count) else {
            c.exchange.mirror = nil
            mirrors.skippedBody &+= 1
            return
        }
        pending.out.append(bytes)
        guard c.exchange.requestBodyDone else { return }
        c.exchange.mirror = nil
        sendMirror(pending.out, pending.settings, route: pending.route)
        // The copy's exchange took the buffer.
        pending.out = ByteBuffer()
    }

    /// Connects to a shadow endpoint and sends `out` (a whole request); the buffer is the
    /// copy's from here (freed with it, or now if the copy is not sent).
    private func sendMirror(_ out: ByteBuffer, _ settings: MirrorSettings, route: Route) {
        let room = mirrors
        var out = out
        guard room.exchanges.count < MirrorSettings.maxInFlightPerWorker else {
            room.dropped &+= 1
            out.deallocate()
            return
        }
        guard let endpoint = mirrorEndpoint(settings, route: route), endpoint.poolKey < pools.count,
              let pool = pools[endpoint.poolKey], let address = pool.address else {
            room.failed &+= 1
            out.deallocate()
            return
        }
        let fd: Int32
        let connecting: Bool
        switch Socket.connect(to: address) {
        case .connected(let socket): (fd, connecting) = (socket, false)
        case .inProgress(let socket): (fd, connecting) = (socket, true)
        case .failed:
            room.failed &+= 1
            out.deallocate()
            return
        }
        let m = MirrorExchange(fd: fd, out: out, connecting: connecting, deadline: now + Int64(settings.timeoutMs))
        guard epoll.add(fd, events: Epoll.writable | Epoll.readable | Epoll.readHangup, token: Token.mirror(m)) else {
            Socket.close(fd)
            room.failed &+= 1
            return
        }
        m.slot = room.exchanges.count
        room.exchanges.append(m)
        room.mirrored &+= 1
    }

    /// The shadow endpoint: the named service's (or the route's) track, or its active
    /// endpoints, in rotation. Only plain HTTP/1.1 services are mirrored to.
    private func mirrorEndpoint(_ settings: MirrorSettings, route: Route) -> Endpoint? {
        let name = settings.service ?? route.serviceName
        let service = settings.service == nil ? route.service : table.services.first { $0.name == name }
        guard let service, service.upstream.protocol == .http1, service.upstream.tls == nil else { return nil }
        var endpoints = service.activeEndpoints
        if let track = settings.track {
            endpoints = service.trackEndpoints.first { $0.track.elementsEqual(track.utf8) }?.endpoints ?? []
        }
        guard !endpoints.isEmpty else { return nil }
        mirrors.rotation &+= 1
        return endpoints[mirrors.rotation % endpoints.count]
    }

    /// Readiness of a copy's connection: finish connecting, send, read and drop.
    func mirrorEvent(_ m: MirrorExchange, _ flags: UInt32) {
        if m.connecting {
            guard flags & (Epoll.writable | Epoll.error | Epoll.hangup) != 0 else { return }
            if Socket.pendingError(m.fd) != 0 { return endMirror(m, failed: true) }
            m.connecting = false
        }
        if m.out.readableBytes > 0 {
            switch Socket.flush(m.fd, &m.out) {
            case .failed, .closed: return endMirror(m, failed: true)
            case .bytes, .wouldBlock: break
            }
            if m.out.readableBytes == 0 {
                _ = epoll.modify(m.fd, events: Epoll.readable | Epoll.readHangup, token: Token.mirror(m))
            }
        }
        guard flags & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 else { return }
        let room = mirrors
        while true {
            room.sink.clear()
            switch Socket.read(m.fd, into: &room.sink) {
            case .bytes: continue
            case .wouldBlock: return
            case .closed: return endMirror(m, failed: m.out.readableBytes > 0)
            case .failed: return endMirror(m, failed: true)
            }
        }
    }

    /// Closes a copy (kept alive until the end of the event batch, which may still name it).
    func endMirror(_ m: MirrorExchange, failed: Bool) {
        let room = mirrors
        guard m.slot < room.exchanges.count, room.exchanges[m.slot] === m else { return }
        if failed { room.failed &+= 1 }
        epoll.remove(m.fd)
        Socket.close(m.fd)
        let last = room.exchanges.removeLast()
        if last !== m {
            room.exchanges[m.slot] = last
            last.slot = m.slot
        }
        graveyard.append(m)
    }

    /// Ends the copies whose deadline passed (on the worker's tick).
    func expireMirrors() {
        for m in mirrors.exchanges.reversed() where m.deadline <= now { endMirror(m, failed: true) }
    }

    /// Ends every copy (the worker stops).
    func closeMirrors() {
        for m in mirrors.exchanges.reversed() { endMirror(m, failed: false) }
    }
}
