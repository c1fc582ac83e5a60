// The decisions of the discovery aggregator, without timers or threads: which snapshot
// counts as a change, when the debounce window closes, and how several providers'
// catalogs merge into the one the routing table is built from.

import YardModel

// MARK: - Quiescence

/// The debounce window (consul-template's `wait {min, max}`): a change starts the `min`
/// timer; every further change restarts it, but never past `max` after the first change
/// of the burst. So a quiet change applies after `min`, and a provider that flaps forever
/// still applies at most once per `max`.
public struct Quiescence: Sendable, Equatable {
    public var minMs: Int64
    public var maxMs: Int64

    public init(minMs: Int64 = 100, maxMs: Int64 = 1_000) {
        self.minMs = max(0, minMs)
        self.maxMs = max(self.minMs, maxMs)
    }
}

// MARK: - AggregatorState

/// What the aggregator knows: each provider's last snapshot, the catalog last applied,
/// and the open debounce window.
///
/// Every method takes `now` (monotonic milliseconds) and returns what the shell must do:
/// arm the timer, apply a merged catalog, or nothing.
///
/// Threading: a value owned by one shell, mutated under its lock.
public struct AggregatorState: Sendable {
    /// What the shell must do after an event.
    public enum Action: Equatable, Sendable {
        /// Nothing changed.
        case none
        /// Fire `tick` at this monotonic time (re-arming replaces any earlier timer).
        case arm(atMs: Int64)
        /// Publish this catalog; `warnings` describe merge conflicts (log them).
        case apply(ServiceCatalog, warnings: [String])
    }

    /// Provider names in config order: the first one wins a merge conflict.
    public let order: [String]
    public let quiescence: Quiescence
    /// Each provider's last snapshot; a provider that has not delivered is absent.
    public private(set) var latest: [String: ServiceCatalog] = [:]
    /// The merged catalog last applied; nil before the first apply.
    public private(set) var applied: ServiceCatalog?
    /// The start of the open burst of changes, if any.
    public private(set) var burstStartMs: Int64?
    /// When the open window closes.
    public private(set) var deadlineMs: Int64?
    /// Applies so far (for tests and status).
    public private(set) var applies = 0

    public init(order: [String], quiescence: Quiescence) {
        self.order = order
        self.quiescence = quiescence
    }

    /// Marks `catalog` as already applied (the startup catalog, applied synchronously),
    /// with each provider's part in `latest`.
    public mutating func seed(_ snapshots: [String: ServiceCatalog]) {
        latest = snapshots
        applied = Self.merge(order: order, snapshots: snapshots).catalog
    }

    /// A provider delivered a snapshot. One equal to its last is dropped; a change opens
    /// (or extends) the debounce window.
    public mutating func receive(provider: String, catalog: ServiceCatalog, nowMs: Int64) -> Action {
        guard latest[provider] != catalog else { return .none }
        latest[provider] = catalog
        let start = burstStartMs ?? nowMs
        burstStartMs = start
        let deadline = min(nowMs + quiescence.minMs, start + quiescence.maxMs)
        deadlineMs = deadline
        return .arm(atMs: deadline)
    }

    /// The timer fired. Before the deadline (a timer armed for an older, earlier
    /// deadline), it is re-armed; at or after it, the window closes and the merged
    /// catalog applies if it differs from the one applied last.
    public mutating func tick(nowMs: Int64) -> Action {
        guard let deadline = deadlineMs else { return .none }
        guard nowMs >= deadline else { return .arm(atMs: deadline) }
        deadlineMs = nil
        burstStartMs = nil
        let merged = Self.merge(order: order, snapshots: latest)
        guard merged.catalog != applied else { return .none }
        applied = merged.catalog
        applies += 1
        return .apply(merged.catalog, warnings: merged.warnings)
    }

    // MARK: Merging

    /// Merges providers' catalogs (pure).
    ///
    /// The rule: services are unioned, in provider order, then each provider's order. A
    /// service several providers know gets the *union of their instances* (an
    /// address:port listed twice keeps the first provider's instance) and the *first
    /// provider's settings* (active track, health, balancer, canary, retries, routes);
    /// each such service yields one warning naming the providers, because differing
    /// settings for one service are nearly always a mistake worth seeing in the log.
    /// A provider missing from `order` merges after those in it, by name.
    public static func merge(order: [String], snapshots: [String: ServiceCatalog]) -> (catalog: ServiceCatalog, warnings: [String]) {
        let names = order.filter { snapshots[$0] != nil } + snapshots.keys.filter { !order.contains($0) }.sorted()
        var services: [ServiceDefinition] = []
        var index: [String: Int] = [:]
        var owners: [String: [String]] = [:]
        var seen: [String: Set<String>] = [:]
        for name in names {
            for service in snapshots[name]?.services ?? [] {
                owners[service.name, default: []].append(name)
                guard let at = index[service.name] else {
                    index[service.name] = services.count
                    services.append(service)
                    seen[service.name] = Set(service.instances.map(Self.identity))
                    continue
                }
                for instance in service.instances where seen[service.name]!.insert(Self.identity(instance)).inserted {
                    services[at].instances.append(instance)
                }
            }
        }
        let warnings = services.compactMap { service -> String? in
            guard let providers = owners[service.name], providers.count > 1 else { return nil }
            return "service '\(service.name)' comes from providers \(providers.joined(separator: ", ")): "
                + "instances are merged; settings (active track, health, balancer, canary, routes) come from '\(providers[0])'"
        }
        return (ServiceCatalog(services: services), warnings)
    }

    private static func identity(_ instance: InstanceDefinition) -> String {
        "\(instance.address.lowercased())|\(instance.port)"
    }
}
