#if canImport(Glibc)
import Glibc
#endif
import Foundation

// A blocking client socket with deadlines, for sending exact bytes (malformed heads,
// pipelined requests) and reading exactly what the proxy answers.

/// A response as read off the wire.
struct WireResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// Interim (1xx) responses received before this one.
    var interim: [Int] = []

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A TCP connection to 127.0.0.1 with blocking, deadline-bounded reads and writes.
final class RawConnection {
    enum Read: Equatable {
        case bytes(Int)
        case closed
        case reset
        case timedOut
    }

    let fd: Int32
    /// Bytes read but not yet consumed by `readResponse`.
    private(set) var buffered: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let code = errno
            close(fd)
            throw ConnectError(code: code)
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    struct ConnectError: Error, CustomStringConvertible {
        let code: Int32
        var refused: Bool { code == ECONNREFUSED }
        var description: String { "connect failed: \(String(cString: strerror(code)))" }
    }

    deinit { close(fd) }

    /// Sends all of `bytes`; throws if the peer is gone or `timeout` passes.
    func send(_ bytes: [UInt8], timeout: Duration = .seconds(5)) throws {
        let deadline = ContinuousClock.now + timeout
        var offset = 0
        while offset < bytes.count {
            guard waitReady(events: Int16(POLLOUT), deadline: deadline) else { throw HarnessError("send timed out") }
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw HarnessError("send failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    func send(_ text: String, timeout: Duration = .seconds(5)) throws {
        try send(Array(text.utf8), timeout: timeout)
    }

    /// Half-closes: the proxy sees the end of the request stream.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads what is available into `buffered`, waiting until `deadline`.
    @discardableResult
    func readSome(deadline: ContinuousClock.Instant) -> Read {
        guard waitReady(events: Int16(POLLIN), deadline: deadline) else { return .timedOut }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffered.append(contentsOf: chunk[0..<n])
                return .bytes(n)
            }
            if n == 0 { return .closed }
            if errno == EINTR { continue }
            return errno == ECONNRESET ? .reset : .closed
        }
    }

    /// Reads until the proxy closes the connection (EOF or reset) or `timeout` passes.
    /// True if it closed.
    func readUntilClosed(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            switch readSome(deadline: deadline) {
            case .bytes: continue
            case .closed, .reset: return true
            case .timedOut: return false
            }
        }
    }

    /// Reads until the buffered bytes contain `text`; false at EOF or after `timeout`.
    func readUntil(contains text: String, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !String(decoding: buffered, as: UTF8.self).contains(text) {
            guard case .bytes = readSome(deadline: deadline) else { return false }
        }
        return true
    }

    /// Reads one complete response (skipping 1xx interim ones, which it records), framed by
    /// its headers; `method` says whether a body follows (HEAD has none).
    func readResponse(method: String = "GET", timeout: Duration = .seconds(5)) throws -> WireResponse {
        let deadline = ContinuousClock.now + timeout
        var interim: [Int] = []
        while true {
            let end = try fill(deadline: deadline) { buffer in headEnd(buffer).map { $0 + 4 } }
            let head = String(decoding: buffered[0..<(end - 4)], as: UTF8.self)
            buffered.removeFirst(end)
            let lines = head.components(separatedBy: "\r\n")
            let statusParts = lines[0].split(separator: " ", maxSplits: 2)
            guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
                throw HarnessError("bad status line: \(lines[0])")
            }
            var headers: [(name: String, value: String)] = []
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { throw HarnessError("bad header line: \(line)") }
                headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            if (100..<200).contains(status) {
                interim.append(status)
                continue
            }
            var response = WireResponse(status: status, headers: headers, body: [], interim: interim)
            if method == "HEAD" || status == 204 || status == 304 { return response }
            if response.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
                response.body = try readChunkedBody(deadline: deadline)
            } else if let lengthText = response.header("Content-Length"), let length = Int(lengthText) {
                _ = try fill(deadline: deadline) { $0.count >= length ? length : nil }
                response.body = Array(buffered[0..<length])
                buffered.removeFirst(length)
            } else {
                while true {
                    let read = readSome(deadline: deadline)
                    if read == .closed || read == .reset { break }
                    if read == .timedOut { throw HarnessError("timed out reading a body delimited by close") }
                }
                response.body = buffered
                buffered.removeAll()
            }
            return response
        }
    }

    private func readChunkedBody(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let lineEnd = try fill(deadline: deadline) { crlf(in: $0) }
            let sizeText = String(decoding: buffered[0..<lineEnd], as: UTF8.self).split(separator: ";")[0]
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw HarnessError("bad chunk size line: \(sizeText)")
            }
            buffered.removeFirst(lineEnd + 2)
            if size == 0 {
                // Trailer fields, then the empty line.
                while true {
                    let end = try fill(deadline: deadline) { crlf(in: $0) }
                    buffered.removeFirst(end + 2)
                    if end == 0 { return body }
                }
            }
            _ = try fill(deadline: deadline) { $0.count >= size + 2 ? size : nil }
            body.append(contentsOf: buffered[0..<size])
            buffered.removeFirst(size + 2)
        }
    }

    /// Reads until `found` returns a value for the buffered bytes.
    private func fill(deadline: ContinuousClock.Instant, _ found: ([UInt8]) -> Int?) throws -> Int {
        while true {
            if let value = found(buffered) { return value }
            switch readSome(deadline: deadline) {
            case .bytes: continue
            case .closed, .reset:
                throw HarnessError("connection closed before a complete response; had: \(String(decoding: buffered.prefix(200), as: UTF8.self))")
            case .timedOut:
                throw HarnessError("timed out waiting for a response; had: \(String(decoding: buffered.prefix(200), as: UTF8.self))")
            }
        }
    }

    private func waitReady(events: Int16, deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = deadline - ContinuousClock.now
            let ms = max(0, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&entry, 1, ms)
            if n > 0 { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }
}

private func headEnd(_ bytes: [UInt8]) -> Int? {
    guard bytes.count >= 4 else { return nil }
    for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
        return i
    }
    return nil
}

private func crlf(in bytes: [UInt8]) -> Int? {
    guard bytes.count >= 2 else { return nil }
    for i in 0...(bytes.count - 2) where bytes[i] == 13 && bytes[i + 1] == 10 { return i }
    return nil
}

/// One request on a fresh connection; the response.
func rawExchange(port: UInt16, _ request: String, method: String = "GET", timeout: Duration = .seconds(5)) throws -> WireResponse {
    let connection = try RawConnection(port: port)
    try connection.send(request)
    return try connection.readResponse(method: method, timeout: timeout)
}
