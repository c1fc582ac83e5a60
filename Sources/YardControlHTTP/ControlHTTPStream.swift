// Reading a control-plane response: the head with YardHTTP's strict response parser, the
// body by its framing (Content-Length, chunked through YardHTTP's ChunkedDecoder and
// Dechunker, or until close), over plain TCP or TLS, within the body cap.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import YardHTTP
import YardIO
import YardTLS

// MARK: - Stream

/// A response whose body is read as it arrives.
///
/// Threading: one reader thread calls `nextLine`/`nextChunk` (the thread that opened it
/// wrote the request first); `cancel()` may be called from any thread at any time and makes
/// a blocked read return: it only shuts the socket down, and `deinit` closes it, so the fd
/// number cannot be reused under a reader. The TLS connection is only touched by the reader.
public final class ControlHTTPStream: Sendable {
    public let target: ControlHTTPTarget
    private let fd: Int32
    /// Reader-thread only, like `reader`.
    private nonisolated(unsafe) let tls: TLSConnection?
    /// The cap on a whole body (`readAll`) and on one line (`nextLine`).
    private let maxBodyBytes: Int
    private let method: HTTPMethod
    private let cancelled = Atomic<Bool>(false)
    /// Reader-thread state (head, decoder, buffered bytes). Only the reader touches it;
    /// `cancel` never does.
    private nonisolated(unsafe) var reader = Reader()
    /// Set once by `readHead` before the stream is handed out, then only read.
    public private(set) nonisolated(unsafe) var status: Int = 0
    public private(set) nonisolated(unsafe) var headers: [(name: String, value: String)] = []

    /// Limits on a response head: larger than the proxy's (Docker and Consul send long
    /// headers), still bounded.
    static let headLimits = HTTPLimits(maxStartLine: 8_192, maxHeadBytes: 1 << 20, maxHeaders: 256)

    private struct Reader {
        var buffer: [UInt8] = []
        var start = 0
        var framing = Framing.untilClose
        var eof = false
        var finished = false
        var lines: [UInt8] = []
        /// Chunked bodies: `validator` checks the framing up to `validatedEnd` (an index in
        /// `buffer`), `dechunker` takes the data out of what was validated.
        var validator = ChunkedDecoder()
        var dechunker = Dechunker()
        var validatedEnd = 0
        var validatorDone = false
    }

    private enum Framing {
        case length(Int)
        case chunked
        case untilClose
    }

