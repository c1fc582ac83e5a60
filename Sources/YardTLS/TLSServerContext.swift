internal import CYardOpenSSL

/// What a TLS listener hands to each new connection: one OpenSSL context per certificate,
/// the SNI table choosing among them, the ALPN list, and the session-ticket keys.
///
/// Immutable once built. A certificate reload builds a new context and swaps it in the
/// workers; connections keep the context they started with (each `TLSConnection` holds
/// a strong reference, so the C callbacks' back-pointer to this object stays valid).
///
/// Threading: built on the control plane; then read by every event loop. `@unchecked
/// Sendable` because it holds `SSL_CTX` pointers, which OpenSSL allows to be used from many
/// threads once configured (they are never reconfigured after `init`).
public final class TLSServerContext: @unchecked Sendable {
    public let configuration: TLSServerConfiguration
    /// SNI name → index into `contexts`.
    public let serverNames: ServerNameTable
    /// The names each certificate answers for, in configuration order.
    public let certificateNames: [[String]]
    public let ticketKeys: TicketKeyRing
    /// One `SSL_CTX` per certificate; [0] is the default and the one connections start on.
    let contexts: [OpaquePointer]
    /// ALPN protocols in preference order, as wire bytes without length prefixes.
    let alpn: [[UInt8]]
    /// TLS-ALPN-01 challenge certificates (ACME), when the listener answers that challenge.
    public let acmeChallenges: TLSALPNChallenges?

    /// Loads every certificate and key, checks each pair matches, and configures TLS 1.2+
    /// (or `minimumVersion`) with the configured ciphers. With `acmeChallenges`, handshakes
    /// offering `acme-tls/1` get the challenge certificate published for their name.
    public init(_ configuration: TLSServerConfiguration, ticketKeys: TicketKeyRing = TicketKeyRing(),
                acmeChallenges: TLSALPNChallenges? = nil) throws(TLSError) {
        guard !configuration.certificates.isEmpty else {
            throw TLSError("TLS listener", reason: "no certificate configured")
        }
        var contexts: [OpaquePointer] = []
        var table = ServerNameTable()
        var names: [[String]] = []
        do throws(TLSError) {
            for (index, source) in configuration.certificates.enumerated() {
                let ctx = try Self.makeContext(configuration, source)
                contexts.append(ctx)
                var claimed = source.serverNames
                if claimed.isEmpty, let leaf = SSL_CTX_get0_certificate(ctx) { claimed = certificateDNSNames(leaf) }
                for name in claimed { table.add(name, index: index) }
                names.append(claimed)
            }
        } catch {
            for ctx in contexts { SSL_CTX_free(ctx) }
            throw error
        }
        self.configuration = configuration
        self.serverNames = table
        self.certificateNames = names
        self.ticketKeys = ticketKeys
        self.acmeChallenges = acmeChallenges
        self.contexts = contexts
        self.alpn = configuration.alpn.map { Array($0.utf8) }.filter { !$0.isEmpty && $0.count < 256 }
        let me = Unmanaged.passUnretained(self).toOpaque()
        for ctx in contexts {
            SSL_CTX_set_ex_data(ctx, 0, me)
            yard_SSL_CTX_set_tlsext_servername_callback(ctx, serverNameCallback)
            yard_SSL_CTX_set_tlsext_servername_arg(ctx, me)
            if !alpn.isEmpty { SSL_CTX_set_alpn_select_cb(ctx, alpnSelectCallback, me) }
            SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticketKeyCallback)
            if acmeChallenges != nil { SSL_CTX_set_client_hello_cb(ctx, tlsALPNClientHelloCallback, me) }
        }
    }

    deinit {
        for ctx in contexts { SSL_CTX_free(ctx) }
    }

    /// The context whose back-pointer an OpenSSL callback found on `ctx`.
    static func from(_ ctx: OpaquePointer?) -> TLSServerContext? {
        guard let ctx, let raw = SSL_CTX_get_ex_data(ctx, 0) else { return nil }
        return Unmanaged<TLSServerContext>.fromOpaque(raw).takeUnretainedValue()
    }

    /// The certificate index chosen for `serverName` (the default when nothing matches).
    public func certificateIndex(forServerName serverName: String?) -> Int {
        guard let serverName else { return 0 }
        return serverNames.lookup(serverName) ?? 0
    }

    // MARK: Building

    private static func makeContext(_ configuration: TLSServerConfiguration, _ source: TLSCertificateSource) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError.fromQueue("creating a TLS context") }
        do throws(TLSError) {
            try configureProtocol(ctx, configuration)
            guard SSL_CTX_use_certificate_chain_file(ctx, source.certificatePath) == 1 else {
                throw TLSError.fromQueue("loading certificate \(source.certificatePath)")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, source.keyPath, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError.fromQueue("loading key \(source.keyPath) for certificate \(source.certificatePath)")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError.fromQueue("key \(source.keyPath) does not belong to certificate \(source.certificatePath)")
            }
            return ctx
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
    }

    /// The key exchange groups a TLS listener accepts (Mozilla intermediate).
    public static let groups = "X25519:prime256v1:secp384r1"

    private static func configureProtocol(_ ctx: OpaquePointer, _ configuration: TLSServerConfiguration) throws(TLSError) {
        guard yard_SSL_CTX_set_min_proto_version(ctx, configuration.minimumVersion.openSSLValue) == 1 else {
            throw TLSError.fromQueue("setting the minimum TLS version")
        }
        guard SSL_CTX_set_cipher_list(ctx, configuration.ciphers) == 1 else {
            throw TLSError.fromQueue("cipher list '\(configuration.ciphers)'")
        }
        if let suites = configuration.ciphersuites, SSL_CTX_set_ciphersuites(ctx, suites) != 1 {
            throw TLSError.fromQueue("TLS 1.3 ciphersuites '\(suites)'")
        }
        // Key exchange groups of Mozilla's "intermediate" profile, in preference order: not
        // OpenSSL's default list, which also offers X448, secp521r1 and the ffdhe groups.
        guard yard_SSL_CTX_set1_groups_list(ctx, TLSServerContext.groups) == 1 else {
            throw TLSError.fromQueue("key exchange groups '\(TLSServerContext.groups)'")
        }
        _ = SSL_CTX_set_options(ctx, yard_SSL_OP_server_defaults)
        // Partial writes: a large response goes out record by record as the socket takes
        // it; the buffer may move (compaction) between a WANT_WRITE and its retry.
        _ = yard_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        // Read-ahead: one read(2) takes every record the kernel holds (instead of a header
        // read and a body read per record); `TLSConnection.read` drains what it buffered.
        _ = yard_SSL_CTX_set_read_ahead(ctx, 1)
        // Every certificate's context shares one session id context, so a session resumes
        // even after SNI switched the connection to another certificate's context.
        let sessionContext: [UInt8] = Array("switchyard".utf8)
        _ = SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count))
    }
}

