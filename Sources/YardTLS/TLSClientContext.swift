internal import CYardOpenSSL

/// TLS to upstreams: the peer's certificate is verified against a CA file (or the system
/// store) and, per connection, against the name dialled (`TLSConnection(connecting:…)`).
///
/// Threading: built on the control plane, then shared read-only by every event loop
/// (`@unchecked Sendable`: an `SSL_CTX` may be used by many threads once configured).
public final class TLSClientContext: @unchecked Sendable {
    let context: OpaquePointer
    public let caFile: String?
    /// The peer's certificate is checked (chain and name); false only for tests.
    public let verify: Bool

    /// - Parameters:
    ///   - caFile: PEM file of trusted CAs; nil for the system's default store.
    ///   - alpn: protocols to offer, in preference order (empty: no ALPN).
    ///   - verify: false accepts any certificate (no CA is loaded, no name checked).
    ///   - certificateFile, keyFile: a client certificate (PEM chain) and its private key,
    ///     for servers that ask for one (etcd's `--client-cert-auth`, Consul's
    ///     `verify_incoming`); both or neither.
    public init(
        caFile: String?, alpn: [String] = [], verify: Bool = true, minimumVersion: TLSVersion = .tls12,
        certificateFile: String? = nil, keyFile: String? = nil
    ) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError.fromQueue("creating a TLS client context") }
        context = ctx
        self.caFile = caFile
        self.verify = verify
        guard yard_SSL_CTX_set_min_proto_version(ctx, minimumVersion.openSSLValue) == 1 else {
            throw TLSError.fromQueue("setting the minimum TLS version")
        }
        // Without SSL_OP_IGNORE_UNEXPECTED_EOF: an upstream's EOF without close_notify is
        // reported (`TLSConnection.endedWithoutCloseNotify`), because it may cut short a body
        // delimited by the close.
        _ = SSL_CTX_set_options(ctx, yard_SSL_OP_client_defaults)
        _ = yard_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        if !verify {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        } else {
            if let caFile {
                guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                    throw TLSError.fromQueue("loading CA file \(caFile)")
                }
            } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
                throw TLSError.fromQueue("loading the system CA store")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if let certificateFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
                throw TLSError.fromQueue("loading client certificate \(certificateFile)")
            }
            let key = keyFile ?? certificateFile
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError.fromQueue("loading client key \(key)")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError.fromQueue("client key \(key) does not match certificate \(certificateFile)")
            }
        }
        if !alpn.isEmpty {
            var wire: [UInt8] = []
            for name in alpn where !name.isEmpty && name.utf8.count < 256 {
                wire.append(UInt8(name.utf8.count))
                wire.append(contentsOf: name.utf8)
            }
            // SSL_CTX_set_alpn_protos returns 0 on success, unlike most of OpenSSL.
            guard SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0 else {
                throw TLSError.fromQueue("ALPN list \(alpn)")
            }
        }
    }

    deinit { SSL_CTX_free(context) }
}

/// A TLS session a client may resume on its next connection to the same server (a
/// ticket), saving the full handshake's public-key operations.
///
/// Threading: confined to the event loop that got it (one per endpoint pool).
public final class TLSSession {
    let session: OpaquePointer

    init(_ session: OpaquePointer) { self.session = session }

    deinit { SSL_SESSION_free(session) }
}
