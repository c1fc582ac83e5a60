// The lifecycle and delivery rules every provider (file, Docker, Swarm, Consul, DNS, etcd) shares: start
// once, stop for good, sleep in a way `stop()` interrupts, and deliver snapshots and
// status serially, dropping repeats.

import Dispatch
import Foundation
import YardModel
import YardControlHTTP

/// One provider's run: its stop flag, its wake-ups, and its callbacks.
///
/// Delivery rules (on top of `DiscoveryProvider`'s contract):
/// - `publish` delivers a catalog only when it differs from the last one delivered, or
///   when a failure was reported since (so the consumer sees the recovery); problems
///   with single workloads (a malformed label) follow the snapshot as one `.failing`
///   report, and their disappearance as `.healthy`.
/// - `fail` reports each failure; the last snapshot stays with the consumer.
///
/// Threading: every method may be called from any thread. Callbacks run on a private
/// serial queue, in the order `publish`/`fail` were called, never concurrently, and
/// none starts after `stop()` returns (a callback already running may finish).
/// `condition` (an NSCondition) guards all mutable state; callbacks are never called
/// with it held.
final class ProviderRun: @unchecked Sendable {
    let name: String
    private let callbacks: ProviderCallbacks
    private let queue: DispatchQueue
    /// Guards every `var` below.
    private let condition = NSCondition()
    private var started = false
    private var stopped = false
    private var poked = false
    private var streamUp = false
    private var lastDelivered: ServiceCatalog?
    private var lastProblems: [LabelProblem] = []
    private var failedSinceDelivery = false
    private var streams: [ObjectIdentifier: ControlHTTPStream] = [:]

    init(name: String, callbacks: ProviderCallbacks) {
        self.name = name
        self.callbacks = callbacks
        self.queue = DispatchQueue(label: "switchyard.provider.\(name)")
        queue.setSpecific(key: Self.queueKey, value: ObjectIdentifier(queue))
    }

    private static let queueKey = DispatchSpecificKey<ObjectIdentifier>()

    // MARK: Lifecycle

