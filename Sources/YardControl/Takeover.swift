#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import YardIO
import YardProxy

// Hitless restart and binary upgrade: a new process takes the listening sockets of the
// running one over a unix socket (SCM_RIGHTS), starts serving on them, and only then does
// the old one stop accepting and drain. The ports never close, so no connection is refused;
// a request the old process already has finishes there.
//
// Why passing sockets rather than binding the port again with SO_REUSEPORT while the old
// one drains: closing a SO_REUSEPORT socket resets every connection still waiting in its
// accept queue (the kernel hashed them to it), so the old process could not stop without
// losing some; a passed socket is the same socket in both processes, and its queue goes on
// being served by whichever accepts. It also moves the admin API's socket (no
// SO_REUSEPORT there) and works whatever the two processes' worker counts are.
//
// The exchange, one message per packet (SOCK_SEQPACKET), JSON text:
//
//   new → old   {"kind":"hello","version":1,"pid":N}
//   old → new   {"kind":"listener","name":…,"host":…,"port":…}  + one descriptor, per socket
//               ({"kind":"refused","reason":…} instead, if the old one is stopping)
//   old → new   {"kind":"end","pid":OLD}
//   new → old   {"kind":"ready","pid":N}     once its workers and admin API serve
//   old → new   {"kind":"draining","pid":OLD}
//
// A new process that fails before "ready" (a config that does not load, a port it cannot
// bind) closes the connection: the old one logs it and goes on serving, unchanged.

/// One message of the takeover exchange.
struct TakeoverMessage: Codable, Equatable {
    var kind: Kind
    var version: Int?
    var pid: Int32?
    var name: String?
    var host: String?
    var port: UInt16?
    var reason: String?

    enum Kind: String, Codable {
        case hello, listener, refused, end, ready, draining
    }

    static let version = 1

    func encoded() -> [UInt8] {
        Array((try? JSONEncoder().encode(self)) ?? Data())
    }

    static func decode(_ bytes: [UInt8]) throws(TakeoverError) -> TakeoverMessage {
        do {
            return try JSONDecoder().decode(TakeoverMessage.self, from: Data(bytes))
        } catch {
            throw .protocolError("unreadable message (\(bytes.count) bytes): \(error)")
        }
    }
}

/// Why a takeover did not happen, worded for the operator.
public enum TakeoverError: Error, CustomStringConvertible {
    case io(String, IOError)
    /// The process at the socket runs as another user: its sockets are not taken.
    case foreignPeer(path: String, uid: UInt32)
    case refused(String)
    case protocolError(String)

    public var description: String {
        switch self {
        case .io(let what, let error): return "takeover: \(what): \(error)"
        case .foreignPeer(let path, let uid):
            return "takeover: the process at \(path) runs as uid \(uid), not as this user (\(geteuid())); its sockets are not taken"
        case .refused(let reason): return "takeover refused by the running process: \(reason)"
        case .protocolError(let detail): return "takeover: \(detail)"
        }
    }
}

