#if canImport(Glibc)
import Glibc
#endif
internal import CYardOpenSSL

/// A private key: an ACME account key (ECDSA P-256, signs requests, ES256) or a
/// certificate's key (P-256 or RSA 2048; its public half goes in the CSR).
///
/// OpenSSL stays behind this type (`internal import`). Threading: immutable after init;
/// an `EVP_PKEY` may be used for signing from any thread (`@unchecked Sendable`).
public final class ACMEPrivateKey: @unchecked Sendable {
    let key: OpaquePointer

    private init(key: OpaquePointer) { self.key = key }

    deinit { EVP_PKEY_free(key) }

    /// A new random P-256 key.
    public static func generateP256() throws(ACMEError) -> ACMEPrivateKey {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw cryptoError("creating a key context") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_CTX_set_group_name(context, "P-256") == 1,
              EVP_PKEY_generate(context, &key) == 1, let key else { throw cryptoError("generating a P-256 key") }
        return ACMEPrivateKey(key: key)
    }

    /// A new random RSA 2048 key (for a certificate: clients that cannot do ECDSA).
    public static func generateRSA2048() throws(ACMEError) -> ACMEPrivateKey {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "RSA", nil) else { throw cryptoError("creating a key context") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(context, 2048) == 1,
              EVP_PKEY_generate(context, &key) == 1, let key else { throw cryptoError("generating an RSA 2048 key") }
        return ACMEPrivateKey(key: key)
    }

    /// A new certificate key of `type`.
    public static func generate(_ type: ACMEKeyType) throws(ACMEError) -> ACMEPrivateKey {
        switch type {
        case .ecdsaP256: return try generateP256()
        case .rsa2048: return try generateRSA2048()
        }
    }

    /// A P-256 key from PEM (PKCS#8 or SEC 1, unencrypted), e.g. an account key kept on disk.
    public convenience init(pem: String) throws(ACMEError) {
        ERR_clear_error()
        let bytes = Array(pem.utf8)
        guard bytes.count < 1 << 20 else { throw ACMEError.badRequest("the key PEM is larger than 1 MiB") }
        let loaded: OpaquePointer? = bytes.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let loaded else { throw cryptoError("reading a PEM private key") }
        self.init(key: loaded)
        var name = [CChar](repeating: 0, count: 64)
        var length = 0
        let group = EVP_PKEY_get_group_name(loaded, &name, name.count, &length) == 1
            ? String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        guard EVP_PKEY_get_base_id(loaded) == EVP_PKEY_EC, group == "prime256v1" || group == "P-256" else {
            throw ACMEError.badRequest("the key is not an ECDSA P-256 key (only P-256 is supported)")
        }
    }

    /// The key as unencrypted PKCS#8 PEM (write it with mode 0600).
    public func pem() throws(ACMEError) -> String {
        ERR_clear_error()
        guard let bio = BIO_new(BIO_s_mem()) else { throw cryptoError("creating a memory BIO") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { throw cryptoError("writing the key as PEM") }
        return String(decoding: readBIO(bio), as: UTF8.self)
    }

    /// The public key as a JWK.
    public func publicJWK() throws(ACMEError) -> ECPublicJWK {
        ERR_clear_error()
        var point = [UInt8](repeating: 0, count: 65)
        var length = 0
        guard EVP_PKEY_get_octet_string_param(key, "encoded-pub-key", &point, point.count, &length) == 1,
              let jwk = ECPublicJWK(uncompressedPoint: Array(point.prefix(length))) else {
            throw cryptoError("reading the public key")
        }
        return jwk
    }

    /// An ES256 signature of `message`: SHA-256, then ECDSA, as R || S (64 bytes).
    func signES256(_ message: [UInt8]) throws(ACMEError) -> [UInt8] {
        ERR_clear_error()
        guard let context = EVP_MD_CTX_new() else { throw cryptoError("creating a digest context") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1 else { throw cryptoError("starting an ES256 signature") }
        var length = 0
        guard EVP_DigestSign(context, nil, &length, message, message.count) == 1, length > 0, length < 256 else {
            throw cryptoError("sizing an ES256 signature")
        }
        var der = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &der, &length, message, message.count) == 1 else { throw cryptoError("signing") }
        guard let raw = ECDSASignature.raw(fromDER: Array(der.prefix(length))) else {
            throw ACMEError.crypto(operation: "signing", reason: "OpenSSL returned a signature that is not DER ECDSA")
        }
        return raw
    }

    /// Whether `signature` (R || S) is this key's ES256 signature of `message` (tests).
    func verifyES256(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard let der = ECDSASignature.der(fromRaw: signature), let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context); ERR_clear_error() }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return EVP_DigestVerify(context, der, der.count, message, message.count) == 1
    }
}