    /// True the first time it is called (and not after `stop()`): the caller starts its threads.
    func begin() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !started, !stopped else { return false }
        started = true
        return true
    }

    /// Stops for good: sleepers wake, registered streams are cancelled, no callback starts.
    func stop() {
        condition.lock()
        stopped = true
        let open = Array(streams.values)
        streams.removeAll()
        condition.broadcast()
        condition.unlock()
        open.forEach { $0.cancel() }
        // Wait out a callback that is already queued or running, so none starts later
        // (unless this *is* a callback: then the others see `stopped` and skip).
        if DispatchQueue.getSpecific(key: Self.queueKey) != ObjectIdentifier(queue) { queue.sync {} }
    }

    var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Runs `body` on a new thread (the provider's blocking loops).
    func spawn(_ label: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { body() }
        thread.name = "switchyard-\(name)-\(label)"
        thread.start()
    }

    // MARK: Waiting

    /// Sleeps `milliseconds`; false when the provider stopped (at once or meanwhile).
    @discardableResult
    func sleep(milliseconds: Int64) -> Bool {
        let until = Date(timeIntervalSinceNow: Double(max(0, milliseconds)) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while !stopped && condition.wait(until: until) {}
        return !stopped
    }

    /// Waits until `poke()` or `milliseconds` pass, whichever is first (and consumes the
    /// poke); false when the provider stopped.
    func waitForPoke(milliseconds: Int64) -> Bool {
        let until = Date(timeIntervalSinceNow: Double(max(0, milliseconds)) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while !stopped && !poked && condition.wait(until: until) {}
        poked = false
        return !stopped
    }

    /// Wakes `waitForPoke` (something changed: list again now).
    func poke() {
        condition.lock()
        poked = true
        condition.broadcast()
        condition.unlock()
    }

    /// Keeps `stream` to cancel it on `stop()`; false (and cancels it) if already stopped.
    func track(_ stream: ControlHTTPStream) -> Bool {
        condition.lock()
        let accepted = !stopped
        if accepted { streams[ObjectIdentifier(stream)] = stream }
        condition.unlock()
        if !accepted { stream.cancel() }
        return accepted
    }

    func untrack(_ stream: ControlHTTPStream) {
        condition.lock()
        streams[ObjectIdentifier(stream)] = nil
        condition.unlock()
    }

    // MARK: Loops

    /// Runs `attempt` until the provider stops: after a success, again after
    /// `intervalMs()` or a `poke()`; after a failure (reported), after a backoff delay.
    func listLoop(backoff: Backoff, intervalMs: () -> Int64, _ attempt: () -> Result<Void, AnswerProblem>) {
        var backoff = backoff
        while !isStopped {
            switch attempt() {
            case .success:
                backoff.reset()
                guard waitForPoke(milliseconds: intervalMs()) else { return }
            case .failure(let problem):
                fail(problem.description)
                guard sleep(milliseconds: backoff.nextDelayMs()) else { return }
            }
        }
    }

    /// Follows a line stream (an engine's `/events`) until the provider stops: pokes
    /// the lister whenever the stream opens (events may have been missed while it was
    /// down) and whenever it is lost (the engine may be gone: the lister's next attempt
    /// says so), hands each line to `onLine`, and reconnects with backoff. Failures are
    /// not reported here: the lister reports outages.
    func followLines(_ client: ControlHTTPClient, _ path: String, backoff: Backoff, onLine: ([UInt8]) -> Void) {
        var backoff = backoff
        while !isStopped {
            do {
                let stream = try client.openStream("GET", path)
                guard track(stream) else { return }
                defer { untrack(stream) }
                guard stream.status == 200 else { throw ControlHTTPError("HTTP \(stream.status)") }
                backoff.reset()
                setStreamUp(true)
                poke()
                while let line = try stream.nextLine() { onLine(line) }
            } catch {
                // Retried below.
            }
            // A lost stream may be a lost engine: the lister finds out (and reports it)
            // now rather than at its next resync.
            setStreamUp(false)
            poke()
            guard sleep(milliseconds: backoff.nextDelayMs()) else { return }
        }
    }

    /// Whether `followLines` has its stream open: while it has not, events are being
    /// missed, and a lister should poll instead of waiting for its resync.
    var isStreamUp: Bool {
        condition.lock()
        defer { condition.unlock() }
        return streamUp
    }

    private func setStreamUp(_ up: Bool) {
        condition.lock()
        streamUp = up
        condition.unlock()
    }

    // MARK: Delivery

    /// Delivers `catalog` (if new, or after a failure), then reports `problems`: the
    /// ones that broke a rule as rejections (counted), all of them as one `.failing`.
    func publish(_ catalog: ServiceCatalog, problems: [LabelProblem] = []) {
        condition.lock()
        guard !stopped else { condition.unlock(); return }
        let deliver = catalog != lastDelivered || failedSinceDelivery
        let problemsChanged = problems != lastProblems
        // Counted once per appearance, not again with every later change.
        let rejected = problems.filter { !lastProblems.contains($0) }.compactMap(\.rejection)
        lastDelivered = catalog
        lastProblems = problems
        failedSinceDelivery = false
        // Enqueued under the lock, so two threads' publishes arrive in the order decided here.
        let callbacks = self.callbacks
        if deliver || problemsChanged {
            queue.async { [weak self] in
                guard let self, !self.isStopped else { return }
                if deliver { callbacks.onSnapshot(catalog) }
                if !rejected.isEmpty { callbacks.onRejected(rejected) }
                if !problems.isEmpty && (deliver || problemsChanged) {
                    callbacks.onStatus(.failing(problems.map(\.description).joined(separator: "; ")))
                } else if problemsChanged && !deliver {
                    callbacks.onStatus(.healthy)
                }
            }
        }
        condition.unlock()
    }

    /// Reports a failure: the backend is unreachable or answered something unusable.
    func fail(_ message: String) {
        condition.lock()
        guard !stopped else { condition.unlock(); return }
        failedSinceDelivery = true
        let callbacks = self.callbacks
        queue.async { [weak self] in
            guard let self, !self.isStopped else { return }
            callbacks.onStatus(.failing(message))
        }
        condition.unlock()
    }

    /// Reports a recovery that brings no new snapshot (a watch resumed where it left
    /// off): `.healthy`, if a failure was reported since the last delivery.
    func recovered() {
        condition.lock()
        guard !stopped, failedSinceDelivery else { condition.unlock(); return }
        failedSinceDelivery = false
        let callbacks = self.callbacks
        queue.async { [weak self] in
            guard let self, !self.isStopped else { return }
            callbacks.onStatus(.healthy)
        }
        condition.unlock()
    }

    /// Whether the last thing reported was a failure (for "report once per outage").
    var isFailing: Bool {
        condition.lock()
        defer { condition.unlock() }
        return failedSinceDelivery
    }
}

// MARK: - Helpers

/// `text` percent-encoded for a query string value (everything but unreserved characters).
func queryEncoded(_ text: String) -> String {
    let hex = Array("0123456789ABCDEF".utf8)
    var out: [UInt8] = []
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            out.append(byte)
        default:
            out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}

extension Duration {
    /// The duration in whole milliseconds (rounded down).
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
