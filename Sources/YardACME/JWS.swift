/// The public half of an ACME account key as a JWK (RFC 7517), P-256 only.
///
/// `json` is the RFC 7638 §3.2 canonical form (required members, sorted, no whitespace):
/// the same bytes serve as the `jwk` header member and as the thumbprint's input, so the
/// CA and this client hash identical text. Threading: a value.
public struct ECPublicJWK: Sendable, Equatable {
    /// The affine coordinates, 32 bytes each, big-endian.
    public let x: [UInt8]
    public let y: [UInt8]

    public init?(x: [UInt8], y: [UInt8]) {
        guard x.count == 32, y.count == 32 else { return nil }
        self.x = x
        self.y = y
    }

    /// From an uncompressed SEC 1 point (0x04 || X || Y), as OpenSSL encodes it.
    init?(uncompressedPoint point: [UInt8]) {
        guard point.count == 65, point[0] == 0x04 else { return nil }
        self.init(x: Array(point[1...32]), y: Array(point[33...64]))
    }

    public var json: String {
        JSONText.object([("crv", "P-256"), ("kty", "EC"), ("x", Base64URL.encode(x)), ("y", Base64URL.encode(y))])
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256(canonical JSON)).
    public var thumbprint: String { Base64URL.encode(Digest.sha256(Array(json.utf8))) }

    /// The HTTP-01 (and TLS-ALPN-01) key authorization for a challenge token
    /// (RFC 8555 §8.1): `token.thumbprint`.
    public func keyAuthorization(token: String) -> String { "\(token).\(thumbprint)" }
}

/// Flattened JWS JSON serialization (RFC 7515 §7.2.2) as ACME requests use it
/// (RFC 8555 §6.2): ES256, the key as `jwk` (account creation) or `kid` (the account URL,
/// every later request), a `nonce` and the request `url` in the protected header.
///
/// Pure: signing is passed in, so encoding is tested without a key. Threading: stateless.
enum JWS {
    enum Signer: Equatable {
        case jwk(ECPublicJWK)
        case kid(String)
    }

    static func protectedHeader(signer: Signer, nonce: String, url: String) -> String {
        var members: [(String, String)] = [("alg", JSONText.string("ES256"))]
        switch signer {
        case .jwk(let jwk): members.append(("jwk", jwk.json))
        case .kid(let kid): members.append(("kid", JSONText.string(kid)))
        }
        members.append(("nonce", JSONText.string(nonce)))
        members.append(("url", JSONText.string(url)))
        return JSONText.object(raw: members)
    }

    /// The request body. `payload` nil is POST-as-GET (an empty payload, RFC 8555 §6.3);
    /// `sign` turns the signing input into the raw 64-byte R || S signature.
    static func flattened(protectedHeader: String, payload: String?,
                          sign: ([UInt8]) throws(ACMEError) -> [UInt8]) throws(ACMEError) -> String {
        let protected64 = Base64URL.encode(protectedHeader)
        let payload64 = payload.map { Base64URL.encode($0) } ?? ""
        let signature = try sign(Array("\(protected64).\(payload64)".utf8))
        return JSONText.object([("protected", protected64), ("payload", payload64), ("signature", Base64URL.encode(signature))])
    }
}

/// ECDSA signatures between OpenSSL's DER (`SEQUENCE { INTEGER r, INTEGER s }`) and JWS's
/// fixed-size R || S (RFC 7518 §3.4). Pure. Threading: stateless.
enum ECDSASignature {
    /// R || S, each left-padded to `size` bytes; nil for anything that is not a well-formed
    /// DER signature whose integers fit.
    static func raw(fromDER der: [UInt8], size: Int = 32) -> [UInt8]? {
        var index = 0
        func length() -> Int? {
            guard index < der.count else { return nil }
            let first = der[index]
            index += 1
            if first < 0x80 { return Int(first) }
            guard first == 0x81, index < der.count else { return nil }   // ECDSA on P-256/384: at most 255
            defer { index += 1 }
            return Int(der[index])
        }
        func integer() -> [UInt8]? {
            guard index < der.count, der[index] == 0x02 else { return nil }
            index += 1
            guard let count = length(), count > 0, count <= der.count - index else { return nil }
            var bytes = Array(der[index..<(index + count)])
            index += count
            while bytes.count > 1, bytes[0] == 0 { bytes.removeFirst() }
            guard bytes.count <= size else { return nil }
            return [UInt8](repeating: 0, count: size - bytes.count) + bytes
        }
        guard der.first == 0x30 else { return nil }
        index = 1
        guard let total = length(), total == der.count - index,
              let r = integer(), let s = integer(), index == der.count else { return nil }
        return r + s
    }

    /// The DER form of R || S (for verifying with OpenSSL in tests).
    static func der(fromRaw raw: [UInt8]) -> [UInt8]? {
        // Up to P-384's 48-byte halves: every DER length below then fits the short form.
        guard raw.count % 2 == 0, !raw.isEmpty, raw.count <= 96 else { return nil }
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var trimmed = Array(bytes.drop { $0 == 0 })
            if trimmed.isEmpty { trimmed = [0] }
            if trimmed[0] & 0x80 != 0 { trimmed.insert(0, at: 0) }
            return [0x02, UInt8(trimmed.count)] + trimmed
        }
        let half = raw.count / 2
        let body = integer(raw[..<half]) + integer(raw[half...])
        return [0x30, UInt8(body.count)] + body
    }
}
