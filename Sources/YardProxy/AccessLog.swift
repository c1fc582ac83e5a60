#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import YardHTTP
import YardIO
import YardModel

/// Writes access-log batches from the workers to standard output or a file, on its own
/// thread, so a loop never waits for the disk.
///
/// Workers format lines into their own buffer and hand over whole batches (`submit`),
/// taking a mutex only for the hand-over (no I/O under it). The queue is bounded: when
/// the disk falls behind by more than `maxQueuedBytes`, batches are dropped and counted,
/// never blocking a loop. `reopen` (SIGUSR1) reopens the file for logrotate.
public final class AccessLogWriter: Sendable {
    private struct State {
        var batches: [[UInt8]] = []
        var queuedBytes = 0
        var dropped = 0
        var stopped = false
        var reopen = false
    }

    public let path: String?
    private let state = Mutex<State>(State())
    private let wake = DispatchSemaphore(value: 0)
    private let fd = Mutex<Int32>(1)
    static let maxQueuedBytes = 16 << 20

    public init(path: String?) throws {
        self.path = path
        if let path {
            let opened = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard opened >= 0 else { throw IOError(call: "open", errno: errno) }
            fd.withLock { $0 = opened }
        }
        let thread = Thread { [self] in run() }
        thread.name = "switchyard-access-log"
        thread.start()
    }

    /// Queues a batch of complete lines. Never blocks on I/O.
    func submit(_ bytes: [UInt8]) {
        let accepted = state.withLock { state -> Bool in
            guard state.queuedBytes + bytes.count <= Self.maxQueuedBytes else {
                state.dropped += 1
                return false
            }
            state.batches.append(bytes)
            state.queuedBytes += bytes.count
            return true
        }
        if accepted { wake.signal() }
    }

    /// Reopens the file (after logrotate moved it).
    public func reopen() {
        state.withLock { $0.reopen = true }
        wake.signal()
    }

    /// Batches dropped because the writer fell behind.
    public var droppedBatches: Int { state.withLock { $0.dropped } }

    /// Writes what is queued and stops the thread.
    public func stop() {
        state.withLock { $0.stopped = true }
        wake.signal()
    }

    private func run() {
        while true {
            wake.wait()
            let (batches, reopen, stopped) = state.withLock { state -> ([[UInt8]], Bool, Bool) in
                defer {
                    state.batches.removeAll(keepingCapacity: true)
                    state.queuedBytes = 0
                    state.reopen = false
                }
                return (state.batches, state.reopen, state.stopped)
            }
            if reopen, let path {
                let opened = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                if opened >= 0 {
                    let old = fd.withLock { current -> Int32 in
                        defer { current = opened }
                        return current
                    }
                    close(old)
                } else {
                    Log.error("access log: cannot reopen \(path): errno \(errno); still writing to the old file")
                }
            }
            let target = fd.withLock { $0 }
            for batch in batches {
                var offset = 0
                while offset < batch.count {
                    let n = batch.withUnsafeBytes { write(target, $0.baseAddress! + offset, batch.count - offset) }
                    if n <= 0 { break }
                    offset += n
                }
            }
            if stopped { return }
        }
    }
}

extension Worker {
    /// Records what the line needs from the request head (which is consumed once
    /// forwarded): client, method, host and path, JSON-escaped, into the connection's
    /// small log buffer.
    func beginLogLine(_ c: ClientConnection, base: UnsafeRawBufferPointer) {
        guard accessLog != nil else { return }
        let head = c.head
        c.logHead.clear()
        _ = c.logHead.reserve(64 + c.peerText.count + Int(head.methodSpan.count) + 2 * Int(head.hostSpan.count + head.targetSpan.count))
        c.logHead.append(",\"client\":\"")
        c.logHead.append(c.peerText)
        c.logHead.append("\",\"method\":\"")
        appendEscaped(head.methodSpan.bytes(in: base), to: &c.logHead)
        c.logHead.append("\",\"host\":\"")
        appendEscaped(head.hostSpan.bytes(in: base), to: &c.logHead)
        c.logHead.append("\",\"path\":\"")
        appendEscaped(head.targetSpan.bytes(in: base), to: &c.logHead)
        c.logHead.append("\"")
        c.exchange.logStartNanos = monotonicNanoseconds()
        c.exchange.bytesToClient = 0
    }

    /// Writes one JSON line for the request that just ended.
    func endLogLine(_ c: ClientConnection, status: Int, endpoint: Endpoint?) {
        guard let writer = accessLog else { return }
        if logBuffer.writableBytes < 1024 + c.logHead.readableBytes + (endpoint?.logFragment.count ?? 0) {
            flushAccessLog(writer)
            _ = logBuffer.reserve(1024 + c.logHead.readableBytes + (endpoint?.logFragment.count ?? 0))
        }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        logBuffer.append("{\"time\":")
        logBuffer.appendDecimal(Int(ts.tv_sec))
        logBuffer.append(".")
        appendPadded(Int(ts.tv_nsec / 1_000_000), width: 3)
        if c.logHead.isEmpty {
            logBuffer.append(",\"client\":\"")
            logBuffer.append(c.peerText)
            logBuffer.append("\"")
        } else {
            logBuffer.append(c.logHead.readable)
        }
        logBuffer.append(",\"status\":")
        logBuffer.appendDecimal(status)
        logBuffer.append(",\"bytes\":")
        logBuffer.appendDecimal(c.exchange.bytesToClient)
        let micros = c.exchange.logStartNanos == 0 ? 0 : Int(truncatingIfNeeded: (monotonicNanoseconds() &- c.exchange.logStartNanos) / 1_000)
        logBuffer.append(",\"duration_ms\":")
        logBuffer.appendDecimal(micros / 1_000)
        logBuffer.append(".")
        appendPadded(micros % 1_000, width: 3)
        if let endpoint { logBuffer.append(endpoint.logFragment) }
        logBuffer.append(",\"retries\":")
        logBuffer.appendDecimal(c.exchange.retries)
        logBuffer.append("}\n")
        c.logHead.clear()
        c.exchange.logStartNanos = 0
        if logBuffer.readableBytes > 48 * 1024 { flushAccessLog(writer) }
    }

    /// Hands the buffered lines to the writer (also every tick).
    func flushAccessLog(_ writer: AccessLogWriter) {
        guard !logBuffer.isEmpty else { return }
        writer.submit(Array(logBuffer.readable))
        logBuffer.clear()
    }

    private func appendPadded(_ value: Int, width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var v = value
        while divisor > 1 && v < divisor {
            logBuffer.append("0")
            divisor /= 10
        }
        if v == 0 && divisor == 1 { logBuffer.append("0"); return }
        v = value
        logBuffer.appendDecimal(v)
    }

    private func appendEscaped(_ bytes: UnsafeRawBufferPointer, to out: inout ByteBuffer) {
        var start = 0
        for i in 0..<bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 {
                out.append(UnsafeRawBufferPointer(rebasing: bytes[start..<i]))
                out.append(b == UInt8(ascii: "\"") ? "\\\"" : b == UInt8(ascii: "\\") ? "\\\\" : "?")
                start = i + 1
            }
        }
        out.append(UnsafeRawBufferPointer(rebasing: bytes[start..<bytes.count]))
    }
}
