// A small blocking HTTP/1.1 client for the control plane: provider watches (etcd's JSON
// gateway, Consul, the Docker Engine API over its unix socket), the state store and the
// CLI's admin calls.
//
// Control plane only, never the request path: one request per connection
// (`Connection: close`), blocking sockets with poll(2) deadlines, Foundation-free but not
// allocation-shy. Watches and event streams read the body as it arrives, a line at a
// time (`ControlHTTPStream`), and can be cancelled from another thread.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import YardIO

// MARK: - Target

/// Where a control-plane HTTP server listens: a TCP host and port, or a unix socket.
public enum ControlHTTPTarget: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// Parses `http://HOST:PORT[/...]`, `HOST:PORT`, `unix:///path/to.sock` or `/path/to.sock`.
    public init(url: String) throws(ControlHTTPError) {
        var rest = Substring(url)
        if rest.hasPrefix("unix://") {
            rest = rest.dropFirst(7)
            guard rest.hasPrefix("/") else { throw ControlHTTPError("'\(url)': a unix socket URL needs an absolute path (unix:///var/run/docker.sock)") }
            self = .unix(path: String(rest))
            return
        }
        if rest.hasPrefix("/") { self = .unix(path: String(rest)); return }
        if rest.hasPrefix("https://") { throw ControlHTTPError("'\(url)': https is not supported for control-plane endpoints yet; use http:// on a trusted network") }
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw ControlHTTPError("'\(url)': unclosed '[' in the address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            portText = after.hasPrefix(":") ? after.dropFirst() : ""
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
            portText = ""
        }
        guard !host.isEmpty else { throw ControlHTTPError("'\(url)': no host") }
        guard let port = portText.isEmpty ? 80 : UInt16(portText), port > 0 else {
            throw ControlHTTPError("'\(url)': bad port '\(portText)'")
        }
        self = .tcp(host: String(host), port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        case .unix(let path): return "unix://\(path)"
        }
    }

    /// The Host header value.
    var hostHeader: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix: return "localhost"
        }
    }
}

// MARK: - Values

