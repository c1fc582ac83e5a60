#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import YardBalancing
import YardIO
import YardModel
import YardTLS

/// An endpoint of a service, as the health checker tracks it.
public struct HealthTarget: Sendable, Equatable {
    public var service: String
    /// `Endpoint.poolKey`: stable per address:port.
    public var endpointKey: Int
    public var address: String
    public var port: UInt16
    public var policy: HealthPolicy
    /// How the endpoint is spoken to: with `tls`, a check is a verified TLS handshake
    /// first (the `tcp` check too), then the HTTP request over it.
    public var transport: UpstreamTransport

    public init(service: String, endpointKey: Int, address: String, port: UInt16, policy: HealthPolicy,
                transport: UpstreamTransport = UpstreamTransport()) {
        self.service = service
        self.endpointKey = endpointKey
        self.address = address
        self.port = port
        self.policy = policy
        self.transport = transport
    }
}

/// Identifies an endpoint within a service (the same address may serve two services
/// with different checks).
public struct HealthKey: Hashable, Sendable {
    public var service: String
    public var endpointKey: Int

    public init(service: String, endpointKey: Int) {
        self.service = service
        self.endpointKey = endpointKey
    }
}

/// What the table builder needs to know of one endpoint at one instant.
public struct HealthReading: Sendable, Equatable {
    public var status: EndpointHealth.Status
    public var routable: Bool
    public var ejected: Bool
    public var ramping: Bool
    public var health: EndpointHealth
    /// Health status changes so far.
    public var transitions: Int
}

/// Runs active checks for every endpoint, applies passive ejections reported by the data
/// plane, and tells its owner when routing should change (health, ejection or a slow-start
/// step). The owner then rebuilds the routing table from `readings(now:)`.
///
/// Threading: every method may be called from any thread; one mutex protects the entries.
/// Probes run on a concurrent queue (blocking, with their own timeouts), so a slow
/// endpoint never delays another endpoint's check and never touches an event loop.
public final class HealthChecker: Sendable {
    private struct Entry {
        var target: HealthTarget
        var health: EndpointHealth
        var nextCheck: Int64
        var probing = false
        /// Health status changes since the endpoint appeared (for metrics).
        var transitions = 0
    }

    private struct State {
        var entries: [HealthKey: Entry] = [:]
        var timer: DispatchSourceTimer?
        var seeded = false
        var random = SplitMix64(seed: 0x5EED)
        var lastRampNotice: Int64 = 0
        /// Per service: when the "ejection cap reached" warning was last logged.
        var capWarnings: [String: Int64] = [:]
        /// Per service: the outlier rules' interval windows.
        var sweeps: [String: OutlierSweep] = [:]
    }

    private let state = Mutex<State>(State())
    private let tickQueue = DispatchQueue(label: "switchyard.health")
    private let probeQueue = DispatchQueue(label: "switchyard.health.probes", attributes: .concurrent)
    /// Client contexts for checks of TLS endpoints (one per CA file, verification, ALPN).
    private let tlsContexts = TLSClientContextCache()
    private let onChange: @Sendable () -> Void

    /// `onChange` is called (on the checker's queue) whenever routing should be rebuilt.
    public init(onChange: @escaping @Sendable () -> Void) {
        self.onChange = onChange
    }

    /// Starts the 100 ms scheduling tick.
    public func start() {
        state.withLock { state in
            guard state.timer == nil else { return }
            let timer = DispatchSource.makeTimerSource(queue: tickQueue)
            timer.schedule(deadline: .now(), repeating: .milliseconds(100), leeway: .milliseconds(10))
            timer.setEventHandler { [weak self] in self?.tick() }
            timer.resume()
            state.timer = timer
        }
    }

    public func stop() {
        let timer = state.withLock { state -> DispatchSourceTimer? in
            defer { state.timer = nil }
            return state.timer
        }
        timer?.cancel()
    }

    /// Replaces the set of tracked endpoints (from a new catalog). New endpoints start in
    /// their policy's initial state and, after the first catalog, ramp with slow start.
    public func update(targets: [HealthTarget], now: Int64 = monotonicMilliseconds()) {
        state.withLock { state in
            var next: [HealthKey: Entry] = [:]
            for target in targets {
                let key = HealthKey(service: target.service, endpointKey: target.endpointKey)
                if var entry = state.entries[key] {
                    if entry.target.policy != target.policy { entry.nextCheck = now }
                    entry.target = target
                    next[key] = entry
                } else {
                    var health = EndpointHealth(policy: target.policy, now: now)
                    if state.seeded {
                        health.joined(now: now)
                    } else {
                        // Present at startup: no ramp.
                        health.joined(now: now - Int64(target.policy.slowStartMs))
                    }
                    next[key] = Entry(target: target, health: health, nextCheck: now)
                }
            }
            state.entries = next
            state.seeded = true
        }
    }

