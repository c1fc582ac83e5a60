#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardModel
import YardTLS

/// One active check of one endpoint: a TCP connect, an HTTP/1.1 request whose status
/// must fall in the expected range, or a gRPC health check over HTTP/2
/// (`GRPCHealthCheck`), all within the policy's timeout. For a TLS endpoint
/// the connect is followed by a TLS handshake that verifies its certificate (a `tcp`
/// check too), and the request goes over TLS.
///
/// Threading: blocking (poll with a deadline); runs on the health checker's probe queue,
/// never on an event loop.
public enum HealthProbe {
    public struct Outcome: Sendable, Equatable {
        public var passed: Bool
        public var reason: String?
    }

    /// TLS to the endpoint: the client context (trust, ALPN) and the name to verify.
    public struct TLS {
        public var context: TLSClientContext
        public var serverName: String

        public init(context: TLSClientContext, serverName: String) {
            self.context = context
            self.serverName = serverName
        }
    }

    public static func run(address: SocketAddress, policy: HealthPolicy, tls: TLS? = nil) -> Outcome {
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
        var channel = Channel(fd: fd, tls: nil)
        if let tls {
            switch handshake(fd, tls, until: deadline) {
            case .success(let connection): channel.tls = connection
            case .failure(let failure): return failure
            }
        }
        defer { if let connection = channel.tls { _ = connection.shutdown() } }
        if policy.kind == .tcp { return Outcome(passed: true, reason: nil) }
        if policy.kind == .grpc {
            return GRPCHealthCheck.run(&channel, authority: policy.host ?? address.description, policy: policy, until: deadline)
        }

        let host = policy.host ?? address.description
        let request = "\(policy.method) \(policy.path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n"
        var sent = 0
        let bytes = Array(request.utf8)
        while sent < bytes.count {
            guard wait(fd, events: channel.sendWaits, until: deadline) else {
                return Outcome(passed: false, reason: "request not sent within \(policy.timeoutMs) ms")
            }
            let result = bytes.withUnsafeBytes { channel.write(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
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
            if !channel.hasBufferedInput {
                guard wait(fd, events: channel.receiveWaits, until: deadline) else {
                    return Outcome(passed: false, reason: "no answer within \(policy.timeoutMs) ms")
                }
            }
            switch channel.read(into: &buffer) {
            case .bytes, .wouldBlock: continue
            case .closed, .failed: return Outcome(passed: false, reason: statusCode(buffer.readable) == nil ? "connection closed before a status line" : nil)
            }
        }
    }

    // MARK: TLS

    private enum Handshake {
        case success(TLSConnection)
        case failure(Outcome)
    }

    /// The TLS handshake over connected `fd`, within the deadline: verification failures
    /// come back with OpenSSL's reason ("certificate verify failed; …").
    private static func handshake(_ fd: Int32, _ tls: TLS, until deadline: Int64) -> Handshake {
        let connection: TLSConnection
        do {
            connection = try TLSConnection(connecting: fd, context: tls.context, serverName: tls.serverName)
        } catch {
            return .failure(Outcome(passed: false, reason: "TLS: \(error)"))
        }
        while true {
            let events: Int16
            switch connection.handshake() {
            case .done: return .success(connection)
            case .wantRead: events = Int16(POLLIN)
            case .wantWrite: events = Int16(POLLOUT)
            case .closed: return .failure(Outcome(passed: false, reason: "TLS handshake: closed by the endpoint (does it speak TLS?)"))
            case .failed(let error): return .failure(Outcome(passed: false, reason: "TLS handshake (server name \(tls.serverName)): \(error)"))
            }
            guard wait(fd, events: events, until: deadline) else {
                return .failure(Outcome(passed: false, reason: "TLS handshake not done within the check's timeout"))
            }
        }
    }

    /// The check's connection: the socket, or TLS over it. Remembers what the last TLS
    /// call waits for (a read may need the socket writable, a write readable).
    struct Channel {
        let fd: Int32
        var tls: TLSConnection?
        var sendWaits = Int16(POLLOUT)
        var receiveWaits = Int16(POLLIN)

        var hasBufferedInput: Bool { tls?.hasBufferedInput ?? false }

        mutating func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
            guard let tls else { return Socket.write(fd, bytes) }
            sendWaits = Int16(POLLOUT)
            switch tls.write(bytes) {
            case .bytes(let n): return .bytes(n)
            case .wantWrite: return .wouldBlock
            case .wantRead:
                sendWaits = Int16(POLLIN)
                return .wouldBlock
            case .closed: return .closed
            case .failed: return .failed(EPROTO)
            }
        }

        mutating func read(into buffer: inout ByteBuffer) -> IOResult {
            guard let tls else { return Socket.read(fd, into: &buffer) }
            receiveWaits = Int16(POLLIN)
            switch tls.read(into: &buffer) {
            case .bytes(let n): return .bytes(n)
            case .wantRead: return .wouldBlock
            case .wantWrite:
                receiveWaits = Int16(POLLOUT)
                return .wouldBlock
            case .closed: return .closed
            case .failed: return .failed(EPROTO)
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

    static func wait(_ fd: Int32, events: Int16, until deadline: Int64) -> Bool {
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
