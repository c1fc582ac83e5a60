#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardIO

/// A blocking HTTP/1.1 client for the CLI to reach a replica's admin API.
///
/// CLI only (never the data plane): one request per connection, `Connection: close`.
public struct AdminClient: Sendable {
    public var host: String
    public var port: UInt16
    public var token: String?
    public var timeoutSeconds: Int = 10

    /// Parses `http://HOST:PORT` (the `--admin` option).
    public init(url: String, token: String? = nil) throws {
        var rest = url
        if rest.hasPrefix("http://") { rest.removeFirst(7) }
        if let slash = rest.firstIndex(of: "/") { rest = String(rest[..<slash]) }
        guard let address = SocketAddress(hostPort: rest.hasPrefix("localhost:") ? "127.0.0.1" + rest.dropFirst(9) : rest) else {
            throw AdminClientError("cannot parse admin URL '\(url)': expected http://IP:PORT")
        }
        self.host = address.ipText
        self.port = address.port
        self.token = token
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public func request(_ method: String, _ path: String, body: [UInt8] = []) throws -> Response {
        guard let address = SocketAddress(host: host, port: port) else { throw AdminClientError("bad admin address") }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw AdminClientError("socket: errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = address.storage
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.length) }
        }
        guard connected == 0 else {
            throw AdminClientError("cannot reach the admin API at http://\(address): \(String(cString: strerror(errno))); is switchyard running with an admin listener there?")
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        let bytes = Array((head + "\r\n").utf8) + body
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw AdminClientError("send to the admin API failed") }
            offset += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65_536, 0) }
            if n <= 0 { break }
            received.append(contentsOf: chunk[0..<n])
        }
        guard let split = received.indices.dropLast(3).first(where: {
            received[$0] == 13 && received[$0 + 1] == 10 && received[$0 + 2] == 13 && received[$0 + 3] == 10
        }) else { throw AdminClientError("the admin API sent no complete answer") }
        let statusLine = String(decoding: received[0..<split], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw AdminClientError("bad status line '\(statusLine)'") }
        return Response(status: status, body: Array(received[(split + 4)...]))
    }
}

public struct AdminClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
