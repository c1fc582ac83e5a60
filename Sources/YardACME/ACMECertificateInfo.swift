#if canImport(Glibc)
import Glibc
#endif
internal import CYardOpenSSL

/// What the certificate manager needs to know about an issued certificate: its validity,
/// its issuer, its names, and its RFC 9773 (ARI) identifier.
///
/// Read from the leaf (the first PEM block of a chain). Threading: a value.
public struct ACMECertificateInfo: Sendable, Equatable {
    /// Unix seconds.
    public var notBefore: Int64
    public var notAfter: Int64
    /// The issuer's common name (or its whole name when it has none).
    public var issuer: String
    /// DNS subjectAltNames.
    public var names: [String]
    /// RFC 9773 §4.1 `certID`: base64url(authorityKeyIdentifier) "." base64url(serial);
    /// nil when the certificate has no authority key identifier.
    public var renewalID: String?

    public init(notBefore: Int64, notAfter: Int64, issuer: String, names: [String], renewalID: String?) {
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.issuer = issuer
        self.names = names
        self.renewalID = renewalID
    }

    /// Reads the leaf of a PEM chain.
    public init(pem: String) throws(ACMEError) {
        ERR_clear_error()
        let bytes = Array(pem.utf8)
        guard bytes.count < 1 << 20 else { throw ACMEError.badRequest("the certificate PEM is larger than 1 MiB") }
        let loaded: OpaquePointer? = bytes.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_X509(bio, nil, nil, nil)
        }
        guard let certificate = loaded else { throw cryptoError("reading a PEM certificate") }
        defer { X509_free(certificate) }
        guard let notBefore = unixTime(X509_get0_notBefore(certificate)), let notAfter = unixTime(X509_get0_notAfter(certificate)) else {
            throw ACMEError.crypto(operation: "reading the certificate's validity", reason: "a time OpenSSL cannot convert")
        }
        self.notBefore = notBefore
        self.notAfter = notAfter
        issuer = X509_get_issuer_name(certificate).map(commonName) ?? ""
        names = dnsNames(certificate)
        renewalID = nil
        if let keyID = X509_get0_authority_key_id(certificate), let serial = X509_get0_serialNumber(certificate) {
            renewalID = Base64URL.encode(asn1Bytes(keyID)) + "." + Base64URL.encode(serialContent(asn1Bytes(serial)))
        }
    }

    /// When RFC 8555 deployments conventionally renew: two thirds into the lifetime
    /// (a 90-day certificate at 60 days, a 6-day one at 4).
    public var twoThirds: Int64 { notBefore + (notAfter - notBefore) / 3 * 2 }
}

/// The DER content octets of a serial number: the magnitude, with a leading zero when
/// its top bit is set (a positive INTEGER), as RFC 9773 §4.1 hashes it.
func serialContent(_ magnitude: [UInt8]) -> [UInt8] {
    if magnitude.isEmpty { return [0] }
    return magnitude[0] & 0x80 != 0 ? [0] + magnitude : magnitude
}

private func unixTime(_ time: UnsafePointer<ASN1_TIME>?) -> Int64? {
    guard let time else { return nil }
    var parts = tm()
    guard ASN1_TIME_to_tm(time, &parts) == 1 else { return nil }
    return Int64(timegm(&parts))
}

private func asn1Bytes(_ string: UnsafePointer<ASN1_STRING>) -> [UInt8] {
    guard let data = ASN1_STRING_get0_data(string) else { return [] }
    let length = Int(ASN1_STRING_length(string))
    return length > 0 ? Array(UnsafeBufferPointer(start: data, count: length)) : []
}

private func commonName(_ name: OpaquePointer) -> String {
    let index = X509_NAME_get_index_by_NID(name, NID_commonName, -1)
    guard index >= 0, let entry = X509_NAME_get_entry(name, index), let value = X509_NAME_ENTRY_get_data(entry) else { return "" }
    return String(decoding: asn1Bytes(value), as: UTF8.self)
}

private func dnsNames(_ certificate: OpaquePointer) -> [String] {
    var names: [String] = []
    guard let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) else { return names }
    let list = OpaquePointer(raw)
    for i in 0..<yard_sk_GENERAL_NAME_num(list) {
        guard let entry = yard_sk_GENERAL_NAME_value(list, i), let dns = yard_GENERAL_NAME_dns(entry) else { continue }
        names.append(String(decoding: asn1Bytes(dns), as: UTF8.self))
    }
    GENERAL_NAMES_free(list)
    return names
}