// MARK: - Callbacks

/// SNI: switches the connection to the certificate claiming the name (before the server
/// hello, so the right chain is sent); an unknown or missing name keeps the default.
private let serverNameCallback: yard_servername_cb = { ssl, _, arg in
    guard let ssl, let arg else { return SSL_TLSEXT_ERR_OK }
    let context = Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue()
    guard let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return SSL_TLSEXT_ERR_OK }
    let index = context.certificateIndex(forServerName: String(cString: name))
    if index != 0 { _ = SSL_set_SSL_CTX(ssl, context.contexts[index]) }
    return SSL_TLSEXT_ERR_OK
}

/// ALPN: the first protocol in the server's list that the client offered. No overlap:
/// carry on without ALPN (HTTP/1.1), as most servers do, rather than fail the handshake.
private let alpnSelectCallback: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
    UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
) -> Int32 = { _, out, outLength, offered, offeredLength, arg in
    guard let out, let outLength, let offered, let arg else { return SSL_TLSEXT_ERR_NOACK }
    let context = Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue()
    let list = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
    for wanted in context.alpn {
        if let start = ALPNList.find(wanted, in: list) {
            out.pointee = offered + start
            outLength.pointee = UInt8(wanted.count)
            return SSL_TLSEXT_ERR_OK
        }
    }
    return SSL_TLSEXT_ERR_NOACK
}

// MARK: - Certificate names

/// The DNS names a certificate is for: its subjectAltName DNS entries, or its subject CN
/// when it has none (old certificates).
func certificateDNSNames(_ certificate: OpaquePointer) -> [String] {
    var names: [String] = []
    if let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) {
        let list = OpaquePointer(raw)
        for i in 0..<yard_sk_GENERAL_NAME_num(list) {
            guard let entry = yard_sk_GENERAL_NAME_value(list, i), let dns = yard_GENERAL_NAME_dns(entry),
                  let data = ASN1_STRING_get0_data(dns) else { continue }
            names.append(String(decoding: UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(dns))), as: UTF8.self))
        }
        GENERAL_NAMES_free(list)
    }
    if names.isEmpty, let subject = X509_get_subject_name(certificate) {
        let index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
        if index >= 0, let entry = X509_NAME_get_entry(subject, index), let value = X509_NAME_ENTRY_get_data(entry),
           let data = ASN1_STRING_get0_data(value) {
            names.append(String(decoding: UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(value))), as: UTF8.self))
        }
    }
    return names
}