    /// Waits (polling) until every checked endpoint has had its first result, or the
    /// longest check timeout (plus a margin) has passed: lets `run` open its listeners with
    /// a routing table that already knows which endpoints answer.
    public func waitForFirstResults() {
        let longest = state.withLock { state in
            state.entries.values.map { $0.target.policy.kind == .none ? 0 : $0.target.policy.timeoutMs }.max() ?? 0
        }
        guard longest > 0 else { return }
        let deadline = monotonicMilliseconds() + Int64(longest) + 250
        while monotonicMilliseconds() < deadline {
            let pending = state.withLock { state in
                state.entries.values.contains { $0.target.policy.kind != .none && $0.health.status == .unknown }
            }
            if !pending { return }
            usleep(10_000)
        }
    }

    /// The routing state of every endpoint at `now`.
    public func readings(now: Int64 = monotonicMilliseconds()) -> [HealthKey: HealthReading] {
        state.withLock { state in
            state.entries.mapValues { entry in
                HealthReading(
                    status: entry.health.status,
                    routable: entry.health.isRoutable(now: now),
                    ejected: entry.health.isEjected(now: now),
                    ramping: entry.health.isRamping(policy: entry.target.policy, now: now),
                    health: entry.health, transitions: entry.transitions)
            }
        }
    }

    /// The data plane saw `consecutiveFailures` failed requests in a row to this endpoint:
    /// eject it, unless that would eject more than the policy's share of the service.
    /// Returns true if it was ejected.
    @discardableResult
    public func reportFailures(_ key: HealthKey, now: Int64 = monotonicMilliseconds()) -> Bool {
        let ejected: Bool = state.withLock { state in
            guard var entry = state.entries[key], entry.health.isRoutable(now: now) else { return false }
            let siblings = state.entries.filter { $0.key.service == key.service }
            let already = siblings.values.filter { $0.health.isEjected(now: now) }.count
            guard mayEject(ejected: already, total: siblings.count, maxPercent: entry.target.policy.maxEjectedPercent) else {
                // Once per 10 s per service: under load this would otherwise repeat every
                // few requests.
                guard now - (state.capWarnings[key.service] ?? Int64.min / 2) >= 10_000 else { return false }
                state.capWarnings[key.service] = now
                logger.warning("\(key.service)/\(entry.target.address):\(entry.target.port) failing, but \(already) of \(siblings.count) endpoints are already ejected (max \(entry.target.policy.maxEjectedPercent)%)")
                return false
            }
            let until = entry.health.eject(policy: entry.target.policy, now: now)
            state.entries[key] = entry
            logger.warning("\(key.service)/\(entry.target.address):\(entry.target.port) ejected for \(until - now) ms after consecutive failures")
            return true
        }
        if ejected { tickQueue.async { [onChange] in onChange() } }
        return ejected
    }

    // MARK: Outlier detection

    /// Whether a service uses the success-rate or latency rule: only then does the owner
    /// need to feed `recordTraffic`.
    public var wantsTraffic: Bool {
        state.withLock { state in state.entries.values.contains { $0.target.policy.detectsOutliers } }
    }

    /// Ejections so far per service and reason, over the endpoints the service has now.
    public func ejectionCounts() -> [String: [EjectionReason: Int]] {
        state.withLock { state in
            var counts: [String: [EjectionReason: Int]] = [:]
            for (key, entry) in state.entries {
                counts[key.service, default: [:]].merge(entry.health.ejectionsByReason, uniquingKeysWith: +)
            }
            return counts
        }
    }

