#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardModel

/// One active check of one endpoint: a TCP connect, or an HTTP/1.1 request whose status
/// must fall in the expected range, all within the policy's timeout.
///
/// Threading: blocking (poll with a deadline); runs on the health checker's probe queue,
/// never on an event loop.
public enum HealthProbe {
    public struct Outcome: Sendable, Equatable {
        public var passed: Bool
        public var reason: String?
    }

    public static func run(address: SocketAddress, policy: HealthPolicy) -> Outcome {
        let deadline = monotonicMilliseconds() + Int64(policy.timeoutMs)
        let fd: Int32
        switch Socket.connect(to: address) {
        case .connected(let connected):
            fd = connected
        case .inProgress(let pending):
            fd = pending
            guard wait(fd, events: Int16(POLLOUT), until: deadline) else {
                Socket.close(fd)
                return Outcome(passed: false, reason: "connect timed out after \(policy.timeoutMs) ms")
            }
            let err = Socket.pendingError(fd)
            if err != 0 {
                Socket.close(fd)
                return Outcome(passed: false, reason: "connect: \(IOError(call: "connect", errno: err))")
            }
        case .failed(let err):
            return Outcome(passed: false, reason: "connect: \(IOError(call: "connect", errno: err))")
        }
        defer { Socket.close(fd) }
        if policy.kind == .tcp { return Outcome(passed: true, reason: nil) }

        let host = policy.host ?? address.description
        let request = "\(policy.method) \(policy.path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n"
        var sent = 0
        let bytes = Array(request.utf8)
        while sent < bytes.count {
            guard wait(fd, events: Int16(POLLOUT), until: deadline) else {
                return Outcome(passed: false, reason: "request not sent within \(policy.timeoutMs) ms")
            }
            let result = bytes.withUnsafeBytes { Socket.write(fd, UnsafeRawBufferPointer(rebasing: $0[sent...])) }
            switch result {
            case .bytes(let n): sent += n
            case .wouldBlock: continue
            case .closed, .failed: return Outcome(passed: false, reason: "connection closed while sending the check")
            }
        }
        // Only the status line matters: read until it is complete.
        var buffer = ByteBuffer(capacity: 1024)
        defer { buffer.deallocate() }
        while true {
            if let status = statusCode(buffer.readable) {
                if policy.expectedStatus.contains(status) { return Outcome(passed: true, reason: nil) }
                return Outcome(passed: false, reason: "status \(status), expected \(policy.expectedStatus.lowerBound)-\(policy.expectedStatus.upperBound)")
            }
            guard buffer.writableBytes > 0 else { return Outcome(passed: false, reason: "no status line in the answer") }
            guard wait(fd, events: Int16(POLLIN), until: deadline) else {
                return Outcome(passed: false, reason: "no answer within \(policy.timeoutMs) ms")
            }
            switch Socket.read(fd, into: &buffer) {
            case .bytes, .wouldBlock: continue
            case .closed, .failed: return Outcome(passed: false, reason: statusCode(buffer.readable) == nil ? "connection closed before a status line" : nil)
            }
        }
    }

    /// The status code of `HTTP/1.x NNN` once those 12 bytes are there.
    static func statusCode(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 12, bytes[0] == UInt8(ascii: "H"), bytes[8] == UInt8(ascii: " ") else { return nil }
        var code = 0
        for i in 9..<12 {
            let d = Int(bytes[i]) - 48
            guard (0...9).contains(d) else { return nil }
            code = code * 10 + d
        }
        return code
    }

    private static func wait(_ fd: Int32, events: Int16, until deadline: Int64) -> Bool {
        while true {
            let remaining = deadline - monotonicMilliseconds()
            if remaining <= 0 { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&entry, 1, Int32(min(remaining, 60_000)))
            if n > 0 { return true }
            if n == 0 { return false }
            if errno != EINTR { return false }
        }
    }
}
