#if canImport(Glibc)
import Glibc
#endif
import CYardLinux

/// Non-blocking TCP socket operations on raw file descriptors.
///
/// A caseless namespace (the swift-nio habit): setup calls throw `IOError`; the per-event
/// calls (`read`, `write`, `accept`) return values and never throw. Threading: each call is
/// a plain system call; the caller's event loop owns the descriptor.
public enum Socket {
    // MARK: Setup

    /// A non-blocking listening socket on `address` with SO_REUSEADDR, and SO_REUSEPORT when
    /// several event loops each listen on the same port.
    public static func listen(on address: SocketAddress, reusePort: Bool, backlog: Int32 = 4096) throws(IOError) -> Int32 {
        let fd = try syscall("socket") { Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
            var storage = address.storage
            try withUnsafePointer(to: &storage) { pointer throws(IOError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(IOError) in
                    _ = try syscall("bind") { Glibc.bind(fd, sa, address.length) }
                }
            }
            try syscall("listen") { Glibc.listen(fd, backlog) }
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// The local address a socket is bound to (to learn the port picked for port 0).
    public static func localAddress(_ fd: Int32) throws(IOError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try withUnsafeMutablePointer(to: &storage) { pointer throws(IOError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(IOError) in
                _ = try syscall("getsockname") { getsockname(fd, sa, &length) }
            }
        }
        return SocketAddress(storage: storage, length: length)
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(IOError) {
        var v = value
        try syscall("setsockopt") { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// Wakes `accept` only once the client has sent its first bytes (TCP_DEFER_ACCEPT), so
    /// the accepted socket can be read at once instead of waiting for one more readiness
    /// event. For protocols where the client speaks first (HTTP, a TLS ClientHello): a
    /// client that stays silent is accepted after `seconds` anyway. Best effort.
    public static func deferAccept(_ fd: Int32, seconds: Int32) {
        var value = seconds
        _ = setsockopt(fd, Int32(truncatingIfNeeded: IPPROTO_TCP), TCP_DEFER_ACCEPT, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Disables Nagle: the proxy writes whole heads and body pieces, never single bytes.
    @inlinable public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    // MARK: Per-event operations

    /// The outcome of `accept`.
    public enum AcceptResult {
        case accepted(fd: Int32, peer: SocketAddress)
        case wouldBlock
        /// A transient failure (EMFILE, ECONNABORTED…): skip and go on.
        case failed(Int32)
    }

    /// Accepts one connection as a non-blocking, close-on-exec socket.
    @inlinable public static func accept(_ listenFD: Int32) -> AcceptResult {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let fd = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    accept4(listenFD, sa, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            if fd >= 0 { return .accepted(fd: fd, peer: SocketAddress(storage: storage, length: length)) }
            let err = yard_errno()
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            return .failed(err)
        }
    }

    /// The outcome of starting a non-blocking connect.
    public enum ConnectResult {
        case connected(Int32)
        /// EINPROGRESS: wait for writability, then check `pendingError`.
        case inProgress(Int32)
        case failed(Int32)
    }

    /// Starts a non-blocking TCP connect to `address`.
    @inlinable public static func connect(to address: SocketAddress) -> ConnectResult {
        let fd = Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failed(yard_errno()) }
        setNoDelay(fd)
        var storage = address.storage
        let result = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Glibc.connect(fd, sa, address.length)
            }
        }
        if result == 0 { return .connected(fd) }
        let err = yard_errno()
        if err == EINPROGRESS || err == EINTR { return .inProgress(fd) }
        Glibc.close(fd)
        return .failed(err)
    }

    /// The result of a finished non-blocking connect (SO_ERROR): 0 on success.
    @inlinable public static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) != 0 { return yard_errno() }
        return err
    }

    /// Reads into `buffer`'s free space.
    @inlinable public static func read(_ fd: Int32, into buffer: inout ByteBuffer) -> IOResult {
        while true {
            let n = Glibc.read(fd, buffer.base! + buffer.writerIndex, buffer.writableBytes)
            if n > 0 {
                buffer.writerIndex &+= n
                return .bytes(n)
            }
            if n == 0 { return .closed }
            let err = yard_errno()
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            return .failed(err)
        }
    }

    /// Writes bytes (MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE).
    @inlinable public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n == 0 ? .wouldBlock : .bytes(n) }
            let err = yard_errno()
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            return .failed(err)
        }
    }

    /// Writes `first` then `second` in one system call (sendmsg with two iovecs, MSG_NOSIGNAL):
    /// a response head and its body, or queued bytes and the next ones, without copying them
    /// together first. Returns the total written, which may end inside either.
    @inlinable public static func write(_ fd: Int32, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOResult {
        var vectors = (iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
                       iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count))
        return withUnsafeMutablePointer(to: &vectors) { pair in
            pair.withMemoryRebound(to: iovec.self, capacity: 2) { iov in
                var message = msghdr()
                message.msg_iov = first.isEmpty ? iov + 1 : iov
                message.msg_iovlen = first.isEmpty ? 1 : 2
                while true {
                    let n = Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                    if n >= 0 { return n == 0 ? .wouldBlock : .bytes(n) }
                    let err = yard_errno()
                    if err == EINTR { continue }
                    if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
                    return .failed(err)
                }
            }
        }
    }

    /// Writes the readable bytes of `buffer` and consumes what was written.
    @inlinable public static func flush(_ fd: Int32, _ buffer: inout ByteBuffer) -> IOResult {
        let result = write(fd, buffer.readable)
        if case .bytes(let n) = result { buffer.consume(n) }
        return result
    }

    @inlinable public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Sends a TCP FIN (half-close) after the last byte, so a client sees a clean end.
    @inlinable public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }
}
