#if canImport(Glibc)
import Glibc
#endif

/// A point in time a wait gives up at: `waitUntil(deadline: .seconds(5)) { ... }`.
///
/// Built from the monotonic clock, so a changed wall clock cannot stretch or cut a test.
public struct Deadline: Sendable, CustomStringConvertible {
    public let instant: ContinuousClock.Instant
    /// What the deadline was created with, for error messages.
    public let timeout: Duration

    public init(after timeout: Duration) {
        self.timeout = timeout
        self.instant = ContinuousClock.now.advanced(by: timeout)
    }

    public static func after(_ timeout: Duration) -> Deadline { Deadline(after: timeout) }
    public static func seconds(_ seconds: Double) -> Deadline { Deadline(after: .milliseconds(Int64(seconds * 1000))) }
    public static func milliseconds(_ ms: Int) -> Deadline { Deadline(after: .milliseconds(ms)) }

    public var hasPassed: Bool { ContinuousClock.now >= instant }

    /// Time left, never negative.
    public var remaining: Duration {
        let left = instant - ContinuousClock.now
        return left < .zero ? .zero : left
    }

    public var description: String { "\(timeout)" }
}

/// Why a test helper gave up. The description says what was awaited and what was seen.
public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Polls `condition` every `poll` until it returns true; throws if `deadline` passes first.
///
/// The one way tests wait for something to happen: never a bare sleep as synchronisation.
/// The condition is checked once more after the deadline, so a slow machine that got there
/// just in time is not failed.
public func waitUntil(
    _ what: @autoclosure () -> String = "condition",
    deadline: Deadline = .seconds(10),
    poll: Duration = .milliseconds(20),
    _ condition: () throws -> Bool
) throws {
    while true {
        if try condition() { return }
        if deadline.hasPassed {
            if try condition() { return }
            throw TestSupportError("timed out after \(deadline) waiting for \(what())")
        }
        sleep(for: min(poll, max(deadline.remaining, .milliseconds(1))))
    }
}

/// Blocks the calling thread (polling helpers only; tests synchronise with `waitUntil`).
func sleep(for duration: Duration) {
    let (seconds, attoseconds) = duration.components
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0, errno == EINTR {
        request = remaining
    }
}
