#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import YardIO
import YardModel

// Per-endpoint `max_connections` and the per-service wait queue (`max_pending`,
// `queue_timeout`): HAProxy's server `maxconn` and backend `maxqueue`.
//
// - A request (an HTTP/1.1 exchange, an HTTP/2 stream, a TCP tunnel, a WebSocket) claims a
//   slot of the endpoint it goes to: an atomic counter shared by every event loop
//   (`EndpointSlots`). The balancer skips endpoints whose slots are all taken; only when
//   every eligible endpoint is full does the request wait.
// - Waiting requests stay on their own loop, in a FIFO (`WaitQueue`) per service. Tickets
//   from one process-wide counter order them across loops: a loop serves its oldest waiter
//   only when no other loop holds an older one (`ServiceWaitLine.oldest`).
// - A released slot wakes the loop holding the service's oldest waiter: itself after the
//   batch of events, another loop through its doorbell (one eventfd write until it looks).
//   Every tick each loop with waiters looks again, so a lost race costs at most a tick.
// - A full queue (or `max_pending: 0`) and a wait past `queue_timeout` answer 503 with
//   `Retry-After: 1` (an HTTP/2 stream gets the same 503 as its response). A TCP
//   connection that finds every endpoint full is closed: it has no way to be told to wait.
//
// Services without `max_connections` pay one branch per request (`service.limits.limited`).

// MARK: - The wait queue (a value)

/// The requests of one service waiting on one event loop, oldest first.
///
/// Tickets only grow (they come from the service's process-wide counter), so the entries
/// are sorted by ticket and a cancelled one is found by binary search and left as a hole
/// (`element == nil`) that `first()` skips. Deadlines are `enqueued + timeout` with one
/// timeout per service, so the oldest entry is also the first to expire.
struct WaitQueue<Element> {
    struct Entry {
        var ticket: UInt64
        var enqueuedMs: Int64
        var deadlineMs: Int64
        var element: Element?
    }

    private var entries: [Entry] = []
    private var start = 0
    /// Entries not cancelled.
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Appends a waiter; `ticket` must be above every ticket already queued.
    mutating func push(_ element: Element, ticket: UInt64, nowMs: Int64, timeoutMs: Int) {
        entries.append(Entry(ticket: ticket, enqueuedMs: nowMs, deadlineMs: nowMs &+ Int64(timeoutMs), element: element))
        count += 1
    }

    /// Puts back the entry `popFirst` returned (it found no slot after all).
    mutating func pushFront(_ entry: Entry) {
        if start > 0 {
            start -= 1
            entries[start] = entry
        } else {
            entries.insert(entry, at: 0)
        }
        count += 1
    }

    /// The oldest waiter (holes before it are dropped), or nil.
    mutating func first() -> Entry? {
        while start < entries.count {
            if entries[start].element != nil { return entries[start] }
            start += 1
        }
        compact()
        return nil
    }

    /// Removes and returns the oldest waiter.
    mutating func popFirst() -> Entry? {
        guard let entry = first() else { return nil }
        entries[start].element = nil
        start += 1
        count -= 1
        compact()
        return entry
    }

    /// Removes the oldest waiter if its deadline has passed.
    mutating func popExpired(nowMs: Int64) -> Entry? {
        guard let entry = first(), entry.deadlineMs <= nowMs else { return nil }
        return popFirst()
    }

    /// Removes the waiter with `ticket` (its client went away); false if it is not here.
    @discardableResult
    mutating func cancel(ticket: UInt64) -> Bool {
        var low = start, high = entries.count
        while low < high {
            let mid = low + (high - low) / 2
            if entries[mid].ticket < ticket { low = mid + 1 } else { high = mid }
        }
        guard low < entries.count, entries[low].ticket == ticket, entries[low].element != nil else { return false }
        entries[low].element = nil
        count -= 1
        _ = first()
        return true
    }

    /// The oldest waiter's ticket, or `UInt64.max` when none waits.
    mutating func headTicket() -> UInt64 { first()?.ticket ?? .max }