    init(fd: Int32, tls: TLSConnection?, target: ControlHTTPTarget, maxBodyBytes: Int, method: String) {
        self.fd = fd
        self.tls = tls
        self.target = target
        self.maxBodyBytes = maxBodyBytes
        self.method = method == "HEAD" ? .head : .get
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

    // MARK: Writing

    func writeAll(_ bytes: [UInt8], deadline: Deadline) throws(ControlHTTPError) {
        var offset = 0
        while offset < bytes.count {
            guard !isCancelled else { throw ControlHTTPError("\(target): cancelled") }
            if let tls {
                let result = bytes.withUnsafeBytes { tls.write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                switch result {
                case .bytes(let n): offset += n
                case .wantRead: guard waitFor(fd, events: Int16(POLLIN), deadline: deadline) else { throw ControlHTTPError("\(target): timed out sending the request") }
                case .wantWrite: guard waitFor(fd, events: Int16(POLLOUT), deadline: deadline) else { throw ControlHTTPError("\(target): timed out sending the request") }
                case .closed: throw tlsWriteFailure(tls, nil)
                case .failed(let error): throw tlsWriteFailure(tls, error)
                }
                continue
            }
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard waitFor(fd, events: Int16(POLLOUT), deadline: deadline) else { throw ControlHTTPError("\(target): timed out sending the request") }
                continue
            }
            throw ControlHTTPError("\(target): send failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Why a TLS write failed. With TLS 1.3 a server that refuses the client certificate
    /// says so in an alert after the client's handshake is done, so the first write may
    /// only see the connection go: the alert, if it arrived, is the better reason.
    private func tlsWriteFailure(_ tls: TLSConnection, _ error: TLSError?) -> ControlHTTPError {
        var scratch = ByteBuffer(capacity: 4_096)
        defer { scratch.deallocate() }
        if case .failed(let alert) = tls.read(into: &scratch) {
            return ControlHTTPError("\(target): \(describeTLSFailure(alert))")
        }
        if let error { return ControlHTTPError("\(target): \(describeTLSFailure(error))") }
        return ControlHTTPError("\(target): closed the connection while the request was sent")
    }

    // MARK: The head

    /// Reads and parses the response head (skipping 1xx interim heads) with YardHTTP's
    /// strict parser, and sets up the body's framing.
    func readHead(deadline: Deadline) throws(ControlHTTPError) {
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: Self.headLimits.maxHeaders)
        defer { fields.deallocate() }
        var scanFrom = 0
        while true {
            var head = ResponseHead()
            let parsed = reader.buffer.withUnsafeBytes { all in
                parseResponseHead(
                    UnsafeRawBufferPointer(rebasing: all[reader.start...]), limits: Self.headLimits, requestMethod: method,
                    head: &head, fields: fields, scanFrom: &scanFrom)
            }
            switch parsed {
            case .invalid(let error):
                throw ControlHTTPError("\(target): not a valid HTTP response (\(error.reason))")
            case .incomplete:
                guard try fill(deadline: deadline) else {
                    throw ControlHTTPError(reader.buffer.count == reader.start ? "\(target): closed the connection without answering" : "\(target): incomplete response head")
                }
                continue
            case .complete:
                break
            }
            let headStart = reader.start
            reader.start += head.headLength
            scanFrom = 0
            if head.isInterim { continue }
            status = head.status
            headers = reader.buffer.withUnsafeBytes { all in
                let base = UnsafeRawBufferPointer(rebasing: all[headStart...])
                return (0..<head.headerCount).map { index in
                    (String(decoding: fields[index].name.bytes(in: base), as: UTF8.self).lowercased(),
                     String(decoding: fields[index].value.bytes(in: base), as: UTF8.self))
                }
            }
            switch head.framing {
            case .none: reader.framing = .length(0)
            case .chunked: reader.framing = .chunked
            case .untilClose: reader.framing = .untilClose
            case .contentLength(let length):
                guard length <= Int64(maxBodyBytes) else { throw overCap("the response body (Content-Length: \(length))") }
                reader.framing = .length(Int(length))
            }
            reader.validatedEnd = reader.start
            return
        }
    }

    // MARK: The body

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
        case .chunked:
            try validateChunked()
            while reader.start < reader.validatedEnd {
                let (count, piece) = reader.buffer.withUnsafeBytes { all in
                    reader.dechunker.next(UnsafeRawBufferPointer(rebasing: all[reader.start..<reader.validatedEnd]))
                }
                guard count > 0 else { break }
                switch piece {
                case .data(let range):
                    let data = Array(reader.buffer[(reader.start + range.lowerBound)..<(reader.start + range.upperBound)])
                    reader.start += count
                    return data
                case .trailer, .framing:
                    reader.start += count
                case .end:
                    reader.start += count
                    reader.finished = true
                    return nil
                }
            }
            if reader.dechunker.isDone || (reader.validatorDone && reader.start >= reader.validatedEnd) { reader.finished = true }
            return nil
        }
    }

    /// Runs the strict chunked decoder over the bytes it has not seen yet.
    private func validateChunked() throws(ControlHTTPError) {
        guard !reader.validatorDone, reader.validatedEnd < reader.buffer.count else { return }
        let progress = reader.buffer.withUnsafeBytes { all in
            reader.validator.consume(UnsafeRawBufferPointer(rebasing: all[reader.validatedEnd...]))
        }
        switch progress {
        case .needMore:
            reader.validatedEnd = reader.buffer.count
        case .done(let consumed):
            reader.validatedEnd += consumed
            reader.validatorDone = true
        case .invalid(let error):
            throw ControlHTTPError("\(target): bad chunked body (\(error.reason))")
        }
    }

    private func take(_ n: Int) -> [UInt8] {
        let piece = Array(reader.buffer[reader.start..<(reader.start + n)])
        reader.start += n
        return piece
    }

    // MARK: Reading bytes

    /// Reads more bytes; false at EOF. Compacts the consumed prefix first.
    private func fill(deadline: Deadline) throws(ControlHTTPError) -> Bool {
        if reader.eof { return false }
        if reader.start > 0 {
            reader.buffer.removeFirst(reader.start)
            reader.validatedEnd -= reader.start
            reader.start = 0
        }
        if let tls { return try fillTLS(tls, deadline: deadline) }
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
                try wait(Int16(POLLIN), deadline: deadline)
                continue
            }
            if isCancelled { throw ControlHTTPError("\(target): cancelled") }
            throw ControlHTTPError("\(target): read failed: \(String(cString: strerror(errno)))")
        }
    }

    private func fillTLS(_ tls: TLSConnection, deadline: Deadline) throws(ControlHTTPError) -> Bool {
        var chunk = ByteBuffer(capacity: 16_384)
        defer { chunk.deallocate() }
        while true {
            guard !isCancelled else { throw ControlHTTPError("\(target): cancelled") }
            switch tls.read(into: &chunk) {
            case .bytes:
                reader.buffer.append(contentsOf: chunk.readable)
                return true
            case .closed:
                reader.eof = true
                return false
            case .wantRead:
                try wait(Int16(POLLIN), deadline: deadline)
            case .wantWrite:
                try wait(Int16(POLLOUT), deadline: deadline)
            case .failed(let error):
                if isCancelled { throw ControlHTTPError("\(target): cancelled") }
                throw ControlHTTPError("\(target): \(describeTLSFailure(error))")
            }
        }
    }

    private func wait(_ events: Int16, deadline: Deadline) throws(ControlHTTPError) {
        guard waitFor(fd, events: events, deadline: deadline) else {
            if isCancelled { throw ControlHTTPError("\(target): cancelled") }
            throw ControlHTTPError("\(target): timed out waiting for the response")
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
func waitFor(_ fd: Int32, events: Int16, deadline: Deadline) -> Bool {
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
