#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import YardIO

/// Keeps a name's order lease while its holder's order runs: renews it (compare-and-set)
/// every third of its time to live, so `acme.lease` can be short. It bounds only how long
/// a replica that died mid-order holds the name back, never how long an order may take.
///
/// Threading: renews on its own thread; `stop()` (from the ACME worker) ends the thread and
/// waits for it, so no renewal can land after the lease was released.
final class ACMELeaseKeeper: Sendable {
    private let stopping = Mutex(false)
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let takenBy = Mutex<String?>(nil)

    init(store: ACMESharedStore, name: String, holder: String, ttlSeconds: Double) {
        let interval = max(ttlSeconds / 3, 0.2)
        let thread = Thread { [self] in
            defer { finished.signal() }
            while wake.wait(timeout: .now() + interval) == .timedOut, !stopping.withLock({ $0 }) {
                do {
                    if let other = try store.takeLease(name, holder: holder, ttlSeconds: ttlSeconds) {
                        // Only when this replica stalled longer than the lease: the other
                        // replica orders too; both certificates are valid, the last stored wins.
                        takenBy.withLock { $0 = other }
                        logger.error("acme: \(name): the order lease expired before it was renewed and \(other) took it over; this order ends at the next step")
                        return
                    }
                } catch {
                    logger.warning("acme: \(name): renewing the order lease failed (\(error)); retrying in \(String(format: "%.1f", interval)) s")
                }
            }
        }
        thread.name = "acme-lease"
        thread.start()
    }

    /// The replica that took the lease over while this one still ordered, if any.
    var lostTo: String? { takenBy.withLock { $0 } }

    func stop() {
        stopping.withLock { $0 = true }
        wake.signal()
        finished.wait()
    }
}
