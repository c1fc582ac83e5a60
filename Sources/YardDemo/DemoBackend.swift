#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Synchronization

/// A small HTTP/1.1 origin server for `switchyard demo`, `switchyard backend` and the
/// integration tests. Never on the proxy's request path.
///
/// Blocking sockets and one thread per connection: simple to reason about, robust under
/// the few hundred connections a test or a demo opens, and nothing like the data plane.
///
/// Endpoints (matched on the last path segments, so `/api/status/503` works like
/// `/status/503` behind a prefix route):
/// - any other path: `200`, `hello from <name> (<port>)\n`
/// - `/slow?ms=N`: sleeps N ms, then answers as above
/// - `/status/NNN`: that status, body `status NNN\n` (none for 204 and 304)
/// - `/size/N`: N pattern bytes with Content-Length; `/chunked/N`: the same bytes chunked
///   (16 KiB chunks). Byte k of either is `DemoBackend.patternByte(at: k)`.
/// - `/echo`: the request body back; streamed (bounded memory) when it is chunked or
///   larger than 1 MiB, in which case the response is chunked
/// - `/headers`: the raw request head as received
/// - `/close`: answers with `Connection: close`, then closes
/// - `/connections`: how many connections this backend has accepted so far (a proxy's
///   upstream connection reuse shows here)
/// - `/concurrency`: the most requests it was answering at once since start (a proxy's
///   `max_connections` shows here); this request is not counted
///
/// Every response carries `X-Backend: <name>` and `X-Backend-Port: <port>`.
///
/// Threading: `init` binds and listens on the caller's thread; `start` spawns the accept
/// thread, which spawns a thread per connection; `stop` may be called from any thread,
/// any number of times. Call `stop` when done: the threads keep the object alive.
public final class DemoBackend: Sendable {
    public let name: String
    public let host: String
    /// The bound port (the one the kernel picked when `port` was 0).
    public let port: UInt16
    /// Every `failEvery`-th request answers 500 (0: never): a misbehaving canary for demos
    /// and gate tests.
    public let failEvery: Int
    /// Milliseconds added to every answer: a slow canary.
    public let delayMs: Int
    private let served = Atomic<Int>(0)
    private let accepted = Atomic<Int>(0)
    /// Connections accepted since start.
    public var acceptedConnections: Int { accepted.load(ordering: .relaxed) }

