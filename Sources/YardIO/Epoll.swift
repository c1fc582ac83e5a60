#if canImport(Glibc)
import Glibc
#endif
import CYardLinux
import Synchronization

/// A level-triggered epoll instance.
///
/// Threading: owned by one event loop thread. Each registration carries a 64-bit token the
/// loop chooses (a tagged object pointer, or a small number for listeners and wake-ups), so
/// an event is dispatched with a switch, not a table lookup or an existential call.
public struct Epoll: ~Copyable {
    public let fd: Int32

    public static let readable = UInt32(EPOLLIN.rawValue)
    public static let writable = UInt32(EPOLLOUT.rawValue)
    public static let hangup = UInt32(EPOLLHUP.rawValue)
    public static let error = UInt32(EPOLLERR.rawValue)
    public static let readHangup = UInt32(EPOLLRDHUP.rawValue)

    public init() throws(IOError) {
        fd = try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    deinit { Glibc.close(fd) }

    @inlinable @discardableResult
    public func add(_ target: Int32, events: UInt32, token: UInt64) -> Bool {
        var event = epoll_event(events: events, data: epoll_data_t(u64: token))
        return epoll_ctl(fd, EPOLL_CTL_ADD, target, &event) == 0
    }

    @inlinable @discardableResult
    public func modify(_ target: Int32, events: UInt32, token: UInt64) -> Bool {
        var event = epoll_event(events: events, data: epoll_data_t(u64: token))
        return epoll_ctl(fd, EPOLL_CTL_MOD, target, &event) == 0
    }

    @inlinable
    public func remove(_ target: Int32) {
        var event = epoll_event()
        _ = epoll_ctl(fd, EPOLL_CTL_DEL, target, &event)
    }

    /// Waits for events; returns how many were written to `events` (0 on timeout or EINTR).
    @inlinable
    public func wait(_ events: UnsafeMutablePointer<epoll_event>, capacity: Int32, timeoutMs: Int32) -> Int {
        let n = epoll_wait(fd, events, capacity, timeoutMs)
        return n < 0 ? 0 : Int(n)
    }
}

/// A cross-thread mailbox for one event loop: tasks posted from any thread, run on the loop.
///
/// Threading: `post` may be called from any thread; `drain` only from the owning loop. The
/// mutex protects the task list; it is taken only when something is posted (control-plane
/// events such as a new routing table), never per request. The eventfd wakes the loop's
/// `epoll_wait`.
public final class LoopInbox: Sendable {
    public let eventFD: Int32
    private let tasks = Mutex<[@Sendable () -> Void]>([])

    public init() throws(IOError) {
        eventFD = try syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { Glibc.close(eventFD) }

    /// Queues `task` for the loop and wakes it.
    public func post(_ task: @escaping @Sendable () -> Void) {
        tasks.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = Glibc.write(eventFD, &one, 8)
    }

    /// Takes every queued task (after clearing the eventfd counter). Called by the loop when
    /// the eventfd is readable.
    public func drain() -> [@Sendable () -> Void] {
        var counter: UInt64 = 0
        _ = Glibc.read(eventFD, &counter, 8)
        return tasks.withLock { tasks in
            let taken = tasks
            tasks.removeAll(keepingCapacity: true)
            return taken
        }
    }
}
