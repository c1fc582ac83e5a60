import Dispatch
import Synchronization
import Testing
@testable import YardDiscovery
import YardModel

// MARK: - Helpers

/// Records what a provider delivers: snapshots, and the messages of `.failing` reports.
/// The mutex protects both arrays: callbacks run on the provider's run queue, the test
/// reads from its own task.
private final class Recorder: Sendable {
    private let state = Mutex<(snapshots: [ServiceCatalog], errors: [String])>(([], []))

    var snapshots: [ServiceCatalog] { state.withLock { $0.snapshots } }
    var errors: [String] { state.withLock { $0.errors } }

    var callbacks: ProviderCallbacks {
        ProviderCallbacks(
            onSnapshot: { catalog in self.state.withLock { $0.snapshots.append(catalog) } },
            onStatus: { condition in
                if case .failing(let message) = condition { self.state.withLock { $0.errors.append(message) } }
            })
    }
}

private func services(_ ports: UInt16...) -> String {
    "services:\n  shop:\n    instances:\n" + ports.map { "      - {address: 127.0.0.1, port: \($0)}\n" }.joined()
}

private func ports(_ catalog: ServiceCatalog?) -> [UInt16] {
    catalog?.services.first?.instances.map(\.port) ?? []
}

/// A running provider over a temporary services file, polling fast.
private struct Harness {
    let directory: TemporaryDirectory
    let recorder = Recorder()
    let provider: FileProvider

    init(initial: String?) throws {
        directory = try TemporaryDirectory()
        if let initial { try directory.write("services.yml", initial) }
        provider = FileProvider(path: directory.file("services.yml"), pollInterval: .milliseconds(10), callbacks: recorder.callbacks)
        provider.start()
    }

    /// Waits until the provider has completed two more polls: the first may have begun
    /// before the change, the second certainly saw it.
    func settle() async -> Bool {
        let target = provider.pollCount + 2
        return await eventually { provider.pollCount >= target }
    }

    func finish() {
        provider.stop()
        directory.remove()
    }
}

// MARK: - FileProvider

@Suite struct FileProviderDeliversSnapshots {
    @Test func startDeliversTheFirstSnapshotImmediately() async throws {
        let harness = try Harness(initial: services(9101, 9102))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        #expect(ports(harness.recorder.snapshots.first) == [9101, 9102])
        #expect(harness.recorder.errors.isEmpty)
    }

    @Test func inPlaceRewriteDeliversTheNewCatalog() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        try harness.directory.write("services.yml", services(9102))
        #expect(await eventually { harness.recorder.snapshots.count == 2 })
        #expect(ports(harness.recorder.snapshots.last) == [9102])
    }

    @Test func atomicRenameDeliversTheNewCatalog() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        try harness.directory.replaceAtomically("services.yml", services(9201, 9202))
        #expect(await eventually { harness.recorder.snapshots.count == 2 })
        #expect(ports(harness.recorder.snapshots.last) == [9201, 9202])
    }

    @Test func touchWithoutChangeDeliversNothing() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        try harness.directory.touch("services.yml")
        try harness.directory.write("services.yml", services(9101))
        #expect(await harness.settle())
        #expect(harness.recorder.snapshots.count == 1)
        #expect(harness.recorder.errors.isEmpty)
    }

    @Test func reformattedFileWithTheSameCatalogDeliversNothing() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        try harness.directory.replaceAtomically("services.yml", "# same services, new comment\n" + services(9101))
        #expect(await harness.settle())
        #expect(harness.recorder.snapshots.count == 1)
    }

    @Test func brokenFileIsReportedOnceKeepsTheLastSnapshotThenRecovers() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })

        // A half-written rewrite: reported once, nothing delivered.
        // Replaced atomically: an in-place write could be polled while still empty.
        try harness.directory.replaceAtomically("services.yml", "services:\n  shop:\n    instances: [{address: 127.0.0.1, po")
        #expect(await eventually { harness.recorder.errors.count == 1 })
        let error = try #require(harness.recorder.errors.first)
        #expect(error.hasPrefix(harness.provider.path + ":"), "names the file: \(error)")
        #expect(error.dropFirst(harness.provider.path.count + 1).first?.isNumber == true, "and the line: \(error)")
        try harness.directory.touch("services.yml")
        #expect(await harness.settle())
        #expect(harness.recorder.errors.count == 1)
        #expect(harness.recorder.snapshots.count == 1)

        // Fixed: the new catalog is delivered.
        try harness.directory.write("services.yml", services(9101, 9102))
        #expect(await eventually { harness.recorder.snapshots.count == 2 })
        #expect(ports(harness.recorder.snapshots.last) == [9101, 9102])
    }

    @Test func restoringTheOldContentAfterAnErrorDeliversItAgain() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        try harness.directory.write("services.yml", services(9101) + "      - {address: nowhere, port: 1}\n")
        #expect(await eventually { harness.recorder.errors.count == 1 })
        try harness.directory.write("services.yml", services(9101))
        #expect(await eventually { harness.recorder.snapshots.count == 2 })
        #expect(harness.recorder.snapshots[0] == harness.recorder.snapshots[1])
    }

    @Test func missingFileIsReportedAndItsCreationDelivers() async throws {
        let harness = try Harness(initial: nil)
        defer { harness.finish() }
        #expect(await eventually { harness.recorder.errors.count == 1 })
        #expect(harness.recorder.errors.first?.contains("No such file") == true)
        #expect(await harness.settle())
        #expect(harness.recorder.errors.count == 1)
        try harness.directory.replaceAtomically("services.yml", services(9101))
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
    }

    @Test func stopEndsDeliveries() async throws {
        let harness = try Harness(initial: services(9101))
        defer { harness.directory.remove() }
        #expect(await eventually { harness.recorder.snapshots.count == 1 })
        harness.provider.stop()
        let polls = harness.provider.pollCount
        try harness.directory.write("services.yml", services(9102))
        try await Task.sleep(for: .milliseconds(50))  // nothing to wait for: proving absence
        #expect(harness.recorder.snapshots.count == 1)
        #expect(harness.provider.pollCount <= polls + 1)
    }
}