    /// Drops the consumed prefix once it is most of the storage.
    private mutating func compact() {
        if start == entries.count {
            entries.removeAll(keepingCapacity: true)
            start = 0
        } else if start >= 32 && start * 2 >= entries.count {
            entries.removeFirst(start)
            start = 0
        }
    }
}

// MARK: - Per-loop state

/// Wakes an event loop for its waiting requests: a flag and an eventfd write, at most one
/// write until the loop has looked (so a busy service cannot flood the eventfd).
///
/// Threading: `ring` from any loop; `answer` from the loop it belongs to.
final class LimitDoorbells: Sendable {
    final class Bell: Sendable {
        let rung = Atomic<Bool>(false)
        /// Held (not just its descriptor) so the eventfd lives as long as anyone may ring.
        let inbox: LoopInbox
        init(inbox: LoopInbox) { self.inbox = inbox }
    }

    let bells: [Bell]

    init(inboxes: [LoopInbox]) { bells = inboxes.map { Bell(inbox: $0) } }

    func ring(_ worker: Int) {
        guard worker >= 0, worker < bells.count else { return }
        let bell = bells[worker]
        guard !bell.rung.exchange(true, ordering: .sequentiallyConsistent) else { return }
        var one: UInt64 = 1
        _ = write(bell.inbox.eventFD, &one, 8)
    }

    /// Whether loop `worker` was rung since it last looked (and clears it).
    func answer(_ worker: Int) -> Bool {
        guard worker >= 0, worker < bells.count else { return false }
        return bells[worker].rung.exchange(false, ordering: .sequentiallyConsistent)
    }
}

/// One event loop's waiting requests, per service wait line.
///
/// Threading: owned by its worker; `doorbells` is set once before the loop starts.
final class WorkerWaitLines {
    final class Local {
        let line: ServiceWaitLine
        let service: String
        var queue = WaitQueue<ClientConnection>()
        init(line: ServiceWaitLine, service: String) {
            self.line = line
            self.service = service
        }
    }

    var locals: [ObjectIdentifier: Local] = [:]
    /// Requests waiting on this loop, all services together.
    var waiting = 0
    /// Look at the queues after this batch of events (a slot was released here, a request
    /// was queued, or another loop rang).
    var wakePending = false
    /// Every loop's doorbell (nil: a loop on its own, as in unit tests).
    var doorbells: LimitDoorbells?
    /// Waiters passed over in one look when no slot is free for them (a canary or a pinned
    /// track full while others have room): bounds the work of a look.
    static let maxSkipped = 16
}

/// A request's place in the limits: the slot it holds, or its place in a wait queue.
struct SlotHold {
    /// The endpoint slot the current attempt holds (released when the exchange ends).
    var claim: EndpointSlots?
    /// Nonzero while the request waits for a slot: its ticket, in `line`.
    var ticket: UInt64 = 0
    var line: ServiceWaitLine?
    /// The last pick found every eligible endpoint full.
    var refused = false
    /// Being taken out of the queue: it may take a free slot although others wait.
    var fromQueue = false
    /// When it started waiting (µs), for the wait-time sum.
    var waitStartMicros: Int64 = 0
    /// Answer the next own error with the "busy" 503 (Retry-After).
    var busyAnswer = false

    /// Whether this answer is the "busy" 503; the next one is not (a pipelined request
    /// answered from inside `respondError` gets its own).
    mutating func takeBusyAnswer() -> Bool {
        defer { busyAnswer = false }
        return busyAnswer
    }
}

extension ClientConnection {
    /// The request has an exchange going: bound to an upstream, or waiting for a slot.
    var exchangeBound: Bool { upstream != nil || hold.ticket != 0 }
}

// MARK: - Claiming

