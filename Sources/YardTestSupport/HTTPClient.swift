#if canImport(Glibc)
import Glibc
#endif
import Foundation

// MARK: - Responses

/// One header field as received.
public struct HTTPField: Sendable, Equatable {
    public var name: String
    public var value: String
}

/// A parsed HTTP/1.x response: status, fields in order, and the de-chunked body.
public struct HTTPResponse: Sendable {
    public var version: String
    public var status: Int
    public var reason: String
    public var headers: [HTTPField]
    public var body: [UInt8]
    /// The response head as received, up to and including the empty line.
    public var rawHead: String
    /// Whether the body was chunked on the wire.
    public var wasChunked: Bool

    /// The body as UTF-8 text (invalid bytes replaced).
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The first value of a field, by case-insensitive name.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }

    /// Every value of a field, by case-insensitive name, in order.
    public func headers(named name: String) -> [String] {
        let wanted = name.lowercased()
        return headers.filter { $0.name.lowercased() == wanted }.map(\.value)
    }

    /// Whether the response asked for the connection to be closed.
    public var closesConnection: Bool {
        headers(named: "Connection").contains { $0.lowercased().split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "close" } }
    }
}

/// The outcome of parsing a response from the front of a byte buffer.
public enum ResponseParse: Sendable {
    /// A whole response and how many bytes it took.
    case complete(HTTPResponse, consumed: Int)
    /// More bytes are needed (or, for a close-delimited body, the end of the stream).
    case incomplete
    case invalid(String)
}

extension HTTPResponse {
    /// Parses one response from the front of `bytes`. `requestMethod` decides whether a body
    /// follows (HEAD never has one); `atEOF` completes a close-delimited body.
    /// A 1xx interim response is returned as a response of its own.
    public static func parse(_ bytes: ArraySlice<UInt8>, requestMethod: String = "GET", atEOF: Bool = false) -> ResponseParse {
        guard let headEnd = findHeadEnd(bytes) else {
            return bytes.count > 1 << 20 ? .invalid("no end of response head in 1 MiB") : .incomplete
        }
        let headBytes = bytes[bytes.startIndex..<headEnd]
        let rawHead = String(decoding: headBytes, as: UTF8.self)
        var lines = rawHead.components(separatedBy: "\r\n")
        while lines.last == "" { lines.removeLast() }
        guard !lines.isEmpty else { return .invalid("empty response head") }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            return .invalid("bad status line: \(statusLine)")
        }
        var headers: [HTTPField] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return .invalid("bad header line: \(line)") }
            headers.append(HTTPField(name: String(line[..<colon]),
                                     value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = HTTPResponse(version: String(parts[0]), status: status,
                                    reason: parts.count > 2 ? String(parts[2]) : "",
                                    headers: headers, body: [], rawHead: rawHead, wasChunked: false)
        let bodyStart = headEnd
        if (100..<200).contains(status) || status == 204 || status == 304 || requestMethod == "HEAD" {
            return .complete(response, consumed: bodyStart - bytes.startIndex)
        }
        if let encoding = response.header("Transfer-Encoding"), encoding.lowercased().hasSuffix("chunked") {
            response.wasChunked = true
            switch decodeChunked(bytes[bodyStart...]) {
            case .done(let body, let end):
                response.body = body
                return .complete(response, consumed: end - bytes.startIndex)
            case .incomplete: return .incomplete
            case .invalid(let why): return .invalid(why)
            }
        }
        if let lengthText = response.header("Content-Length") {
            guard let length = Int(lengthText), length >= 0 else { return .invalid("bad Content-Length: \(lengthText)") }
            guard bytes.endIndex - bodyStart >= length else { return .incomplete }
            response.body = Array(bytes[bodyStart..<(bodyStart + length)])
            return .complete(response, consumed: bodyStart + length - bytes.startIndex)
        }
        guard atEOF else { return .incomplete }
        response.body = Array(bytes[bodyStart...])
        return .complete(response, consumed: bytes.count)
    }

    /// Every response in `bytes`, in order (pipelined replies, smuggling checks). Parsing
    /// stops at the first incomplete or invalid response; the bytes are assumed to end the
    /// stream, so a close-delimited body takes the rest.
    public static func parseAll(_ bytes: [UInt8], requestMethod: String = "GET") -> [HTTPResponse] {
        var responses: [HTTPResponse] = []
        var offset = 0
        while offset < bytes.count {
            guard case .complete(let response, let consumed) = parse(bytes[offset...], requestMethod: requestMethod, atEOF: true) else { break }
            responses.append(response)
            offset += consumed
        }
        return responses
    }

    private static func findHeadEnd(_ bytes: ArraySlice<UInt8>) -> Int? {
        var i = bytes.startIndex
        while i + 3 < bytes.endIndex {
            if bytes[i] == 13, bytes[i + 1] == 10, bytes[i + 2] == 13, bytes[i + 3] == 10 { return i + 4 }
            i += 1
        }
        return nil
    }

    private enum Chunked {
        case done([UInt8], end: Int)
        case incomplete
        case invalid(String)
    }

    private static func decodeChunked(_ bytes: ArraySlice<UInt8>) -> Chunked {
        var body: [UInt8] = []
        var i = bytes.startIndex
        func line() -> (String, next: Int)? {
            var j = i
            while j + 1 < bytes.endIndex {
                if bytes[j] == 13, bytes[j + 1] == 10 { return (String(decoding: bytes[i..<j], as: UTF8.self), j + 2) }
                j += 1
            }
            return nil
        }
        while true {
            guard let (sizeLine, next) = line() else { return .incomplete }
            let digits = sizeLine.prefix { $0 != ";" && $0 != " " }
            guard let size = Int(digits, radix: 16), size >= 0 else { return .invalid("bad chunk size line: \(sizeLine)") }
            i = next
            if size == 0 {
                while true {  // trailer fields up to the empty line
                    guard let (trailer, after) = line() else { return .incomplete }
                    i = after
                    if trailer.isEmpty { return .done(body, end: i) }
                }
            }
            guard bytes.endIndex - i >= size + 2 else { return .incomplete }
            body.append(contentsOf: bytes[i..<(i + size)])
            guard bytes[i + size] == 13, bytes[i + size + 1] == 10 else { return .invalid("chunk data not followed by CRLF") }
            i += size + 2
        }
    }
}