// MARK: - FileWatchState (the decisions, without timers)

@Suite struct FileWatchStateDecisions {
    private func signature(inode: UInt64 = 1, size: Int64 = 10, mtime: Int64 = 1_000) -> FileSignature {
        FileSignature(device: 1, inode: inode, size: size, modified: (mtime, 0), changed: (mtime, 0))
    }

    private let catalogA = ServiceCatalog(services: [ServiceDefinition(name: "a", instances: [])])
    private let catalogB = ServiceCatalog(services: [ServiceDefinition(name: "b", instances: [])])
    private let broken = ConfigError(file: "s.yml", line: 2, key: nil, message: "YAML syntax error")

    @Test func sameSignatureIsNotReadAgainOnceItIsOldEnough() {
        var state = FileWatchState()
        let reads = [
            state.shouldRead(signature(), now: 5_000),
            state.shouldRead(signature(), now: 5_000),
            state.shouldRead(signature(inode: 2), now: 5_000),
            state.shouldRead(signature(inode: 2, size: 11), now: 5_000),
        ]
        #expect(reads == [true, false, true, true])
    }

    @Test func recentlyModifiedFileIsReadEveryPollBecauseTimestampsAreCoarse() {
        var state = FileWatchState()
        let reads = [1_000, 1_001, 1_002].map { now in state.shouldRead(signature(mtime: 1_000), now: now) }
        #expect(reads == [true, true, false])
    }

    @Test func identicalBytesAreNotParsedTwice() {
        var state = FileWatchState()
        let parses = [[1, 2], [1, 2], [1, 3]].map { state.isNewContent($0) }
        #expect(parses == [true, false, true])
    }

    @Test func anEmptyReadOfAFileJustModifiedIsHeldUntilTheWindowPasses() {
        var state = FileWatchState()
        _ = state.shouldRead(signature(mtime: 1_000), now: 1_000)
        let observed = [
            state.holdsHalfWritten([], modifiedSeconds: 1_000, now: 1_001),   // a writer between truncate and write
            state.shouldRead(signature(mtime: 1_000), now: 1_005),            // held: the next poll reads again
            state.holdsHalfWritten([], modifiedSeconds: 1_000, now: 1_005),   // still empty later: reported
            state.holdsHalfWritten([1], modifiedSeconds: 1_000, now: 1_000),  // content is never held
        ]
        #expect(observed == [true, true, false, false])
    }

    @Test func equalCatalogIsDeliveredOnlyOnce() {
        var state = FileWatchState()
        let actions = [catalogA, catalogA, catalogB].map { state.parsed(.success($0)) }
        #expect(actions == [.deliver(catalogA), .none, .deliver(catalogB)])
    }

    @Test func errorKeepsTheDeliveredCatalogAndRecoveryRedeliversIt() {
        var state = FileWatchState()
        let actions = [state.parsed(.success(catalogA)), state.parsed(.failure(broken))]
        #expect(actions == [.deliver(catalogA), .report(broken)])
        #expect(state.delivered == catalogA)
        let recovery = state.parsed(.success(catalogA))
        #expect(recovery == .deliver(catalogA))
        #expect(state.reported == nil)
    }

    @Test func unreadableFileIsReportedOncePerDistinctError() {
        var state = FileWatchState()
        let missing = ConfigError(file: "s.yml", line: nil, key: nil, message: "No such file")
        let denied = ConfigError(file: "s.yml", line: nil, key: nil, message: "Permission denied")
        _ = (state.shouldRead(signature(), now: 5_000), state.isNewContent([1]))
        let actions = [missing, missing, denied].map { state.unreadable($0) }
        #expect(actions == [.report(missing), .none, .report(denied)])
        // When the file returns unchanged, its old signature and bytes count as new again.
        let read = state.shouldRead(signature(), now: 5_000)
        let parse = state.isNewContent([1])
        #expect(read && parse)
    }
}