extension Worker {
    /// For a service with `max_connections`: the balancer's pick among the endpoints with a
    /// free slot, and the slot claimed; nil when every eligible one is full (or, for a new
    /// request, when others already wait: they go first, as in HAProxy).
    func pickWithFreeSlot(_ balancer: ServiceBalancer, _ endpoints: [Endpoint], excluding tried: UInt64, hash: UInt64,
                          service: Service, jumpQueue: Bool) -> (index: Int, claim: EndpointSlots?)? {
        let limit = service.limits.maxConnections
        if !jumpQueue, let line = service.waitLine, line.pending.load(ordering: .sequentiallyConsistent) > 0 { return nil }
        var excluding = tried
        for i in 0..<min(endpoints.count, 64) {
            if let slots = endpoints[i].slots, slots.inFlight.load(ordering: .relaxed) >= limit { excluding |= 1 << UInt64(i) }
        }
        for _ in 0..<endpoints.count {
            guard let index = balancer.pick(excluding: excluding, hash: hash) else { return nil }
            guard let slots = endpoints[index].slots else { return (index, nil) }
            if slots.tryClaim(limit: limit) { return (index, slots) }
            if index < 64 { excluding |= 1 << UInt64(index) }
        }
        return nil
    }

    /// The first endpoint from `start` (rotating) with a free slot, claimed; for requests
    /// pinned to a track and for retries on an older table.
    func rotateToFreeSlot(_ endpoints: [Endpoint], start: Int, service: Service) -> (endpoint: Endpoint, claim: EndpointSlots?)? {
        guard !endpoints.isEmpty else { return nil }
        let first = Int(truncatingIfNeeded: UInt(bitPattern: start) % UInt(endpoints.count))
        for k in 0..<endpoints.count {
            let endpoint = endpoints[(first + k) % endpoints.count]
            guard let slots = endpoint.slots else { return (endpoint, nil) }
            if slots.tryClaim(limit: service.limits.maxConnections) { return (endpoint, slots) }
        }
        return nil
    }

    /// `chooseEndpoint`'s pick for a limited service: records the claim, or that every
    /// endpoint was full.
    func claimPick(_ c: ClientConnection, _ balancer: ServiceBalancer, _ endpoints: [Endpoint], excluding: UInt64, service: Service) -> Int? {
        let jump = c.hold.fromQueue || c.exchange.attempts > 1
        guard let (index, claim) = pickWithFreeSlot(balancer, endpoints, excluding: excluding, hash: c.exchange.hashKey, service: service, jumpQueue: jump) else {
            c.hold.refused = true
            return nil
        }
        c.hold.refused = false
        c.hold.claim = claim
        return index
    }

    /// `chooseEndpoint`'s rotation for a limited service.
    func claimRotation(_ c: ClientConnection, _ endpoints: [Endpoint], start: Int, service: Service) -> Endpoint? {
        guard let (endpoint, claim) = rotateToFreeSlot(endpoints, start: start, service: service) else {
            c.hold.refused = true
            return nil
        }
        c.hold.refused = false
        c.hold.claim = claim
        return endpoint
    }

    /// Gives back the client's slot, or its place in a queue (`releaseEndpoint`, which
    /// also runs before each attempt: a refusal from an earlier one is forgotten).
    func releaseHold(_ c: ClientConnection) {
        c.hold.refused = false
        if c.hold.ticket != 0 { cancelWait(c) }
        if let claim = c.hold.claim {
            c.hold.claim = nil
            releaseClaim(claim)
        }
    }

    /// Gives back a slot; wakes the loop with the service's oldest waiter, if any waits.
    func releaseClaim(_ claim: EndpointSlots) {
        guard claim.release() else { return }
        let workers = waitLines.doorbells?.bells.count ?? (id + 1)
        guard let oldest = claim.line.oldest(workers: workers) else { return }
        if oldest.worker == id {
            waitLines.wakePending = true
        } else {
            waitLines.doorbells?.ring(oldest.worker)
        }
    }

    /// The inbox's eventfd fired: another loop may have rung for our waiters.
    func answerDoorbell() {
        if waitLines.doorbells?.answer(id) == true { waitLines.wakePending = true }
    }

