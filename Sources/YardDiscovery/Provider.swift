// What every discovery provider (file, etcd, DNS, Docker, Swarm, Consul) has in common:
// the protocol the runtime drives, the status value that status/metrics/dashboard show,
// and the retry schedule a provider follows while its backend is unreachable.

import YardBalancing
import YardModel

// MARK: - DiscoveryProvider

/// A source of services that pushes *complete* catalog snapshots (the Traefik model:
/// never deltas, so the consumer can rebuild its routing table from one value).
///
/// A provider is built with a `ProviderCallbacks` (by convention its init's last
/// parameter) and driven by `start()` and `stop()`.
///
/// Contract every provider keeps:
/// - After `start()`, it delivers its first snapshot (or its first failure) as soon as it
///   can, then a new complete snapshot whenever its backend's content may have changed.
///   Delivering an unchanged snapshot is allowed: the aggregator drops it (but counts it
///   as proof of health).
/// - When its backend is unreachable or answers garbage, it reports
///   `.failing(message)` through `onStatus` and *keeps quiet about services*: the last
///   snapshot stays with the consumer, which keeps serving it. The message says what
///   failed (address, HTTP status, the JSON path that did not parse) but need not name the
///   provider: the consumer prefixes its `name`.
/// - It retries with `Backoff` (exponential, full jitter, capped; reset on success), and
///   on recovery delivers a fresh snapshot (which also clears `.failing`). `onStatus(.healthy)`
///   says "reachable again" without a snapshot, e.g. a watch that reconnected and
///   found nothing new.
/// - It never crashes on input: a bad record is skipped with a `.failing` report, or the
///   whole answer is refused; it never delivers a half-parsed catalog.
///
/// Threading: `start()` and `stop()` may be called from any thread. A provider does its
/// I/O on its own threads or queues. Its callbacks may run on any thread, but one
/// provider's callbacks are **never concurrent with each other** (so they arrive in
/// order); callbacks of different providers may be concurrent, and the consumer must be
/// thread-safe. After `stop()` returns, no callback *starts*; `stop()` is final.
public protocol DiscoveryProvider: AnyObject, Sendable {
    /// Unique among the configured providers: `file`, `etcd`, `dns`, or `etcd#2` when a
    /// type appears twice. Used in logs, `/status` and the metrics' `provider` label.
    var name: String { get }
    /// Where it reads from, for status: a path, endpoints and prefix, a resolver.
    var source: String { get }
    /// Begins watching. Calling it twice, or after `stop()`, does nothing.
    func start()
    /// Stops watching and releases connections and threads. Final.
    func stop()
}

/// How a provider talks to its consumer (the aggregator).
///
/// Threading: see `DiscoveryProvider`: called serially per provider, from any thread.
public struct ProviderCallbacks: Sendable {
    /// A complete catalog: every service this provider knows, with every instance.
    public var onSnapshot: @Sendable (ServiceCatalog) -> Void
    /// The provider's health changed, or it failed again (each failure is reported).
    public var onStatus: @Sendable (ProviderCondition) -> Void
    /// Workloads left out of the snapshot because a value broke `DiscoveredValues`'
    /// rules (a track holding a newline, an address that is no address), each with the
    /// field and a message naming the workload. Reported when the set changes.
    public var onRejected: @Sendable ([DiscoveredValues.Problem]) -> Void

    public init(
        onSnapshot: @escaping @Sendable (ServiceCatalog) -> Void,
        onStatus: @escaping @Sendable (ProviderCondition) -> Void,
        onRejected: @escaping @Sendable ([DiscoveredValues.Problem]) -> Void = { _ in }
    ) {
        self.onSnapshot = onSnapshot
        self.onStatus = onStatus
        self.onRejected = onRejected
    }

    /// Callbacks that do nothing (tests, and providers built before their consumer).
    public static let ignored = ProviderCallbacks(onSnapshot: { _ in }, onStatus: { _ in })
}

/// What a provider says about its backend.
public enum ProviderCondition: Sendable, Equatable {
    /// The backend answers; the last snapshot is current.
    case healthy
    /// The backend is unreachable or answered something unusable; the last snapshot
    /// keeps serving and is from now on stale.
    case failing(String)
}

// MARK: - ProviderStatus

/// What a provider has done lately, for `switchyard status`, `/status`, `/metrics` and
/// the dashboard. A value kept by the consumer, updated from the provider's callbacks.
///
/// `staleSinceUnix` is set at the first failure after a healthy period and cleared by
/// the next snapshot or `.healthy`: "serving data from before this time".
///
/// Threading: a value; whoever owns it synchronises it.
public struct ProviderStatus: Sendable, Codable, Equatable {
    public var name: String
    public var source: String
    public var healthy: Bool
    /// When the provider started failing (Unix time); nil while healthy.
    public var staleSinceUnix: Double?
    /// When the provider last delivered a snapshot (Unix time), changed or not.
    public var lastUpdateUnix: Double?
    /// Snapshots delivered (changed or not).
    public var updates: Int
    /// Failures reported.
    public var errors: Int
    /// The last failure's message; kept after recovery so an operator can see what it was.
    /// Encoded as `error` (the name status, the CLI and the dashboard already read).
    public var lastError: String?
    /// Workloads dropped because a value broke `DiscoveredValues`' rules, by field
    /// (`track`, `address`, ...): the metrics' `switchyard_discovery_rejected_total`.
    public var rejected: [String: Int] = [:]
    /// The last rejection's message (naming the workload and the field).
    public var lastRejected: String?

