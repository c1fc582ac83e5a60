// The etcd provider: list the keys under a prefix, then watch them from the next
// revision, and push a complete catalog after every change (key layout: EtcdCatalog.swift).

import Foundation
import Synchronization
import YardModel

/// Follows services in etcd v3 through the JSON gateway (`EtcdClient`).
///
/// Behaviour:
/// - Lists `{prefix}` once, delivers the catalog, then watches from the list's revision
///   + 1, so no change between the two is missed; each watch message with events
///   delivers a new complete catalog.
/// - A watch that ends or breaks (a member killed, restarted or partitioned) is resumed
///   at once from the last revision seen + 1, on whichever member answers (the client
///   fails over); no re-list is needed and nothing is reported unless that also fails.
/// - A compacted start revision (history gone) makes it list again.
/// - While no member answers (or none has a leader: watches carry
///   `Grpc-Metadata-hasleader`), it reports `.failing`, keeps quiet about services (the
///   last snapshot serves), and retries with `Backoff`; on success it re-lists.
/// - A key that does not parse spoils only its own service (see `EtcdCatalog`); the
///   problem is reported as `.failing` naming the key.
///
/// Threading: the list/watch loop runs on its own thread; callbacks run on its
/// `ProviderRun` queue (serial, none starting after `stop()` returns). `start` and `stop`
/// may be called from any thread.
public final class EtcdProvider: DiscoveryProvider {
    public let name: String
    public let config: EtcdSourceConfig
    public var source: String { config.endpoints.joined(separator: ",") + " " + config.prefix }
    private let run: ProviderRun
    /// Lists and watches made so far; touched by the loop, read by tests.
    private let made = Mutex<(lists: Int, watches: Int)>((0, 0))

    public init(name: String, config: EtcdSourceConfig, callbacks: ProviderCallbacks) {
        self.name = name
        self.config = config
        self.run = ProviderRun(name: name, callbacks: callbacks)
    }

    // MARK: Lifecycle

    public func start() {
        guard run.begin() else { return }
        run.spawn("watch") { [self] in loop() }
    }

    public func stop() { run.stop() }

    private var stopped: Bool { run.isStopped }

    /// Lists and watches made so far (for tests: a resumed watch does not re-list).
    public var counts: (lists: Int, watches: Int) { made.withLock { $0 } }

    // MARK: The loop

    private func loop() {
        let client: EtcdClient
        do {
            client = try EtcdClient(endpoints: config.endpoints, timeout: .milliseconds(config.requestTimeoutMs), access: config.access)
        } catch {
            run.fail("etcd endpoints: \(error.description)")
            return
        }
        var backoff = Backoff(initialMs: 100, maximumMs: 5_000, seed: UInt64(truncatingIfNeeded: name.hashValue))
        var catalog = EtcdCatalog(prefix: config.prefix)
        var values: [String: [UInt8]] = [:]
        /// The revision everything in `values` is current to; nil: list first.
        var revision: Int64?
        var retriedWatch = false

        while !stopped {
            do throws(EtcdError) {
                if revision == nil {
                    let listed = try client.list(prefix: config.prefix)
                    made.withLock { $0.lists += 1 }
                    values = Dictionary(listed.kvs.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
                    revision = listed.revision
                    guard !stopped else { return }
                    deliver(catalog.build(values))
                }
                let watch = try client.watch(config.prefix, prefix: true, startRevision: revision! + 1)
                made.withLock { $0.watches += 1 }
                guard run.track(watch.stream) else { return }
                defer { run.untrack(watch.stream) }
                var confirmed = false
                while let message = try watch.next() {
                    // Only a message proves the watch works: a member without a leader
                    // accepts the request, then ends it with an error at once.
                    if !confirmed {
                        confirmed = true
                        retriedWatch = false
                        backoff.reset()
                        run.recovered()
                    }
                    if message.compactRevision > 0 || message.canceled {
                        // History before our revision is gone: list again, then watch.
                        revision = nil
                        break
                    }
                    guard !message.events.isEmpty else { continue }
                    for event in message.events {
                        switch event.kind {
                        case .put: values[event.kv.key] = event.kv.value
                        case .delete: values[event.kv.key] = nil
                        }
                        revision = max(revision ?? 0, event.kv.modRevision)
                    }
                    guard !stopped else { return }
                    deliver(catalog.build(values))
                }
                watch.cancel()
                if !confirmed, revision != nil, !stopped {
                    // Ended without a single message: count it as a failure, so a member
                    // that keeps closing watches cannot make this loop spin.
                    throw EtcdError(kind: .unavailable, description: "etcd: the watch on '\(config.prefix)' ended before it was confirmed")
                }
            } catch {
                guard !stopped else { return }
                // A broken watch is resumed once at once (another member may serve it);
                // only a second failure in a row is reported and backed off.
                if revision != nil, !retriedWatch, !run.isFailing {
                    retriedWatch = true
                    continue
                }
                if error.kind == .badResponse { revision = nil }
                run.fail(error.description)
                guard run.sleep(milliseconds: backoff.nextDelayMs()) else { return }
            }
        }
    }

    /// A key that does not parse spoils only its own service: reported with the snapshot.
    private func deliver(_ built: (catalog: ServiceCatalog, problems: [String])) {
        run.publish(built.catalog, problems: built.problems.map { LabelProblem($0) })
    }
}
