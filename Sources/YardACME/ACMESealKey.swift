#if canImport(Glibc)
import Glibc
#endif
import Foundation
internal import CYardOpenSSL

/// The key that seals certificate private keys before they go into a shared state store
/// (etcd, Consul, a file): AES-256-GCM, a random 96-bit nonce per sealing, the record's
/// name as associated data (a sealed key cannot be moved to another name's record).
///
/// It lives in a file outside the store (`acme.store_key_file`): someone who can read
/// the store but not that file learns nothing. Sealed form: `SYA1` ‖ nonce ‖ ciphertext ‖
/// tag. Threading: a value.
public struct ACMESealKey: Sendable {
    private let key: [UInt8]
    static let magic = Array("SYA1".utf8)

    /// `text`: the file's content, 32 bytes as 64 hex digits or as (url-safe) base64.
    /// `openssl rand -hex 32 > key` makes one.
    public init(text: String) throws(ACMEError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var bytes: [UInt8]?
        if trimmed.utf8.count == 64, trimmed.allSatisfy(\.isHexDigit) {
            bytes = stride(from: 0, to: 64, by: 2).compactMap { offset -> UInt8? in
                let start = trimmed.index(trimmed.startIndex, offsetBy: offset)
                return UInt8(trimmed[start..<trimmed.index(start, offsetBy: 2)], radix: 16)
            }
        } else {
            let normalized = trimmed.replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_")
            bytes = Base64URL.decode(normalized)
        }
        guard let bytes, bytes.count == 32 else {
            throw ACMEError.badRequest("the store key is not 32 bytes as 64 hex digits or base64 (make one with 'openssl rand -hex 32')")
        }
        key = bytes
    }

    public func seal(_ plaintext: [UInt8], name: String) throws(ACMEError) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: 12)
        guard RAND_bytes(&nonce, 12) == 1 else { throw cryptoError("drawing a nonce") }
        let (ciphertext, tag) = try crypt(encrypt: true, plaintext, nonce: nonce, aad: Array(name.utf8), tag: nil)
        return Self.magic + nonce + ciphertext + tag
    }

    /// The plaintext, or an error when the record was sealed under another key or name,
    /// or changed.
    public func open(_ sealed: [UInt8], name: String) throws(ACMEError) -> [UInt8] {
        guard sealed.count >= 4 + 12 + 16, Array(sealed.prefix(4)) == Self.magic else {
            throw ACMEError.badRequest("the stored record for \(name) is not sealed by switchyard")
        }
        let nonce = Array(sealed[4..<16])
        let tag = Array(sealed.suffix(16))
        let ciphertext = Array(sealed[16..<(sealed.count - 16)])
        return try crypt(encrypt: false, ciphertext, nonce: nonce, aad: Array(name.utf8), tag: tag).output
    }

    private func crypt(encrypt: Bool, _ input: [UInt8], nonce: [UInt8], aad: [UInt8], tag: [UInt8]?) throws(ACMEError) -> (output: [UInt8], tag: [UInt8]) {
        ERR_clear_error()
        guard let context = EVP_CIPHER_CTX_new() else { throw cryptoError("creating a cipher context") }
        defer { EVP_CIPHER_CTX_free(context) }
        let initialize = encrypt ? EVP_EncryptInit_ex : EVP_DecryptInit_ex
        guard initialize(context, EVP_aes_256_gcm(), nil, key, nonce) == 1 else { throw cryptoError("starting AES-256-GCM") }
        var length: Int32 = 0
        let update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate
        if !aad.isEmpty, update(context, nil, &length, aad, Int32(aad.count)) != 1 { throw cryptoError("AES-256-GCM associated data") }
        var output = [UInt8](repeating: 0, count: input.count + 16)
        guard update(context, &output, &length, input, Int32(input.count)) == 1 else { throw cryptoError("AES-256-GCM") }
        var total = Int(length)
        var tagBytes = tag ?? [UInt8](repeating: 0, count: 16)
        if !encrypt, EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, 16, &tagBytes) != 1 { throw cryptoError("setting the GCM tag") }
        let finish = encrypt ? EVP_EncryptFinal_ex : EVP_DecryptFinal_ex
        let finished = output.withUnsafeMutableBufferPointer { buffer in finish(context, buffer.baseAddress! + total, &length) }
        guard finished == 1 else {
            ERR_clear_error()
            throw ACMEError.badRequest("the stored record does not open with this store key (another key, or it was changed)")
        }
        total += Int(length)
        if encrypt, EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, 16, &tagBytes) != 1 { throw cryptoError("reading the GCM tag") }
        return (Array(output.prefix(total)), tagBytes)
    }
}
