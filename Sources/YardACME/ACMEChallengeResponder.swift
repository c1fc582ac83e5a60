#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// A tiny blocking HTTP/1.1 server that answers HTTP-01 challenges:
/// `GET /.well-known/acme-challenge/TOKEN` → 200 with the key authorization, anything
/// else → 404. For `switchyard acme issue` and tests, until the proxy's own HTTP listeners
/// answer challenges from the shared store.
///
/// An accept thread hands each connection to a short-lived thread of its own (at most
/// `maximumConnections` at once; more are closed at once), each bounded to 8 KiB of head
/// and 5 s in all: on a public port 80, silent or slow connections must not hold up the
/// CA's validation request. Threading: `publish`/`withdraw` may be called from any thread
/// (the table sits behind a mutex); `stop()` (or deinit) ends the accept thread and
/// closes the socket (connection threads end within their 5 s).
public final class ACMEChallengeResponder: ACMEChallengeSolver, Sendable {
    public static let pathPrefix = "/.well-known/acme-challenge/"

    /// The port bound (the one asked for, or the kernel's choice for 0).
    public let port: UInt16
    private let listener: Int32
    private let table = Mutex<[String: String]>([:])
    /// Asked for a token this responder did not publish (another replica's order).
    private let fallback = Mutex<(@Sendable (String) -> String?)?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    /// Requests answered (any status), for tests and logs.
    private let served = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)
    public static let maximumConnections = 32
    static let connectionDeadline: Duration = .seconds(5)

    /// Listens on `address`:`port` (IPv4; "0.0.0.0" for every interface, the CA's view).
    public init(address: String = "127.0.0.1", port: UInt16) throws(ACMEError) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ACMEError.transport(operation: "challenge responder", reason: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else {
            close(fd)
            throw ACMEError.badRequest("challenge responder: '\(address)' is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ACMEError.transport(operation: "challenge responder", reason: "cannot listen on \(address):\(port): \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        self.port = UInt16(bigEndian: socketAddress.sin_port)
        let thread = Thread { [self] in serve() }
        thread.name = "acme-http-01"
        thread.start()
    }

    deinit { stop() }

    public func publish(token: String, keyAuthorization: String) {
        table.withLock { $0[token] = keyAuthorization }
    }

    public func withdraw(token: String) {
        table.withLock { _ = $0.removeValue(forKey: token) }
    }

    // MARK: ACMEChallengeSolver (any name: the CA reaches this host for each)

    public var challengeType: String { "http-01" }

    public func publish(name: String, token: String, keyAuthorization: String) {
        publish(token: token, keyAuthorization: keyAuthorization)
    }

    public func withdraw(name: String, token: String) { withdraw(token: token) }

    public var requestsServed: Int { served.load(ordering: .relaxed) }

    /// Answers tokens this responder did not publish with `lookup` (a fleet's shared
    /// store: the CA may reach any replica). `lookup` gets base64url tokens only.
    public func answerUnknownTokens(with lookup: @escaping @Sendable (String) -> String?) {
        fallback.withLock { $0 = lookup }
    }

    /// Stops answering and closes the socket; waits (bounded) for the thread to end.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let deadline = ContinuousClock.now.advanced(by: .seconds(6))
        while !finished.load(ordering: .acquiring), ContinuousClock.now < deadline { pause(.milliseconds(10)) }
        close(listener)
    }

    // MARK: Serving

    private func serve() {
        defer { finished.store(true, ordering: .releasing) }
        while !stopping.load(ordering: .acquiring) {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            guard connections.add(1, ordering: .relaxed).newValue <= Self.maximumConnections else {
                connections.subtract(1, ordering: .relaxed)
                close(client)
                continue
            }
            let connection = Thread { [self] in
                answer(client)
                close(client)
                connections.subtract(1, ordering: .relaxed)
            }
            connection.name = "acme-http-01-conn"
            connection.start()
        }
    }

    private func answer(_ client: Int32) {
        let deadline = ContinuousClock.now.advanced(by: Self.connectionDeadline)
        var interval = timeval(tv_sec: 5, tv_usec: 0)
        _ = setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while ACMEHTTPResponse.find([13, 10, 13, 10], in: head, from: 0) == nil {
            guard head.count < 8192 else { return reply(client, status: "431 Request Header Fields Too Large", body: "") }
            // The whole head within the deadline: a byte every few seconds does not extend it.
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return }
            var poller = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            guard poll(&poller, 1, milliseconds) > 0 else { return }
            let count = recv(client, &chunk, chunk.count, 0)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            head.append(contentsOf: chunk.prefix(count))
        }
        served.add(1, ordering: .relaxed)
        let requestLine = head.split(separator: 13, maxSplits: 1).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let parts = requestLine.split(separator: " ")
        guard parts.count == 3, parts[0] == "GET" || parts[0] == "HEAD" else {
            return reply(client, status: "405 Method Not Allowed", body: "")
        }
        let path = parts[1]
        guard path.hasPrefix(Self.pathPrefix) else { return reply(client, status: "404 Not Found", body: "") }
        let token = String(path.dropFirst(Self.pathPrefix.count))
        let lookup = fallback.withLock { $0 }
        guard let keyAuthorization = table.withLock({ $0[token] })
                ?? (Base64URL.decode(token) != nil && !token.isEmpty ? lookup?(token) : nil) else {
            return reply(client, status: "404 Not Found", body: "")
        }
        reply(client, status: "200 OK", body: parts[0] == "HEAD" ? "" : keyAuthorization)
    }

    private func reply(_ client: Int32, status: String, body: String) {
        let response = Array("HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8)
        var offset = 0
        while offset < response.count {
            let written = response[offset...].withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}
