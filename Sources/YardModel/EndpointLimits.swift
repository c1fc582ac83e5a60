// Per-endpoint concurrency limits and the per-service wait queue (HAProxy's server
// `maxconn` and backend `maxqueue`). Plain values; the data plane enforces them
// (YardProxy/EndpointLimits.swift).

import Synchronization

/// How many requests one endpoint of a service may carry at once, and how many requests
/// may wait for a free slot when every eligible endpoint is full.
///
/// `maxConnections` counts concurrent exchanges to one endpoint across every event loop of
/// the process: HTTP/1.1 requests in flight, HTTP/2 streams, TCP tunnels and WebSockets.
public struct EndpointLimits: Sendable, Equatable {
    /// Concurrent requests per endpoint; 0: no limit (the default; costs one branch).
    public var maxConnections = 0
    /// Requests of the service that may wait for a slot, process-wide; 0: none wait (a
    /// request that finds every endpoint full is answered 503 at once).
    public var maxPending = 0
    /// How long a request may wait for a slot; 0: `timeouts.queue` of switchyard.yml.
    public var queueTimeoutMs = 0

    public init(maxConnections: Int = 0, maxPending: Int = 0, queueTimeoutMs: Int = 0) {
        self.maxConnections = maxConnections
        self.maxPending = maxPending
        self.queueTimeoutMs = queueTimeoutMs
    }

    /// Whether any limit applies.
    public var limited: Bool { maxConnections > 0 }

    /// The largest accepted `max_connections` and `max_pending`.
    public static let maxValue = 1_000_000
    /// The longest accepted `queue_timeout`, in milliseconds (10 minutes).
    public static let maxQueueTimeoutMs = 600_000

    /// Parses a label's `queue_timeout` (`500ms`, `2s`): milliseconds from 1 to
    /// `maxQueueTimeoutMs`, or nil.
    public static func queueTimeout(_ text: String) -> Int? {
        guard text.count <= 16, let ms = ConfigValues.parseDurationMilliseconds(text), ms > 0, ms <= maxQueueTimeoutMs else { return nil }
        return ms
    }

    /// Parses a label's (or tag's) whole number for `max_connections` / `max_pending`:
    /// digits only, 0...`maxValue`. Nil when it is not one.
    public static func count(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 7, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let value = Int(text),
              value <= maxValue else { return nil }
        return value
    }
}

// MARK: - Shared counters

/// One endpoint's requests in flight, counted across every event loop (HAProxy's
/// `served` against `maxconn`).
///
/// Threading: any worker. One atomic add on claim and one subtract on release, only for
/// services with `max_connections`; no lock. The same object serves every table that has
/// the same service and `poolKey` (see `LimitCounters`), so a claim taken on one table is
/// released on the counter it was taken from after a swap.
public final class EndpointSlots: Sendable {
    public let inFlight = Atomic<Int>(0)
    /// The service's wait line: a release wakes its oldest waiter.
    public let line: ServiceWaitLine

    init(line: ServiceWaitLine) { self.line = line }

    /// Takes a slot if fewer than `limit` are taken. A claim that overshoots (two loops
    /// racing for the last slot) is undone at once, so at most `limit` claims ever hold.
    @inline(__always)
    public func tryClaim(limit: Int) -> Bool {
        if inFlight.load(ordering: .relaxed) >= limit { return false }
        if inFlight.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue > limit {
            inFlight.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            return false
        }
        return true
    }

    /// Gives a slot back; true when requests of the service are waiting for one.
    @inline(__always)
    public func release() -> Bool {
        inFlight.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        return line.pending.load(ordering: .sequentiallyConsistent) > 0
    }

    public var count: Int { max(0, inFlight.load(ordering: .relaxed)) }
}

