// The file provider, Switchyard's embedded default: a YAML (or JSON) services file,
// watched by polling, pushed as complete `ServiceCatalog` snapshots.
//
// Polling rather than inotify: editors save by renaming a new file over the old one,
// which silently detaches an inotify watch on the file, and config volumes (Kubernetes
// ConfigMaps, NFS) swap symlinks or do not deliver events at all. A `stat` every 250 ms
// costs nothing and behaves the same everywhere.

import Dispatch
import Synchronization
import YardModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Watches a services file and pushes complete catalog snapshots (the Traefik provider
/// model: never deltas, so a consumer can rebuild its routing table from one value).
///
/// Behaviour:
/// - `start()` polls at once, so the first snapshot (or error) is delivered without
///   waiting a poll interval; then every `pollInterval`.
/// - A poll `stat`s the file; only a new signature (inode, size, mtime, ctime), or an
///   mtime in the last two seconds (see `FileWatchState.shouldRead`), leads to a read,
///   and only bytes different from the last read lead to a parse. A `touch`,
///   or a rewrite with the same content, therefore delivers nothing. An atomic rename
///   (`mv`, editors) and an in-place rewrite are both noticed.
/// - A file that fails to parse (a half-written rewrite, a typo) is reported through
///   `onError` once per distinct content; the last good snapshot stays with the caller,
///   which keeps serving it. A missing or unreadable file is reported once per distinct
///   error.
/// - A snapshot is delivered when it differs from the last one delivered, and also the
///   first time the file parses again after an error (so the caller can clear its
///   "stale" status even if the content returned to exactly what it was).
///
/// Threading: `onSnapshot` and `onError` are called on `queue`, which must be serial;
/// they are never called concurrently with each other. `start()` and `stop()` may be
/// called from any thread. After `stop()` returns, no callback *starts*; one already
/// running on `queue` may finish (call `stop()` on `queue`, or `queue.sync {}` after
/// it, to be sure none is running). `stop()` is final.
public final class FileProvider: DiscoveryProvider {
    /// The provider's name in status and metrics (`file`, or `file#2` for a second one).
    public let name: String
    /// The watched file.
    public let path: String
    public var source: String { path }
    private let pollInterval: Duration
    private let queue: DispatchQueue
    private let onSnapshot: @Sendable (ServiceCatalog) -> Void
    private let onError: @Sendable (ConfigError) -> Void

    /// Protects the timer and the lifecycle flags, touched by `start`/`stop` from any
    /// thread, and the watch state, touched by polls on `queue`. Never held while
    /// reading or parsing the file, nor while calling back.
    private let state = Mutex<State>(State())

    private struct State {
        var timer: DispatchSourceTimer?
        var started = false
        var stopped = false
        var watch = FileWatchState()
        /// Completed polls; lets tests wait until a change has certainly been looked at.
        var polls = 0
    }

    /// - Parameters:
    ///   - path: the services file (YAML, or JSON for a `.json` name or content).
    ///   - pollInterval: how often to `stat` the file.
    ///   - queue: a serial queue; polls and callbacks run on it.
    ///   - onSnapshot: receives each new complete catalog.
    ///   - onError: receives parse and read errors; the last snapshot stays valid.
    public init(
        name: String = "file", path: String, pollInterval: Duration = .milliseconds(250), queue: DispatchQueue,
        onSnapshot: @escaping @Sendable (ServiceCatalog) -> Void,
        onError: @escaping @Sendable (ConfigError) -> Void
    ) {
        self.name = name
        self.path = path
        self.pollInterval = pollInterval
        self.queue = queue
        self.onSnapshot = onSnapshot
        self.onError = onError
    }

    /// The `DiscoveryProvider` form: a parse or read error is reported as `.failing`
    /// (the error names the file and line); recovery delivers a snapshot.
    public convenience init(
        name: String = "file", path: String, pollInterval: Duration = .milliseconds(250), queue: DispatchQueue,
        callbacks: ProviderCallbacks
    ) {
        self.init(
            name: name, path: path, pollInterval: pollInterval, queue: queue,
            onSnapshot: callbacks.onSnapshot,
            onError: { callbacks.onStatus(.failing($0.description)) })
    }

    deinit {
        state.withLock { $0.timer?.cancel() }
    }

    // MARK: Lifecycle

    /// Starts watching: the first poll runs on `queue` immediately. Calling it again, or
    /// after `stop()`, does nothing.
    public func start() {
        state.withLock { state in
            guard !state.started, !state.stopped else { return }
            state.started = true
            let timer = DispatchSource.makeTimerSource(queue: queue)
            let interval = Self.dispatchInterval(pollInterval)
            timer.schedule(deadline: .now(), repeating: interval, leeway: .milliseconds(10))
            // Weak: the provider owns the timer; a strong capture would keep a provider
            // that its owner dropped without `stop()` polling forever.
            timer.setEventHandler { [weak self] in self?.poll() }
            timer.resume()
            state.timer = timer
        }
    }

    /// Stops watching. No callback starts after this returns (see the type's threading
    /// contract). Final: the provider cannot be restarted.
    public func stop() {
        let timer = state.withLock { state in
            state.stopped = true
            defer { state.timer = nil }
            return state.timer
        }
        timer?.cancel()
    }

    // MARK: Polling

    /// Polls completed so far (for tests that must prove something was *not* delivered).
    var pollCount: Int { state.withLock { $0.polls } }

    /// One poll, on `queue`: stat, maybe read, maybe parse, maybe call back.
    private func poll() {
        defer { state.withLock { $0.polls += 1 } }
        switch FileSignature.of(path: path) {
        case .failure(let error):
            let problem = ConfigError(file: path, line: nil, key: nil, message: "cannot read the services file: \(error.description)")
            perform(state.withLock { $0.watch.unreadable(problem) })
        case .success(let signature):
            let now = Int64(time(nil))
            guard state.withLock({ !$0.stopped && $0.watch.shouldRead(signature, now: now) }) else { return }
            let bytes: [UInt8]
            do {
                bytes = try ConfigLoader.readFile(path: path)
            } catch {
                perform(state.withLock { $0.watch.unreadable(error) })
                return
            }
            guard state.withLock({
                !$0.watch.holdsHalfWritten(bytes, modifiedSeconds: signature.modified.seconds, now: now) && $0.watch.isNewContent(bytes)
            }) else { return }
            let result = Result { () throws(ConfigError) -> ServiceCatalog in
                try ConfigLoader.loadCatalog(text: ConfigLoader.decodeText(bytes, path: path), path: path)
            }
            perform(state.withLock { $0.watch.parsed(result) })
        }
    }

    /// Calls back for `action`, unless the provider was stopped meanwhile.
    private func perform(_ action: FileWatchState.Action) {
        guard !state.withLock({ $0.stopped }) else { return }
        switch action {
        case .none: break
        case .deliver(let catalog): onSnapshot(catalog)
        case .report(let error): onError(error)
        }
    }

    private static func dispatchInterval(_ duration: Duration) -> DispatchTimeInterval {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        return .nanoseconds(Int(max(1_000_000, nanoseconds)))
    }
}
