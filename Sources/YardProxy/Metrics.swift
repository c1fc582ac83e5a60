#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardModel

/// Counters of one worker, written only by that worker on the request path: plain
/// integers in malloc'd memory (no atomics, no locks, no allocation per request).
/// A scrape runs `snapshot()` on the worker itself (through its inbox) and sums the
/// workers' copies, so nothing is read while it is written.
///
/// Per endpoint (indexed by `Endpoint.poolKey`) there is one row of `Field.count` values.
struct WorkerMetrics {
    /// Columns of an endpoint row.
    enum Field {
        static let class1xx = 0      // responses by status class: 1xx … 5xx (5 columns)
        static let connectFailures = 5
        static let retries = 6
        static let bytesIn = 7       // response bytes from the upstream
        static let bytesOut = 8      // request bytes to the upstream
        static let latencySumMicros = 9
        static let timeouts = 10
        static let active = 11       // requests in flight
        static let retriesRefused = 12 // retries the service's retry budget refused
        static let latencyBuckets = 13
        static let count = latencyBuckets + LatencyBuckets.upperBoundsMs.count + 1
    }

    var rows: UnsafeMutablePointer<UInt64>
    var capacity: Int  // rows

    /// Answers the proxy gave itself: 0 = 404 no route, 1 = 503 no endpoint, 2 = 4xx bad
    /// request (400/408/414/431/501/505), 3 = 502, 4 = 504.
    var ownAnswers: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    var accepted: UInt64 = 0
    /// TLS handshakes completed, and those that failed (bad clients, scanners, timeouts
    /// excluded).
    var tlsHandshakes: UInt64 = 0
    var tlsHandshakeFailures: UInt64 = 0
    /// TLS handshakes with upstreams: completed (of which resumed), and failed (the
    /// endpoint refused, or its certificate did not verify; a handshake the connect
    /// timeout cut short is not counted here, only as the endpoint's connect failure).
    var upstreamTLSHandshakes: UInt64 = 0
    var upstreamTLSResumed: UInt64 = 0
    var upstreamTLSFailures: UInt64 = 0
    /// Client connections accepted and closed at once: over `max_connections`, or over
    /// `max_connections_per_client` for their source address.
    var refusedOverLimit: UInt64 = 0
    var refusedPerClient: UInt64 = 0
    /// Request bodies cut with 408: no byte for `client_body`, or slower than `min_body_rate`.
    var slowBodies: UInt64 = 0
    /// Close-delimited responses from TLS upstreams that ended without close_notify: cut
    /// short, the client connection closed without a clean end.
    var truncatedResponses: UInt64 = 0
    /// Upstream connections whose client left mid-exchange, kept: the rest of the response
    /// was read and dropped, and the connection pooled (OrphanedResponses.swift).
    var orphansPooled: UInt64 = 0

    init() {
        capacity = 16
        rows = .allocate(capacity: capacity * Field.count)
        rows.initialize(repeating: 0, count: capacity * Field.count)
    }

    /// Makes room for `poolKey` (called when a table is adopted, not per request).
    mutating func ensure(_ poolKey: Int) {
        guard poolKey >= capacity else { return }
        var grown = capacity
        while grown <= poolKey { grown *= 2 }
        let next = UnsafeMutablePointer<UInt64>.allocate(capacity: grown * Field.count)
        next.initialize(repeating: 0, count: grown * Field.count)
        next.update(from: rows, count: capacity * Field.count)
        rows.deallocate()
        rows = next
        capacity = grown
    }

    @inline(__always)
    func add(_ poolKey: Int, _ field: Int, _ value: UInt64 = 1) {
        guard poolKey < capacity else { return }
        rows[poolKey * Field.count + field] &+= value
    }

    @inline(__always)
    func subtract(_ poolKey: Int, _ field: Int) {
        guard poolKey < capacity else { return }
        rows[poolKey * Field.count + field] &-= 1
    }