// MARK: - Self-signed certificates

/// Self-signed certificates the proxy makes for itself: the default certificate a TLS
/// listener serves until the CA has issued one, and the TLS-ALPN-01 challenge certificate
/// (RFC 8737 §3: the name as its only subjectAltName, and the critical id-pe-acmeIdentifier
/// extension holding SHA-256 of the key authorization). Threading: stateless.
public enum ACMESelfSigned {
    /// RFC 8737 §6.1.
    static let acmeIdentifierOID = "1.3.6.1.5.5.7.1.31"

    /// A fresh P-256 key and a certificate for `names`, valid from an hour ago for
    /// `validitySeconds`; with `keyAuthorization`, the TLS-ALPN-01 challenge extension.
    public static func make(names: [String], validitySeconds: Int = 365 * 86_400,
                            keyAuthorization: String? = nil) throws(ACMEError) -> (certificatePEM: String, keyPEM: String) {
        let names = try ACMEIdentifiers.validated(names)
        let key = try ACMEPrivateKey.generateP256()
        ERR_clear_error()
        guard let certificate = X509_new() else { throw cryptoError("creating a certificate") }
        defer { X509_free(certificate) }
        var serial: UInt64 = 0
        guard withUnsafeMutableBytes(of: &serial, { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }) == 1,
              X509_set_version(certificate, 2) == 1,
              ASN1_INTEGER_set_uint64(X509_get_serialNumber(certificate), serial >> 1) == 1,
              X509_gmtime_adj(X509_getm_notBefore(certificate), -3600) != nil,
              X509_gmtime_adj(X509_getm_notAfter(certificate), validitySeconds) != nil,
              let subject = X509_get_subject_name(certificate),
              X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, String(names[0].prefix(64)), -1, -1, 0) == 1,
              X509_set_issuer_name(certificate, subject) == 1,
              X509_set_pubkey(certificate, key.key) == 1 else { throw cryptoError("building a self-signed certificate") }
        let altNames = names.map { "DNS:\($0)" }.joined(separator: ",")
        guard let altNameExtension = X509V3_EXT_conf_nid(nil, nil, NID_subject_alt_name, altNames) else {
            throw cryptoError("building subjectAltName \(altNames)")
        }
        defer { X509_EXTENSION_free(altNameExtension) }
        guard X509_add_ext(certificate, altNameExtension, -1) == 1 else { throw cryptoError("adding subjectAltName") }
        if let keyAuthorization {
            try addACMEIdentifier(certificate, digest: Digest.sha256(Array(keyAuthorization.utf8)))
        }
        guard X509_sign(certificate, key.key, EVP_sha256()) > 0 else { throw cryptoError("signing a self-signed certificate") }
        guard let bio = BIO_new(BIO_s_mem()) else { throw cryptoError("creating a memory BIO") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, certificate) == 1 else { throw cryptoError("writing a certificate as PEM") }
        return (String(decoding: readBIO(bio), as: UTF8.self), try key.pem())
    }

    /// The critical acmeIdentifier extension: its value is the DER OCTET STRING of the
    /// 32-byte digest (so the extension's own OCTET STRING wraps `04 20 digest`).
    private static func addACMEIdentifier(_ certificate: OpaquePointer, digest: [UInt8]) throws(ACMEError) {
        guard let object = OBJ_txt2obj(acmeIdentifierOID, 1) else { throw cryptoError("the acmeIdentifier OID") }
        defer { ASN1_OBJECT_free(object) }
        guard let value = ASN1_OCTET_STRING_new() else { throw cryptoError("allocating the acmeIdentifier value") }
        defer { ASN1_OCTET_STRING_free(value) }
        let der: [UInt8] = [0x04, UInt8(digest.count)] + digest
        guard ASN1_OCTET_STRING_set(value, der, Int32(der.count)) == 1,
              let ext = X509_EXTENSION_create_by_OBJ(nil, object, 1, value) else { throw cryptoError("building the acmeIdentifier extension") }
        defer { X509_EXTENSION_free(ext) }
        guard X509_add_ext(certificate, ext, -1) == 1 else { throw cryptoError("adding the acmeIdentifier extension") }
    }
}