    // MARK: Waiting

    /// Every eligible endpoint of `service` is full: the request waits (within
    /// `max_pending`), or is answered 503 with Retry-After.
    func waitForSlot(_ c: ClientConnection, service: Service) {
        c.hold.refused = false
        guard let line = service.waitLine, let ticket = line.enter(maxPending: service.limits.maxPending) else {
            refuseBusy(c, reason: "every endpoint of '\(service.name)' is at max_connections (\(service.limits.maxConnections)) and \(service.limits.maxPending) requests wait (max_pending)")
            return
        }
        let key = ObjectIdentifier(line)
        let local = waitLines.locals[key] ?? {
            let made = WorkerWaitLines.Local(line: line, service: service.name)
            waitLines.locals[key] = made
            return made
        }()
        let timeout = service.limits.queueTimeoutMs > 0 ? service.limits.queueTimeoutMs : settings.queueTimeoutMs
        local.queue.push(c, ticket: ticket, nowMs: now, timeoutMs: timeout)
        c.hold.ticket = ticket
        c.hold.line = line
        c.hold.waitStartMicros = monotonicMicroseconds()
        // The line's own timeout applies, not the client's.
        c.deadline = 0
        waitLines.waiting += 1
        line.setHead(worker: id, ticket: local.queue.headTicket())
        // A slot may have been released between the failed claim and now.
        waitLines.wakePending = true
    }

    /// The client went away (or its stream was reset) while it waited.
    private func cancelWait(_ c: ClientConnection) {
        let ticket = c.hold.ticket
        c.hold.ticket = 0
        guard let line = c.hold.line else { return }
        c.hold.line = nil
        guard let local = waitLines.locals[ObjectIdentifier(line)], local.queue.cancel(ticket: ticket) else { return }
        line.leave()
        waitLines.waiting -= 1
        line.setHead(worker: id, ticket: local.queue.headTicket())
    }

    /// Serves waiting requests whose turn it is, oldest first, while slots are free, and
    /// answers those whose wait is over. Runs after a batch of events and on each tick.
    func serveWaiters() {
        waitLines.wakePending = false
        for local in waitLines.locals.values where !local.queue.isEmpty {
            serve(local)
        }
    }

    private func serve(_ local: WorkerWaitLines.Local) {
        let line = local.line
        let workers = waitLines.doorbells?.bells.count ?? (id + 1)
        // Waiters that found no slot for them (their track's endpoints are full): the ones
        // behind may still go elsewhere. Put back at the front, in order, at the end.
        var skipped: [WaitQueue<ClientConnection>.Entry] = []
        while let entry = local.queue.first(), let c = entry.element {
            if entry.deadlineMs > now, let older = line.oldest(workers: workers, includingBlocked: false, except: id),
               older.ticket < entry.ticket {
                // Another loop's waiter came first: the slot is its.
                waitLines.doorbells?.ring(older.worker)
                break
            }
            _ = local.queue.popFirst()
            line.leave()
            waitLines.waiting -= 1
            c.hold.ticket = 0
            c.hold.line = nil
            if entry.deadlineMs <= now {
                line.refusedTimeout.wrappingAdd(1, ordering: .relaxed)
                refuseBusy(c, reason: "no endpoint of '\(local.service)' had a free slot within \(entry.deadlineMs - entry.enqueuedMs) ms (queue_timeout)")
                continue
            }
            if resumeWaiting(c) {
                let waited = max(0, monotonicMicroseconds() &- c.hold.waitStartMicros)
                line.served.wrappingAdd(1, ordering: .relaxed)
                line.waitMicros.wrappingAdd(UInt64(waited), ordering: .relaxed)
                continue
            }
            line.reenter()
            waitLines.waiting += 1
            c.hold.ticket = entry.ticket
            c.hold.line = line
            skipped.append(entry)
            if skipped.count >= WorkerWaitLines.maxSkipped { break }
        }
        for entry in skipped.reversed() { local.queue.pushFront(entry) }
        let head = local.queue.headTicket()
        line.setHead(worker: id, ticket: head, blocked: !skipped.isEmpty && skipped[0].ticket == head)
        // Slots may be left for another loop's waiters, which stood back for ours.
        if line.waiting > 0, let next = line.oldest(workers: workers, includingBlocked: false, except: id) {
            waitLines.doorbells?.ring(next.worker)
        }
    }

