import Dispatch
import Synchronization
import Testing
import YardDiscovery
import YardModel
import YardTestSupport

// MARK: - Helpers

private func catalog(_ services: (String, [UInt16])...) -> ServiceCatalog {
    ServiceCatalog(services: services.map { name, ports in
        ServiceDefinition(name: name, instances: ports.map { InstanceDefinition(address: "127.0.0.1", port: $0) })
    })
}

private func ports(_ catalog: ServiceCatalog, _ service: String) -> [UInt16] {
    catalog.services.first { $0.name == service }?.instances.map(\.port) ?? []
}

// MARK: - Debounce

@Suite struct AggregatorDebounceTests {
    let window = Quiescence(minMs: 200, maxMs: 1_000)

    @Test func aQuietChangeAppliesAfterTheMinimumWindow() {
        var state = AggregatorState(order: ["file"], quiescence: window)
        #expect(state.receive(provider: "file", catalog: catalog(("shop", [1])), nowMs: 1_000) == .arm(atMs: 1_200))
        #expect(state.tick(nowMs: 1_199) == .arm(atMs: 1_200))
        #expect(state.tick(nowMs: 1_200) == .apply(catalog(("shop", [1])), warnings: []))
        #expect(state.applies == 1)
    }

    @Test func anUnchangedSnapshotIsDropped() {
        var state = AggregatorState(order: ["file"], quiescence: window)
        _ = state.receive(provider: "file", catalog: catalog(("shop", [1])), nowMs: 0)
        _ = state.tick(nowMs: 200)
        #expect(state.receive(provider: "file", catalog: catalog(("shop", [1])), nowMs: 500) == .none)
        #expect(state.tick(nowMs: 10_000) == .none)
    }

    @Test func furtherChangesRestartTheMinimumTimerButNeverPastTheMaximum() {
        var state = AggregatorState(order: ["file"], quiescence: window)
        #expect(state.receive(provider: "file", catalog: catalog(("shop", [1])), nowMs: 0) == .arm(atMs: 200))
        #expect(state.receive(provider: "file", catalog: catalog(("shop", [2])), nowMs: 150) == .arm(atMs: 350))
        #expect(state.receive(provider: "file", catalog: catalog(("shop", [3])), nowMs: 700) == .arm(atMs: 900))
        #expect(state.receive(provider: "file", catalog: catalog(("shop", [4])), nowMs: 880) == .arm(atMs: 1_000))
        #expect(state.tick(nowMs: 1_000) == .apply(catalog(("shop", [4])), warnings: []))
    }

    @Test func aChangeThatRevertsWithinTheWindowAppliesNothing() {
        var state = AggregatorState(order: ["file"], quiescence: window)
        state.seed(["file": catalog(("shop", [1]))])
        _ = state.receive(provider: "file", catalog: catalog(("shop", [2])), nowMs: 0)
        _ = state.receive(provider: "file", catalog: catalog(("shop", [1])), nowMs: 50)
        #expect(state.tick(nowMs: 250) == .none)
        #expect(state.applies == 0)
    }

    @Test func aProviderFlappingEvery50msAppliesAtMostOncePerMaximumWindow() {
        var state = AggregatorState(order: ["etcd"], quiescence: window)
        var applies: [Int64] = []
        var timer: Int64?
        for now in stride(from: Int64(0), through: 10_000, by: 10) {
            if now % 50 == 0 {
                let ports: [UInt16] = (now / 50) % 2 == 0 ? [1] : [1, 2]
                if case .arm(let at) = state.receive(provider: "etcd", catalog: catalog(("shop", ports)), nowMs: now) { timer = at }
            }
            if let at = timer, now >= at {
                timer = nil
                switch state.tick(nowMs: now) {
                case .apply: applies.append(now)
                case .arm(let again): timer = again
                case .none: break
                }
            }
        }
        #expect(applies.count <= 11)
        #expect(applies.count >= 9)
        for (earlier, later) in zip(applies, applies.dropFirst()) { #expect(later - earlier >= 1_000) }
    }
}

// MARK: - Merging

@Suite struct AggregatorMergeTests {
    @Test func servicesFromDifferentProvidersAreUnionedInProviderOrder() {
        let merged = AggregatorState.merge(
            order: ["file", "etcd"], snapshots: ["etcd": catalog(("api", [3])), "file": catalog(("shop", [1]))])
        #expect(merged.catalog.services.map(\.name) == ["shop", "api"])
        #expect(merged.warnings.isEmpty)
    }

    @Test func aServiceInTwoProvidersUnionsInstancesAndTakesTheFirstProvidersSettings() {
        var fromFile = catalog(("shop", [1, 2]))
        fromFile.services[0].balancer = .leastConnections
        var fromEtcd = catalog(("shop", [2, 3]))
        fromEtcd.services[0].balancer = .p2cEWMA
        fromEtcd.services[0].instances[0].weight = 9
        let merged = AggregatorState.merge(order: ["file", "etcd"], snapshots: ["file": fromFile, "etcd": fromEtcd])
        #expect(ports(merged.catalog, "shop") == [1, 2, 3])
        #expect(merged.catalog.services[0].balancer == .leastConnections)
        #expect(merged.catalog.services[0].instances[1].weight == 1)
        #expect(merged.warnings.count == 1)
        #expect(merged.warnings[0].contains("file, etcd"))
    }