/// The kind of key a certificate gets (`acme.key_type`).
public enum ACMEKeyType: String, Sendable, CaseIterable {
    case ecdsaP256 = "ecdsa-p256"
    case rsa2048 = "rsa2048"
}

/// SHA-256 through OpenSSL. Threading: stateless.
enum Digest {
    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        // EVP_Digest with SHA-256 fails only without memory; the all-zero result would then
        // make every signature check fail, never pass.
        _ = EVP_Digest(bytes, bytes.count, &out, &length, EVP_sha256(), nil)
        return out
    }
}

/// A certificate signing request (PKCS#10, DER) for `names`: subject CN the first name
/// when it fits (64 characters), every name a DNS subjectAltName, signed with `key`
/// (SHA-256). RFC 8555 §7.4 wants the DER, base64url-encoded, in `finalize`.
///
/// Names must already be valid (`ACMEIdentifiers.validated`): they go into an OpenSSL
/// config string, where a comma would start another entry.
func certificateSigningRequest(names: [String], key: ACMEPrivateKey) throws(ACMEError) -> [UInt8] {
    ERR_clear_error()
    guard let first = names.first else { throw ACMEError.badRequest("a certificate needs at least one name") }
    guard let request = X509_REQ_new() else { throw cryptoError("creating a CSR") }
    defer { X509_REQ_free(request) }
    guard X509_REQ_set_version(request, 0) == 1 else { throw cryptoError("setting the CSR version") }
    if first.utf8.count <= 64, let subject = X509_REQ_get_subject_name(request) {
        guard X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, first, -1, -1, 0) == 1 else {
            throw cryptoError("setting the CSR subject")
        }
    }
    let altNames = names.map { "DNS:\($0)" }.joined(separator: ",")
    guard let altNameExtension = X509V3_EXT_conf_nid(nil, nil, NID_subject_alt_name, altNames) else {
        throw cryptoError("building subjectAltName \(altNames)")
    }
    defer { X509_EXTENSION_free(altNameExtension) }
    guard let extensions = OPENSSL_sk_new_null() else { throw cryptoError("allocating the CSR extensions") }
    defer { OPENSSL_sk_free(extensions) }
    guard OPENSSL_sk_push(extensions, UnsafeRawPointer(altNameExtension)) > 0,
          X509_REQ_add_extensions(request, extensions) == 1 else { throw cryptoError("adding subjectAltName to the CSR") }
    guard X509_REQ_set_pubkey(request, key.key) == 1 else { throw cryptoError("setting the CSR key") }
    guard X509_REQ_sign(request, key.key, EVP_sha256()) > 0 else { throw cryptoError("signing the CSR") }
    let length = i2d_X509_REQ(request, nil)
    guard length > 0 else { throw cryptoError("encoding the CSR") }
    var der = [UInt8](repeating: 0, count: Int(length))
    let written = der.withUnsafeMutableBufferPointer { buffer -> Int32 in
        var cursor = buffer.baseAddress
        return i2d_X509_REQ(request, &cursor)
    }
    guard written == length else { throw cryptoError("encoding the CSR") }
    return der
}

/// Everything a memory BIO holds.
func readBIO(_ bio: OpaquePointer) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = BIO_read(bio, &chunk, Int32(chunk.count))
        if count <= 0 { break }
        out.append(contentsOf: chunk.prefix(Int(count)))
    }
    return out
}

/// A crypto error naming `operation`, with OpenSSL's queued reasons (the queue is emptied).
func cryptoError(_ operation: String) -> ACMEError {
    ACMEError.crypto(operation: operation, reason: openSSLErrors())
}

/// Every reason OpenSSL queued on this thread, emptying the queue.
func openSSLErrors() -> String {
    var reasons: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        let reason = ERR_reason_error_string(code).map { String(cString: $0) } ?? "OpenSSL error \(code)"
        if !reasons.contains(reason) { reasons.append(reason) }
    }
    return reasons.isEmpty ? "unknown OpenSSL failure" : reasons.joined(separator: "; ")
}
