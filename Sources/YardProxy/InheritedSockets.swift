#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardModel

/// One listening socket of a running process, as it is offered to the process that takes
/// over from it: which listener it serves (`admin` for the admin API) and where it is bound.
public struct ListeningSocket: Sendable, Equatable {
    /// The listener's name in the config, or `ListeningSocket.adminName`.
    public var name: String
    public var address: SocketAddress
    public var fd: Int32

    /// The name the admin API's socket travels under (a data-plane listener cannot be
    /// called this: its name would need the brackets).
    public static let adminName = "[admin]"

    public init(name: String, address: SocketAddress, fd: Int32) {
        self.name = name
        self.address = address
        self.fd = fd
    }

    /// Whether this socket can serve a listener configured as `name` on `host:port`: the
    /// same address, or, for port 0 (any port), the same name on the same host.
    public func serves(name: String, host: String, port: UInt16) -> Bool {
        guard let configured = SocketAddress(host: host, port: port) else { return false }
        if port != 0 { return configured == address }
        return name == self.name && configured.family == address.family && configured.ipText == address.ipText
    }
}

/// The listening sockets a new process received from the one it takes over from
/// (`switchyard run --takeover`), until its listeners and admin API claim them.
///
/// A socket no listener of the new config claims is closed by `closeUnclaimed`: the old
/// process closes its copy as it drains, and the port closes, as the new config asks.
///
/// Threading: used by the starting process on one thread, before the workers run.
public final class InheritedSockets {
    private var sockets: [ListeningSocket]
    private var claimed: Set<Int> = []

    public init(_ sockets: [ListeningSocket] = []) {
        self.sockets = sockets
    }

    public var isEmpty: Bool { sockets.isEmpty }
    public var count: Int { sockets.count }

    /// Claims every socket that serves `listener` (one per worker of the old process).
    public func claim(_ listener: ListenerConfig) -> [ListeningSocket] {
        claim { $0.name != ListeningSocket.adminName && $0.serves(name: listener.name, host: listener.host, port: listener.port) }
    }

    /// Claims the admin API's socket if it is bound where the new admin API listens.
    public func claimAdmin(host: String, port: UInt16) -> ListeningSocket? {
        claim { $0.name == ListeningSocket.adminName && $0.serves(name: ListeningSocket.adminName, host: host, port: port) }.first
    }

    private func claim(where matches: (ListeningSocket) -> Bool) -> [ListeningSocket] {
        var found: [ListeningSocket] = []
        for (index, socket) in sockets.enumerated() where !claimed.contains(index) && matches(socket) {
            claimed.insert(index)
            found.append(socket)
        }
        return found
    }

    /// Closes the sockets nothing claimed; returns them (for the log).
    @discardableResult
    public func closeUnclaimed() -> [ListeningSocket] {
        var closed: [ListeningSocket] = []
        for (index, socket) in sockets.enumerated() where !claimed.contains(index) {
            Socket.close(socket.fd)
            claimed.insert(index)
            closed.append(socket)
        }
        return closed
    }
}

/// Which listening socket each worker accepts on, and for which configured listener.
///
/// Every worker has its own SO_REUSEPORT socket per listener. Sockets taken over from an
/// old process are all kept, whatever its worker count was: the kernel spreads new
/// connections over every socket of the group, and closing one would reset the
/// connections waiting in its queue. With more inherited sockets than workers, a worker
/// accepts on several for one listener; with fewer, the missing ones are bound anew
/// beside them (SO_REUSEPORT lets the same user bind the port again).
///
/// Threading: built once by `ProxyServer.init`, then only read.
struct ListenerSlots: Sendable {
    /// Per worker: its listening sockets, and the configured listener each one serves.
    var fds: [[Int32]]
    var listenerIndex: [[Int]]
    /// Per listener: the address it is bound to (the port resolved when 0 was asked for).
    var bound: [SocketAddress]
    /// Every socket, named by its listener, for a process that takes over from this one.
    var sockets: [ListeningSocket]

    init(listeners: [ListenerConfig], workers count: Int, inherited: InheritedSockets) throws {
        fds = Array(repeating: [], count: count)
        listenerIndex = Array(repeating: [], count: count)
        bound = []
        sockets = []
        do {
            for (index, listener) in listeners.enumerated() {
                guard var address = SocketAddress(host: listener.host, port: listener.port) else {
                    throw ProxyError.badAddress("\(listener.host):\(listener.port)")
                }
                let taken = inherited.claim(listener)
                if let first = taken.first { address = first.address }
                var own: [Int32] = taken.map(\.fd)
                sockets += taken
                while own.count < count {
                    let fd: Int32
                    do {
                        fd = try Socket.listen(on: address, reusePort: true)
                    } catch {
                        throw ProxyError.cannotListen(listener: listener.name, address: "\(listener.host):\(listener.port)", error)
                    }
                    if own.isEmpty { address = try Socket.localAddress(fd) }
                    own.append(fd)
                    sockets.append(ListeningSocket(name: listener.name, address: address, fd: fd))
                }
                bound.append(address)
                for fd in own {
                    // Accepted sockets inherit TCP_NODELAY from their listener on Linux, which
                    // saves a system call per connection.
                    Socket.setNoDelay(fd)
                    // HTTP clients speak first, so accept can wait for their first bytes; a
                    // tcp listener may carry a protocol where the server speaks first.
                    if listener.protocol == .http { Socket.deferAccept(fd, seconds: 1) }
                }
                for (position, fd) in own.enumerated() {
                    fds[position % count].append(fd)
                    listenerIndex[position % count].append(index)
                }
            }
        } catch {
            closeAll()
            throw error
        }
    }

    func closeAll() {
        for socket in sockets { Socket.close(socket.fd) }
    }
}