    public init(
        name: String, source: String, healthy: Bool = true, staleSinceUnix: Double? = nil,
        lastUpdateUnix: Double? = nil, updates: Int = 0, errors: Int = 0, lastError: String? = nil
    ) {
        self.name = name
        self.source = source
        self.healthy = healthy
        self.staleSinceUnix = staleSinceUnix
        self.lastUpdateUnix = lastUpdateUnix
        self.updates = updates
        self.errors = errors
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case name, source, healthy, updates, errors
        case lastError = "error"
        case staleSinceUnix = "stale_since"
        case lastUpdateUnix = "last_update_at"
        case rejected
        case lastRejected = "last_rejected"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        source = try container.decode(String.self, forKey: .source)
        healthy = try container.decode(Bool.self, forKey: .healthy)
        staleSinceUnix = try container.decodeTimestampIfPresent(forKey: .staleSinceUnix)
        lastUpdateUnix = try container.decodeTimestampIfPresent(forKey: .lastUpdateUnix)
        updates = try container.decode(Int.self, forKey: .updates)
        errors = try container.decode(Int.self, forKey: .errors)
        lastError = try container.decodeIfPresent(String.self, forKey: .lastError)
        // Absent in a status from a version without validation.
        rejected = try container.decodeIfPresent([String: Int].self, forKey: .rejected) ?? [:]
        lastRejected = try container.decodeIfPresent(String.self, forKey: .lastRejected)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(source, forKey: .source)
        try container.encode(healthy, forKey: .healthy)
        try container.encodeTimestampIfPresent(staleSinceUnix, forKey: .staleSinceUnix)
        try container.encodeTimestampIfPresent(lastUpdateUnix, forKey: .lastUpdateUnix)
        try container.encode(updates, forKey: .updates)
        try container.encode(errors, forKey: .errors)
        try container.encodeIfPresent(lastError, forKey: .lastError)
        try container.encode(rejected, forKey: .rejected)
        try container.encodeIfPresent(lastRejected, forKey: .lastRejected)
    }

    /// Workloads were dropped for breaking the value rules.
    public mutating func recordRejected(_ problems: [DiscoveredValues.Problem]) {
        for problem in problems { rejected[problem.field, default: 0] &+= 1 }
        if let last = problems.last { lastRejected = last.message }
    }

    /// A snapshot arrived at `nowUnix`: healthy, not stale.
    public mutating func recordSnapshot(nowUnix: Double) {
        updates += 1
        lastUpdateUnix = nowUnix
        healthy = true
        staleSinceUnix = nil
    }

    /// The provider reported `condition` at `nowUnix`.
    public mutating func record(_ condition: ProviderCondition, nowUnix: Double) {
        switch condition {
        case .healthy:
            healthy = true
            staleSinceUnix = nil
        case .failing(let message):
            errors += 1
            lastError = message
            if healthy || staleSinceUnix == nil { staleSinceUnix = nowUnix }
            healthy = false
        }
    }

    /// Seconds the provider has been serving stale data at `nowUnix`, 0 when healthy.
    public func staleSeconds(nowUnix: Double) -> Double {
        staleSinceUnix.map { max(0, nowUnix - $0) } ?? 0
    }
}

// MARK: - Backoff

/// The wait before a provider's next attempt: exponential, with full jitter, capped, and
/// reset by a success ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
///
/// The n-th consecutive failure (n from 0) waits a uniform random time in
/// `[0, min(maximum, initial * 2^n)]`; full jitter spreads a fleet of proxies that lost
/// the same backend so their retries do not arrive in lockstep. A `floor` keeps a
/// zero draw from turning into a busy loop.
///
/// Pure: the random source is seeded, and time enters only as the `now` the caller
/// passes (monotonic milliseconds), so every schedule is reproducible in a test.
///
/// Threading: a value owned by one provider's retry loop.
public struct Backoff: Sendable {
    /// The ceiling of the first wait, in milliseconds.
    public let initialMs: Int64
    /// The largest ceiling, in milliseconds.
    public let maximumMs: Int64
    /// The smallest wait, in milliseconds.
    public let floorMs: Int64
    /// Consecutive failures since the last success.
    public private(set) var failures = 0
    private var random: SplitMix64

    public init(initialMs: Int64 = 100, maximumMs: Int64 = 10_000, floorMs: Int64 = 10, seed: UInt64 = 0x5EED) {
        self.initialMs = max(1, initialMs)
        self.maximumMs = max(self.initialMs, maximumMs)
        self.floorMs = min(max(0, floorMs), self.initialMs)
        self.random = SplitMix64(seed: seed)
    }

    /// The ceiling the next failure draws under: `min(maximum, initial * 2^failures)`.
    public var ceilingMs: Int64 {
        let shift = min(failures, 40)
        let (grown, overflow) = initialMs.multipliedReportingOverflow(by: Int64(1) << shift)
        return overflow ? maximumMs : min(maximumMs, grown)
    }

    /// Records a failure and returns how long to wait before the next attempt (ms).
    public mutating func nextDelayMs() -> Int64 {
        let ceiling = ceilingMs
        failures += 1
        let draw = Int64(random.next(below: Int(ceiling) + 1))
        return max(floorMs, draw)
    }

    /// Records a failure at `nowMs` and returns the monotonic time of the next attempt.
    public mutating func nextAttempt(afterFailureAt nowMs: Int64) -> Int64 {
        nowMs + nextDelayMs()
    }

    /// A success: the next failure starts again from `initial`.
    public mutating func reset() {
        failures = 0
    }
}
