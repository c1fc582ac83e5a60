// The `mirror` middleware on the request path: after the real request's head is written
// upstream, a share of requests (exact, like the canary split) is copied to a shadow
// endpoint; the copy's response is read and dropped. A copy never waits for the client, never
// delays or fails the real exchange: it is sent only when the whole request is at hand (no
// body, or a Content-Length body up to 64 KiB that came with the head), it has its own
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
    /// deadline passed before the shadow's response ended).
    var mirrored: UInt64 = 0
    var dropped: UInt64 = 0
    var failed: UInt64 = 0
}

extension Worker {
    /// Copies the request just forwarded when the route's mirror takes it. `headBytes`: how
    /// many bytes at the end of `forwarded` are the head written for the real upstream.
    func mirrorRequest(_ c: ClientConnection, _ settings: MirrorSettings, route: Route, forwarded: ByteBuffer, headBytes: Int, base: UnsafeRawBufferPointer) {
        let room = mirrors
        if room.tableVersion != table.version {
            room.splits.removeAll(keepingCapacity: true)
            room.tableVersion = table.version
        }
        let key = ObjectIdentifier(route)
        var split = room.splits[key] ?? SmoothWeightedRoundRobin(weights: [1000 - settings.permille, settings.permille])
        let taken = split.pick() == 1
        room.splits[key] = split
        guard taken, !c.upgradeRequested, headBytes >= 4 else { return }
        var bodyLength = 0
        switch c.head.framing {
        case .none: break
        case .contentLength(let length):
            // The whole body came with the head, within the bound: else not copied.
            guard length <= Int64(MirrorSettings.maxBodyBytes),
                  c.head.headLength + Int(truncatingIfNeeded: length) <= base.count else { return }
            bodyLength = Int(truncatingIfNeeded: length)
        case .chunked, .untilClose: return
        }
        guard room.exchanges.count < MirrorSettings.maxInFlightPerWorker else {
            room.dropped &+= 1
            return
        }
        guard let endpoint = mirrorEndpoint(settings, route: route), endpoint.poolKey < pools.count,
              let pool = pools[endpoint.poolKey], let address = pool.address else {
            room.failed &+= 1
            return
        }
        var out = ByteBuffer(capacity: headBytes + bodyLength + 24)
        let head = UnsafeRawBufferPointer(rebasing: forwarded.readable[(forwarded.readableBytes - headBytes)...])
        // The forwarded head without its blank line, then `Connection: close`: the shadow
        // ends its response by closing, so nothing needs parsing.
        out.append(UnsafeRawBufferPointer(rebasing: head[0..<(head.count - 2)]))
        out.append("Connection: close\r\n\r\n")
        if bodyLength > 0 {
            out.append(UnsafeRawBufferPointer(rebasing: base[c.head.headLength..<(c.head.headLength + bodyLength)]))
        }
        let fd: Int32
        let connecting: Bool
        switch Socket.connect(to: address) {
        case .connected(let socket): (fd, connecting) = (socket, false)
        case .inProgress(let socket): (fd, connecting) = (socket, true)
        case .failed:
            room.failed &+= 1
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
