// Counting failed exchanges in a row for passive ejection (health.consecutive_failures).

/// The data plane's per-endpoint run of failed exchanges, kept as an `Int32` per pool key
/// by each worker; a pure function so the counting is tested apart from the worker.
///
/// Threading: stateless; the streak it updates belongs to the caller (one worker's loop).
public enum PassiveFailureStreak {
    /// Records one exchange. Returns true when the streak reaches `threshold` (it then
    /// starts again from 0): the endpoint should be reported as failing. With `threshold`
    /// 0 (passive ejection off) nothing is reported. The count saturates at `Int32.max`
    /// rather than overflowing, however long the failures last.
    @inlinable
    public static func record(_ streak: inout Int32, failed: Bool, threshold: Int) -> Bool {
        guard failed else {
            if streak != 0 { streak = 0 }
            return false
        }
        if streak < Int32.max { streak += 1 }
        guard threshold > 0, Int(streak) >= threshold || streak == Int32.max else { return false }
        streak = 0
        return true
    }
}
