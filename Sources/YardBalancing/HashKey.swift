// The request-key and endpoint-key hash every replica must agree on.

/// A stable 64-bit hash of request keys (cookie, header, client address) and endpoint keys:
/// FNV-1a 64 over the bytes, then Murmur3's `fmix64` finalizer.
///
/// Threading: pure functions; call from anywhere.
///
/// Stability is the requirement: several proxy replicas, on different machines and builds,
/// must send the same key to the same endpoint, so this must never be Swift's `Hasher`
/// (randomly seeded per process). The definition is fixed and written down so that other tools
/// can reproduce it:
///
/// ```
/// h = 0xcbf29ce484222325 ^ fmix64(seed)        // FNV offset basis; fmix64(0) == 0
/// for each byte b: h = (h ^ b) &* 0x100000001b3   // FNV-1a 64
/// return fmix64(h)
/// fmix64(k): k ^= k >> 33; k &*= 0xff51afd7ed558ccd; k ^= k >> 33;
///            k &*= 0xc4ceb9fe1a85ec53; k ^= k >> 33
/// ```
///
/// Why the finalizer: in FNV-1a the last bytes reach the high bits through a single multiply
/// by `2^40 + 0x1b3`, so `user-1` and `user-2` differ only in bits 0…~20 and 40…~50; a table
/// indexed by the high bits, or by a small modulus, would put them together. `fmix64`
/// avalanches every input bit into every output bit. FNV is byte-at-a-time (about 1 ns per
/// byte), which suits the short keys a proxy hashes; it is not meant for bulk data.
public enum HashKey {
    static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// The hash of raw bytes, for keys read straight out of a request buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        mix(fnv1a(bytes, basis: offsetBasis ^ mix(seed)))
    }

    /// The hash of a string's UTF-8 bytes: endpoint keys (`10.0.0.7:8080`), configured keys.
    public static func hash(_ string: String, seed: UInt64 = 0) -> UInt64 {
        let basis = offsetBasis ^ mix(seed)
        if let h = string.utf8.withContiguousStorageIfAvailable({ fnv1a(UnsafeRawBufferPointer($0), basis: basis) }) {
            return mix(h)
        }
        var h = basis
        for byte in string.utf8 { h = (h ^ UInt64(byte)) &* prime }
        return mix(h)
    }

    /// Murmur3's `fmix64`: a bijection on 64 bits with full avalanche; `mix(0) == 0`.
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var k = value
        k ^= k &>> 33
        k &*= 0xFF51_AFD7_ED55_8CCD
        k ^= k &>> 33
        k &*= 0xC4CE_B9FE_1A85_EC53
        k ^= k &>> 33
        return k
    }

    /// Plain FNV-1a 64 from `basis` (exposed to the tests, which check the published vectors).
    static func fnv1a(_ bytes: UnsafeRawBufferPointer, basis: UInt64 = offsetBasis) -> UInt64 {
        var h = basis
        for byte in bytes { h = (h ^ UInt64(byte)) &* prime }
        return h
    }
}