/// A service's requests waiting for a free endpoint slot, across every event loop: how
/// many (bounded by `max_pending`), the FIFO tickets, each loop's oldest waiter, and the
/// counters /metrics shows.
///
/// Threading: any worker; atomics only, touched when a request waits or a slot of the
/// service is released while some wait.
public final class ServiceWaitLine: Sendable {
    /// The most event loops a line tracks (`workers` is at most 256).
    public static let maxWorkers = 256
    /// Requests waiting now, process-wide.
    public let pending = Atomic<Int>(0)
    /// The next FIFO ticket (1, 2, …): lower tickets are served first, across loops.
    let tickets = Atomic<UInt64>(0)
    /// Per event loop: the ticket of its oldest waiting request, or `UInt64.max`.
    private let heads: [Head]
    /// Requests that waited and got a slot; those refused because the queue was full or
    /// the wait timed out; the total time waited (µs) by the served ones.
    public let served = Atomic<UInt64>(0)
    public let refusedFull = Atomic<UInt64>(0)
    public let refusedTimeout = Atomic<UInt64>(0)
    public let waitMicros = Atomic<UInt64>(0)

    final class Head: Sendable {
        let ticket = Atomic<UInt64>(.max)
    }

    init() { heads = (0..<Self.maxWorkers).map { _ in Head() } }

    /// Admits one more waiter unless `maxPending` already wait; returns its ticket.
    public func enter(maxPending: Int) -> UInt64? {
        if pending.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue > maxPending {
            pending.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            refusedFull.wrappingAdd(1, ordering: .relaxed)
            return nil
        }
        return tickets.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// A waiter left the line (served, timed out, or its client went away).
    public func leave() { pending.wrappingSubtract(1, ordering: .sequentiallyConsistent) }

    /// Puts back a waiter taken out to be served that found no free slot after all.
    public func reenter() { pending.wrappingAdd(1, ordering: .sequentiallyConsistent) }

    /// Bit set on a published head whose request found no free slot for it last time it
    /// tried (its track's endpoints are full): other loops need not stand back for it.
    static let blockedBit: UInt64 = 1 << 63

    /// Publishes loop `worker`'s oldest waiting ticket (`UInt64.max`: none), and whether it
    /// is blocked (found no slot when it last tried).
    public func setHead(worker: Int, ticket: UInt64, blocked: Bool = false) {
        guard worker >= 0, worker < heads.count else { return }
        let value = ticket == .max ? .max : (blocked ? ticket | Self.blockedBit : ticket)
        heads[worker].ticket.store(value, ordering: .sequentiallyConsistent)
    }

    /// The loop holding the oldest waiter among the first `workers` loops, and its ticket;
    /// nil when none waits. `includingBlocked: false` passes over heads that found no slot
    /// last time (who to stand back for), `true` counts them (who to wake on a release:
    /// the slot freed may be the one it needs).
    public func oldest(workers: Int, includingBlocked: Bool = true, except: Int = -1) -> (worker: Int, ticket: UInt64)? {
        var best: (worker: Int, ticket: UInt64)?
        for w in 0..<min(workers, heads.count) where w != except {
            let value = heads[w].ticket.load(ordering: .sequentiallyConsistent)
            guard value != .max, includingBlocked || value & Self.blockedBit == 0 else { continue }
            let ticket = value & ~Self.blockedBit
            if ticket < (best?.ticket ?? .max) { best = (w, ticket) }
        }
        return best
    }

    public var waiting: Int { max(0, pending.load(ordering: .relaxed)) }
}

/// The counters of every limited service and endpoint, for the lifetime of the process,
/// so each table built for the same service shares them (as `PoolKeys` shares pool keys).
///
/// Threading: called by the control plane while it builds a table, never on the request
/// path; the mutex protects the dictionaries.
public final class LimitCounters: Sendable {
    public static let shared = LimitCounters()

    private let state = Mutex<(lines: [String: ServiceWaitLine], slots: [String: EndpointSlots])>(([:], [:]))

    public init() {}

    /// The wait line of `service`.
    public func line(service: String) -> ServiceWaitLine {
        state.withLock { state in
            if let line = state.lines[service] { return line }
            let line = ServiceWaitLine()
            state.lines[service] = line
            return line
        }
    }

    /// The slot counter of `service`'s endpoint `poolKey`.
    public func slots(service: String, poolKey: Int) -> EndpointSlots {
        let line = line(service: service)
        return state.withLock { state in
            let name = "\(service)|\(poolKey)"
            if let slots = state.slots[name] { return slots }
            let slots = EndpointSlots(line: line)
            state.slots[name] = slots
            return slots
        }
    }
}