    @Test func aProviderWithoutSnapshotContributesNothing() {
        var state = AggregatorState(order: ["file", "dns"], quiescence: Quiescence(minMs: 0, maxMs: 0))
        _ = state.receive(provider: "dns", catalog: catalog(("web", [80])), nowMs: 0)
        #expect(state.tick(nowMs: 0) == .apply(catalog(("web", [80])), warnings: []))
    }
}

// MARK: - Dispatch shell

/// Collects what the aggregator applies. The mutex protects the list: applies run on the
/// aggregator's queue, the test reads from its own thread.
private final class Applied: Sendable {
    private let list = Mutex<[(Int64, ServiceCatalog)]>([])
    var all: [(Int64, ServiceCatalog)] { list.withLock { $0 } }
    func add(_ catalog: ServiceCatalog, at: Int64) { list.withLock { $0.append((at, catalog)) } }
}

@Suite struct DiscoveryAggregatorTests {
    /// Synchronous on purpose: the flaps are paced by blocking waits on this thread, so a
    /// cooperative pool busy with other suites cannot stretch them apart.
    @Test func aRealProviderFlappingEvery50msIsDebouncedToOneApplyPerWindow() throws {
        let applied = Applied()
        let start = ContinuousClock.now
        let ms: @Sendable () -> Int64 = {
            let elapsed = ContinuousClock.now - start
            return elapsed.components.seconds * 1_000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        }
        let aggregator = DiscoveryAggregator(
            providers: [("etcd", "test")], quiescence: Quiescence(minMs: 100, maxMs: 400),
            queue: DispatchQueue(label: "test.aggregator"), clock: ms,
            onApply: { applied.add($0, at: ms()) })
        let callbacks = aggregator.callbacks(for: "etcd")
        var flaps: [Int64] = []
        for step in 0..<30 {  // 1.5 s of flapping
            flaps.append(ms())
            callbacks.onSnapshot(catalog(("shop", step % 2 == 0 ? [1] : [1, 2])))
            let next = Int64(50 * (step + 1))
            try waitUntil("the next flap", deadline: .seconds(2), poll: .milliseconds(2)) { ms() >= next }
        }
        callbacks.onSnapshot(catalog(("shop", [7])))
        try waitUntil("the last snapshot applied", deadline: .seconds(2), poll: .milliseconds(5)) {
            applied.all.last.map { ports($0.1, "shop") } == [7]
        }
        let times = applied.all.map(\.0)
        let widestGap = zip(flaps, flaps.dropFirst()).map { $1 - $0 }.max() ?? 0
        // The premise: the flaps really came faster than the 100 ms minimum window.
        #expect(widestGap < 100, "the machine stretched a 50 ms flap to \(widestGap) ms")
        // 1.5 s of flapping with a 400 ms maximum window: at most 4 applies, then the last.
        #expect(times.count <= 5, "applies at \(times) ms for flaps at \(flaps) ms")
        for (earlier, later) in zip(times, times.dropFirst()) { #expect(later - earlier >= 350, "applies at \(times) ms") }
    }

    @Test func statusShowsFailureStalenessAndRecovery() {
        let aggregator = DiscoveryAggregator(
            providers: [("dns", "127.0.0.1:53")], quiescence: Quiescence(minMs: 0, maxMs: 0),
            queue: DispatchQueue(label: "test.aggregator"), wallClock: { 1_000 }, onApply: { _ in })
        let callbacks = aggregator.callbacks(for: "dns")
        callbacks.onStatus(.failing("timeout"))
        #expect(aggregator.statuses[0].healthy == false)
        #expect(aggregator.statuses[0].staleSinceUnix == 1_000)
        #expect(aggregator.statuses[0].lastError == "timeout")
        callbacks.onSnapshot(catalog(("web", [80])))
        #expect(aggregator.statuses[0].healthy)
        #expect(aggregator.statuses[0].staleSinceUnix == nil)
        #expect(aggregator.statuses[0].updates == 1)
    }

    @Test func startupWaitsForEveryProvidersFirstReportThenMerges() {
        let aggregator = DiscoveryAggregator(
            providers: [("file", "a"), ("dns", "b")], quiescence: Quiescence(),
            queue: DispatchQueue(label: "test.aggregator"), onApply: { _ in })
        let file = aggregator.callbacks(for: "file"), dns = aggregator.callbacks(for: "dns")
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
            file.onSnapshot(catalog(("shop", [1])))
            dns.onStatus(.failing("refused"))
        }
        let first = aggregator.waitForFirstReports(timeoutMs: 5_000)
        #expect(ports(first.catalog, "shop") == [1])
        #expect(first.missing.isEmpty)
        let second = DiscoveryAggregator(
            providers: [("dns", "b")], quiescence: Quiescence(), queue: DispatchQueue(label: "t"), onApply: { _ in })
        #expect(second.waitForFirstReports(timeoutMs: 100).missing == ["dns"])
    }
}