    /// Records a finished response: its status class and latency.
    @inline(__always)
    func response(_ poolKey: Int, status: Int, latencyMicros: Int64) {
        guard poolKey < capacity else { return }
        let row = rows + poolKey * Field.count
        let statusClass = min(max(status / 100, 1), 5) - 1
        row[Field.class1xx + statusClass] &+= 1
        let micros = UInt64(max(0, latencyMicros))
        row[Field.latencySumMicros] &+= micros
        row[Field.latencyBuckets + LatencyBuckets.index(micros: micros)] &+= 1
    }

    func snapshot() -> MetricsSnapshot {
        MetricsSnapshot(
            rows: Array(UnsafeBufferPointer(start: rows, count: capacity * Field.count)),
            ownAnswers: [ownAnswers.0, ownAnswers.1, ownAnswers.2, ownAnswers.3, ownAnswers.4, ownAnswers.5, ownAnswers.6, ownAnswers.7],
            accepted: accepted, openConnections: 0, tlsHandshakes: tlsHandshakes,
            tlsHandshakeFailures: tlsHandshakeFailures, upstreamTLSHandshakes: upstreamTLSHandshakes,
            upstreamTLSResumed: upstreamTLSResumed, upstreamTLSFailures: upstreamTLSFailures,
            refusedOverLimit: refusedOverLimit, refusedPerClient: refusedPerClient, slowBodies: slowBodies,
            truncatedResponses: truncatedResponses, orphansPooled: orphansPooled)
    }
}

extension MetricsSnapshot {
    /// The mirror middleware's counters of one worker, added to its snapshot.
    mutating func addMirrors(_ room: MirrorRoom) {
        mirrored &+= room.mirrored
        mirrorsDropped &+= room.dropped
        mirrorsFailed &+= room.failed
        mirrorsSkippedBody &+= room.skippedBody
    }
}

/// Latency histogram buckets, Prometheus style: upper bounds in microseconds, from 100 µs
/// (a proxied request on a LAN) to 10 s.
public enum LatencyBuckets {
    public static let upperBoundsMicros: [UInt64] = [
        100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000,
    ]
    /// The same bounds in milliseconds (the canary gate's unit).
    public static let upperBoundsMs: [Double] = upperBoundsMicros.map { Double($0) / 1000 }

    @inline(__always)
    static func index(micros: UInt64) -> Int {
        // Unrolled against the bounds above, in two halves so no answer takes more than
        // five comparisons; the last index is +Inf.
        if micros <= 1_000 {
            if micros <= 100 { return 0 }
            if micros <= 250 { return 1 }
            if micros <= 500 { return 2 }
            return 3
        }
        if micros <= 50_000 {
            if micros <= 2_500 { return 4 }
            if micros <= 5_000 { return 5 }
            if micros <= 10_000 { return 6 }
            if micros <= 25_000 { return 7 }
            return 8
        }
        if micros <= 100_000 { return 9 }
        if micros <= 250_000 { return 10 }
        if micros <= 500_000 { return 11 }
        if micros <= 1_000_000 { return 12 }
        if micros <= 2_500_000 { return 13 }
        if micros <= 5_000_000 { return 14 }
        if micros <= 10_000_000 { return 15 }
        return 16
    }
}

/// A copy of every worker's counters, summed: what a scrape exposes.
public struct MetricsSnapshot: Sendable {
    var rows: [UInt64]
    /// 404 no route, 503 no endpoint, 4xx bad request, 502, 504 (answers of the proxy's own).
    public var ownAnswers: [UInt64]
    public var accepted: UInt64
    public var openConnections: Int
    public var tlsHandshakes: UInt64 = 0
    public var tlsHandshakeFailures: UInt64 = 0
    public var upstreamTLSHandshakes: UInt64 = 0
    public var upstreamTLSResumed: UInt64 = 0
    public var upstreamTLSFailures: UInt64 = 0
    public var refusedOverLimit: UInt64 = 0
    public var refusedPerClient: UInt64 = 0
    public var slowBodies: UInt64 = 0
    public var truncatedResponses: UInt64 = 0
    public var orphansPooled: UInt64 = 0
    /// Mirror copies sent, dropped (too many in flight), failed, skipped (a request body
    /// over the mirror's max_body_bytes) (Mirror.swift).
    public var mirrored: UInt64 = 0
    public var mirrorsDropped: UInt64 = 0
    public var mirrorsFailed: UInt64 = 0
    public var mirrorsSkippedBody: UInt64 = 0