/// Where a process offers its sockets to the one that replaces it.
public enum TakeoverSocket {
    /// The default for a config file: in systemd's `RuntimeDirectory` (`$RUNTIME_DIRECTORY`)
    /// or `$XDG_RUNTIME_DIR` if set, as a file only this user can open; otherwise an
    /// abstract unix socket name (no file left behind by a process that was killed).
    /// Either way named after the config file's absolute path, so two proxies on two
    /// configs never take each other's sockets.
    public static func defaultPath(configPath: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let name = "switchyard-\(hexHash(absolute(configPath))).takeover"
        for key in ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"] {
            // RUNTIME_DIRECTORY lists several directories separated by ':' when the unit
            // names several; the first is ours.
            if let directory = environment[key]?.split(separator: ":").first, directory.hasPrefix("/") {
                let path = "\(directory)/\(name)"
                if FileDescriptorPassing.unixAddress(path) != nil { return path }
            }
        }
        return "@\(name)"
    }

    /// The absolute, symlink-free form of `path` (itself if it does not resolve).
    static func absolute(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// FNV-1a, 64 bits, as 16 hex digits: stable across processes and builds.
    static func hexHash(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

// MARK: The new process

/// The new process's side: connects to the running process, receives its sockets, and
/// tells it when to stop.
///
/// Threading: used on the thread that runs `Runtime.run`, during startup.
final class TakeoverClient {
    let path: String
    private let fd: Int32
    /// The old process's pid (from the kernel, not from its messages).
    let oldPID: Int32

    /// How long the old process may take to send its sockets and to acknowledge "ready".
    static let answerTimeoutMs = 10_000

    /// Connects to the process offering at `path`; nil if none does (no such socket, or
    /// nothing listening on it any more). `expecting`: only that process may answer (the
    /// one whose SIGUSR2 started this one).
    static func connect(path: String, expecting expected: Int32? = nil) throws(TakeoverError) -> TakeoverClient? {
        let fd: Int32
        do {
            fd = try FileDescriptorPassing.connect(to: path)
        } catch {
            if error.errno == ENOENT || error.errno == ECONNREFUSED { return nil }
            throw .io("connect to \(path)", error)
        }
        let peer: (pid: Int32, uid: UInt32)
        do {
            peer = try FileDescriptorPassing.peer(fd)
            try FileDescriptorPassing.setReceiveTimeout(fd, milliseconds: answerTimeoutMs)
        } catch {
            close(fd)
            throw .io("credentials of \(path)", error)
        }
        guard peer.uid == geteuid() else {
            close(fd)
            throw .foreignPeer(path: path, uid: peer.uid)
        }
        if let expected, peer.pid != expected {
            close(fd)
            throw .protocolError("pid \(peer.pid) offers at \(path), not pid \(expected), which started this process")
        }
        return TakeoverClient(path: path, fd: fd, oldPID: peer.pid)
    }

    private init(path: String, fd: Int32, oldPID: Int32) {
        self.path = path
        self.fd = fd
        self.oldPID = oldPID
    }

    deinit { close(fd) }

    /// Asks for the sockets and receives them all. The caller owns the descriptors.
    func receiveSockets() throws(TakeoverError) -> [ListeningSocket] {
        try send(TakeoverMessage(kind: .hello, version: TakeoverMessage.version, pid: getpid()))
        var sockets: [ListeningSocket] = []
        do throws(TakeoverError) {
            while true {
                let (message, descriptors) = try receive()
                switch message.kind {
                case .listener:
                    guard descriptors.count == 1, let name = message.name, let host = message.host, let port = message.port,
                          let address = SocketAddress(host: host, port: port)
                    else {
                        for descriptor in descriptors { close(descriptor) }
                        throw .protocolError("a listener message without one socket or a usable address: \(message)")
                    }
                    sockets.append(ListeningSocket(name: name, address: address, fd: descriptors[0]))
                case .end:
                    return sockets
                case .refused:
                    throw .refused(message.reason ?? "no reason given")
                default:
                    throw .protocolError("unexpected '\(message.kind.rawValue)' while receiving sockets")
                }
            }
        } catch {
            for socket in sockets { close(socket.fd) }
            throw error
        }
    }

    /// Tells the old process this one serves; returns once it acknowledged (it has begun
    /// to drain). The old process is then no longer reachable at `path`.
    func confirmReady() throws(TakeoverError) {
        try send(TakeoverMessage(kind: .ready, pid: getpid()))
        let (answer, descriptors) = try receive()
        for descriptor in descriptors { close(descriptor) }
        guard answer.kind == .draining else {
            throw .protocolError("expected 'draining', got '\(answer.kind.rawValue)'")
        }
    }

    private func send(_ message: TakeoverMessage) throws(TakeoverError) {
        do {
            try FileDescriptorPassing.send(fd, bytes: message.encoded())
        } catch {
            throw .io("send to \(path)", error)
        }
    }

    private func receive() throws(TakeoverError) -> (TakeoverMessage, [Int32]) {
        let received: FileDescriptorPassing.Message?
        do {
            received = try FileDescriptorPassing.receive(fd)
        } catch {
            throw .io("receive from \(path)", error)
        }
        guard let received else { throw .protocolError("pid \(oldPID) closed the connection") }
        do {
            return (try TakeoverMessage.decode(received.bytes), received.descriptors)
        } catch {
            for descriptor in received.descriptors { close(descriptor) }
            throw error
        }
    }
}

// MARK: The running process

/// The running process's side: offers its listening sockets at `path` to a process that
/// takes over, and hands over once that one serves.
///
/// `sockets` returns duplicates of the listening sockets (closed here once sent), or nil
/// with a reason when this process cannot hand over (it is stopping). `handOver` is
/// called with the new process's pid once it serves: this one stops accepting and drains.
///
/// Threading: one thread accepts and serves one takeover at a time; `stop` may be called
/// from any thread.
final class TakeoverOffer: Sendable {
    let path: String
    private let fd: Int32
    /// The offer's file (its inode), to remove it on stop only if it is still ours: a
    /// process that took over has renamed its own socket over the name.
    private let inode: UInt64?
    private let stopped = Atomic<Bool>(false)
    private let sockets: @Sendable () -> Result<[ListeningSocket], TakeoverError>
    private let handOver: @Sendable (Int32) -> Void

    /// How long a new process may take from receiving the sockets to serving on them
    /// (discovery, first health results, TLS): meanwhile this one serves as before.
    static let readyTimeoutMs = 120_000

    init(path: String, sockets: @escaping @Sendable () -> Result<[ListeningSocket], TakeoverError>,
         handOver: @escaping @Sendable (Int32) -> Void) throws(TakeoverError) {
        self.path = path
        do {
            fd = try FileDescriptorPassing.listen(at: path)
        } catch {
            throw .io("offer the sockets at \(path)", error)
        }
        var status = stat()
        inode = !path.hasPrefix("@") && stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
        self.sockets = sockets
        self.handOver = handOver
    }

    func start() {
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "switchyard-takeover"
        thread.start()
    }

    /// Stops offering: nothing more connects; a takeover under way is cut (the new
    /// process then starts on its own sockets or fails).
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var status = stat()
        if let inode, stat(path, &status) == 0, UInt64(status.st_ino) == inode { unlink(path) }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Closes the listening socket once (an abstract name is free again only then).
    private let closed = Atomic<Bool>(false)
    private func closeListening() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) { close(fd) }
    }

    private func acceptLoop() {
        defer { closeListening() }
        while !stopped.load(ordering: .acquiring) {
            let connection: Int32
            do {
                connection = try FileDescriptorPassing.accept(fd)
            } catch {
                if error.errno == ECONNABORTED { continue }
                if !stopped.load(ordering: .acquiring) { logger.warning("takeover socket \(path): \(error)") }
                return
            }
            serve(connection)
            close(connection)
        }
    }

    /// One takeover, from hello to draining.
    private func serve(_ connection: Int32) {
        let peerPID: Int32
        do {
            let peer = try FileDescriptorPassing.peer(connection)
            guard peer.uid == geteuid() else {
                logger.warning("takeover socket \(path): pid \(peer.pid) runs as uid \(peer.uid), not as this user; refused")
                return
            }
            peerPID = peer.pid
            try FileDescriptorPassing.setReceiveTimeout(connection, milliseconds: TakeoverClient.answerTimeoutMs)
        } catch {
            logger.warning("takeover socket \(path): \(error)")
            return
        }
        do {
            let hello = try receive(connection)
            guard hello.kind == .hello, hello.version == TakeoverMessage.version else {
                throw TakeoverError.protocolError("expected hello version \(TakeoverMessage.version), got \(hello.kind.rawValue) \(hello.version ?? 0)")
            }
            let offered: [ListeningSocket]
            switch sockets() {
            case .success(let list): offered = list
            case .failure(let error):
                try? FileDescriptorPassing.send(connection, bytes: TakeoverMessage(kind: .refused, reason: "\(error)").encoded())
                logger.warning("takeover by pid \(peerPID) refused: \(error)")
                return
            }
            defer { for socket in offered { close(socket.fd) } }
            logger.info("takeover: pid \(peerPID) asks for the listening sockets; sending \(offered.count)")
            for socket in offered {
                let message = TakeoverMessage(kind: .listener, name: socket.name, host: socket.address.ipText, port: socket.address.port)
                try send(connection, message, descriptors: [socket.fd])
            }
            try send(connection, TakeoverMessage(kind: .end, pid: getpid()))
            try FileDescriptorPassing.setReceiveTimeout(connection, milliseconds: Self.readyTimeoutMs)
            let ready = try receive(connection)
            guard ready.kind == .ready else { throw TakeoverError.protocolError("expected 'ready', got '\(ready.kind.rawValue)'") }
            handOver(peerPID)
            // The name is the new process's from now on: free it before saying so.
            stop()
            closeListening()
            try? send(connection, TakeoverMessage(kind: .draining, pid: getpid()))
        } catch {
            logger.error("takeover by pid \(peerPID) did not complete (\(error)); this process (pid \(getpid())) goes on serving")
        }
    }

    private func send(_ connection: Int32, _ message: TakeoverMessage, descriptors: [Int32] = []) throws(TakeoverError) {
        do {
            try FileDescriptorPassing.send(connection, bytes: message.encoded(), descriptors: descriptors)
        } catch {
            throw .io("send", error)
        }
    }

    private func receive(_ connection: Int32) throws(TakeoverError) -> TakeoverMessage {
        let received: FileDescriptorPassing.Message?
        do {
            received = try FileDescriptorPassing.receive(connection)
        } catch {
            throw .io(error.errno == EAGAIN ? "no answer in time" : "receive", error)
        }
        guard let received else { throw .protocolError("the new process closed the connection (it failed to start; see its log)") }
        for descriptor in received.descriptors { close(descriptor) }
        return try TakeoverMessage.decode(received.bytes)
    }
}
