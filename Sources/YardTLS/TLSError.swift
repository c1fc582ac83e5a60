#if canImport(Glibc)
import Glibc
#endif
internal import CYardOpenSSL

/// OpenSSL 3's ERR_SYSTEM_FLAG: set on error codes that carry an errno.
private let systemErrorFlag: UInt = 1 << 31

/// A TLS failure: what was being done, and OpenSSL's reason (from its error queue).
///
/// Only failures are errors: WANT_READ, WANT_WRITE and a clean close are results
/// (`TLSStep`, `TLSIOResult`), never thrown. Threading: a value.
public struct TLSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What failed, in an operator's words ("loading certificate /etc/x.pem", "handshake").
    public var operation: String
    /// OpenSSL's reasons, most specific last ("no such file", "key values mismatch").
    public var reason: String

    public init(_ operation: String, reason: String) {
        self.operation = operation
        self.reason = reason
    }

    public var description: String { reason.isEmpty ? operation : "\(operation): \(reason)" }

    /// An error naming `operation` with what OpenSSL queued on this thread (the queue is
    /// emptied, so the reason never leaks into a later, unrelated call).
    static func fromQueue(_ operation: String) -> TLSError {
        TLSError(operation, reason: drainErrorQueue())
    }

    static func drainErrorQueue() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            let reason: String
            if code & systemErrorFlag != 0 {
                // A failed system call (ERR_SYSTEM_ERROR, a macro): the low bits are errno.
                reason = String(cString: strerror(Int32(truncatingIfNeeded: code & (systemErrorFlag - 1))))
            } else if let text = ERR_reason_error_string(code) {
                reason = String(cString: text)
            } else {
                reason = "OpenSSL error \(code)"
            }
            if !reasons.contains(reason) { reasons.append(reason) }
        }
        return reasons.joined(separator: "; ")
    }
}

/// The outcome of a handshake or shutdown step on a non-blocking socket.
public enum TLSStep: Equatable, Sendable {
    /// The step is complete.
    case done
    /// Call again once the socket is readable.
    case wantRead
    /// Call again once the socket is writable.
    case wantWrite
    /// The peer closed the connection (EOF or close_notify).
    case closed
    case failed(TLSError)
}

/// The outcome of a non-blocking TLS read or write.
public enum TLSIOResult: Equatable, Sendable {
    /// This many plaintext bytes moved (always > 0).
    case bytes(Int)
    /// Nothing moved; call again once the socket is readable.
    case wantRead
    /// Nothing moved; call again once the socket is writable.
    case wantWrite
    /// The peer closed its side (close_notify, or EOF).
    case closed
    case failed(TLSError)
}

/// The protocol negotiated by ALPN, as the data plane dispatches on it.
public enum ApplicationProtocol: UInt8, Sendable {
    /// The client offered no ALPN (or nothing matched): HTTP/1.1 by convention.
    case none
    case http1_1
    case h2
    /// A protocol the server offered that has no case here.
    case other
}

/// TLS protocol versions Switchyard can be limited to.
public enum TLSVersion: String, Sendable, Equatable, CaseIterable {
    case tls12 = "1.2"
    case tls13 = "1.3"

    var openSSLValue: Int32 {
        switch self {
        case .tls12: TLS1_2_VERSION
        case .tls13: TLS1_3_VERSION
        }
    }
}