    /// The data plane's cumulative traffic counters per endpoint key (`Endpoint.poolKey`),
    /// read about once a second. Every service's `outlier_interval`, the traffic of the
    /// interval is judged (`OutlierDetector`) and the outliers are ejected, worst first,
    /// while the service stays within `max_ejected_percent`. Returns the ejected endpoints.
    @discardableResult
    public func recordTraffic(_ cumulative: [Int: EndpointTraffic], latencyBoundsMs: [Double],
                              now: Int64 = monotonicMilliseconds()) -> [(HealthKey, EjectionReason)] {
        let ejected: [(HealthKey, EjectionReason)] = state.withLock { state in
            var byService: [String: [HealthKey]] = [:]
            for key in state.entries.keys { byService[key.service, default: []].append(key) }
            for service in Array(state.sweeps.keys) where byService[service] == nil { state.sweeps[service] = nil }
            var ejected: [(HealthKey, EjectionReason)] = []
            for (service, keys) in byService {
                guard let policy = state.entries[keys[0]]?.target.policy, policy.detectsOutliers else {
                    state.sweeps[service] = nil
                    continue
                }
                var traffic: [Int: EndpointTraffic] = [:]
                for key in keys { traffic[key.endpointKey] = cumulative[key.endpointKey] }
                var sweep = state.sweeps[service] ?? OutlierSweep()
                let windows = sweep.feed(traffic, intervalMs: policy.outlierIntervalMs, now: now)
                state.sweeps[service] = sweep
                guard let windows else { continue }
                for key in keys { state.entries[key]?.health.outlierIntervalPassed(now: now) }
                // Judged among the endpoints that take traffic: an ejected one's leftover
                // failures would drag the mean down.
                let serving = windows.filter { state.entries[HealthKey(service: service, endpointKey: $0.key)]?.health.isRoutable(now: now) == true }
                for verdict in OutlierDetector.outliers(serving, policy: policy, latencyBoundsMs: latencyBoundsMs) {
                    let key = HealthKey(service: service, endpointKey: verdict.endpointKey)
                    guard var entry = state.entries[key] else { continue }
                    let name = "\(service)/\(entry.target.address):\(entry.target.port)"
                    let already = keys.filter { state.entries[$0]?.health.isEjected(now: now) == true }.count
                    guard mayEject(ejected: already, total: keys.count, maxPercent: policy.maxEjectedPercent) else {
                        logger.warning("\(name) is an outlier (\(verdict.detail)), but \(already) of \(keys.count) endpoints are already ejected (max \(policy.maxEjectedPercent)%)")
                        break
                    }
                    let until = entry.health.ejectAsOutlier(verdict.reason, policy: policy, now: now)
                    state.entries[key] = entry
                    logger.warning("\(name) ejected for \(until - now) ms (\(verdict.reason.rawValue)): \(verdict.detail)")
                    ejected.append((key, verdict.reason))
                }
            }
            return ejected
        }
        if !ejected.isEmpty { tickQueue.async { [onChange] in onChange() } }
        return ejected
    }

    // MARK: Scheduling

    private func tick() {
        let now = monotonicMilliseconds()
        var due: [(HealthKey, HealthTarget)] = []
        let changed: Bool = state.withLock { state in
            var changed = false
            var ramping = false
            for key in Array(state.entries.keys) {
                guard var entry = state.entries[key] else { continue }
                if entry.health.endEjectionIfDue(now: now) {
                    changed = true
                    logger.info("\(key.service)/\(entry.target.address):\(entry.target.port) back from ejection")
                }
                if entry.health.isRamping(policy: entry.target.policy, now: now) { ramping = true }
                if entry.target.policy.kind != .none && !entry.probing && now >= entry.nextCheck {
                    entry.probing = true
                    due.append((key, entry.target))
                }
                state.entries[key] = entry
            }
            // Slow start: rebuild weights every 500 ms while something ramps.
            if ramping && now - state.lastRampNotice >= 500 {
                state.lastRampNotice = now
                changed = true
            }
            return changed
        }
        if changed { onChange() }
        for (key, target) in due {
            probeQueue.async { [weak self] in
                guard let self, let address = SocketAddress(host: target.address, port: target.port) else { return }
                let outcome: HealthProbe.Outcome
                if let tls = target.transport.tls {
                    let key = TLSClientContextCache.Key(caFile: tls.caFile, verify: tls.verify,
                                                        alpn: target.transport.protocol == .h2 ? ["h2"] : ["http/1.1"])
                    do {
                        let context = try self.tlsContexts.context(for: key)
                        outcome = HealthProbe.run(address: address, policy: target.policy,
                                                  tls: HealthProbe.TLS(context: context, serverName: tls.serverName ?? target.address))
                    } catch {
                        outcome = HealthProbe.Outcome(passed: false, reason: "TLS: \(error)")
                    }
                } else {
                    outcome = HealthProbe.run(address: address, policy: target.policy)
                }
                self.record(key, outcome: outcome)
            }
        }
    }

    private func record(_ key: HealthKey, outcome: HealthProbe.Outcome) {
        let now = monotonicMilliseconds()
        let changed: Bool = state.withLock { state in
            guard var entry = state.entries[key] else { return false }
            let before = entry.health.status
            let flipped = entry.health.recordCheck(passed: outcome.passed, reason: outcome.reason, policy: entry.target.policy, now: now)
            entry.probing = false
            let interval = entry.target.policy.intervalMs
            let spread = interval * entry.target.policy.jitterPercent / 100
            let jitter = spread > 0 ? Int(state.random.next() % UInt64(2 * spread + 1)) - spread : 0
            entry.nextCheck = now + Int64(max(50, interval + jitter))
            state.entries[key] = entry
            if before != entry.health.status {
                entry.transitions += 1
                state.entries[key] = entry
                let name = "\(key.service)/\(entry.target.address):\(entry.target.port)"
                if entry.health.status == .healthy {
                    logger.info("\(name) is healthy")
                } else if entry.health.status == .unhealthy {
                    logger.warning("\(name) is unhealthy: \(outcome.reason ?? "check failed")")
                }
            }
            return flipped
        }
        if changed { tickQueue.async { [onChange] in onChange() } }
    }
}