    /// Forwards a request that waited, as `dispatch` would have; false (and nothing
    /// changed) when every endpoint is still full.
    private func resumeWaiting(_ c: ClientConnection) -> Bool {
        guard let routed = c.exchange.route?.service else {
            refuseBusy(c, reason: "the route of a waiting request lost its service")
            return true
        }
        // The table may have changed while it waited: the service as it is now.
        let service = routed.index < table.services.count && table.services[routed.index].name == routed.name
            ? table.services[routed.index] : routed
        c.exchange.attempts = 0
        c.hold.fromQueue = true
        let bound = connectUpstream(for: c, service: service, fresh: c.exchange.upgradeRequested)
        c.hold.fromQueue = false
        guard let u = bound else {
            if c.hold.refused {
                c.hold.refused = false
                return false
            }
            releaseEndpoint(c)
            c.inBuf.consume(c.head.headLength)
            c.scanFrom = 0
            if !c.exchange.requestBodyDone { c.exchange.keepAlive = false }
            respondError(c, status: 502, reason: "no endpoint of '\(service.name)' accepted a connection")
            return true
        }
        writeRequestHead(c, base: c.inBuf.readable, into: &u.outBuf)
        c.inBuf.consume(c.head.headLength)
        c.scanFrom = 0
        if !c.exchange.requestBodyDone && c.h2 == nil { startBodyClock(c) }
        pumpRequestBody(c)
        if u.phase == .active { _ = flushUpstream(u) }
        if c.phase != .closed { updateInterest(c) }
        if let u = c.upstream { updateInterest(u) }
        return true
    }

    /// Answers 503 with Retry-After: the queue was full, or the wait timed out.
    private func refuseBusy(_ c: ClientConnection, reason: String) {
        if c.h2 == nil {
            c.inBuf.consume(c.head.headLength)
            c.scanFrom = 0
            if !c.exchange.requestBodyDone { c.exchange.keepAlive = false }
        }
        c.hold.busyAnswer = true
        respondError(c, status: 503, reason: reason)
        if c.phase != .closed { updateInterest(c) }
    }

    // MARK: Tunnels

    /// `chooseTunnelEndpoint`'s pick for a limited service (tunnels never wait).
    func claimTunnelPick(_ t: TunnelConnection, _ balancer: ServiceBalancer, _ endpoints: [Endpoint], excluding: UInt64) -> Int? {
        guard let (index, claim) = pickWithFreeSlot(balancer, endpoints, excluding: excluding, hash: t.sourceHash,
                                                    service: t.service, jumpQueue: true) else {
            t.service.waitLine?.refusedFull.wrappingAdd(1, ordering: .relaxed)
            Log.warning("tcp tunnel for \(t.service.name): every endpoint is at max_connections (\(t.service.limits.maxConnections)); closed")
            return nil
        }
        t.slotClaim = claim
        return index
    }

    /// Gives back a tunnel's slot.
    func releaseTunnelHold(_ t: TunnelConnection) {
        guard let claim = t.slotClaim else { return }
        t.slotClaim = nil
        releaseClaim(claim)
    }
}

extension ErrorResponse {
    /// The 503 for a request no endpoint slot was free for (the queue was full, or the
    /// wait timed out): the client may come back in a second.
    static func busy(close: Bool) -> StaticString {
        close
            ? "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nContent-Length: 64\r\nConnection: close\r\n\r\nservice busy: every endpoint is at max_connections; retry later\n"
            : "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nContent-Length: 64\r\n\r\nservice busy: every endpoint is at max_connections; retry later\n"
    }
}
