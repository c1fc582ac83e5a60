#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import YardHTTP
import YardIO

/// A request to the admin API, as the handler sees it.
public struct AdminRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    /// Lowercased names; a name sent twice keeps its last value (Host, Origin,
    /// Content-Type, Authorization and Content-Length sent twice are refused).
    public var headers: [String: String]
    public var body: [UInt8]
    /// The body decoded for the routes that take JSON (`AdminRequestParser.decodeBody`).
    public var json: AdminBody = .none
    /// Whether the client lets the connection stay open after the answer.
    public var keepAlive = true
    /// The name of the token the request carried (set by `AdminGuard` for writes).
    public var tokenName: String?

    public init(method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// An answer of the admin API.
public struct AdminResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public init(status: Int = 200, text: String, contentType: String = "text/plain; charset=utf-8") {
        self.init(status: status, contentType: contentType, body: Array(text.utf8))
    }

    /// `value` in the admin API's one JSON style (`AdminJSON`, docs/api.md).
    public static func json<T: Encodable>(_ value: T, status: Int = 200) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: AdminJSON.encode(value))
    }
}

/// The admin listener: a small HTTP/1.1 server for status, metrics, the dashboard and
/// the traffic writes.
///
/// Control plane, not the request path: blocking sockets and a thread per connection, but
/// at most `maxConnections` of them (the rest are answered 503 and closed at once), each
/// request read within `requestDeadlineMs` as a whole (a client dripping bytes is cut
/// then, not kept alive by each byte), bodies up to 1 MiB. So no number of slow admin
/// clients can use up the process's threads or file descriptors.
///
/// Every request passes `AdminGuard` before the handler. Threading: `handler` is called
/// on connection threads concurrently and must be thread-safe; `tokens` likewise.
public final class AdminServer: Sendable {
    public let address: SocketAddress
    public let maxConnections: Int
    /// The time to receive a whole request (head and body), from its first wait on.
    public let requestDeadlineMs: Int64
    private let listenFD: Int32
    private let doorman: AdminGuard
    private let tokens: @Sendable () -> AdminTokens?
    private let handler: @Sendable (AdminRequest) -> AdminResponse
    private let stopped = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)

    public init(
        host: String, port: UInt16, allowedHosts: [String] = [], maxConnections: Int = 64, requestDeadlineMs: Int64 = 10_000,
        tokens: @escaping @Sendable () -> AdminTokens? = { nil },
        inherited: Int32? = nil,
        handler: @escaping @Sendable (AdminRequest) -> AdminResponse
    ) throws {
        guard let address = SocketAddress(host: host, port: port) else {
            throw AdminError.badAddress("\(host):\(port)")
        }
        let fd: Int32
        if let inherited {
            // Taken over from the process this one replaces (Takeover.swift): already bound.
            fd = inherited
        } else {
            do {
                fd = try Socket.listen(on: address, reusePort: false, backlog: 128)
            } catch {
                throw AdminError.cannotListen(address: "\(host):\(port)", error)
            }
        }
        // Non-blocking: the accept loop waits in poll() with a timeout, so it can stop
        // without shutting the socket down (a socket handed over is still listening in
        // the process that took it). Accepted sockets do not inherit O_NONBLOCK.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.listenFD = fd
        self.address = try Socket.localAddress(fd)
        self.maxConnections = max(1, maxConnections)
        self.requestDeadlineMs = requestDeadlineMs
        self.doorman = AdminGuard(boundHost: host, port: self.address.port, allowedHosts: allowedHosts)
        self.tokens = tokens
        self.handler = handler
    }

    /// The listening socket, for a process that takes over from this one (Takeover.swift);
    /// valid until `stop`.
    public var listeningDescriptor: Int32 { listenFD }

    /// Connections being served now.
    public var activeConnections: Int { active.load(ordering: .relaxed) }

    public func start() {
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "switchyard-admin"
        thread.start()
    }

    /// Stops accepting. `handingOver`: another process took this listening socket over
    /// and accepts on it from now on, so it is only closed here (within one poll interval),
    /// never shut down (that would stop it listening in the other process too).
    public func stop(handingOver: Bool = false) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if !handingOver { shutdown(listenFD, Int32(SHUT_RDWR)) }
    }

    /// How often the accept loop looks at `stopped` while no connection arrives.
    private static let pollIntervalMs: Int32 = 100

    private func acceptLoop() {
        defer { close(listenFD) }
        while !stopped.load(ordering: .acquiring) {
            var ready = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            if poll(&ready, 1, Self.pollIntervalMs) <= 0 || stopped.load(ordering: .acquiring) { continue }
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO, EAGAIN, EWOULDBLOCK:
                    // EAGAIN: another process sharing the socket (a takeover) took it first.
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory (perhaps the data plane's doing): the
                    // connection waits in the backlog; try again shortly rather than quit.
                    usleep(50_000)
                    continue
                default:
                    return
                }
            }
            guard active.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue <= maxConnections else {
                active.wrappingSubtract(1, ordering: .acquiringAndReleasing)
                refuseBusy(fd)
                continue
            }
            let thread = Thread { [self] in
                serve(fd)
                close(fd)
                active.wrappingSubtract(1, ordering: .acquiringAndReleasing)
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }

    /// Answers 503 without waiting (the socket buffer takes it or it is lost) and closes.
    private func refuseBusy(_ fd: Int32) {
        let body = "too many admin connections at once; retry later\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        _ = text.utf8CString.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        close(fd)
    }

    private func serve(_ fd: Int32) {
        var pending: [UInt8] = []
        while true {
            let deadline = monotonicMilliseconds() + requestDeadlineMs
            var parsed = pending.withUnsafeBytes { AdminRequestParser.parse($0) }
            while case .incomplete(let needed) = parsed {
                let before = pending.count
                switch receive(fd, into: &pending, deadline: deadline) {
                case .received:
                    break
                case .closed:
                    return
                case .timedOut:
                    if !pending.isEmpty {
                        send(fd, .error(408, "the request did not arrive within \(requestDeadlineMs / 1000) s"), keepAlive: false)
                    }
                    return
                }
                // Parse again only when it can change the answer: the body is all in, a head
                // that may now be complete (a line feed arrived), or one over the head limit
                // (refused then, so `pending` never grows past it without a line feed).
                let reparse = needed.map { pending.count >= $0 }
                    ?? (pending[before...].contains(UInt8(ascii: "\n")) || pending.count > AdminRequestParser.limits.maxHeadBytes)
                if reparse { parsed = pending.withUnsafeBytes { AdminRequestParser.parse($0) } }
            }
            switch parsed {
            case .incomplete:
                return
            case .refused(let response):
                send(fd, response, keepAlive: false)
                return
            case .request(var request, let consumed):
                pending.removeFirst(min(consumed, pending.count))
                let response = doorman.admit(&request, tokens: tokens()) ?? handler(request)
                guard send(fd, response, keepAlive: request.keepAlive), request.keepAlive else { return }
            }
        }
    }

    private enum Received { case received, closed, timedOut }

    /// Waits for bytes until `deadline` (monotonic ms) and appends what arrives.
    private func receive(_ fd: Int32, into pending: inout [UInt8], deadline: Int64) -> Received {
        // A head over the parser's limit is refused by the parser; a body over 1 MiB never
        // gets here (413 on its Content-Length): so `pending` stays under ~1.1 MiB plus a read.
        while true {
            let remaining = deadline - monotonicMilliseconds()
            guard remaining > 0 else { return .timedOut }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(clamping: remaining))
            if ready < 0 {
                if errno == EINTR { continue }
                return .closed
            }
            if ready == 0 { return .timedOut }
            var chunk = [UInt8](repeating: 0, count: 16_384)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return .closed }
            pending.append(contentsOf: chunk[..<n])
            return .received
        }
    }

    /// Writes the response; false when the client is gone or takes longer than the
    /// deadline to read it.
    @discardableResult
    private func send(_ fd: Int32, _ response: AdminResponse, keepAlive: Bool) -> Bool {
        var head = "HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
        head += "Content-Type: \(response.contentType)\r\nContent-Length: \(response.body.count)\r\n"
        head += "Cache-Control: no-store\r\n"
        if !keepAlive { head += "Connection: close\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + response.body
        let deadline = monotonicMilliseconds() + requestDeadlineMs
        var offset = 0
        while offset < bytes.count {
            let remaining = deadline - monotonicMilliseconds()
            guard remaining > 0 else { return false }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&poller, 1, Int32(clamping: remaining))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { return false }
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 403: return "Forbidden"
        case 408: return "Request Timeout"
        case 413: return "Content Too Large"
        case 415: return "Unsupported Media Type"
        case 421: return "Misdirected Request"
        case 431: return "Request Header Fields Too Large"
        case 503: return "Service Unavailable"
        case 500: return "Internal Server Error"
        default: return "Status"
        }
    }
}

/// Errors starting the admin listener.
public enum AdminError: Error, CustomStringConvertible {
    case badAddress(String)
    /// Binding or listening failed (the port is taken, or needs privileges).
    case cannotListen(address: String, IOError)

    public var description: String {
        switch self {
        case .badAddress(let text): return "cannot listen on '\(text)' for the admin API: expected an IP literal and a port"
        case .cannotListen(let address, let error): return "the admin API cannot listen on \(address): \(error)"
        }
    }
}
