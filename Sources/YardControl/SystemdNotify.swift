#if canImport(Glibc)
import Glibc
#endif
import YardIO

/// The service manager's readiness protocol (sd_notify(3)) without libsystemd: one datagram
/// per state change on the unix socket named by `$NOTIFY_SOCKET`.
///
/// systemd sets `$NOTIFY_SOCKET` for a `Type=notify` unit (conf/systemd/switchyard.service);
/// anywhere else it is unset and every call does nothing. A name starting with `@` is a
/// Linux abstract socket (the `@` stands for the leading NUL byte).
///
/// Threading: stateless; any thread may call. Each message opens, sends on and closes its
/// own socket (a handful per process lifetime, never on the request path).
public enum SystemdNotify {
    /// The states Runtime reports.
    public enum Message: Sendable, Equatable {
        /// Listeners and the admin API are bound; startup or a reload is done.
        case ready
        /// A SIGHUP reload begins; `READY=1` follows when it is applied or rejected.
        case reloading
        /// Draining began (SIGTERM/SIGINT).
        case stopping
        /// A new process took the listeners over (Takeover.swift) and is ready: it becomes
        /// the service's main process. Sent by the old one, which systemd still listens to
        /// under `NotifyAccess=main`.
        case handedOver(to: Int32)

        /// The datagram's text. `RELOADING=1` carries the monotonic time systemd ≥ 253
        /// requires to match it with the reload it asked for.
        public var text: String {
            switch self {
            case .ready: return "READY=1"
            case .reloading: return "RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())"
            case .stopping: return "STOPPING=1"
            case .handedOver(let pid): return "MAINPID=\(pid)\nREADY=1"
            }
        }

        private static func monotonicMicroseconds() -> UInt64 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return UInt64(max(0, now.tv_sec)) &* 1_000_000 &+ UInt64(max(0, now.tv_nsec) / 1000)
        }
    }

    /// Why a message could not be sent (logged, never fatal: the proxy serves regardless).
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// Neither `/path` nor `@abstract`, or longer than a unix socket address holds.
        case badAddress(String)
        case send(IOError)

        public var description: String {
            switch self {
            case .badAddress(let address):
                return "NOTIFY_SOCKET=\(address) is not a usable unix socket address (an absolute path or @abstract name, at most 107 bytes)"
            case .send(let error):
                return "notify socket: \(error)"
            }
        }
    }

    /// Sends `message` to `$NOTIFY_SOCKET` if it is set; a failure is logged, never thrown.
    public static func notify(_ message: Message) {
        guard let address = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !address.isEmpty else { return }
        do {
            try send(message.text, to: address)
        } catch {
            logger.warning("systemd notification \(message) not sent: \(error)")
        }
    }

    /// Sends `text` as one datagram to the unix socket `address` (`/path` or `@abstract`).
    public static func send(_ text: String, to address: String) throws(Failure) {
        guard let (unix, length) = unixAddress(address) else { throw .badAddress(address) }
        var socketAddress = unix
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .send(IOError(call: "socket", errno: errno)) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        do {
            try syscall("sendto") {
                bytes.withUnsafeBytes { buffer in
                    withUnsafePointer(to: &socketAddress) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), $0, length)
                        }
                    }
                }
            }
        } catch {
            throw .send(error)
        }
    }

    /// `sockaddr_un` for `/path` or `@abstract`, with the length to pass. Nil if unusable.
    static func unixAddress(_ address: String) -> (sockaddr_un, socklen_t)? {
        guard address.hasPrefix("/") || address.hasPrefix("@") else { return nil }
        return FileDescriptorPassing.unixAddress(address)
    }
}
