internal import CYardOpenSSL
import Synchronization

/// Session-ticket keys: the newest encrypts new tickets; the previous ones still decrypt
/// (so a rotation does not force every returning client into a full handshake), and a
/// ticket under an older key is renewed.
///
/// Keys are random, live only in memory, and are replaced by `rotate()`, which the
/// control plane calls on a timer. A ring outlives certificate reloads: a new
/// `TLSServerContext` built with the same ring accepts the old context's tickets.
///
/// Threading: `rotate` from any thread; `withKey…` from event loops during handshakes.
/// The mutex guards the key list; it is taken once per handshake that issues or presents
/// a ticket, never per request.
public final class TicketKeyRing: Sendable {
    /// One key: a 16-byte name (sent in the clear in the ticket), AES-256 and HMAC-SHA256 keys.
    struct Key {
        var name: [UInt8]
        var cipherKey: [UInt8]
        var hmacKey: [UInt8]

        static func random() -> Key {
            Key(name: randomBytes(16), cipherKey: randomBytes(32), hmacKey: randomBytes(32))
        }
    }

    private let keys: Mutex<[Key]>
    /// How many keys are kept, the current one included.
    public let depth: Int

    /// - Parameter previousKeysAccepted: how many rotations a ticket survives (then a
    ///   full handshake). 1 means a ticket lives one to two rotation periods.
    public init(previousKeysAccepted: Int = 1) {
        depth = 1 + max(0, previousKeysAccepted)
        keys = Mutex([Key.random()])
    }

    /// Makes a new current key; the oldest beyond `depth` is forgotten.
    public func rotate() {
        let fresh = Key.random()
        keys.withLock { keys in
            keys.insert(fresh, at: 0)
            if keys.count > depth { keys.removeLast(keys.count - depth) }
        }
    }

    /// The names of the keys held, newest first (for tests).
    public var keyNames: [[UInt8]] { keys.withLock { $0.map(\.name) } }

    /// Runs `body` with the current key.
    func withCurrentKey<R>(_ body: (Key) -> R) -> R {
        keys.withLock { body($0[0]) }
    }

    /// Runs `body` with the key named `name` and whether it is the current one; nil if
    /// no held key has that name (the ticket is too old or from another process).
    func withKey<R>(named name: UnsafeRawBufferPointer, _ body: (Key, Bool) -> R) -> R? {
        keys.withLock { keys in
            for (index, key) in keys.enumerated() where key.name.elementsEqual(name) {
                return body(key, index == 0)
            }
            return nil
        }
    }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
    // RAND_bytes fails only if the OS entropy source is unusable: no safe ticket key exists.
    precondition(ok == 1, "RAND_bytes failed: the system random source is unavailable")
    return bytes
}

// MARK: - The OpenSSL callback

/// SSL_CTX_set_tlsext_ticket_key_evp_cb: 1 = key set, 2 = key set and renew the ticket,
/// 0 = unknown key (full handshake), -1 = failure.
let ticketKeyCallback: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, OpaquePointer?, OpaquePointer?, Int32
) -> Int32 = { ssl, keyName, iv, cipherContext, macContext, encrypt in
    guard let ssl, let keyName, let iv, let context = TLSServerContext.from(SSL_get_SSL_CTX(ssl)) else { return -1 }
    let ring = context.ticketKeys
    if encrypt == 1 {
        return ring.withCurrentKey { key -> Int32 in
            guard RAND_bytes(iv, 16) == 1 else { return -1 }
            key.name.withUnsafeBufferPointer { keyName.update(from: $0.baseAddress!, count: 16) }
            return initialize(key, encrypt: true, iv: iv, cipherContext, macContext) ? 1 : -1
        }
    }
    let found = ring.withKey(named: UnsafeRawBufferPointer(start: keyName, count: 16)) { key, current -> Int32 in
        guard initialize(key, encrypt: false, iv: iv, cipherContext, macContext) else { return -1 }
        return current ? 1 : 2
    }
    return found ?? 0
}

private func initialize(_ key: TicketKeyRing.Key, encrypt: Bool, iv: UnsafeMutablePointer<UInt8>,
                        _ cipherContext: OpaquePointer?, _ macContext: OpaquePointer?) -> Bool {
    var hmacKey = key.hmacKey
    let cipherOK = key.cipherKey.withUnsafeBufferPointer { aes in
        encrypt ? EVP_EncryptInit_ex(cipherContext, EVP_aes_256_cbc(), nil, aes.baseAddress, iv)
            : EVP_DecryptInit_ex(cipherContext, EVP_aes_256_cbc(), nil, aes.baseAddress, iv)
    }
    let macOK = hmacKey.withUnsafeMutableBufferPointer { yard_ticket_hmac_init(macContext, $0.baseAddress, 32) }
    return cipherOK == 1 && macOK == 1
}
