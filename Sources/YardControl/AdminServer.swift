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
    public var headers: [String: String]
    public var body: [UInt8]
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

    public static func json<T: Encodable>(_ value: T, status: Int = 200) -> AdminResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return AdminResponse(status: status, contentType: "application/json", body: Array(data))
    }
}

/// The admin listener: a small HTTP/1.1 server for status, metrics and the dashboard.
///
/// Control plane, not the request path: blocking sockets, a thread per connection, and
/// Switchyard's own strict request parser (`YardHTTP`). Threading: `handler` is called on
/// connection threads concurrently and must be thread-safe.
public final class AdminServer: Sendable {
    public let address: SocketAddress
    private let listenFD: Int32
    private let handler: @Sendable (AdminRequest) -> AdminResponse
    private let stopped = Atomic<Bool>(false)

    public init(host: String, port: UInt16, handler: @escaping @Sendable (AdminRequest) -> AdminResponse) throws {
        guard let address = SocketAddress(host: host, port: port) else {
            throw AdminError.badAddress("\(host):\(port)")
        }
        let fd = try Socket.listen(on: address, reusePort: false, backlog: 128)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.listenFD = fd
        self.address = try Socket.localAddress(fd)
        self.handler = handler
    }

    public func start() {
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "switchyard-admin"
        thread.start()
    }

    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .acquiring) {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let thread = Thread { [self] in
                serve(fd)
                close(fd)
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        let limits = HTTPLimits(maxStartLine: 8_192, maxHeadBytes: 32_768, maxHeaders: 100)
        var buffer = ByteBuffer(capacity: 65_536)
        defer { buffer.deallocate() }
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
        fields.initialize(repeating: .empty, count: limits.maxHeaders)
        defer { fields.deallocate() }
        while true {
            var head = RequestHead()
            var scanFrom = 0
            var status: ParseStatus = .incomplete
            while true {
                status = parseRequestHead(buffer.readable, limits: limits, head: &head, fields: fields, scanFrom: &scanFrom)
                guard status == .incomplete else { break }
                guard buffer.reserve(4096, limit: 65_536), fill(fd, &buffer) else { return }
            }
            guard status == .complete else {
                if case .invalid(let error) = status {
                    send(fd, AdminResponse(status: error.status, text: "bad request: \(error.reason)\n"), keepAlive: false)
                }
                return
            }
            let base = buffer.readable
            func text(_ span: ByteSpan) -> String { String(decoding: span.bytes(in: base), as: UTF8.self) }
            var headers: [String: String] = [:]
            for i in 0..<head.headerCount {
                headers[text(fields[i].name).lowercased()] = text(fields[i].value)
            }
            let target = text(head.targetSpan)
            let keepAlive = head.keepAlive
            let framing = head.framing
            buffer.consume(head.headLength)
            var body: [UInt8] = []
            switch framing {
            case .contentLength(let length):
                guard length <= 1 << 20 else {
                    send(fd, AdminResponse(status: 413, text: "request body over 1 MiB\n"), keepAlive: false)
                    return
                }
                while buffer.readableBytes < Int(length) {
                    guard buffer.reserve(4096, limit: 2 << 20), fill(fd, &buffer) else { return }
                }
                body = Array(UnsafeRawBufferPointer(rebasing: buffer.readable[0..<Int(length)]))
                buffer.consume(Int(length))
            case .chunked:
                send(fd, AdminResponse(status: 411, text: "send a Content-Length\n"), keepAlive: false)
                return
            case .none, .untilClose:
                break
            }
            let (path, query) = Self.split(target)
            let request = AdminRequest(method: text(head.methodSpan), path: path, query: query, headers: headers, body: body)
            let response = handler(request)
            guard send(fd, response, keepAlive: keepAlive), keepAlive else { return }
        }
    }

    private func fill(_ fd: Int32, _ buffer: inout ByteBuffer) -> Bool {
        let n = recv(fd, buffer.base! + buffer.writerIndex, buffer.writableBytes, 0)
        guard n > 0 else { return false }
        buffer.writerIndex += n
        return true
    }

    @discardableResult
    private func send(_ fd: Int32, _ response: AdminResponse, keepAlive: Bool) -> Bool {
        var head = "HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
        head += "Content-Type: \(response.contentType)\r\nContent-Length: \(response.body.count)\r\n"
        head += "Cache-Control: no-store\r\n"
        if !keepAlive { head += "Connection: close\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + response.body
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    static func split(_ target: String) -> (String, [String: String]) {
        guard let q = target.firstIndex(of: "?") else { return (target, [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
            let value = kv.count == 2 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
            query[key] = value
        }
        return (String(target[..<q]), query)
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
        case 413: return "Content Too Large"
        case 500: return "Internal Server Error"
        default: return "Status"
        }
    }
}

/// Errors starting the admin listener.
public enum AdminError: Error, CustomStringConvertible {
    case badAddress(String)

    public var description: String {
        switch self {
        case .badAddress(let text): return "cannot listen on '\(text)' for the admin API: expected an IP literal and a port"
        }
    }
}
