// The file provider, Switchyard's embedded default: a YAML (or JSON) services file,
// watched by polling on the providers' common run (ProviderRun), pushed as complete
// `ServiceCatalog` snapshots.
//
// Polling rather than inotify: editors save by renaming a new file over the old one,
// which silently detaches an inotify watch on the file, and config volumes (Kubernetes
// ConfigMaps, NFS) swap symlinks or do not deliver events at all. A `stat` every 250 ms
// costs nothing and behaves the same everywhere.

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
///   (`mv`, editors) and an in-place rewrite are both noticed. An empty read of a file
///   modified within that window (a writer between its truncate and its write) is held
///   for the next poll (`FileWatchState.holdsHalfWritten`).
/// - A file that fails to parse (a half-written rewrite, a typo) is reported as
///   `.failing` once per distinct content (the message names the file and line); the last
///   good snapshot stays with the caller, which keeps serving it. A missing or unreadable
///   file is reported once per distinct error.
/// - A snapshot is delivered when it differs from the last one delivered, and also the
///   first time the file parses again after an error (so the caller can clear its
///   "stale" status even if the content returned to exactly what it was).
///
/// Threading: the same run as every other provider (`ProviderRun`): polls run on the
/// provider's own thread, callbacks on its run's serial queue, never concurrently and none
/// starting after `stop()` returns; `start` and `stop` may be called from any thread;
/// `stop()` is final. The poll thread holds the provider weakly, so one its owner dropped
/// without `stop()` stops polling too.
public final class FileProvider: DiscoveryProvider {
    /// The provider's name in status and metrics (`file`, or `file#2` for a second one).
    public let name: String
    /// The watched file.
    public let path: String
    public var source: String { path }
    private let pollInterval: Duration
    private let run: ProviderRun

    /// The watch state and the poll count: written by the poll thread, the count read by
    /// tests. Never held while reading or parsing the file, nor while calling back.
    private let state = Mutex<State>(State())

    private struct State {
        var watch = FileWatchState()
        /// Completed polls; lets tests wait until a change has certainly been looked at.
        var polls = 0
    }

    /// - Parameters:
    ///   - path: the services file (YAML, or JSON for a `.json` name or content).
    ///   - pollInterval: how often to `stat` the file.
    ///   - callbacks: snapshots, and parse or read errors as `.failing`.
    public init(name: String = "file", path: String, pollInterval: Duration = .milliseconds(250), callbacks: ProviderCallbacks) {
        self.name = name
        self.path = path
        self.pollInterval = pollInterval
        self.run = ProviderRun(name: name, callbacks: callbacks)
    }

    deinit { run.stop() }

    // MARK: Lifecycle

    /// Starts watching: the first poll runs at once. Calling it again, or after `stop()`,
    /// does nothing.
    public func start() {
        guard run.begin() else { return }
        let run = self.run
        let intervalMs = max(1, pollInterval.wholeMilliseconds)
        run.spawn("watch") { [weak self] in
            repeat {
                guard let self else { return }
                self.poll()
            } while run.sleep(milliseconds: intervalMs)
        }
    }

    /// Stops watching. No callback starts after this returns (see the type's threading
    /// contract). Final: the provider cannot be restarted.
    public func stop() { run.stop() }

    // MARK: Polling

    /// Polls completed so far (for tests that must prove something was *not* delivered).
    var pollCount: Int { state.withLock { $0.polls } }

    /// One poll, on the poll thread: stat, maybe read, maybe parse, maybe deliver.
    private func poll() {
        defer { state.withLock { $0.polls += 1 } }
        switch FileSignature.of(path: path) {
        case .failure(let error):
            let problem = ConfigError(file: path, line: nil, key: nil, message: "cannot read the services file: \(error.description)")
            perform(state.withLock { $0.watch.unreadable(problem) })
        case .success(let signature):
            let now = Int64(time(nil))
            guard !run.isStopped, state.withLock({ $0.watch.shouldRead(signature, now: now) }) else { return }
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

    /// Hands `action` to the run (which drops it once the provider stopped).
    private func perform(_ action: FileWatchState.Action) {
        switch action {
        case .none: break
        case .deliver(let catalog): run.publish(catalog)
        case .report(let error): run.fail(error.description)
        }
    }
}
