#if canImport(Glibc)
import Glibc
#endif
import CYardLinux

/// Unix `SOCK_SEQPACKET` sockets that carry open descriptors between processes
/// (`SCM_RIGHTS`): how a new Switchyard process takes the listening sockets of the one it
/// replaces, so the ports never close (Sources/YardControl/Takeover.swift).
///
/// Sequenced packets, not a stream: each `send` is one message that `receive` gets whole,
/// with its descriptors, so no framing is needed and descriptors never attach to the wrong
/// bytes. The peer's user is checked with `SO_PEERCRED` by the caller.
///
/// Threading: plain blocking system calls on descriptors the caller owns; control plane only.
public enum FileDescriptorPassing {
    /// The most descriptors one message carries (the kernel's limit is SCM_MAX_FD, 253).
    public static let maxDescriptorsPerMessage = 64

    /// A received message: its bytes and the descriptors that came with it (close-on-exec,
    /// owned by the caller from now on).
    public struct Message: Sendable {
        public var bytes: [UInt8]
        public var descriptors: [Int32]
    }

    // MARK: Sockets

    /// A listening socket at `path`: a file reachable only by this user (mode 0600), or an
    /// abstract name (`@name`: no file, gone with the process; the caller checks every
    /// peer's user, as for a file). A file is bound under a temporary name and renamed over
    /// `path`, so a process already offering there keeps its socket while the name moves
    /// to the new one; an abstract name can be bound only once it is free.
    public static func listen(at path: String) throws(IOError) -> Int32 {
        let abstract = path.hasPrefix("@")
        let temporary = abstract ? path : path + ".\(getpid()).new"
        guard let (unix, length) = unixAddress(temporary) else { throw IOError(call: "bind", errno: ENAMETOOLONG) }
        var address = unix
        let fd = try syscall("socket") { socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            if !abstract { unlink(temporary) }
            try withUnsafePointer(to: &address) { pointer throws(IOError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(IOError) in
                    _ = try syscall("bind") { bind(fd, sa, length) }
                }
            }
            if !abstract { try syscall("chmod") { chmod(temporary, 0o600) } }
            try syscall("listen") { Glibc.listen(fd, 8) }
            if !abstract { try syscall("rename") { rename(temporary, path) } }
            return fd
        } catch {
            if !abstract { unlink(temporary) }
            Glibc.close(fd)
            throw error
        }
    }

    /// Connects to the socket at `path` (a file or `@abstract`). ENOENT or ECONNREFUSED:
    /// nothing offers there.
    public static func connect(to path: String) throws(IOError) -> Int32 {
        guard let (unix, length) = unixAddress(path) else { throw IOError(call: "connect", errno: ENAMETOOLONG) }
        var address = unix
        let fd = try syscall("socket") { socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try withUnsafePointer(to: &address) { pointer throws(IOError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(IOError) in
                    _ = try syscall("connect") { Glibc.connect(fd, sa, length) }
                }
            }
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Waits for the next connection to a socket from `listen(at:)` (close-on-exec).
    /// Fails with EINVAL once the socket was shut down.
    public static func accept(_ fd: Int32) throws(IOError) -> Int32 {
        try syscall("accept4") { accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue)) }
    }

