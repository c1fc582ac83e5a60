#if canImport(Glibc)
import Glibc
#endif
import CYardLinux

/// A failed system call: which call, and the errno it set.
public struct IOError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: StaticString
    public var errno: Int32

    @inlinable public init(call: StaticString, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    public static func == (lhs: IOError, rhs: IOError) -> Bool {
        lhs.errno == rhs.errno && lhs.call.description == rhs.call.description
    }
}

/// The result of a non-blocking read or write. EAGAIN and EOF are values, not errors.
public enum IOResult: Equatable, Sendable {
    /// This many bytes moved (always > 0).
    case bytes(Int)
    /// The socket has nothing to give or no room to take; wait for readiness.
    case wouldBlock
    /// The peer closed its side (read returned 0).
    case closed
    /// A real error (ECONNRESET, EPIPE, …).
    case failed(Int32)
}

/// Runs a system call, retrying on EINTR, and turns -1/errno into a thrown `IOError`.
///
/// Only for calls outside the per-request path (setup, control plane); the hot path uses the
/// non-throwing helpers in `Socket`, which return `IOResult`.
@inlinable
@discardableResult
public func syscall<T: FixedWidthInteger>(_ call: StaticString, _ body: () -> T) throws(IOError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let err = yard_errno()
        if err == EINTR { continue }
        throw IOError(call: call, errno: err)
    }
}