    private let listenFD: Int32
    /// Signalled once by the accept thread when it has left `accept` for good, so that
    /// `stop` closes the listener only when no thread can still use its descriptor number.
    private let acceptExited = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)
    private let state = Mutex<State>(State())

    /// Protected by `state`: whether the accept thread runs, and the descriptors of open
    /// connections. A connection thread removes its descriptor and closes it under the
    /// lock, so `stop` never shuts down a number the kernel has already handed out again.
    private struct State {
        var started = false
        var listenerClosed = false
        var connections: Set<Int32> = []
    }

    // MARK: Lifecycle

    /// Binds and listens at once, so the port is known (and connectable) on return.
    /// `host` is an IPv4 or IPv6 literal, or `localhost`.
    public init(name: String, host: String = "127.0.0.1", port: UInt16 = 0, failEvery: Int = 0, delayMs: Int = 0) throws {
        self.name = name
        self.host = host
        self.failEvery = max(0, failEvery)
        self.delayMs = max(0, delayMs)
        let fd = try DemoBackend.listen(host: host, port: port)
        self.listenFD = fd
        do {
            self.port = try DemoBackend.boundPort(fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Counts a request; returns its 1-based number.
    func countRequest() -> Int { served.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Requests being answered now, and the most answered at once since start (a proxy's
    /// per-endpoint `max_connections` shows here: `/concurrency`).
    private let inFlight = Atomic<Int>(0)
    private let peakInFlight = Atomic<Int>(0)
    public var maxConcurrentRequests: Int { peakInFlight.load(ordering: .relaxed) }

    func requestStarted() {
        let now = inFlight.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        var peak = peakInFlight.load(ordering: .relaxed)
        while now > peak {
            let (exchanged, original) = peakInFlight.compareExchange(expected: peak, desired: now, ordering: .relaxed)
            if exchanged { break }
            peak = original
        }
    }

    func requestEnded() { inFlight.wrappingSubtract(1, ordering: .sequentiallyConsistent) }

    deinit {
        // Reached only when no thread holds `self`: never started, or started and stopped.
        let closeListener = state.withLock { state -> Bool in
            defer { state.listenerClosed = true }
            return !state.listenerClosed
        }
        if closeListener { Glibc.close(listenFD) }
    }

    /// Starts accepting connections on a thread of its own. Calling it twice does nothing.
    public func start() {
        let first = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started && !state.listenerClosed
        }
        guard first else { return }
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting, closes the listener and shuts down every open connection (their
    /// threads then finish on their own). Returns once the port is free again.
    public func stop() {
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        let started = state.withLock { state -> Bool in
            for fd in state.connections { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
            return state.started
        }
        if started {
            // On Linux, shutdown on a listening socket wakes a thread blocked in accept.
            Glibc.shutdown(listenFD, Int32(SHUT_RDWR))
            acceptExited.wait()
        }
        state.withLock { state in
            if !state.listenerClosed {
                state.listenerClosed = true
                Glibc.close(listenFD)
            }
        }
    }

    // MARK: Accepting

    private func acceptLoop() {
        defer { acceptExited.signal() }
        while !stopping.load(ordering: .sequentiallyConsistent) {
            let fd = Glibc.accept(listenFD, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    usleep(10_000)  // out of descriptors: back off instead of spinning
                    continue
                default: return  // EINVAL after shutdown, or the listener is gone
                }
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let registered = state.withLock { state -> Bool in
                guard !stopping.load(ordering: .sequentiallyConsistent) else { return false }
                state.connections.insert(fd)
                return true
            }
            guard registered else {
                Glibc.close(fd)
                return
            }
            accepted.wrappingAdd(1, ordering: .relaxed)
            Thread.detachNewThread { [self] in
                DemoConnection(fd: fd, backend: self).serve()
                state.withLock { state in
                    state.connections.remove(fd)
                    Glibc.close(fd)
                }
            }
        }
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    // MARK: Socket setup

    private static func listen(host: String, port: UInt16) throws -> Int32 {
        let literal = host == "localhost" ? "127.0.0.1" : host
        var storage = sockaddr_storage()
        let length: socklen_t
        var family: Int32
        if literal.contains(":") {
            family = AF_INET6
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, literal, &address.sin6_addr) == 1 else {
                throw DemoBackendError(operation: "parse address", detail: "\(host) is not an IP literal")
            }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            family = AF_INET
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            guard inet_pton(AF_INET, literal, &address.sin_addr) == 1 else {
                throw DemoBackendError(operation: "parse address", detail: "\(host) is not an IP literal")
            }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DemoBackendError(operation: "socket", errno: errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw DemoBackendError(operation: "bind \(host):\(port)", errno: code)
        }
        guard Glibc.listen(fd, 1024) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw DemoBackendError(operation: "listen \(host):\(port)", errno: code)
        }
        return fd
    }

    private static func boundPort(_ fd: Int32) throws -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { throw DemoBackendError(operation: "getsockname", errno: errno) }
        return withUnsafeBytes(of: storage) { raw in
            if Int32(storage.ss_family) == AF_INET6 {
                return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            }
            return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
    }

    // MARK: Body pattern

    /// The 64 bytes `/size/N` and `/chunked/N` repeat; byte k of a body is `pattern[k % 64]`.
    public static let pattern: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Byte `offset` of a `/size/N` or `/chunked/N` body, for tests that check integrity.
    public static func patternByte(at offset: Int) -> UInt8 { pattern[offset & 63] }
}

/// Why a `DemoBackend` could not start.
public struct DemoBackendError: Error, CustomStringConvertible {
    public var operation: String
    public var detail: String

    public init(operation: String, detail: String) {
        self.operation = operation
        self.detail = detail
    }

    init(operation: String, errno code: Int32) {
        self.init(operation: operation, detail: String(cString: strerror(code)))
    }

    public var description: String { "demo backend: \(operation): \(detail)" }
}

// MARK: - One connection

/// Serves the requests of one connection until it closes. Confined to its thread.
private final class DemoConnection {
    /// Bodies are read and written in pieces of this size: memory per connection is bounded
    /// whatever the body size.
    static let pieceSize = 64 * 1024
    static let chunkSize = 16 * 1024
    /// `/echo` buffers a Content-Length body up to this size and answers with a
    /// Content-Length; beyond it, it streams and answers chunked.
    static let echoBufferLimit = 1024 * 1024
    static let maxHead = 64 * 1024

    let fd: Int32
    let backend: DemoBackend
    let reader: SocketReader
    /// The current request counts toward `DemoBackend.maxConcurrentRequests`.
    var working = false
    /// Scratch for outgoing body pieces: room for a chunk-size line, the data and CRLF.
    let out: UnsafeMutableRawBufferPointer

    init(fd: Int32, backend: DemoBackend) {
        self.fd = fd
        self.backend = backend
        self.reader = SocketReader(fd: fd, capacity: DemoConnection.pieceSize + DemoConnection.maxHead)
        self.out = .allocate(byteCount: 16 + DemoConnection.pieceSize + 2, alignment: 8)
    }

    deinit { out.deallocate() }

    func serve() {
        while !backend.isStopping {
            let head: [UInt8]
            switch reader.readHead(limit: DemoConnection.maxHead) {
            case .head(let bytes): head = bytes
            case .closed: return
            case .tooLarge:
                _ = sendSimple(status: 431, text: "request head too large\n", keepAlive: false, headOnly: false, version10: false)
                return
            }
            guard let request = DemoRequest(head: head) else {
                _ = sendSimple(status: 400, text: "bad request\n", keepAlive: false, headOnly: false, version10: false)
                return
            }
            if request.expectsContinue, request.framing != .none, !request.isHTTP10 {
                guard send("HTTP/1.1 100 Continue\r\n\r\n") else { return }
            }
            // `/concurrency` reads the peak; it is not counted itself. A request counts from
            // its head until the first byte of its answer leaves (`sendAll`): once the
            // answer is on its way the client may send the next one.
            if !request.path.hasSuffix("/concurrency") {
                backend.requestStarted()
                working = true
            }
            let keepGoing = respond(to: request)
            endWork()
            guard keepGoing, request.keepAlive else { return }
        }
    }

    // MARK: Endpoints

    /// Answers one request; false when the connection must close.
    private func respond(to request: DemoRequest) -> Bool {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let last = segments.last ?? ""
        let keyword = segments.count >= 2 ? segments[segments.count - 2] : ""

        if last == "echo" { return echo(request) }
        // Every other endpoint ignores the body, but it must be read to find the next request.
        guard discardBody(request) else { return false }
        let headOnly = request.method == "HEAD"
        if backend.delayMs > 0 { usleep(UInt32(backend.delayMs) * 1000) }
        if backend.failEvery > 0, backend.countRequest() % backend.failEvery == 0 {
            return sendSimple(status: 500, text: "injected failure\n", keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        }

        switch (keyword, last) {
        case ("status", let code):
            guard let status = Int(code), (200...599).contains(status) else {
                return sendSimple(status: 400, text: "status must be 200...599\n", keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
            }
            return sendSimple(status: status, text: "status \(status)\n", keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        case ("size", let count):
            guard let size = Int(count), size >= 0 else { return badNumber(request) }
            return sendPattern(size: size, chunked: false, request: request)
        case ("chunked", let count):
            guard let size = Int(count), size >= 0 else { return badNumber(request) }
            return sendPattern(size: size, chunked: true, request: request)
        default:
            break
        }
        switch last {
        case "headers":
            return sendSimple(status: 200, body: request.rawHead, keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        case "close":
            _ = sendSimple(status: 200, text: hello, keepAlive: false, headOnly: headOnly, version10: request.isHTTP10)
            return false
        case "connections":
            return sendSimple(status: 200, text: "\(backend.acceptedConnections)\n", keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        case "concurrency":
            return sendSimple(status: 200, text: "\(backend.maxConcurrentRequests)\n", keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        case "slow":
            let ms = min(max(request.queryInt("ms") ?? 0, 0), 600_000)
            let until = DispatchTime.now().uptimeNanoseconds + UInt64(ms) * 1_000_000
            // Sliced, so that `stop` does not wait for a long sleep.
            while DispatchTime.now().uptimeNanoseconds < until, !backend.isStopping { usleep(5_000) }
            return sendSimple(status: 200, text: hello, keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        default:
            return sendSimple(status: 200, text: hello, keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10)
        }
    }

    private var hello: String { "hello from \(backend.name) (\(backend.port))\n" }

    private func badNumber(_ request: DemoRequest) -> Bool {
        sendSimple(status: 400, text: "expected a byte count\n", keepAlive: request.keepAlive, headOnly: request.method == "HEAD", version10: request.isHTTP10)
    }

    /// `/size/N` and `/chunked/N`: the pattern streamed in pieces, never N bytes at once.
    private func sendPattern(size: Int, chunked: Bool, request: DemoRequest) -> Bool {
        // An HTTP/1.0 client cannot read chunked: it gets the bytes delimited by close.
        let chunkedFraming = chunked && !request.isHTTP10
        let closeDelimited = chunked && request.isHTTP10
        let keepAlive = request.keepAlive && !closeDelimited
        let headOnly = request.method == "HEAD"
        let head = responseHead(status: 200, contentType: "application/octet-stream",
                                contentLength: chunked ? nil : size, chunked: chunkedFraming,
                                keepAlive: keepAlive, version10: request.isHTTP10)
        guard send(head) else { return false }
        if headOnly { return keepAlive }
        var offset = 0
        let piece = chunkedFraming ? DemoConnection.chunkSize : DemoConnection.pieceSize
        while offset < size {
            let count = min(piece, size - offset)
            let data = UnsafeMutableRawBufferPointer(rebasing: out[16..<(16 + count)])
            // Pieces start at multiples of 64, so the pattern lines up with `patternByte(at:)`.
            DemoBackend.pattern.withUnsafeBytes { pattern in
                var filled = 0
                while filled < count {
                    let n = min(64, count - filled)
                    UnsafeMutableRawBufferPointer(rebasing: data[filled..<(filled + n)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: pattern[0..<n]))
                    filled += n
                }
            }
            guard chunkedFraming ? sendChunk(count) : sendAll(UnsafeRawBufferPointer(data)) else { return false }
            offset += count
        }
        if chunkedFraming { guard send("0\r\n\r\n") else { return false } }
        return keepAlive
    }

    /// `/echo`: small Content-Length bodies are buffered and answered with a Content-Length;
    /// chunked and large bodies are streamed back piece by piece as they arrive.
    private func echo(_ request: DemoRequest) -> Bool {
        let headOnly = request.method == "HEAD"
        var body = RequestBody(framing: request.framing)
        if case .length(let length) = request.framing, length <= DemoConnection.echoBufferLimit {
            var bytes = [UInt8]()
            bytes.reserveCapacity(length)
            while true {
                switch body.next(reader: reader, into: UnsafeMutableRawBufferPointer(rebasing: out[16..<(16 + DemoConnection.pieceSize)])) {
                case .data(let n): bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: out[16..<(16 + n)]))
                case .end: return sendSimple(status: 200, body: bytes, keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10, contentType: "application/octet-stream")
                case .failed: return false
                }
            }
        }
        if request.framing == .none {
            return sendSimple(status: 200, body: [], keepAlive: request.keepAlive, headOnly: headOnly, version10: request.isHTTP10, contentType: "application/octet-stream")
        }
        // Streamed. HTTP/1.0 cannot take chunked: a known length is kept, else close delimits.
        var contentLength: Int? = nil
        if case .length(let length) = request.framing, request.isHTTP10 { contentLength = length }
        let chunked = !request.isHTTP10
        let keepAlive = request.keepAlive && (chunked || contentLength != nil)
        guard send(responseHead(status: 200, contentType: "application/octet-stream", contentLength: contentLength,
                                chunked: chunked, keepAlive: keepAlive, version10: request.isHTTP10)) else { return false }
        while true {
            switch body.next(reader: reader, into: UnsafeMutableRawBufferPointer(rebasing: out[16..<(16 + DemoConnection.pieceSize)])) {
            case .data(let n):
                if headOnly { continue }
                guard chunked ? sendChunk(n) : sendAll(UnsafeRawBufferPointer(rebasing: out[16..<(16 + n)])) else { return false }
            case .end:
                if chunked, !headOnly { guard send("0\r\n\r\n") else { return false } }
                return keepAlive
            case .failed:
                return false
            }
        }
    }

    /// Reads and drops a request body; false if the connection broke or the framing was bad.
    private func discardBody(_ request: DemoRequest) -> Bool {
        var body = RequestBody(framing: request.framing)
        let scratch = UnsafeMutableRawBufferPointer(rebasing: out[16..<(16 + DemoConnection.pieceSize)])
        while true {
            switch body.next(reader: reader, into: scratch) {
            case .data: continue
            case .end: return true
            case .failed: return false
            }
        }
    }

    // MARK: Writing

    private func responseHead(status: Int, contentType: String, contentLength: Int?, chunked: Bool,
                              keepAlive: Bool, version10: Bool) -> String {
        var head = "HTTP/1.1 \(status) \(DemoConnection.reason(status))\r\n"
        head += "X-Backend: \(backend.name)\r\nX-Backend-Port: \(backend.port)\r\n"
        let bodyless = status == 204 || status == 304
        if !bodyless {
            head += "Content-Type: \(contentType)\r\n"
            if let contentLength { head += "Content-Length: \(contentLength)\r\n" }
            if chunked { head += "Transfer-Encoding: chunked\r\n" }
        }
        if !keepAlive {
            head += "Connection: close\r\n"
        } else if version10 {
            head += "Connection: keep-alive\r\n"
        }
        return head + "\r\n"
    }

    private func sendSimple(status: Int, text: String, keepAlive: Bool, headOnly: Bool, version10: Bool) -> Bool {
        sendSimple(status: status, body: Array(text.utf8), keepAlive: keepAlive, headOnly: headOnly, version10: version10)
    }

    /// A whole response with a Content-Length; returns whether the connection stays open.
    private func sendSimple(status: Int, body: [UInt8], keepAlive: Bool, headOnly: Bool, version10: Bool,
                            contentType: String = "text/plain; charset=utf-8") -> Bool {
        let bodyless = status == 204 || status == 304
        var bytes = Array(responseHead(status: status, contentType: contentType, contentLength: body.count,
                                       chunked: false, keepAlive: keepAlive, version10: version10).utf8)
        if !bodyless, !headOnly { bytes += body }
        guard bytes.withUnsafeBytes({ sendAll($0) }) else { return false }
        return keepAlive
    }

    private func send(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { sendAll(UnsafeRawBufferPointer($0)) }
    }

    /// Sends `out[16..<16+count]` as one chunk, framing it in place (size line before the
    /// data, CRLF after) so that the chunk leaves in one `send`.
    private func sendChunk(_ count: Int) -> Bool {
        let sizeLine = Array((String(count, radix: 16) + "\r\n").utf8)
        let start = 16 - sizeLine.count
        sizeLine.withUnsafeBytes { out.baseAddress!.advanced(by: start).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        out[16 + count] = 0x0D
        out[16 + count + 1] = 0x0A
        return sendAll(UnsafeRawBufferPointer(rebasing: out[start..<(16 + count + 2)]))
    }

    /// The request being answered stops counting toward the backend's concurrency.
    private func endWork() {
        guard working else { return }
        working = false
        backend.requestEnded()
    }

    private func sendAll(_ bytes: UnsafeRawBufferPointer) -> Bool {
        endWork()
        var sent = 0
        while sent < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            sent += n
        }
        return true
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }
}

// MARK: - Request head

/// How a request body is delimited.
private enum BodyFraming: Equatable {
    case none
    case length(Int)
    case chunked
}

/// The parts of a request head the backend acts on. Lenient where a test client may be
/// sloppy, strict where framing is concerned (a backend that guessed would hide proxy bugs).
private struct DemoRequest {
    var method: String
    var path: String
    var query: String
    var isHTTP10: Bool
    var keepAlive: Bool
    var expectsContinue: Bool
    var framing: BodyFraming
    var rawHead: [UInt8]

    init?(head: [UInt8]) {
        rawHead = head
        let text = String(decoding: head, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        while lines.last == "" { lines.removeLast() }
        guard !lines.isEmpty else { return nil }
        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3 else { return nil }
        method = String(requestLine[0])
        let target = requestLine[1]
        switch requestLine[2] {
        case "HTTP/1.1": isHTTP10 = false
        case "HTTP/1.0": isHTTP10 = true
        default: return nil
        }
        if let mark = target.firstIndex(of: "?") {
            path = String(target[..<mark])
            query = String(target[target.index(after: mark)...])
        } else {
            path = String(target)
            query = ""
        }
        var connectionTokens: [String] = []
        var contentLengths: [String] = []
        var transferEncodings: [String] = []
        expectsContinue = false
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "connection":
                connectionTokens += value.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            case "content-length":
                contentLengths += value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            case "transfer-encoding":
                transferEncodings += value.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            case "expect":
                expectsContinue = value.lowercased() == "100-continue"
            default:
                break
            }
        }
        if isHTTP10 {
            keepAlive = connectionTokens.contains("keep-alive")
        } else {
            keepAlive = !connectionTokens.contains("close")
        }
        if !transferEncodings.isEmpty {
            guard contentLengths.isEmpty, transferEncodings.last == "chunked" else { return nil }
            framing = .chunked
        } else if let first = contentLengths.first {
            guard contentLengths.allSatisfy({ $0 == first }), first.allSatisfy(\.isASCIIDigit), first.count <= 18,
                  let length = Int(first) else { return nil }
            framing = length == 0 ? .none : .length(length)
        } else {
            framing = .none
        }
    }

    func queryInt(_ key: String) -> Int? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == key { return Int(parts[1]) }
        }
        return nil
    }
}

private extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

// MARK: - Body decoding

/// Reads a request body piece by piece, decoding chunked framing.
private struct RequestBody {
    enum Piece {
        case data(Int)
        case end
        case failed
    }

    private enum State {
        case length(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkEnd
        case done
    }

    private var state: State

    init(framing: BodyFraming) {
        switch framing {
        case .none: state = .done
        case .length(let length): state = .length(remaining: length)
        case .chunked: state = .chunkSize
        }
    }

    /// Copies the next body bytes into `buffer`; `.end` once the body is complete.
    mutating func next(reader: SocketReader, into buffer: UnsafeMutableRawBufferPointer) -> Piece {
        while true {
            switch state {
            case .done:
                return .end
            case .length(let remaining):
                if remaining == 0 {
                    state = .done
                    continue
                }
                let n = reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, remaining)]))
                guard n > 0 else { return .failed }
                state = .length(remaining: remaining - n)
                return .data(n)
            case .chunkSize:
                guard let line = reader.readLine(limit: 4096) else { return .failed }
                let digits = line.prefix { $0 != UInt8(ascii: ";") && $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
                guard !digits.isEmpty, digits.count <= 15,
                      let size = Int(String(decoding: digits, as: UTF8.self), radix: 16) else { return .failed }
                if size == 0 {
                    // Trailer fields, up to the empty line.
                    while true {
                        guard let trailer = reader.readLine(limit: 8192) else { return .failed }
                        if trailer.isEmpty { break }
                    }
                    state = .done
                    return .end
                }
                state = .chunkData(remaining: size)
            case .chunkData(let remaining):
                let n = reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, remaining)]))
                guard n > 0 else { return .failed }
                state = remaining == n ? .chunkEnd : .chunkData(remaining: remaining - n)
                return .data(n)
            case .chunkEnd:
                guard let line = reader.readLine(limit: 2), line.isEmpty else { return .failed }
                state = .chunkSize
            }
        }
    }
}

// MARK: - Buffered socket reads

/// A read buffer over a blocking socket. Confined to its connection's thread.
private final class SocketReader {
    let fd: Int32
    let storage: UnsafeMutableRawBufferPointer
    var start = 0
    var end = 0

    enum HeadResult {
        case head([UInt8])
        case closed
        case tooLarge
    }

    init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.storage = .allocate(byteCount: capacity, alignment: 8)
    }

    deinit { storage.deallocate() }

    /// Receives more bytes; false on end of stream or error.
    private func fill() -> Bool {
        if start == end {
            start = 0
            end = 0
        } else if end == storage.count, start > 0 {
            storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: end - start)
            end -= start
            start = 0
        }
        guard end < storage.count else { return false }
        while true {
            let n = Glibc.recv(fd, storage.baseAddress! + end, storage.count - end, 0)
            if n > 0 {
                end += n
                return true
            }
            if n < 0, errno == EINTR { continue }
            return false
        }
    }

    /// The next request head including its final CRLF CRLF (leading empty lines skipped).
    func readHead(limit: Int) -> HeadResult {
        var scanned = 0
        while true {
            while start < end, storage[start] == 0x0D || storage[start] == 0x0A {
                start += 1
            }
            let available = end - start
            if available >= 4 {
                var i = max(scanned, 0)
                while i + 3 < available {
                    let p = start + i
                    if storage[p] == 0x0D, storage[p + 1] == 0x0A, storage[p + 2] == 0x0D, storage[p + 3] == 0x0A {
                        let head = Array(UnsafeRawBufferPointer(rebasing: storage[start..<(p + 4)]))
                        start = p + 4
                        return .head(head)
                    }
                    i += 1
                }
                scanned = i
            }
            if available >= limit { return .tooLarge }
            let before = start
            guard fill() else { return available > 0 ? .tooLarge : .closed }
            if start != before { scanned = 0 }  // compacted: rescan (cheap, heads are small)
        }
    }

    /// One line without its CRLF (a bare LF is accepted), or nil on EOF or an overlong line.
    func readLine(limit: Int) -> [UInt8]? {
        var scanned = 0
        while true {
            var i = start + scanned
            while i < end {
                if storage[i] == 0x0A {
                    var lineEnd = i
                    if lineEnd > start, storage[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                    let line = Array(UnsafeRawBufferPointer(rebasing: storage[start..<lineEnd]))
                    start = i + 1
                    return line
                }
                i += 1
            }
            scanned = end - start
            if scanned > limit + 2 { return nil }
            guard fill() else { return nil }
        }
    }

    /// Copies up to `buffer.count` bytes, receiving only if nothing is buffered; 0 on EOF.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if start == end {
            // Large bodies go straight from the socket to the caller's buffer.
            while true {
                let n = Glibc.recv(fd, buffer.baseAddress!, buffer.count, 0)
                if n >= 0 { return n }
                if errno == EINTR { continue }
                return 0
            }
        }
        let n = min(buffer.count, end - start)
        buffer.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: n)
        start += n
        return n
    }
}