/// What went wrong talking to a control-plane server, in words for an operator.
public struct ControlHTTPError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A complete response.
public struct ControlHTTPResponse: Sendable {
    public var status: Int
    /// Header fields in order; names lower-cased.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// The first value of a header (name in any case).
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name == wanted }?.value
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

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

    /// 64 MiB: far above any catalog, key range or event line Switchyard reads.
    public static let defaultMaxBodyBytes = 64 << 20

    public init(target: ControlHTTPTarget, timeout: Duration = .seconds(5), headers: [(String, String)] = []) {
        self.target = target
        self.timeout = timeout
        self.headers = headers
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
        let stream = ControlHTTPStream(fd: fd, target: target, maxBodyBytes: maxBodyBytes)
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

    private func connectSocket(deadline: Deadline) throws(ControlHTTPError) -> Int32 {
        var addresses: [SocketAddress] = []
        switch target {
        case .unix(let path):
            return try connectUnix(path: path, deadline: deadline)
        case .tcp(let host, let port):
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

// MARK: - Stream

/// A response whose body is read as it arrives.
///
/// Threading: one reader thread calls `nextLine`/`nextChunk`; `cancel()` may be called
/// from any thread at any time and makes a blocked read return: it only shuts the socket
/// down, and `deinit` closes it, so the fd number cannot be reused under a reader.
public final class ControlHTTPStream: Sendable {
    public let target: ControlHTTPTarget
    private let fd: Int32
    /// The cap on a whole body (`readAll`) and on one line (`nextLine`).
    private let maxBodyBytes: Int
    private let cancelled = Atomic<Bool>(false)
    /// Reader-thread state (head, decoder, buffered bytes). Only the reader touches it;
    /// `cancel` never does.
    private nonisolated(unsafe) var reader = Reader()
    /// Set once by `readHead` before the stream is handed out, then only read.
    public private(set) nonisolated(unsafe) var status: Int = 0
    public private(set) nonisolated(unsafe) var headers: [(name: String, value: String)] = []

    private struct Reader {
        var buffer: [UInt8] = []
        var start = 0
        var framing = Framing.untilClose
        var eof = false
        var finished = false
        var lines: [UInt8] = []
    }

    private enum Framing {
        case length(Int)
        case chunked(ChunkState)
        case untilClose
    }

    private enum ChunkState { case size, data(Int), dataEnd, trailers }

    init(fd: Int32, target: ControlHTTPTarget, maxBodyBytes: Int) {
        self.fd = fd
        self.target = target
        self.maxBodyBytes = maxBodyBytes
    }

    deinit { Glibc.close(fd) }

    /// Stops the stream: a blocked read returns and later reads fail. Idempotent.
    public func cancel() {
        guard !cancelled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    private var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    /// The next line of the body without its line ending, or nil at the end of the body.
    /// A last line without a newline is returned too (etcd ends a stream with one).
    /// `timeout` bounds the wait for the line (nil: wait as long as the server takes).
    public func nextLine(timeout: Duration? = nil) throws(ControlHTTPError) -> [UInt8]? {
        let deadline = timeout.map { Deadline(after: $0) } ?? .never
        while true {
            if let newline = reader.lines.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(reader.lines[..<newline])
                reader.lines.removeSubrange(...newline)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.isEmpty { continue }
                return line
            }
            guard let chunk = try nextChunk(deadline: deadline) else {
                guard !reader.lines.isEmpty else { return nil }
                defer { reader.lines.removeAll() }
                return reader.lines
            }
            guard chunk.count <= maxBodyBytes - reader.lines.count else { throw overCap("a line") }
            reader.lines.append(contentsOf: chunk)
        }
    }

    /// The rest of the body.
    public func readAll(timeout: Duration) throws(ControlHTTPError) -> [UInt8] {
        try readAll(deadline: Deadline(after: timeout))
    }

    func readAll(deadline: Deadline) throws(ControlHTTPError) -> [UInt8] {
        var body = reader.lines
        reader.lines.removeAll()
        while let chunk = try nextChunk(deadline: deadline) {
            guard chunk.count <= maxBodyBytes - body.count else { throw overCap("the response body") }
            body.append(contentsOf: chunk)
        }
        return body
    }

    private func overCap(_ what: String) -> ControlHTTPError {
        let cap = maxBodyBytes % (1 << 20) == 0 ? "\(maxBodyBytes >> 20) MiB" : "\(maxBodyBytes)-byte"
        return ControlHTTPError("\(target): \(what) is over the \(cap) cap (ControlHTTPClient.maxBodyBytes)")
    }

    // MARK: Internals

    func writeAll(_ bytes: [UInt8], deadline: Deadline) throws(ControlHTTPError) {
        var offset = 0
        while offset < bytes.count {
            guard !isCancelled else { throw ControlHTTPError("\(target): cancelled") }
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard waitFor(fd, events: Int16(POLLOUT), deadline: deadline) else { throw ControlHTTPError("\(target): timed out sending the request") }
                continue
            }
            throw ControlHTTPError("\(target): send failed: \(String(cString: strerror(errno)))")
        }
    }

    func readHead(deadline: Deadline) throws(ControlHTTPError) {
        while true {
            if let end = findHeadEnd() {
                try parseHead(Array(reader.buffer[0..<end]))
                reader.start = end + 4
                return
            }
            guard reader.buffer.count < 1 << 20 else { throw ControlHTTPError("\(target): response head over 1 MiB") }
            guard try fill(deadline: deadline) else {
                throw ControlHTTPError(reader.buffer.isEmpty ? "\(target): closed the connection without answering" : "\(target): incomplete response head")
            }
        }
    }

    private func findHeadEnd() -> Int? {
        let b = reader.buffer
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }

    private func parseHead(_ bytes: [UInt8]) throws(ControlHTTPError) {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = (lines.first ?? "").split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let code = Int(statusParts[1]) else {
            throw ControlHTTPError("\(target): not an HTTP response ('\(lines.first ?? "")')")
        }
        status = code
        var parsed: [(name: String, value: String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw ControlHTTPError("\(target): malformed header line '\(line)'") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces()
            parsed.append((name, value))
        }
        headers = parsed
        let transferEncoding = parsed.first { $0.name == "transfer-encoding" }?.value.lowercased()
        if transferEncoding?.contains("chunked") == true {
            reader.framing = .chunked(.size)
        } else if let length = try contentLength(parsed) {
            guard length <= maxBodyBytes else { throw overCap("the response body (Content-Length: \(length))") }
            reader.framing = .length(length)
        } else if code == 204 || code == 304 || (100..<200).contains(code) {
            reader.framing = .length(0)
        } else {
            reader.framing = .untilClose
        }
    }

    /// The Content-Length of `fields`, nil without one. Every value (fields and comma-separated
    /// list members) must be the same run of 1 to 18 digits (RFC 9110 §8.6): a negative,
    /// signed, huge or conflicting length is an error, never a guess.
    private func contentLength(_ fields: [(name: String, value: String)]) throws(ControlHTTPError) -> Int? {
        var length: Int?
        for field in fields where field.name == "content-length" {
            for member in field.value.split(separator: ",", omittingEmptySubsequences: false) {
                let text = member.trimmingSpaces()
                guard let value = Self.digits(text, radix: 10, maxCount: 18), length == nil || length == value else {
                    throw ControlHTTPError("\(target): bad Content-Length '\(field.value)'")
                }
                length = value
            }
        }
        return length
    }

    /// `text` as a number if it is 1 to `maxCount` digits in `radix` (10 or 16) and nothing
    /// else: no sign, no space, no prefix.
    static func digits(_ text: String, radix: Int, maxCount: Int) -> Int? {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= maxCount else { return nil }
        var value = 0
        for byte in utf8 {
            let digit: Int
            switch byte {
            case 0x30...0x39: digit = Int(byte - 0x30)
            case 0x41...0x46 where radix == 16: digit = Int(byte - 0x41 + 10)
            case 0x61...0x66 where radix == 16: digit = Int(byte - 0x61 + 10)
            default: return nil
            }
            value = value * radix + digit
        }
        return value
    }

    /// The next piece of decoded body, or nil at its end.
    func nextChunk(deadline: Deadline) throws(ControlHTTPError) -> [UInt8]? {
        while true {
            if reader.finished { return nil }
            if let piece = try decodeBuffered() { return piece }
            if reader.finished { return nil }
            guard try fill(deadline: deadline) else {
                if case .untilClose = reader.framing {
                    reader.finished = true
                    return nil
                }
                throw ControlHTTPError("\(target): connection closed in the middle of the response body")
            }
        }
    }

    /// Decodes what is buffered; nil when more bytes are needed (or the body ended).
    private func decodeBuffered() throws(ControlHTTPError) -> [UInt8]? {
        let available = reader.buffer.count - reader.start
        switch reader.framing {
        case .untilClose:
            guard available > 0 else { return nil }
            return take(available)
        case .length(let remaining):
            if remaining == 0 { reader.finished = true; return nil }
            guard available > 0 else { return nil }
            let n = min(remaining, available)
            reader.framing = .length(remaining - n)
            if remaining - n == 0 { reader.finished = true }
            return take(n)
        case .chunked(let state):
            switch state {
            case .size:
                guard let lineEnd = crlf(from: reader.start) else { return nil }
                let text = String(decoding: reader.buffer[reader.start..<lineEnd], as: UTF8.self)
                let sizeText = text.split(separator: ";").first.map(String.init)?.trimmingSpaces() ?? ""
                guard let size = Self.digits(sizeText, radix: 16, maxCount: 15) else { throw ControlHTTPError("\(target): bad chunk size '\(text)'") }
                reader.start = lineEnd + 2
                reader.framing = .chunked(size == 0 ? .trailers : .data(size))
                return try decodeBuffered()
            case .data(let remaining):
                guard available > 0 else { return nil }
                let n = min(remaining, available)
                reader.framing = .chunked(remaining - n == 0 ? .dataEnd : .data(remaining - n))
                return take(n)
            case .dataEnd:
                guard available >= 2 else { return nil }
                reader.start += 2
                reader.framing = .chunked(.size)
                return try decodeBuffered()
            case .trailers:
                guard let lineEnd = crlf(from: reader.start) else { return nil }
                let empty = lineEnd == reader.start
                reader.start = lineEnd + 2
                if empty { reader.finished = true; return nil }
                return try decodeBuffered()
            }
        }
    }

    private func take(_ n: Int) -> [UInt8] {
        let piece = Array(reader.buffer[reader.start..<(reader.start + n)])
        reader.start += n
        return piece
    }

    private func crlf(from start: Int) -> Int? {
        var i = start
        while i + 1 < reader.buffer.count {
            if reader.buffer[i] == 13 && reader.buffer[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// Reads more bytes; false at EOF. Compacts the consumed prefix first.
    private func fill(deadline: Deadline) throws(ControlHTTPError) -> Bool {
        if reader.eof { return false }
        if reader.start > 0 {
            reader.buffer.removeFirst(reader.start)
            reader.start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            guard !isCancelled else { throw ControlHTTPError("\(target): cancelled") }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 16_384, 0) }
            if n > 0 {
                reader.buffer.append(contentsOf: chunk[0..<n])
                return true
            }
            if n == 0 { reader.eof = true; return false }
            if errno == EAGAIN || errno == EINTR {
                guard waitFor(fd, events: Int16(POLLIN), deadline: deadline) else {
                    if isCancelled { throw ControlHTTPError("\(target): cancelled") }
                    throw ControlHTTPError("\(target): timed out waiting for the response")
                }
                continue
            }
            if isCancelled { throw ControlHTTPError("\(target): cancelled") }
            throw ControlHTTPError("\(target): read failed: \(String(cString: strerror(errno)))")
        }
    }
}

// MARK: - Helpers

/// A point in monotonic time to stop waiting at.
struct Deadline: Sendable {
    /// Nanoseconds on the monotonic clock, or nil for "never".
    let at: UInt64?

    static let never = Deadline(at: nil)

    init(at: UInt64?) { self.at = at }

    init(after duration: Duration) {
        // Saturating: a huge timeout is "a very long time", not an overflow trap.
        let (seconds, attoseconds) = duration.components
        let whole = UInt64(max(0, seconds)).multipliedReportingOverflow(by: 1_000_000_000)
        let fraction = UInt64(max(0, attoseconds) / 1_000_000_000)
        let after = whole.partialValue.addingReportingOverflow(fraction)
        let at = Self.now().addingReportingOverflow(after.partialValue)
        self.at = whole.overflow || after.overflow || at.overflow ? UInt64.max : at.partialValue
    }

    /// Milliseconds left for poll(2): -1 when there is no deadline, 0 when it passed.
    var pollTimeout: Int32 {
        guard let at else { return -1 }
        let now = Self.now()
        guard now < at else { return 0 }
        let left = at - now
        return Int32(min(UInt64(Int32.max), left / 1_000_000 + (left % 1_000_000 == 0 ? 0 : 1)))
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Waits until `fd` is ready for `events` or the deadline passes (false then). A hang-up
/// or error counts as ready: the next call reports it.
private func waitFor(_ fd: Int32, events: Int16, deadline: Deadline) -> Bool {
    while true {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        let timeout = deadline.pollTimeout
        // Poll in slices of at most a second so a cancelled stream (fd shut down) wakes.
        let n = poll(&entry, 1, timeout < 0 ? 1000 : min(timeout, 1000))
        if n > 0 { return true }
        if n < 0 && errno != EINTR { return true }
        if n == 0 && timeout >= 0 && timeout <= 1000 { return false }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
