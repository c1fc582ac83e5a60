import Synchronization
internal import CYardOpenSSL

/// The TLS-ALPN-01 challenge certificates (RFC 8737) a TLS listener answers with: a
/// handshake that offers `acme-tls/1` and names (SNI) a name with a published challenge
/// gets that certificate and the `acme-tls/1` protocol; every other handshake is untouched.
///
/// The switch happens in the ClientHello callback, before SNI and ALPN are processed: the
/// connection moves to the challenge's own `SSL_CTX`, whose ALPN callback selects
/// `acme-tls/1` and whose SNI callback keeps it there. `SSL_set_SSL_CTX` takes a reference,
/// so withdrawing a challenge mid-handshake is safe.
///
/// Threading: `publish`/`withdraw` from the control plane (any thread); `context(for:)`
/// from event loops during handshakes. The mutex guards the table; it is taken only by
/// handshakes that offer `acme-tls/1`, i.e. a CA validating.
public final class TLSALPNChallenges: Sendable {
    public static let protocolName = "acme-tls/1"
    private let table = Mutex<[String: ChallengeContext]>([:])

    public init() {}

    /// Serves `certificatePEM` (with `keyPEM`) to `acme-tls/1` handshakes for `name`.
    public func publish(name: String, certificatePEM: String, keyPEM: String) throws(TLSError) {
        let context = try ChallengeContext(certificatePEM: certificatePEM, keyPEM: keyPEM)
        table.withLock { $0[ServerNameTable.normalized(name)] = context }
    }

    public func withdraw(name: String) {
        _ = table.withLock { $0.removeValue(forKey: ServerNameTable.normalized(name)) }
    }

    public var names: [String] { table.withLock { Array($0.keys).sorted() } }

    func context(for name: String) -> ChallengeContext? {
        table.withLock { $0[ServerNameTable.normalized(name)] }
    }
}

/// One challenge certificate's `SSL_CTX`. `@unchecked Sendable`: configured in `init`,
/// then only read (OpenSSL allows a configured context to be used from many threads).
final class ChallengeContext: @unchecked Sendable {
    let ctx: OpaquePointer

    init(certificatePEM: String, keyPEM: String) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError.fromQueue("creating a TLS-ALPN-01 context") }
        self.ctx = ctx
        guard let certificate = pemObject(certificatePEM, { PEM_read_bio_X509($0, nil, nil, nil) }) else {
            throw TLSError.fromQueue("reading the TLS-ALPN-01 certificate")
        }
        defer { X509_free(certificate) }
        guard let key = pemObject(keyPEM, { PEM_read_bio_PrivateKey($0, nil, nil, nil) }) else {
            throw TLSError.fromQueue("reading the TLS-ALPN-01 key")
        }
        defer { EVP_PKEY_free(key) }
        guard yard_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1,
              SSL_CTX_use_certificate(ctx, certificate) == 1, SSL_CTX_use_PrivateKey(ctx, key) == 1,
              SSL_CTX_check_private_key(ctx) == 1 else { throw TLSError.fromQueue("loading the TLS-ALPN-01 certificate") }
        _ = SSL_CTX_set_options(ctx, yard_SSL_OP_server_defaults)
        SSL_CTX_set_alpn_select_cb(ctx, acmeALPNSelectCallback, nil)
        yard_SSL_CTX_set_tlsext_servername_callback(ctx, keepChallengeContext)
    }

    deinit { SSL_CTX_free(ctx) }
}

private func pemObject(_ pem: String, _ read: (OpaquePointer) -> OpaquePointer?) -> OpaquePointer? {
    let bytes = Array(pem.utf8)
    guard bytes.count < 1 << 20 else { return nil }
    return bytes.withUnsafeBytes { buffer in
        guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
        defer { BIO_free(bio) }
        return read(bio)
    }
}

// MARK: - Callbacks

/// The challenge context's SNI callback: stay on the challenge certificate (without it
/// OpenSSL would run the listener's, which could switch to a real certificate).
private let keepChallengeContext: yard_servername_cb = { _, _, _ in SSL_TLSEXT_ERR_OK }

/// The challenge context's ALPN callback: `acme-tls/1`, which the client offered (the
/// ClientHello callback checked) — RFC 8737 §3 wants exactly that protocol selected.
private let acmeALPNSelectCallback: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
    UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
) -> Int32 = { _, out, outLength, offered, offeredLength, _ in
    guard let out, let outLength, let offered else { return SSL_TLSEXT_ERR_NOACK }
    let list = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
    guard let start = ALPNList.find(TLSALPNChallenges.protocolName, in: list) else { return SSL_TLSEXT_ERR_NOACK }
    out.pointee = offered + start
    outLength.pointee = UInt8(TLSALPNChallenges.protocolName.utf8.count)
    return SSL_TLSEXT_ERR_OK
}

/// The listener's ClientHello callback (installed only when it answers TLS-ALPN-01):
/// `acme-tls/1` offered for a name with a published challenge moves the connection to
/// the challenge's context.
let tlsALPNClientHelloCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = { ssl, _, arg in
    guard let ssl, let arg else { return 1 }
    let context = Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue()
    guard let challenges = context.acmeChallenges else { return 1 }
    var data: UnsafePointer<UInt8>?
    var length = 0
    // ALPN (16): a 2-byte list length, then length-prefixed names.
    guard SSL_client_hello_get0_ext(ssl, 16, &data, &length) == 1, let data, length >= 2 else { return 1 }
    let alpn = UnsafeBufferPointer(start: data + 2, count: min(length - 2, Int(data[0]) << 8 | Int(data[1])))
    guard ALPNList.find(TLSALPNChallenges.protocolName, in: alpn) != nil else { return 1 }
    // server_name (0): a 2-byte list length, then type (0 = host_name), a 2-byte length, the name.
    var sni: UnsafePointer<UInt8>?
    var sniLength = 0
    guard SSL_client_hello_get0_ext(ssl, 0, &sni, &sniLength) == 1, let sni, sniLength >= 5, sni[2] == 0 else { return 1 }
    let nameLength = Int(sni[3]) << 8 | Int(sni[4])
    guard nameLength > 0, nameLength <= sniLength - 5 else { return 1 }
    let name = String(decoding: UnsafeBufferPointer(start: sni + 5, count: nameLength), as: UTF8.self)
    if let challenge = challenges.context(for: name) { _ = SSL_set_SSL_CTX(ssl, challenge.ctx) }
    return 1
}

/// ALPN wire lists (RFC 7301 §3.1): length-prefixed protocol names. Pure.
enum ALPNList {
    /// The offset of `name`'s bytes in `list`, or nil when it is not offered (or the list is malformed there).
    static func find(_ name: String, in list: UnsafeBufferPointer<UInt8>) -> Int? {
        find(Array(name.utf8), in: list)
    }

    static func find(_ wanted: [UInt8], in list: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        while i < list.count {
            let length = Int(list[i])
            let start = i + 1
            guard start + length <= list.count else { return nil }
            if length == wanted.count && wanted.elementsEqual(list[start..<start + length]) { return start }
            i = start + length
        }
        return nil
    }
}
