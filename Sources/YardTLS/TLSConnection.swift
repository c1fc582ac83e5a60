#if canImport(Glibc)
import Glibc
#endif
internal import CYardOpenSSL
import YardIO

/// TLS over one non-blocking socket (OpenSSL reads and writes the fd itself: `SSL_set_fd`,
/// the cheapest way, with no copy through memory BIOs).
///
/// Every operation returns what happened, WANT_READ and WANT_WRITE included, and never
/// throws: the event loop maps `.wantRead`/`.wantWrite` to epoll interest and calls again.
/// The socket stays the caller's: closing it is the caller's job, after this object's
/// last call.
///
/// Threading: confined to the event loop that owns the socket (OpenSSL's per-thread error
/// queue is cleared before each call).
public final class TLSConnection {
    let ssl: OpaquePointer
    /// Keeps the context (and the `SSL_CTX` its callbacks point back to) alive.
    private let owner: AnyObject

    /// Server side of a connection just accepted on `fd`; nil if OpenSSL cannot allocate.
    public init?(accepting fd: Int32, context: TLSServerContext) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.contexts[0]) else { return nil }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_accept_state(ssl)
        self.ssl = ssl
        self.owner = context
    }

    /// Client side over connected (or connecting) `fd`, sending SNI `serverName` and
    /// verifying the peer's certificate for that name (or IP address) against the
    /// context's CA file. An IP address is checked against the certificate's IP entries
    /// and sent without SNI (RFC 6066 allows only host names there). `resuming`: a session
    /// from an earlier connection to the same server, offered for resumption.
    public init(connecting fd: Int32, context: TLSClientContext, serverName: String, resuming session: TLSSession? = nil) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else { throw TLSError.fromQueue("creating a TLS connection") }
        self.ssl = ssl
        self.owner = context
        guard SSL_set_fd(ssl, fd) == 1 else { throw TLSError.fromQueue("attaching TLS to the socket") }
        SSL_set_connect_state(ssl)
        if let session { _ = SSL_set_session(ssl, session.session) }
        if isIPAddress(serverName) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) == 1 else {
                throw TLSError.fromQueue("verifying IP address \(serverName)")
            }
        } else {
            guard yard_SSL_set_tlsext_host_name(ssl, serverName) == 1, SSL_set1_host(ssl, serverName) == 1 else {
                throw TLSError.fromQueue("server name \(serverName)")
            }
        }
    }

    deinit { SSL_free(ssl) }

    // MARK: Steps

    /// Advances the handshake.
    public func handshake() -> TLSStep {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .done }
        return step(rc, "TLS handshake")
    }

    /// Sends close_notify (without waiting for the peer's): `.done` once it is written.
    public func shutdown() -> TLSStep {
        ERR_clear_error()
        let rc = SSL_shutdown(ssl)
        if rc >= 0 { return .done }
        return step(rc, "TLS shutdown")
    }

    /// The peer closed the connection without close_notify: whatever it sent last may have
    /// been cut short (matters for a body delimited by the close). Set with `.closed` from
    /// `read`, on contexts that report it (TLSClientContext).
    public private(set) var endedWithoutCloseNotify = false

    /// Decrypts into `buffer`'s free space: every record OpenSSL already holds, as far as
    /// the room goes, then stops (so data is never left behind in OpenSSL unseen by epoll,
    /// unless the buffer filled up: see `hasBufferedInput`).
    public func read(into buffer: inout ByteBuffer) -> TLSIOResult {
        var total = 0
        while buffer.writableBytes > 0 {
            ERR_clear_error()
            let n = SSL_read(ssl, buffer.base! + buffer.writerIndex, Int32(clamping: buffer.writableBytes))
            if n > 0 {
                buffer.writerIndex &+= Int(n)
                total &+= Int(n)
                if SSL_has_pending(ssl) == 0 { break }
                continue
            }
            // Bytes read come first; a close or failure behind them is reported next call
            // (OpenSSL keeps returning it, but not its error queue: note an EOF without
            // close_notify now).
            if total > 0 {
                if SSL_get_error(ssl, n) == SSL_ERROR_SSL && isUnexpectedEOF() { endedWithoutCloseNotify = true }
                break
            }
            return ioResult(n, "TLS read")
        }
        return total > 0 ? .bytes(total) : .wantRead
    }

    /// Encrypts and sends as much of `bytes` as the socket takes. After `.wantWrite`, call
    /// again with at least the same bytes (more may have been appended).
    public func write(_ bytes: UnsafeRawBufferPointer) -> TLSIOResult {
        guard bytes.count > 0 else { return .bytes(0) }
        ERR_clear_error()
        let n = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        if n > 0 { return .bytes(Int(n)) }
        return ioResult(n, "TLS write")
    }

    /// Writes `buffer`'s readable bytes and consumes what was written.
    @inline(__always)
    public func flush(_ buffer: inout ByteBuffer) -> TLSIOResult {
        let result = write(buffer.readable)
        if case .bytes(let n) = result { buffer.consume(n) }
        return result
    }

    /// Decrypted or received bytes OpenSSL holds that the socket will not signal again:
    /// read them when the buffer has room.
    public var hasBufferedInput: Bool { SSL_has_pending(ssl) == 1 }

    // MARK: What was negotiated

    /// ALPN's choice, classified for dispatch.
    public var applicationProtocol: ApplicationProtocol {
        guard let alpn = alpnBytes else { return .none }
        if alpn.elementsEqual("http/1.1".utf8) { return .http1_1 }
        if alpn.elementsEqual("h2".utf8) { return .h2 }
        return .other
    }

    /// ALPN's choice as text, nil when none was negotiated.
    public var alpn: String? { alpnBytes.map { String(decoding: $0, as: UTF8.self) } }

    private var alpnBytes: UnsafeBufferPointer<UInt8>? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return UnsafeBufferPointer(start: data, count: Int(length))
    }

    /// The SNI name the client sent, if any.
    public var serverName: String? {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }

    /// The session was resumed (from a ticket) rather than negotiated in full.
    public var resumed: Bool { SSL_session_reused(ssl) == 1 }

    /// The session to offer on a later connection to the same server, nil until one is
    /// resumable (with TLS 1.3 the ticket arrives after the handshake, with the first
    /// records read).
    public var resumableSession: TLSSession? {
        guard let session = SSL_get1_session(ssl) else { return nil }
        guard SSL_SESSION_is_resumable(session) == 1 else {
            SSL_SESSION_free(session)
            return nil
        }
        return TLSSession(session)
    }

    /// "TLSv1.3", "TLSv1.2".
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    public var cipher: String {
        SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? ""
    }

    // MARK: Outcomes

    private func step(_ rc: Int32, _ operation: String) -> TLSStep {
        switch classify(rc, operation) {
        case .wantRead: .wantRead
        case .wantWrite: .wantWrite
        case .closed: .closed
        case .failed(let error): .failed(error)
        }
    }

    @inline(__always)
    private func ioResult(_ rc: Int32, _ operation: String) -> TLSIOResult {
        switch classify(rc, operation) {
        case .wantRead: .wantRead
        case .wantWrite: .wantWrite
        case .closed: .closed
        case .failed(let error): .failed(error)
        }
    }

    private enum Blocked { case wantRead, wantWrite, closed, failed(TLSError) }

    /// The error OpenSSL queued is the peer's EOF without close_notify.
    private func isUnexpectedEOF() -> Bool {
        let first = ERR_peek_error()
        return ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING
    }

    private func classify(_ rc: Int32, _ operation: String) -> Blocked {
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_WANT_READ:
            return .wantRead
        case SSL_ERROR_WANT_WRITE:
            return .wantWrite
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        case SSL_ERROR_SYSCALL:
            let err = errno
            let queued = TLSError.drainErrorQueue()
            if queued.isEmpty && (err == 0 || err == ECONNRESET || err == EPIPE) { return .closed }
            return .failed(TLSError(operation, reason: queued.isEmpty ? String(cString: strerror(err)) : queued))
        default:
            // The peer closed TCP without close_notify (reported only where the context does
            // not set SSL_OP_IGNORE_UNEXPECTED_EOF: upstream connections).
            if endedWithoutCloseNotify || isUnexpectedEOF() {
                ERR_clear_error()
                endedWithoutCloseNotify = true
                return .closed
            }
            var error = TLSError.fromQueue(operation)
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
                error.reason += (error.reason.isEmpty ? "" : "; ") + String(cString: text)
            }
            return .failed(error)
        }
    }
}

private func isIPAddress(_ text: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
}