// MARK: - Clients

/// A blocking HTTP/1.1 client connection to 127.0.0.1, for keep-alive tests: send requests
/// one after another on the same socket and read each response.
///
/// Threading: use from one thread at a time.
public final class HTTPConnection {
    public let port: UInt16
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var atEOF = false
    private let timeout: Duration

    public init(port: UInt16, timeout: Duration = .seconds(10)) throws {
        self.port = port
        self.timeout = timeout
        self.fd = try connectLoopback(port: port, timeout: timeout)
    }

    deinit { close(fd) }

    /// Sends a request and returns its response (1xx interim responses are skipped).
    /// `Host` (127.0.0.1:port) and, with a body, `Content-Length` are added unless given.
    public func request(_ method: String = "GET", _ path: String, host: String? = nil,
                        headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> HTTPResponse {
        try send(requestBytes(method: method, path: path, host: host ?? "127.0.0.1:\(port)", headers: headers, body: body))
        return try readResponse(requestMethod: method)
    }

    /// Sends raw bytes as they are.
    public func send(_ bytes: [UInt8]) throws {
        guard sendAllIgnoringReset(fd, bytes) == bytes.count else {
            throw TestSupportError("send to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
    }

    /// Reads the next final response (skipping 1xx) within the connection's timeout.
    public func readResponse(requestMethod: String = "GET") throws -> HTTPResponse {
        let deadline = Deadline(after: timeout)
        while true {
            switch HTTPResponse.parse(buffer[...], requestMethod: requestMethod, atEOF: atEOF) {
            case .complete(let response, let consumed):
                buffer.removeFirst(consumed)
                if (100..<200).contains(response.status) { continue }
                return response
            case .invalid(let why):
                throw TestSupportError("invalid response from 127.0.0.1:\(port): \(why)")
            case .incomplete:
                if atEOF {
                    throw TestSupportError("connection to 127.0.0.1:\(port) closed mid-response after \(buffer.count) bytes: \(preview(buffer))")
                }
                switch readSome(fd, deadline: deadline) {
                case .data(let bytes): buffer += bytes
                case .eof: atEOF = true
                case .timeout: throw TestSupportError("no complete response from 127.0.0.1:\(port) within \(deadline); got \(buffer.count) bytes: \(preview(buffer))")
                case .failed(let why): throw TestSupportError("read from 127.0.0.1:\(port): \(why)")
                }
            }
        }
    }

    /// Whether the peer has closed the connection (waits up to `deadline` for the EOF).
    public func isClosedByPeer(deadline: Deadline = .seconds(2)) -> Bool {
        if atEOF { return true }
        while true {
            switch readSome(fd, deadline: deadline) {
            case .data(let bytes): buffer += bytes
            case .eof, .failed:
                atEOF = true
                return true
            case .timeout: return false
            }
        }
    }
}

/// One request on a fresh connection, `Connection: close` unless `headers` say otherwise;
/// returns the final response (1xx interim responses skipped).
public func httpRequest(_ method: String = "GET", port: UInt16, path: String = "/", host: String? = nil,
                        headers: [(String, String)] = [], body: [UInt8]? = nil,
                        timeout: Duration = .seconds(10)) throws -> HTTPResponse {
    let connection = try HTTPConnection(port: port, timeout: timeout)
    var headers = headers
    if !headers.contains(where: { $0.0.lowercased() == "connection" }) { headers.append(("Connection", "close")) }
    return try connection.request(method, path, host: host, headers: headers, body: body)
}

/// GET on a fresh connection to 127.0.0.1:`port` (the tests' tiny curl).
public func httpGet(port: UInt16, path: String = "/", host: String? = nil,
                    headers: [(String, String)] = [], timeout: Duration = .seconds(10)) throws -> HTTPResponse {
    try httpRequest("GET", port: port, path: path, host: host, headers: headers, timeout: timeout)
}

/// What came back from `rawExchange`.
public struct RawReply: Sendable {
    public var bytes: [UInt8]
    /// Whether the peer closed the connection (rather than the wait ending).
    public var closedByPeer: Bool

    public var text: String { String(decoding: bytes, as: UTF8.self) }
    /// The responses in `bytes`, parsed in order.
    public var responses: [HTTPResponse] { HTTPResponse.parseAll(bytes) }
}

/// Sends `bytes` exactly as given on a fresh connection and collects what comes back.
///
/// With `readUntilClose`, reads until the peer closes or `timeout` passes. Without it,
/// reads until `quiet` passes with nothing new after at least one byte, the peer closes,
/// or `timeout` passes. A reset while sending is not an error: a server may answer 400
/// and close before it has read everything (that answer is what the test wants).
public func rawExchange(port: UInt16, bytes: [UInt8], readUntilClose: Bool = true,
                        timeout: Duration = .seconds(5), quiet: Duration = .milliseconds(300)) throws -> RawReply {
    let fd = try connectLoopback(port: port, timeout: timeout)
    defer { close(fd) }
    _ = sendAllIgnoringReset(fd, bytes)
    let deadline = Deadline(after: timeout)
    var received: [UInt8] = []
    while true {
        let wait = readUntilClose || received.isEmpty ? deadline : Deadline(after: min(quiet, deadline.remaining))
        switch readSome(fd, deadline: wait) {
        case .data(let more): received += more
        case .eof, .failed: return RawReply(bytes: received, closedByPeer: true)
        case .timeout: return RawReply(bytes: received, closedByPeer: false)
        }
        if deadline.hasPassed { return RawReply(bytes: received, closedByPeer: false) }
    }
}

/// `rawExchange` with a string (sent as UTF-8 exactly: write `\r\n` yourself).
public func rawExchange(port: UInt16, _ text: String, readUntilClose: Bool = true,
                        timeout: Duration = .seconds(5), quiet: Duration = .milliseconds(300)) throws -> RawReply {
    try rawExchange(port: port, bytes: Array(text.utf8), readUntilClose: readUntilClose, timeout: timeout, quiet: quiet)
}

// MARK: - Socket plumbing

func requestBytes(method: String, path: String, host: String, headers: [(String, String)], body: [UInt8]?) -> [UInt8] {
    var head = "\(method) \(path) HTTP/1.1\r\n"
    let names = Set(headers.map { $0.0.lowercased() })
    if !names.contains("host") { head += "Host: \(host)\r\n" }
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if let body, !names.contains("content-length"), !names.contains("transfer-encoding") {
        head += "Content-Length: \(body.count)\r\n"
    }
    return Array((head + "\r\n").utf8) + (body ?? [])
}

enum ReadOutcome {
    case data([UInt8])
    case eof
    case timeout
    case failed(String)
}

/// Waits (poll) until data, EOF or the deadline; never blocks past the deadline.
func readSome(_ fd: Int32, deadline: Deadline) -> ReadOutcome {
    while true {
        let remaining = deadline.remaining
        let (seconds, attoseconds) = remaining.components
        let ms = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, ms)
        if ready < 0 {
            if errno == EINTR { continue }
            return .failed(String(cString: strerror(errno)))
        }
        if ready == 0 {
            if deadline.hasPassed { return .timeout }
            continue
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 { return .data(Array(chunk[0..<n])) }
        if n == 0 { return .eof }
        switch errno {
        case EINTR, EAGAIN: continue
        case ECONNRESET: return .eof
        default: return .failed(String(cString: strerror(errno)))
        }
    }
}

/// Sends everything it can; returns the count sent (short if the peer reset or closed).
@discardableResult
func sendAllIgnoringReset(_ fd: Int32, _ bytes: [UInt8]) -> Int {
    bytes.withUnsafeBytes { raw in
        var sent = 0
        while sent < raw.count {
            let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                return sent
            }
            sent += n
        }
        return sent
    }
}

func preview(_ bytes: [UInt8]) -> String {
    let text = String(decoding: bytes.prefix(300), as: UTF8.self)
    return "\"" + text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n") + "\"" + (bytes.count > 300 ? "…" : "")
}