    /// The process and user at the other end of a connected unix socket (`SO_PEERCRED`).
    public static func peer(_ fd: Int32) throws(IOError) -> (pid: Int32, uid: UInt32) {
        // struct ucred is pid_t, uid_t, gid_t (three 32-bit fields); Swift's Glibc module
        // hides it behind _GNU_SOURCE, so read it as three integers.
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        try syscall("getsockopt(SO_PEERCRED)") { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) }
        return (credentials.0, credentials.1)
    }

    /// Bounds every later blocking `receive` (and `accept`) on `fd` to `milliseconds`; a
    /// wait that runs out fails with EAGAIN.
    public static func setReceiveTimeout(_ fd: Int32, milliseconds: Int) throws(IOError) {
        var limit = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        try syscall("setsockopt(SO_RCVTIMEO)") { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size)) }
    }

    // MARK: Messages

    /// Sends `bytes` as one message with `descriptors` attached (at most
    /// `maxDescriptorsPerMessage`). The caller keeps its own copies of the descriptors.
    public static func send(_ fd: Int32, bytes: [UInt8], descriptors: [Int32] = []) throws(IOError) {
        guard descriptors.count <= maxDescriptorsPerMessage, !bytes.isEmpty else { throw IOError(call: "sendmsg", errno: EINVAL) }
        var control = [UInt8](repeating: 0, count: descriptors.isEmpty ? 0 : controlSpace(descriptors.count))
        var payload = bytes
        let sent = payload.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var header = msghdr()
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    if !descriptors.isEmpty, let base = controlBytes.baseAddress {
                        writeRightsHeader(into: base, descriptors: descriptors)
                        header.msg_control = base
                        header.msg_controllen = controlBytes.count
                    }
                    while true {
                        let n = sendmsg(fd, &header, Int32(MSG_NOSIGNAL))
                        if n >= 0 { return n }
                        if yard_errno() != EINTR { return -1 }
                    }
                }
            }
        }
        if sent < 0 { throw IOError(call: "sendmsg", errno: yard_errno()) }
        if sent != bytes.count { throw IOError(call: "sendmsg", errno: EMSGSIZE) }
    }

    /// Receives one message of at most `capacity` bytes and its descriptors. Nil when the
    /// peer closed the connection. A message cut short (longer than `capacity`, or with
    /// more descriptors than a message may carry) fails with EMSGSIZE, and the descriptors
    /// that did arrive are closed.
    public static func receive(_ fd: Int32, capacity: Int = 4096) throws(IOError) -> Message? {
        var data = [UInt8](repeating: 0, count: max(1, capacity))
        var control = [UInt8](repeating: 0, count: controlSpace(maxDescriptorsPerMessage))
        var flags: Int32 = 0
        var descriptors: [Int32] = []
        let received = data.withUnsafeMutableBytes { dataBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: dataBytes.baseAddress, iov_len: dataBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer -> Int in
                    var header = msghdr()
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    header.msg_control = controlBytes.baseAddress
                    header.msg_controllen = controlBytes.count
                    var n: Int
                    repeat {
                        n = recvmsg(fd, &header, Int32(MSG_CMSG_CLOEXEC))
                    } while n < 0 && yard_errno() == EINTR
                    flags = header.msg_flags
                    if n >= 0 { descriptors = readRights(UnsafeRawBufferPointer(start: controlBytes.baseAddress, count: min(header.msg_controllen, controlBytes.count))) }
                    return n
                }
            }
        }
        if received < 0 { throw IOError(call: "recvmsg", errno: yard_errno()) }
        if flags & Int32(MSG_TRUNC) != 0 || flags & Int32(MSG_CTRUNC) != 0 {
            for descriptor in descriptors { Glibc.close(descriptor) }
            throw IOError(call: "recvmsg", errno: EMSGSIZE)
        }
        if received == 0 && descriptors.isEmpty { return nil }
        return Message(bytes: Array(data.prefix(received)), descriptors: descriptors)
    }

    // MARK: Control messages

    // CMSG_SPACE, CMSG_LEN and CMSG_DATA are C macros Swift cannot import: the layout they
    // compute is a `cmsghdr` (size_t length, int level, int type) followed by the data,
    // each padded to the alignment of size_t.

    private static let alignment = MemoryLayout<Int>.size
    private static func aligned(_ n: Int) -> Int { (n + alignment - 1) & ~(alignment - 1) }
    private static var headerSpace: Int { aligned(MemoryLayout<cmsghdr>.size) }
    private static func controlSpace(_ count: Int) -> Int { headerSpace + aligned(count * MemoryLayout<Int32>.size) }

    private static func writeRightsHeader(into base: UnsafeMutableRawPointer, descriptors: [Int32]) {
        var header = cmsghdr()
        header.cmsg_len = headerSpace + descriptors.count * MemoryLayout<Int32>.size
        header.cmsg_level = SOL_SOCKET
        header.cmsg_type = Int32(SCM_RIGHTS)
        base.storeBytes(of: header, as: cmsghdr.self)
        for (index, descriptor) in descriptors.enumerated() {
            base.storeBytes(of: descriptor, toByteOffset: headerSpace + index * MemoryLayout<Int32>.size, as: Int32.self)
        }
    }

    /// The descriptors of every SCM_RIGHTS control message in `control`.
    private static func readRights(_ control: UnsafeRawBufferPointer) -> [Int32] {
        var descriptors: [Int32] = []
        var offset = 0
        while offset + headerSpace <= control.count, let base = control.baseAddress {
            let header = base.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
            let length = Int(header.cmsg_len)
            guard length >= headerSpace, offset + length <= control.count else { break }
            if header.cmsg_level == SOL_SOCKET && header.cmsg_type == Int32(SCM_RIGHTS) {
                let count = (length - headerSpace) / MemoryLayout<Int32>.size
                for index in 0..<count {
                    descriptors.append(base.loadUnaligned(fromByteOffset: offset + headerSpace + index * MemoryLayout<Int32>.size, as: Int32.self))
                }
            }
            offset += aligned(length)
        }
        return descriptors
    }

    /// `sockaddr_un` for `/path` (or a relative path) or `@abstract`, with the length to
    /// pass (an abstract name's length is exact: its bytes after the NUL are part of the
    /// name). Nil if it does not fit or holds a NUL.
    public static func unixAddress(_ address: String) -> (sockaddr_un, socklen_t)? {
        var bytes = Array(address.utf8)
        guard let first = bytes.first else { return nil }
        let abstract = first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        var result = sockaddr_un()
        result.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: result.sun_path)
        // A path needs room for its terminating NUL; an abstract name does not.
        guard bytes.count <= (abstract ? capacity : capacity - 1), !bytes.dropFirst().contains(0), abstract || !bytes.contains(0) else { return nil }
        withUnsafeMutableBytes(of: &result.sun_path) { path in
            for (index, byte) in bytes.enumerated() { path[index] = byte }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        return (result, socklen_t(pathOffset + bytes.count + (abstract ? 0 : 1)))
    }
}