    static let empty = MetricsSnapshot(rows: [], ownAnswers: [0, 0, 0, 0, 0, 0, 0, 0], accepted: 0, openConnections: 0)

    /// Adds another worker's snapshot.
    mutating func add(_ other: MetricsSnapshot) {
        if rows.count < other.rows.count { rows.append(contentsOf: repeatElement(0, count: other.rows.count - rows.count)) }
        for i in other.rows.indices { rows[i] &+= other.rows[i] }
        for i in 0..<min(ownAnswers.count, other.ownAnswers.count) { ownAnswers[i] &+= other.ownAnswers[i] }
        accepted &+= other.accepted
        tlsHandshakes &+= other.tlsHandshakes
        tlsHandshakeFailures &+= other.tlsHandshakeFailures
        upstreamTLSHandshakes &+= other.upstreamTLSHandshakes
        upstreamTLSResumed &+= other.upstreamTLSResumed
        upstreamTLSFailures &+= other.upstreamTLSFailures
        refusedOverLimit &+= other.refusedOverLimit
        refusedPerClient &+= other.refusedPerClient
        slowBodies &+= other.slowBodies
        truncatedResponses &+= other.truncatedResponses
        orphansPooled &+= other.orphansPooled
        mirrored &+= other.mirrored
        mirrorsDropped &+= other.mirrorsDropped
        mirrorsFailed &+= other.mirrorsFailed
        mirrorsSkippedBody &+= other.mirrorsSkippedBody
        openConnections += other.openConnections
    }

    /// The counters of one endpoint.
    public func endpoint(_ poolKey: Int) -> EndpointMetrics {
        let base = poolKey * WorkerMetrics.Field.count
        guard base + WorkerMetrics.Field.count <= rows.count else { return EndpointMetrics() }
        let row = rows[base..<base + WorkerMetrics.Field.count].map { $0 }
        typealias F = WorkerMetrics.Field
        var buckets: [UInt64] = []
        for i in 0...LatencyBuckets.upperBoundsMs.count { buckets.append(row[F.latencyBuckets + i]) }
        return EndpointMetrics(
            responsesByClass: Array(row[0..<5]), connectFailures: row[F.connectFailures], retries: row[F.retries],
            bytesIn: row[F.bytesIn], bytesOut: row[F.bytesOut], latencySumMicros: row[F.latencySumMicros],
            timeouts: row[F.timeouts], active: Int64(bitPattern: row[F.active]), latencyBuckets: buckets,
            retriesRefused: row[F.retriesRefused])
    }
}

/// One endpoint's counters, summed over workers.
public struct EndpointMetrics: Sendable, Equatable {
    public var responsesByClass: [UInt64] = [0, 0, 0, 0, 0]
    public var connectFailures: UInt64 = 0
    public var retries: UInt64 = 0
    /// Retries not made because they would have exceeded the retry budget.
    public var retriesRefused: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var latencySumMicros: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var active: Int64 = 0
    /// Non-cumulative counts per bucket of `LatencyBuckets.upperBoundsMs`, then +Inf.
    public var latencyBuckets: [UInt64] = Array(repeating: 0, count: LatencyBuckets.upperBoundsMs.count + 1)

    public init() {}

    init(responsesByClass: [UInt64], connectFailures: UInt64, retries: UInt64, bytesIn: UInt64, bytesOut: UInt64,
         latencySumMicros: UInt64, timeouts: UInt64, active: Int64, latencyBuckets: [UInt64], retriesRefused: UInt64) {
        self.retriesRefused = retriesRefused
        self.responsesByClass = responsesByClass
        self.connectFailures = connectFailures
        self.retries = retries
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.latencySumMicros = latencySumMicros
        self.timeouts = timeouts
        self.active = active
        self.latencyBuckets = latencyBuckets
    }

    public var requests: UInt64 { responsesByClass.reduce(0, &+) }
}
