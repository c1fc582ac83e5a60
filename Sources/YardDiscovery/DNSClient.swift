// Asking one DNS server one question: UDP first, TCP when the answer is truncated
// (RFC 1035 4.2, RFC 7766). Blocking with a deadline; for the DNS provider's own queue.

import YardIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a lookup failed (the server's own "no such name" is not a failure: it is an
/// answer with response code 3).
public struct DNSLookupError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A client for one server.
///
/// Threading: a value; `lookup` blocks the calling thread for at most `timeoutMs` per
/// transport (UDP, then TCP if truncated). Safe to use from several threads at once:
/// each lookup has its own socket.
public struct DNSClient: Sendable {
    public let server: SocketAddress
    public let timeoutMs: Int

    public init(server: SocketAddress, timeoutMs: Int) {
        self.server = server
        self.timeoutMs = timeoutMs
    }

    /// Asks for `name`/`type`; over TCP when the UDP answer has TC set.
    public func lookup(_ name: String, _ type: DNSRecordType) throws(DNSLookupError) -> DNSResponse {
        let id = UInt16.random(in: 0...UInt16.max)
        guard let query = DNSMessage.query(id: id, name: name, type: type) else {
            throw DNSLookupError(message: "'\(name)' is not a valid DNS name")
        }
        let udp = try decode(exchangeUDP(query, id: id), name: name)
        guard udp.truncated else { return udp }
        let tcp = try decode(exchangeTCP(query, id: id), name: name)
        guard tcp.id == id else { throw DNSLookupError(message: "\(server) answered \(name) over TCP with another query's id") }
        return tcp
    }

    private func decode(_ bytes: [UInt8], name: String) throws(DNSLookupError) -> DNSResponse {
        do {
            return try DNSMessage.decode(bytes)
        } catch {
            throw DNSLookupError(message: "\(server) sent a malformed answer for \(name): \(error)")
        }
    }

    // MARK: UDP

    private func exchangeUDP(_ query: [UInt8], id: UInt16) throws(DNSLookupError) -> [UInt8] {
        let fd = try open(type: SOCK_DGRAM)
        defer { Glibc.close(fd) }
        let sent = query.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == query.count else { throw failure("send to") }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        var buffer = [UInt8](repeating: 0, count: 65_535)
        while true {
            try wait(fd, events: Int16(POLLIN), until: deadline, doing: "an answer")
            let received = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if received < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw failure("receive from")
            }
            let packet = Array(buffer[0..<received])
            // A late answer to an earlier query on a reused port: ignore it, keep waiting.
            if DNSMessage.id(of: packet) == id { return packet }
        }
    }

    // MARK: TCP

    private func exchangeTCP(_ query: [UInt8], id: UInt16) throws(DNSLookupError) -> [UInt8] {
        let fd = try open(type: SOCK_STREAM)
        defer { Glibc.close(fd) }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let framed = [UInt8(query.count >> 8), UInt8(query.count & 0xFF)] + query
        var written = 0
        while written < framed.count {
            try wait(fd, events: Int16(POLLOUT), until: deadline, doing: "the TCP connection")
            let count = framed.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EINPROGRESS { continue }
                throw failure("send over TCP to")
            }
            written += count
        }
        let header = try readExactly(fd, 2, until: deadline)
        return try readExactly(fd, Int(header[0]) << 8 | Int(header[1]), until: deadline)
    }

    private func readExactly(_ fd: Int32, _ count: Int, until deadline: Int64) throws(DNSLookupError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            try wait(fd, events: Int16(POLLIN), until: deadline, doing: "the TCP answer")
            let received = bytes.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + filled, count - filled, 0) }
            if received < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw failure("receive over TCP from")
            }
            guard received > 0 else { throw DNSLookupError(message: "\(server) closed the TCP connection mid-answer") }
            filled += received
        }
        return bytes
    }

    // MARK: Sockets

    /// A non-blocking socket connected (or connecting, for TCP) to the server.
    private func open(type: __socket_type) throws(DNSLookupError) -> Int32 {
        let fd = Glibc.socket(server.family, Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("open a socket for") }
        var storage = server.storage
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, server.length) }
        }
        if result != 0, errno != EINPROGRESS {
            let error = failure("connect to")
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    private func wait(_ fd: Int32, events: Int16, until deadline: Int64, doing what: String) throws(DNSLookupError) {
        while true {
            let left = deadline - monotonicMilliseconds()
            guard left > 0 else { throw DNSLookupError(message: "\(server) did not send \(what) within \(timeoutMs) ms") }
            var poller = pollfd(fd: fd, events: events, revents: 0)
            let ready = Glibc.poll(&poller, 1, Int32(min(left, 60_000)))
            if ready > 0 {
                if poller.revents & Int16(POLLERR | POLLHUP) != 0, poller.revents & events == 0 {
                    let code = Socket.pendingError(fd)
                    throw DNSLookupError(message: "\(server): \(String(cString: strerror(code == 0 ? ECONNRESET : code)))")
                }
                return
            }
            if ready < 0, errno != EINTR { throw failure("wait for") }
        }
    }

    private func failure(_ action: String) -> DNSLookupError {
        DNSLookupError(message: "cannot \(action) \(server): \(String(cString: strerror(errno)))")
    }
}
