import Foundation
import Synchronization
import YardDiscovery
import YardModel
import YardTestSupport

/// Records what a provider delivers with the instant of *each* delivery (the DNS tests'
/// `ProviderRecorder` keeps the first match's time only), for the Docker, Swarm and
/// Consul provider tests, which measure the latest change. The mutex guards both lists:
/// callbacks run on the provider's queue, the test reads from its own thread.
final class TimedRecorder: Sendable {
    struct Delivery: Sendable {
        var catalog: ServiceCatalog
        var at: ContinuousClock.Instant
    }

    private let state = Mutex<(snapshots: [Delivery], conditions: [ProviderCondition])>(([], []))

    var callbacks: ProviderCallbacks {
        ProviderCallbacks(
            onSnapshot: { [self] catalog in state.withLock { $0.snapshots.append(Delivery(catalog: catalog, at: .now)) } },
            onStatus: { [self] condition in state.withLock { $0.conditions.append(condition) } }
        )
    }

    var snapshots: [Delivery] { state.withLock { $0.snapshots } }
    var conditions: [ProviderCondition] { state.withLock { $0.conditions } }
    var latest: ServiceCatalog? { snapshots.last?.catalog }

    /// The failure messages reported so far.
    var failures: [String] {
        conditions.compactMap { if case .failing(let message) = $0 { message } else { nil } }
    }

    /// `address:port` of every instance of `service` in the latest snapshot, sorted.
    func endpoints(_ service: String) -> [String] {
        let instances = latest?.services.first { $0.name == service }?.instances ?? []
        return instances.map { "\($0.address):\($0.port)" }.sorted()
    }

    /// Waits until the latest snapshot satisfies `condition`; returns when it arrived.
    @discardableResult
    func waitForSnapshot(
        _ what: String, deadline: Deadline = .seconds(10), _ condition: (ServiceCatalog) -> Bool
    ) throws -> ContinuousClock.Instant {
        var at: ContinuousClock.Instant?
        try waitUntil(what, deadline: deadline, poll: .milliseconds(5)) {
            guard let last = snapshots.last, condition(last.catalog) else { return false }
            at = last.at
            return true
        }
        return at!
    }

    /// Waits until a failure containing `text` has been reported.
    func waitForFailure(containing text: String, deadline: Deadline = .seconds(10)) throws {
        try waitUntil("a failure mentioning '\(text)' (got \(failures))", deadline: deadline, poll: .milliseconds(10)) {
            failures.contains { $0.contains(text) }
        }
    }
}

extension Duration {
    /// Whole milliseconds, for measured latencies in messages.
    var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
}
