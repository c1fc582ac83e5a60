// Quiescence (consul-template's `wait {min, max}`): after a change, wait until the input
// has been quiet for `min`, but never longer than `max` after the first change of a
// burst, so flapping discovery causes at most one render and reload per window.

/// The timer state of one output. A struct state machine: the caller owns the clock and
/// the timer, and asks it when to fire.
///
/// Threading: a value; the owner mutates it on one queue.
public struct Quiescence: Sendable, Equatable {
    public let minMs: Int
    public let maxMs: Int
    /// When the first change of the pending burst arrived; nil when nothing is pending.
    public private(set) var burstStartMs: Int?
    /// When the pending render is due.
    public private(set) var dueMs: Int?

    public init(minMs: Int, maxMs: Int) {
        self.minMs = minMs
        self.maxMs = max(minMs, maxMs)
    }

    /// Records a change at `nowMs`; returns when the render is now due.
    public mutating func changed(nowMs: Int) -> Int {
        let start = burstStartMs ?? nowMs
        burstStartMs = start
        let due = min(nowMs + minMs, start + maxMs)
        dueMs = due
        return due
    }

    /// Whether the pending render is due at `nowMs`; if so the burst ends (the caller renders).
    public mutating func fire(nowMs: Int) -> Bool {
        guard let due = dueMs, nowMs >= due else { return false }
        burstStartMs = nil
        dueMs = nil
        return true
    }
}
