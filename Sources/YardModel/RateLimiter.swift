// rate_limit: a token bucket per client, exact across every event loop, in a fixed-size
// table of atomics (no lock, no allocation per request, memory bounded whatever the
// number of clients).

import Synchronization

/// `rate_limit` as configured.
public struct RateLimit: Sendable, Equatable {
    /// Tokens per second.
    public var rate: Double
    /// Requests a client may send at once (the bucket's size).
    public var burst: Int
    /// The client is this header's value (say an API key); nil: the client address (as
    /// `trusted_proxies` decides). Without the header, the address is the key.
    public var header: String?
    /// Slots in the table (a power of two); 8 bytes each.
    public var tableSize: Int

    public init(rate: Double, burst: Int, header: String? = nil, tableSize: Int = 65_536) {
        self.rate = rate
        self.burst = burst
        self.header = header
        self.tableSize = tableSize
    }
}

/// The buckets of one `rate_limit` middleware: GCRA (the "virtual scheduling" form of a
/// token bucket), one 64-bit word per slot, `tag:16 | theoretical arrival time:48` (µs
/// of the monotonic clock, which starts at boot: 8.9 years of uptime).
///
/// A key hashes to two slots. It uses the one carrying its tag; else it claims one whose
/// bucket is full again (its arrival time has passed: forgetting it loses nothing); else,
/// both held by busy keys, it shares the bucket of the one that frees first. An attacker
/// spraying addresses therefore costs no memory, cannot evict a client that is being
/// limited, and is itself limited to about `slots × rate` in total; the price is that a
/// client whose two slots are both held by busy keys shares their bucket.
///
/// Threading: any event loop; every update is a compare-and-swap on one slot.
/// `@unchecked Sendable`: `slots` is allocated once in `init`, freed in `deinit`, and
/// every access in between goes through its atomics.
public final class RateLimiter: @unchecked Sendable {
    public let settings: RateLimit
    /// Per-table random seed for the key hash, so a client cannot aim at a slot.
    public let seed: UInt64
    /// Microseconds per token.
    let interval: Int64
    /// How far ahead of now the arrival time may be and still admit (burst - 1 tokens).
    let tolerance: Int64
    let mask: Int
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>

    static let timeMask: UInt64 = (1 << 48) - 1

    public init(_ settings: RateLimit) {
        self.settings = settings
        self.seed = UInt64.random(in: 1...UInt64.max)
        let interval = max(Int64((1_000_000 / max(settings.rate, 0.000_001)).rounded()), 1)
        self.interval = interval
        self.tolerance = interval &* Int64(max(settings.burst - 1, 0))
        let size = max(settings.tableSize, 2)
        self.mask = size - 1
        slots = .allocate(capacity: size)
        for i in 0..<size { (slots + i).initialize(to: Atomic<UInt64>(0)) }
    }

    deinit {
        slots.deinitialize(count: mask + 1)
        slots.deallocate()
    }

    /// Takes a token for the key hashed to `hash` at `nowMicros`: 0 when admitted, else how
    /// many microseconds until the next token.
    public func admit(hash: UInt64, nowMicros: Int64) -> Int64 {
        let now = min(max(nowMicros, 0), Int64(Self.timeMask))
        var tag = UInt64(truncatingIfNeeded: hash >> 48)
        if tag == 0 { tag = 1 }
        let first = Int(truncatingIfNeeded: hash) & mask
        var second = Int(truncatingIfNeeded: hash >> 24) & mask
        if second == first { second = first ^ 1 }
        for _ in 0..<8 {
            let a = slots[first].load(ordering: .relaxed)
            let b = slots[second].load(ordering: .relaxed)
            let slot: Int, old: UInt64, newTag: UInt64
            if a >> 48 == tag {
                (slot, old, newTag) = (first, a, tag)
            } else if b >> 48 == tag {
                (slot, old, newTag) = (second, b, tag)
            } else if Int64(a & Self.timeMask) <= now {
                (slot, old, newTag) = (first, a, tag)
            } else if Int64(b & Self.timeMask) <= now {
                (slot, old, newTag) = (second, b, tag)
            } else {
                // Both busy with other keys: share the one that frees first.
                (slot, old) = a & Self.timeMask <= b & Self.timeMask ? (first, a) : (second, b)
                newTag = old >> 48
            }
            let arrival = newTag == old >> 48 ? max(Int64(old & Self.timeMask), now) : now
            if arrival - now > tolerance { return arrival - now - tolerance }
            let next = UInt64(min(arrival &+ interval, Int64(Self.timeMask)))
            if slots[slot].compareExchange(expected: old, desired: newTag << 48 | next, ordering: .relaxed).exchanged {
                return 0
            }
        }
        // Lost the race eight times in a row: the slot is hot; admitting keeps the client's
        // request moving and the next call counts again.
        return 0
    }

    /// Whole seconds to put in Retry-After for a wait of `micros` (at least 1).
    public static func retryAfterSeconds(_ micros: Int64) -> Int {
        Int(max((micros + 999_999) / 1_000_000, 1))
    }
}

/// One table per `rate_limit` middleware name, kept across routing-table rebuilds so a
/// reload (or discovery change) does not hand every client a fresh bucket.
///
/// Threading: any thread; the lock is taken only when a routing table is built.
public final class RateLimiterRegistry: Sendable {
    public static let shared = RateLimiterRegistry()
    private let tables = Mutex<[String: RateLimiter]>([:])

    public func limiter(name: String, settings: RateLimit) -> RateLimiter {
        tables.withLock { tables in
            if let existing = tables[name], existing.settings == settings { return existing }
            let made = RateLimiter(settings)
            tables[name] = made
            return made
        }
    }
}
