// HMAC-SHA256 through OpenSSL, for the control plane (the sticky-canary cookie's key signs
// its 1000 values once per key, never per request).

internal import CYardOpenSSL

/// HMAC-SHA256 and the random bytes of a fresh key. Threading: stateless; any thread.
public enum HMACSHA256 {
    /// The 32-byte MAC of `message` under `key`.
    public static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let done = key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress, m.count, o.baseAddress, &length)
                }
            }
        }
        // HMAC fails only without SHA-256 in the OpenSSL build, which TLS needs anyway.
        precondition(done != nil && length == 32, "HMAC-SHA256 is unavailable in this OpenSSL")
        return out
    }

    /// `count` bytes from OpenSSL's random source (a new key).
    public static func randomKey(_ count: Int = 32) -> [UInt8] { randomBytes(count) }
}
