#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import YardIO

// `limits.max_connections_per_client`: how many connections one source address may hold
// open across the whole process (every worker), without a lock and in bounded memory.

/// Open client connections per source address, counted in a fixed table shared by every
/// worker.
///
/// A client is an IPv4 address or an IPv6 /64 (an IPv4-mapped IPv6 address is its IPv4
/// address).
///
/// A count-min sketch: each client counts in one bucket of each of two
/// independent halves, and its count is the smaller of the two. That is never lower than
/// its real count, so the limit is never exceeded; two addresses that share both buckets can
/// be refused a little early, which with 2 x 8192 buckets takes tens of thousands of
/// distinct busy clients. The table is 64 KiB whatever the number of clients, and a
/// connection costs two atomic adds to enter and two to leave.
///
/// Threading: any worker, concurrently; relaxed atomics (the counts order nothing else).
final class PerClientLimit: Sendable {
    let limit: UInt32
    private let counts: InlineArray<16384, Atomic<UInt32>>
    private static let half = 8192

    init(limit: Int) {
        self.limit = UInt32(clamping: limit)
        self.counts = InlineArray { _ in Atomic<UInt32>(0) }
    }

    /// Counts a new connection from `peer`'s address; nil (and nothing counted) when the
    /// address already holds `limit` connections. The ticket uncounts it when released.
    func enter(_ peer: SocketAddress) -> PerClientTicket? {
        // FNV-1a over the client's key: an IPv4 address (4 bytes at offset 4), an IPv6 /64
        // (the first 8 of the 16 bytes at offset 8: one host usually holds a whole /64 and
        // may pick a new address per connection), or the IPv4 address in an IPv4-mapped one.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        withUnsafeBytes(of: peer.storage) { raw in
            var range = 4..<8
            if peer.family == AF_INET6 {
                let mapped = (8..<18).allSatisfy { raw[$0] == 0 } && raw[18] == 0xff && raw[19] == 0xff
                range = mapped ? 20..<24 : 8..<16
            }
            for i in range { hash = (hash ^ UInt64(raw[i])) &* 0x100_0000_01b3 }
        }
        hash ^= hash >> 29
        let first = Int(truncatingIfNeeded: hash) & (Self.half - 1)
        let second = Self.half + Int(truncatingIfNeeded: hash >> 32) & (Self.half - 1)
        let a = counts[first].wrappingAdd(1, ordering: .relaxed).newValue
        let b = counts[second].wrappingAdd(1, ordering: .relaxed).newValue
        if min(a, b) > limit {
            leave(first, second)
            return nil
        }
        return PerClientTicket(table: self, first: first, second: second)
    }

    fileprivate func leave(_ first: Int, _ second: Int) {
        counts[first].wrappingSubtract(1, ordering: .relaxed)
        counts[second].wrappingSubtract(1, ordering: .relaxed)
    }
}

/// One counted connection; uncounted when the last holder lets go of it. It travels with
/// the connection when it changes kind (to a tunnel, to HTTP/2), so the count lasts as long
/// as the socket.
///
/// Threading: owned by the worker that holds the connection.
final class PerClientTicket: Sendable {
    private let table: PerClientLimit
    private let first: Int
    private let second: Int

    fileprivate init(table: PerClientLimit, first: Int, second: Int) {
        self.table = table
        self.first = first
        self.second = second
    }

    deinit { table.leave(first, second) }
}
