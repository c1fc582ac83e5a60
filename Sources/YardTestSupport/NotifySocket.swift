#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The service manager's side of sd_notify(3) for tests: a unix datagram socket bound to a
/// fresh abstract name (or a path in a temp dir) that a child finds in `$NOTIFY_SOCKET`.
///
/// Threading: one test thread uses it. Closed when released.
public final class NotifySocket {
    /// The value to put in the child's `NOTIFY_SOCKET`: `@name` or an absolute path.
    public let address: String
    private let fd: Int32
    private let directory: TempDir?
    /// Every datagram received so far, in order.
    public private(set) var messages: [String] = []

    /// Binds an abstract socket (`abstract: true`) or a socket file in a temp dir.
    public init(abstract: Bool = true) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket(AF_UNIX, SOCK_DGRAM): \(String(cString: strerror(errno)))") }
        if abstract {
            directory = nil
            address = "@switchyard-test-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        } else {
            let dir = try TempDir(prefix: "switchyard-notify")
            directory = dir
            address = dir.file("notify.sock")
        }
        var name = Array(address.utf8)
        if abstract { name[0] = 0 }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        guard name.count < MemoryLayout.size(ofValue: socketAddress.sun_path) else {
            close(fd)
            throw TestSupportError("notify socket name too long: \(address)")
        }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { path in
            for (index, byte) in name.enumerated() { path[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw TestSupportError("bind \(address): \(message)")
        }
    }

    deinit { close(fd) }

    /// Waits for the next datagram until `deadline`; nil if none arrived.
    public func receive(deadline: Deadline) -> String? {
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        repeat {
            let milliseconds = Int32(clamping: deadline.remaining.components.seconds * 1000
                + deadline.remaining.components.attoseconds / 1_000_000_000_000_000)
            let ready = poll(&pollfd, 1, max(milliseconds, 1))
            if ready > 0 {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if count >= 0 {
                    let text = String(decoding: buffer[..<count], as: UTF8.self)
                    messages.append(text)
                    return text
                }
            }
        } while !deadline.hasPassed
        return nil
    }

    /// Waits for a datagram for which `predicate` holds (skipping others); returns it, or
    /// throws listing what did arrive.
    @discardableResult
    public func waitForMessage(_ description: String, deadline: Deadline = .seconds(10),
                               where predicate: (String) -> Bool) throws -> String {
        while let message = receive(deadline: deadline) {
            if predicate(message) { return message }
        }
        throw TestSupportError("no \(description) on \(address) within \(deadline); received \(messages)")
    }
}
