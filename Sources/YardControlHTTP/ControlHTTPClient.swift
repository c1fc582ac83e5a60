// A small blocking HTTP/1.1 client for the control plane: provider watches (etcd's JSON
// gateway, Consul, the Docker Engine API over its unix socket), the state stores and the
// CLI's admin calls, over plain TCP, TLS (YardTLS) or a unix socket.
//
// Control plane only, never the request path: one request per connection
// (`Connection: close`), blocking sockets with poll(2) deadlines, Foundation-free but not
// allocation-shy. Responses are read with YardHTTP's strict parsers, the same the proxy
// uses on upstreams. Watches and event streams read the body as it arrives, a line at a
// time (`ControlHTTPStream`), and can be cancelled from another thread.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import YardIO
import YardTLS

// MARK: - Client

/// Sends requests to one target.
///
/// Threading: a value type with no shared state; every call opens its own connection, so
/// calls from several threads at once are fine.
public struct ControlHTTPClient: Sendable {
    public var target: ControlHTTPTarget
    /// Deadline for a whole `send` (connect, write, read the complete response), and for
    /// connecting and reading the head in `openStream`.
    public var timeout: Duration
    /// Added to every request (e.g. `Authorization`).
    public var headers: [(String, String)]
    /// The largest response body `send` and `readAll` accept, and the longest line
    /// `nextLine` buffers: a server (or something posing as one) cannot make the process
    /// hold more. Bigger answers are an error naming the cap.
    public var maxBodyBytes = ControlHTTPClient.defaultMaxBodyBytes

    /// For `https://` targets: the CA to trust and the client certificate; nil uses the
    /// system's CA store and no certificate.
    public var tls: ControlTLS?

    /// 64 MiB: far above any catalog, key range or event line Switchyard reads.
    public static let defaultMaxBodyBytes = 64 << 20

    public init(target: ControlHTTPTarget, timeout: Duration = .seconds(5), headers: [(String, String)] = [], tls: ControlTLS? = nil) {
        self.target = target
        self.timeout = timeout
        self.headers = headers
        self.tls = tls
    }

    /// Sends a request and reads the whole response within `timeout` (or `self.timeout`).
    public func send(
        _ method: String, _ path: String, headers extra: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration? = nil
    ) throws(ControlHTTPError) -> ControlHTTPResponse {
        let deadline = Deadline(after: timeout ?? self.timeout)
        let stream = try open(method, path, headers: extra, body: body, deadline: deadline)
        let body = try stream.readAll(deadline: deadline)
        return ControlHTTPResponse(status: stream.status, headers: stream.headers, body: body)
    }

    /// Sends a request and returns once the response head has arrived; the body is read
    /// from the stream as it comes (watches, event streams, blocking queries).
    public func openStream(
        _ method: String, _ path: String, headers extra: [(String, String)] = [], body: [UInt8] = []
    ) throws(ControlHTTPError) -> ControlHTTPStream {
        try open(method, path, headers: extra, body: body, deadline: Deadline(after: timeout))
    }

    private func open(
        _ method: String, _ path: String, headers extra: [(String, String)], body: [UInt8], deadline: Deadline
    ) throws(ControlHTTPError) -> ControlHTTPStream {
        let fd = try connectSocket(deadline: deadline)
        let connection: TLSConnection?
        do throws(ControlHTTPError) {
            connection = try startTLS(fd: fd, deadline: deadline)
        } catch {
            Glibc.close(fd)
            throw error
        }
        let stream = ControlHTTPStream(fd: fd, tls: connection, target: target, maxBodyBytes: maxBodyBytes, method: method)
        do {
            var head = "\(method) \(path) HTTP/1.1\r\nHost: \(target.hostHeader)\r\nConnection: close\r\nUser-Agent: switchyard\r\n"
            for (name, value) in headers + extra { head += "\(name): \(value)\r\n" }
            if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
            head += "\r\n"
            try stream.writeAll(Array(head.utf8) + body, deadline: deadline)
            try stream.readHead(deadline: deadline)
        } catch {
            stream.cancel()
            throw error
        }
        return stream
    }

    /// The TLS handshake on a connected socket, for `https://` targets; nil otherwise.
    private func startTLS(fd: Int32, deadline: Deadline) throws(ControlHTTPError) -> TLSConnection? {
        guard case .https(let host, _) = target else { return nil }
        let config: ControlTLS
        if let tls { config = tls } else { config = try ControlTLS.system.get() }
        let connection: TLSConnection
        do {
            connection = try TLSConnection(connecting: fd, context: config.context, serverName: config.files.serverName ?? host)
        } catch {
            throw ControlHTTPError("\(target): \(describeTLSFailure(error))")
        }
        while true {
            switch connection.handshake() {
            case .done: return connection
            case .wantRead:
                guard waitFor(fd, events: Int16(POLLIN), deadline: deadline) else { throw ControlHTTPError("\(target): timed out in the TLS handshake") }
            case .wantWrite:
                guard waitFor(fd, events: Int16(POLLOUT), deadline: deadline) else { throw ControlHTTPError("\(target): timed out in the TLS handshake") }
            case .closed:
                throw ControlHTTPError("\(target): closed the connection during the TLS handshake (is it serving TLS?)")
            case .failed(let error):
                throw ControlHTTPError("\(target): \(describeTLSFailure(error))")
            }
        }
    }

    private func connectSocket(deadline: Deadline) throws(ControlHTTPError) -> Int32 {
        var addresses: [SocketAddress] = []
        switch target {
        case .unix(let path):
            return try connectUnix(path: path, deadline: deadline)
        case .tcp(let host, let port), .https(let host, let port):
            if let literal = SocketAddress(host: host == "localhost" ? "127.0.0.1" : host, port: port) {
                addresses = [literal]
            } else {
                addresses = resolve(host: host, port: port)
                guard !addresses.isEmpty else { throw ControlHTTPError("\(target): cannot resolve '\(host)'") }
            }
        }
        var lastError = ""
        for address in addresses {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw ControlHTTPError("socket: \(String(cString: strerror(errno)))") }
            var storage = address.storage
            let result = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
            }
            if result == 0 || errno == EINPROGRESS {
                if result == 0 { return fd }
                // SO_ERROR is cleared by reading it: read it once (a refusal read twice
                // looked like a timeout).
                let ready = waitFor(fd, events: Int16(POLLOUT), deadline: deadline)
                let pending = ready ? Socket.pendingError(fd) : 0
                if ready && pending == 0 { return fd }
                lastError = ready ? String(cString: strerror(pending)).lowercased() : "timed out"
            } else {
                lastError = String(cString: strerror(errno)).lowercased()
            }
            Glibc.close(fd)
        }
        throw ControlHTTPError("cannot connect to \(target): \(lastError)")
    }

    private func connectUnix(path: String, deadline: Deadline) throws(ControlHTTPError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw ControlHTTPError("unix socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlHTTPError("socket: \(String(cString: strerror(errno)))") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(fd)
            throw ControlHTTPError("cannot connect to unix://\(path): \(message)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    private func resolve(host: String, port: UInt16) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var cursor = list
        while let entry = cursor {
            if let sa = entry.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(entry.pointee.ai_addrlen)))
                }
                addresses.append(SocketAddress(storage: storage, length: entry.pointee.ai_addrlen))
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}

