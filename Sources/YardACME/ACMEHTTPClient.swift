#if canImport(Glibc)
import Glibc
#endif
internal import CYardOpenSSL

/// A small blocking HTTPS/1.1 client for talking to an ACME CA.
///
/// Why not YardDiscovery's ControlHTTPClient: it speaks plain HTTP only (it refuses
/// `https://`), and an ACME directory is always HTTPS. This one does one request per
/// connection (`Connection: close`), verifies the CA's certificate chain (the system store,
/// or `caFile` for a private CA such as pebble or step-ca) and its name, caps what it reads
/// (`maximumResponse`), and bounds every request by `timeout`.
///
/// Control plane only. Threading: immutable after init (`@unchecked Sendable`: the
/// `SSL_CTX` is configured once and then only read); requests may run on any thread.
public final class ACMEHTTPClient: @unchecked Sendable {
    private let context: OpaquePointer
    public let timeout: Duration
    /// Head and body together; a CA's largest answer (a chain) is a few kilobytes.
    public let maximumResponse: Int

    public init(caFile: String? = nil, timeout: Duration = .seconds(30), maximumResponse: Int = 1 << 20) throws(ACMEError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw cryptoError("creating a TLS client context") }
        self.context = context
        self.timeout = timeout
        self.maximumResponse = maximumResponse
        _ = yard_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION)
        _ = SSL_CTX_set_options(context, yard_SSL_OP_client_defaults)
        if let caFile {
            guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                throw ACMEError.badRequest("cannot load the CA file \(caFile): \(openSSLErrors())")
            }
        } else if SSL_CTX_set_default_verify_paths(context) != 1 {
            throw cryptoError("loading the system CA store")
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
    }

    deinit { SSL_CTX_free(context) }

    /// Sends one request and returns the whole response. `body` goes with
    /// `Content-Type: contentType`. Throws `.transport` for network and TLS failures and
    /// `.malformedResponse` for answers that are not HTTP or are too large.
    public func send(_ method: String, _ url: ACMEURL, body: [UInt8]? = nil,
                     contentType: String = "application/jose+json", accept: String? = nil) throws(ACMEError) -> ACMEHTTPResponse {
        let operation = "\(method) \(url)"
        var head = "\(method) \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\nUser-Agent: switchyard-acme\r\nConnection: close\r\n"
        if let accept { head += "Accept: \(accept)\r\n" }
        if let body { head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n" }
        let request = Array((head + "\r\n").utf8) + (body ?? [])

        let fd = try connect(url, operation: operation)
        defer { close(fd) }
        var raw: [UInt8]
        if url.secure {
            raw = try exchangeTLS(fd: fd, url: url, request: request, operation: operation)
        } else {
            try writeAll(fd: fd, request, operation: operation)
            raw = try readAll(operation: operation) { buffer in recv(fd, buffer.baseAddress, buffer.count, 0) }
        }
        return try ACMEHTTPResponse.parse(raw, headRequest: method == "HEAD", maximumBody: maximumResponse)
    }

    // MARK: Connection

    private func connect(_ url: ACMEURL, operation: String) throws(ACMEError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(url.host, String(url.port), &hints, &results)
        guard status == 0, let results else {
            throw ACMEError.transport(operation: operation, reason: "cannot resolve \(url.host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(results) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = results
        while let current = entry {
            entry = current.pointee.ai_next
            let fd = socket(current.pointee.ai_family, current.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), current.pointee.ai_protocol)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            // SO_SNDTIMEO also bounds connect(2) on Linux; SO_RCVTIMEO bounds each read.
            let (seconds, attoseconds) = timeout.components
            var interval = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            if Glibc.connect(fd, current.pointee.ai_addr, current.pointee.ai_addrlen) == 0 { return fd }
            lastError = errno == EINPROGRESS || errno == EAGAIN ? "timed out" : String(cString: strerror(errno))
            close(fd)
        }
        throw ACMEError.transport(operation: operation, reason: "cannot connect to \(url.host):\(url.port): \(lastError)")
    }

    private func exchangeTLS(fd: Int32, url: ACMEURL, request: [UInt8], operation: String) throws(ACMEError) -> [UInt8] {
        ERR_clear_error()
        guard let ssl = SSL_new(context) else { throw cryptoError("creating a TLS connection") }
        defer { SSL_free(ssl) }
        _ = SSL_set_fd(ssl, fd)
        if isIPAddress(url.host) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host) == 1 else { throw cryptoError("checking \(url.host)") }
        } else {
            _ = yard_SSL_set_tlsext_host_name(ssl, url.host)
            guard SSL_set1_host(ssl, url.host) == 1 else { throw cryptoError("checking \(url.host)") }
        }
        guard SSL_connect(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            let reason = verify != X509_V_OK ? String(cString: X509_verify_cert_error_string(verify)) : openSSLErrors()
            throw ACMEError.transport(operation: operation, reason: "TLS handshake with \(url.host):\(url.port) failed: \(reason)")
        }
        var offset = 0
        while offset < request.count {
            let written = request[offset...].withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            guard written > 0 else { throw ACMEError.transport(operation: operation, reason: "sending: \(openSSLErrors())") }
            offset += Int(written)
        }
        return try readAll(operation: operation) { buffer in
            let count = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
            if count > 0 { return Int(count) }
            let error = SSL_get_error(ssl, count)
            // A clean close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare EOF: the end.
            if error == SSL_ERROR_ZERO_RETURN || error == SSL_ERROR_SYSCALL && errno == 0 { return 0 }
            if error == SSL_ERROR_SSL, openSSLErrors().contains("unexpected eof") { return 0 }
            return -1
        }
    }

    private func writeAll(fd: Int32, _ bytes: [UInt8], operation: String) throws(ACMEError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw ACMEError.transport(operation: operation, reason: "sending: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// Reads until the peer closes (`read` returns 0), `maximumResponse` (+ head room) is
    /// passed, or `timeout` elapses in total.
    private func readAll(operation: String, _ read: (UnsafeMutableRawBufferPointer) -> Int) throws(ACMEError) -> [UInt8] {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let limit = maximumResponse + 16 * 1024
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read($0) }
            if count == 0 { return out }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out after \(timeout)" : String(cString: strerror(errno))
                throw ACMEError.transport(operation: operation, reason: "reading: \(reason)")
            }
            out.append(contentsOf: chunk.prefix(count))
            guard out.count <= limit else {
                throw ACMEError.malformedResponse(operation: operation, reason: "the response is over \(limit) bytes")
            }
            guard ContinuousClock.now < deadline else {
                throw ACMEError.transport(operation: operation, reason: "the response took longer than \(timeout)")
            }
        }
    }
}

func isIPAddress(_ host: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
}
