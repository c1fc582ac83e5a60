// The control loop between the state store and this replica: loads and watches the
// stored traffic states, performs operators' changes as compare-and-sets, and reports
// this replica (the revisions it applied) so `flip --wait` can tell when all agree.
//
// Nothing on the request path waits for it. When the store cannot be reached, the last
// states it loaded keep serving and `status` says the store is unreachable, since when
// and why; the watch retries with backoff and converges once the store is back.

import Foundation
import Synchronization
import YardDiscovery
import YardIO
import YardModel

/// The state store's condition, as `status` shows it.
public struct StoreStatus: Sendable, Equatable, Codable {
    public var kind: String
    public var reachable: Bool
    public var error: String?
    /// When it became unreachable (nil while reachable).
    public var unreachableSinceUnix: Double?
    public var lastLoadUnix: Double?

    enum CodingKeys: String, CodingKey {
        case kind, reachable, error
        case unreachableSinceUnix = "unreachable_since"
        case lastLoadUnix = "last_load_at"
    }

    public init(kind: String, reachable: Bool, error: String? = nil, unreachableSinceUnix: Double? = nil, lastLoadUnix: Double? = nil) {
        self.kind = kind
        self.reachable = reachable
        self.error = error
        self.unreachableSinceUnix = unreachableSinceUnix
        self.lastLoadUnix = lastLoadUnix
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        kind = try keys.decode(String.self, forKey: .kind)
        reachable = try keys.decode(Bool.self, forKey: .reachable)
        error = try keys.decodeIfPresent(String.self, forKey: .error)
        unreachableSinceUnix = try keys.decodeTimestampIfPresent(forKey: .unreachableSinceUnix)
        lastLoadUnix = try keys.decodeTimestampIfPresent(forKey: .lastLoadUnix)
    }

    public func encode(to encoder: any Encoder) throws {
        var keys = encoder.container(keyedBy: CodingKeys.self)
        try keys.encode(kind, forKey: .kind)
        try keys.encode(reachable, forKey: .reachable)
        try keys.encodeIfPresent(error, forKey: .error)
        try keys.encodeTimestampIfPresent(unreachableSinceUnix, forKey: .unreachableSinceUnix)
        try keys.encodeTimestampIfPresent(lastLoadUnix, forKey: .lastLoadUnix)
    }
}

/// What a replica says about itself in its report (the rest is the control loop's own).
public struct ReplicaSelf: Sendable {
    public var admin: String?
    public var applied: [String: Int64]
    public var tableVersion: UInt64
    public var windows: [String: [PublishedWindow]]?

    public init(admin: String?, applied: [String: Int64], tableVersion: UInt64, windows: [String: [PublishedWindow]]? = nil) {
        self.admin = admin
        self.applied = applied
        self.tableVersion = tableVersion
        self.windows = windows
    }
}

/// Why an operator's change did not happen.
public enum TrafficFailure: Error, Sendable, Equatable {
    /// No such service in discovery (404).
    case unknownService(String)
    /// The action does not fit the service (400).
    case invalid(String)
    /// The caller's revision is not the stored one, or another writer won (409).
    case conflict(expected: Int64, current: TrafficState)
    /// The store could not be written; nothing changed (503).
    case storeUnavailable(String)
    /// The action fits the service but not its state now: a step with the canary at the
    /// top of its plan (409, a refusal like a stale revision: the CLI exits 1).
    case refused(String)
}

/// Keeps this replica's traffic states in step with the store.
///
/// Threading: `perform`, `states` and `status` may be called from any thread; the watch
/// and the reporter run on their own threads; `onChange` is called from either the watch
/// thread or the thread that performed a change, never concurrently with itself (it is
/// called under `applyLock`).
public final class TrafficControl: Sendable {
    public let store: TrafficStore
    public let replicaID: String
    private let ttl: Duration
    private let onChange: @Sendable ([String: TrafficState]) -> Void
    private let describeSelf: @Sendable () -> ReplicaSelf
    private let startedUnix = Date().timeIntervalSince1970
    private let state: Mutex<State>
    /// Serialises "adopt new states, call onChange" so the runtime sees states in order.
    private let applyLock = Mutex<Void>(())
    private let reportNow = DispatchSemaphore(value: 0)

    private struct State {
        var states: [String: TrafficState] = [:]
        var status: StoreStatus
        var stopped = false
    }

    public init(
        store: TrafficStore, replicaID: String, ttl: Duration,
        describeSelf: @escaping @Sendable () -> ReplicaSelf,
        onChange: @escaping @Sendable ([String: TrafficState]) -> Void
    ) {
        self.store = store
        self.replicaID = replicaID
        self.ttl = ttl
        self.describeSelf = describeSelf
        self.onChange = onChange
        self.state = Mutex(State(status: StoreStatus(kind: store.description, reachable: true)))
    }

    public var states: [String: TrafficState] { state.withLock { $0.states } }
    public var status: StoreStatus { state.withLock { $0.status } }

    // MARK: Lifecycle

    /// Loads once (so the first routing table already has the stored states), then
    /// starts the watch and the reporter threads. A store that cannot be read now is
    /// reported and retried; startup does not wait for it.
    public func start() {
        if let snapshot = try? store.load() {
            adopt(snapshot.states)
            markReachable(loaded: true)
        }
        Thread.detachNewThread { [self] in watchLoop() }
        Thread.detachNewThread { [self] in reportLoop() }
    }

