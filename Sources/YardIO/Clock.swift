#if canImport(Glibc)
import CYardLinux
import Glibc
#endif

/// Monotonic time in milliseconds.
///
/// Uses CLOCK_MONOTONIC (a vDSO call, no syscall). Event loops read it once per wake-up and
/// compare deadlines against the cached value.
@inlinable
public func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) &* 1000 &+ Int64(ts.tv_nsec) / 1_000_000
}

/// Monotonic time in microseconds: request latencies for the histograms, which resolve
/// below a millisecond (the loops' cached clock is in milliseconds).
@inlinable
public func monotonicMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) &* 1_000_000 &+ Int64(ts.tv_nsec) / 1_000
}

/// Monotonic time in nanoseconds (for latency measurements that need sub-millisecond
/// resolution, such as the P2C-EWMA balancer's samples).
@inlinable
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Wall-clock time as seconds since the epoch (for logs).
public func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Number of CPUs this process may run on (the default number of event loops).
public func availableCPUs() -> Int {
    Int(yard_available_cpus())
}
