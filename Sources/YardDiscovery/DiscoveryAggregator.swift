// The thin shell around `AggregatorState`: receives providers' callbacks from any
// thread, keeps each provider's status, runs the debounce timer on a queue and hands
// merged catalogs to the runtime.

import Dispatch
import Synchronization
import YardIO
import YardModel

/// Collects snapshots from several providers and applies their merge, debounced.
///
/// Threading: `callbacks(for:)`'s callbacks, `statuses` and `waitForFirstReports` may be
/// used from any thread. `onApply` and `onStatusChange` run on `queue` (serial), never
/// concurrently with each other, and never while the aggregator's lock is held.
public final class DiscoveryAggregator: Sendable {
    /// Protects the state machine, the statuses and the timer generation. Held only for
    /// the state machine's pure steps: never across a callback.
    private let state: Mutex<Shared>
    private let queue: DispatchQueue
    private let clock: @Sendable () -> Int64
    private let wallClock: @Sendable () -> Double
    private let onApply: @Sendable (ServiceCatalog) -> Void
    private let onStatusChange: @Sendable (ProviderStatus, ProviderCondition) -> Void
    private let onRejected: @Sendable (_ provider: String, [DiscoveredValues.Problem]) -> Void
    /// switchyard.yml's middlewares, which discovered routes name (`.middlewares` labels).
    private let middlewares: [String: MiddlewareKind]
    /// Signalled on every first report of a provider (for `waitForFirstReports`).
    private let firstReport = DispatchSemaphore(value: 0)

    private struct Shared {
        var machine: AggregatorState
        var statuses: [String: ProviderStatus]
        var reported: Set<String> = []
        /// Bumped on each arm; a timer that fires with an older generation does nothing.
        var timerGeneration = 0
        /// Merge warnings last logged: logged again only when they change.
        var loggedWarnings: [String] = []
        /// Each provider's rejections in its last snapshot: a rejection is logged and
        /// counted when it appears, not again with every snapshot that still has it.
        var screened: [String: Set<String>] = [:]
    }

    /// - Parameters:
    ///   - providers: name and source of each provider, in config order (the first wins
    ///     merge conflicts; see `AggregatorState.merge`).
    ///   - quiescence: the debounce window.
    ///   - queue: a serial queue for the timer and the callbacks.
    ///   - clock: monotonic milliseconds (injected for tests).
    ///   - onApply: receives each merged catalog that differs from the last.
    ///   - onStatusChange: receives a provider's status after a failure or a recovery
    ///     (not after every healthy snapshot), with what the provider said.
    ///   - onRejected: receives the workloads a provider's snapshot left out (or the
    ///     screen dropped) for breaking `DiscoveredValues`' rules, once when they appear;
    ///     they are already counted in the provider's status.
    public init(
        providers: [(name: String, source: String)], quiescence: Quiescence, queue: DispatchQueue,
        clock: @escaping @Sendable () -> Int64 = { monotonicMilliseconds() },
        wallClock: @escaping @Sendable () -> Double = { wallClockSeconds() },
        onApply: @escaping @Sendable (ServiceCatalog) -> Void,
        onStatusChange: @escaping @Sendable (ProviderStatus, ProviderCondition) -> Void = { _, _ in },
        onRejected: @escaping @Sendable (_ provider: String, [DiscoveredValues.Problem]) -> Void = { _, _ in },
        middlewares: [String: MiddlewareKind] = [:]
    ) {
        self.middlewares = middlewares
        var statuses: [String: ProviderStatus] = [:]
        for provider in providers { statuses[provider.name] = ProviderStatus(name: provider.name, source: provider.source) }
        state = Mutex(Shared(machine: AggregatorState(order: providers.map(\.name), quiescence: quiescence), statuses: statuses))
        self.queue = queue
        self.clock = clock
        self.wallClock = wallClock
        self.onApply = onApply
        self.onStatusChange = onStatusChange
        self.onRejected = onRejected
    }

    // MARK: Provider side

    /// The callbacks to build the provider `name` with.
    public func callbacks(for name: String) -> ProviderCallbacks {
        ProviderCallbacks(
            onSnapshot: { [weak self] catalog in self?.receive(provider: name, catalog: catalog) },
            onStatus: { [weak self] condition in self?.receive(provider: name, condition: condition) },
            onRejected: { [weak self] problems in self?.receive(provider: name, rejected: problems) })
    }