    /// Stops the threads (they notice within a few seconds) and withdraws this replica.
    public func stop() {
        state.withLock { $0.stopped = true }
        reportNow.signal()
        store.withdraw(replica: replicaID)
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    /// Asks the reporter to publish this replica's report now (after a table was applied).
    public func reportSoon() { reportNow.signal() }

    // MARK: Changes

    /// Applies `action` to `service` as a compare-and-set. `expectedRevision`, when given,
    /// must be the current revision (the CLI's optimistic lock). On success the new state
    /// is adopted at once (not after the watch sees it) and returned.
    public func perform(
        _ action: TrafficAction, service: ServiceDefinition, expectedRevision: Int64?, who: String, why: String
    ) throws(TrafficFailure) -> TrafficState {
        let current = effectiveState(service)
        if let expectedRevision, expectedRevision != current.revision {
            throw .conflict(expected: expectedRevision, current: current)
        }
        let next: TrafficState
        do {
            next = try current.applying(action, tracks: service.tracks, who: who, why: why, timeUnix: Date().timeIntervalSince1970)
        } catch {
            if case .step = action, let canary = current.canaryTrack,
               !current.plan.contains(where: { $0 > current.canaryPermille }), service.tracks.contains(canary) {
                throw .refused(error.description)
            }
            throw .invalid(error.description)
        }
        let outcome: StoreWrite
        do {
            outcome = try store.compareAndSwap(service: service.name, state: next)
        } catch {
            markUnreachable(error.description)
            throw .storeUnavailable("the state store (\(store.description)) could not be written: \(error.description); nothing changed")
        }
        markReachable(loaded: false)
        switch outcome {
        case .applied:
            var states = self.states
            states[service.name] = next
            adopt(states)
            return next
        case .conflict(let stored):
            let winner = stored ?? TrafficState(discovered: service)
            var states = self.states
            if let stored { states[service.name] = stored }
            adopt(states)
            throw .conflict(expected: current.revision, current: winner)
        }
    }

    /// The stored state of `service`, or discovery's when nothing is stored.
    public func effectiveState(_ service: ServiceDefinition) -> TrafficState {
        if let stored = states[service.name], stored.revision > 0 { return stored.effective(discovered: service) }
        return TrafficState(discovered: service)
    }

    /// The replicas whose reports are live, this one included even when the store is
    /// unreachable (then marked so).
    public func replicas() -> (reports: [ReplicaReport], error: String?) {
        do {
            var reports = try store.replicas()
            if !reports.contains(where: { $0.id == replicaID }) { reports.append(selfReport()) }
            return (reports.sorted { $0.id < $1.id }, nil)
        } catch {
            return ([selfReport()], error.description)
        }
    }

    // MARK: Threads

    private func watchLoop() {
        var cursor: Int64?
        var backoff = Backoff(initialMs: 200, maximumMs: 5_000, floorMs: 50, seed: UInt64(truncatingIfNeeded: replicaID.hashValue))
        while !stopped {
            do {
                if cursor == nil {
                    let snapshot = try store.load()
                    adopt(snapshot.states)
                    markReachable(loaded: true)
                    cursor = snapshot.cursor
                    backoff.reset()
                }
                if try store.waitForChange(after: cursor ?? 0, timeout: .seconds(5)) { cursor = nil }
            } catch {
                markUnreachable(error.description)
                cursor = nil
                pause(milliseconds: Int(backoff.nextDelayMs()))
            }
        }
    }

    private func reportLoop() {
        let interval = max(0.5, ttl.seconds / 3)
        while !stopped {
            do {
                try store.report(selfReport(), ttl: ttl)
            } catch {
                markUnreachable(error.description)
            }
            _ = reportNow.wait(timeout: .now() + interval)
        }
    }

    private func selfReport() -> ReplicaReport {
        let me = describeSelf()
        let status = self.status
        return ReplicaReport(
            id: replicaID, admin: me.admin, pid: getpid(), applied: me.applied, tableVersion: me.tableVersion,
            storeReachable: status.reachable, storeError: status.error, reportedUnix: Date().timeIntervalSince1970,
            startedUnix: startedUnix, windows: me.windows)
    }

    // MARK: State

    private func adopt(_ states: [String: TrafficState]) {
        applyLock.withLock { _ in
            let changed = state.withLock { current -> Bool in
                guard current.states != states else { return false }
                current.states = states
                return true
            }
            if changed { onChange(states) }
        }
    }

    private func markReachable(loaded: Bool) {
        let recovered = state.withLock { current -> Bool in
            let was = current.status.reachable
            current.status.reachable = true
            current.status.error = nil
            current.status.unreachableSinceUnix = nil
            if loaded { current.status.lastLoadUnix = Date().timeIntervalSince1970 }
            return !was
        }
        if recovered {
            logger.info("state store \(store.description) reachable again; traffic states reloaded", metadata: ["store": .string(store.description), "reachable": "true"])
            reportNow.signal()
        }
    }

    private func markUnreachable(_ error: String) {
        let first = state.withLock { current -> Bool in
            let was = current.status.reachable
            current.status.reachable = false
            current.status.error = error
            if was { current.status.unreachableSinceUnix = Date().timeIntervalSince1970 }
            return was
        }
        if first { logger.error("state store unreachable: \(error); serving the last traffic states", metadata: ["store": .string(store.description), "reachable": "false", "error": .string(error)]) }
    }
}