    /// Every snapshot passes `DiscoveredValues.screen` here, whatever its provider did
    /// already: what breaks the rules is dropped, logged and counted, and the rest of the
    /// snapshot is used.
    private func receive(provider: String, catalog unscreened: ServiceCatalog) {
        let (screened, screenRejections) = DiscoveredValues.screen(unscreened)
        let (catalog, routeRejections) = DiscoveredRouteMiddlewares.resolve(screened, defined: middlewares)
        let rejections = screenRejections + routeRejections
        let appeared = state.withLock { shared in
            let before = shared.screened[provider] ?? []
            shared.screened[provider] = Set(rejections.map(\.description))
            return rejections.filter { !before.contains($0.description) }
        }
        if !appeared.isEmpty {
            receive(provider: provider, rejected: appeared.map { DiscoveredValues.Problem(field: $0.problem.field, message: $0.description) })
        }
        let now = clock(), wall = wallClock()
        let (action, recovered, first) = state.withLock { shared in
            let wasHealthy = shared.statuses[provider]?.healthy ?? true
            shared.statuses[provider, default: ProviderStatus(name: provider, source: "")].recordSnapshot(nowUnix: wall)
            let first = shared.reported.insert(provider).inserted
            let recovered = wasHealthy ? nil : shared.statuses[provider]
            return (shared.machine.receive(provider: provider, catalog: catalog, nowMs: now), recovered, first)
        }
        if first { firstReport.signal() }
        if let recovered { queue.async { self.onStatusChange(recovered, .healthy) } }
        perform(action)
    }

    private func receive(provider: String, rejected problems: [DiscoveredValues.Problem]) {
        state.withLock { shared in
            shared.statuses[provider, default: ProviderStatus(name: provider, source: "")].recordRejected(problems)
        }
        queue.async { self.onRejected(provider, problems) }
    }

    private func receive(provider: String, condition: ProviderCondition) {
        let wall = wallClock()
        let (status, first, changed) = state.withLock { shared -> (ProviderStatus, Bool, Bool) in
            var status = shared.statuses[provider] ?? ProviderStatus(name: provider, source: "")
            let wasHealthy = status.healthy
            status.record(condition, nowUnix: wall)
            shared.statuses[provider] = status
            let first = condition != .healthy && shared.reported.insert(provider).inserted
            // Reported (and logged) once per outage: the first failure and the recovery;
            // the retries in between only count (`status.errors`).
            return (status, first, (condition == .healthy) != wasHealthy)
        }
        if first { firstReport.signal() }
        if changed { queue.async { self.onStatusChange(status, condition) } }
    }

    // MARK: Startup

    /// Blocks until every provider has delivered a snapshot or reported a failure, or
    /// `timeoutMs` passed; then seeds the state with what arrived and returns its merge,
    /// which the caller applies itself (so the first routing table has every provider's
    /// services without waiting a quiescence window). Call once, before traffic.
    /// `delivered` says whether any provider delivered a snapshot (failures alone give an
    /// empty catalog that should not replace one already serving).
    public func waitForFirstReports(timeoutMs: Int64) -> (catalog: ServiceCatalog, warnings: [String], missing: [String], delivered: Bool) {
        let deadline = clock() + timeoutMs
        while true {
            let done = state.withLock { $0.reported.count >= $0.machine.order.count }
            let left = deadline - clock()
            if done || left <= 0 { break }
            _ = firstReport.wait(timeout: .now() + .milliseconds(Int(min(left, 50))))
        }
        return state.withLock { shared in
            let snapshots = shared.machine.latest
            shared.machine.seed(snapshots)
            shared.machine = Self.cancelWindow(shared.machine)
            let merged = AggregatorState.merge(order: shared.machine.order, snapshots: snapshots)
            shared.loggedWarnings = merged.warnings
            let missing = shared.machine.order.filter { !shared.reported.contains($0) }
            return (merged.catalog, merged.warnings, missing, !snapshots.isEmpty)
        }
    }

    /// A state whose open window (from snapshots the startup merge already covers) is
    /// closed, so the first timer does not re-apply the same content.
    private static func cancelWindow(_ machine: AggregatorState) -> AggregatorState {
        var copy = machine
        _ = copy.tick(nowMs: .max)
        return copy
    }

    // MARK: Status

    /// Every provider's status, in config order.
    public var statuses: [ProviderStatus] {
        state.withLock { shared in shared.machine.order.compactMap { shared.statuses[$0] } }
    }

    /// Merged catalogs applied so far (not counting the startup one).
    public var applyCount: Int { state.withLock { $0.machine.applies } }

    // MARK: Timer

    private func perform(_ action: AggregatorState.Action) {
        switch action {
        case .none, .apply:
            // `receive` never applies: only the timer closes a window (see `fire`).
            break
        case .arm(let at):
            let generation = state.withLock { shared -> Int in
                shared.timerGeneration += 1
                return shared.timerGeneration
            }
            let delay = max(0, at - clock())
            queue.asyncAfter(deadline: .now() + .milliseconds(Int(delay))) { [weak self] in
                self?.fire(generation: generation)
            }
        }
    }

    private func fire(generation: Int) {
        let now = clock()
        let (action, newWarnings) = state.withLock { shared -> (AggregatorState.Action, [String]) in
            guard shared.timerGeneration == generation else { return (.none, []) }
            let action = shared.machine.tick(nowMs: now)
            guard case .apply(_, let warnings) = action, warnings != shared.loggedWarnings else { return (action, []) }
            shared.loggedWarnings = warnings
            return (action, warnings)
        }
        switch action {
        case .apply(let catalog, _):
            // Already on `queue`: apply in place, so applies keep their order.
            for warning in newWarnings { logger.warning("discovery: \(warning)") }
            onApply(catalog)
        default:
            perform(action)
        }
    }
}
