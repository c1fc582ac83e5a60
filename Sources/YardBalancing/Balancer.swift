// The table of operations every balancing algorithm answers, and what a pick is given.

/// The operations every balancing algorithm answers, whatever its policy: haproxy's
/// `struct lb_ops`, as a protocol.
///
/// Threading: conforming types are values owned by one event loop; each loop keeps its own
/// copy, so no method takes a lock or touches an atomic.
///
/// Use it through a concrete type or a generic parameter, never as `any Balancer`: an
/// existential would box the value and dispatch every pick dynamically, on the one call the
/// proxy makes per request. Endpoints are indices `0 ..< endpointCount` into the service's
/// endpoint list; a weight of 0 means "never picked".
public protocol Balancer {
    /// Number of endpoints the balancer knows about (the length of the last weights).
    var endpointCount: Int { get }

    /// Effective weights changed (slow start, drain, health, a new endpoint list).
    ///
    /// Rare, so it may allocate. A list of the same length keeps the per-endpoint state; a list
    /// of another length is a new endpoint list and resets it.
    mutating func update(weights: [Int])

    /// Chooses the endpoint for one request, or nil when no endpoint is eligible.
    mutating func pick(_ context: PickContext) -> Int?

    /// The algorithm reads the clock: picks want `PickContext.now`, and ends want their
    /// latency (`finished(_:latencyNanos:now:)`). Others are spared the clock reads.
    var measuresLatency: Bool { get }

    /// A request was sent to `endpoint` (haproxy's `server_take_conn`).
    mutating func started(_ endpoint: Int)

    /// A request to `endpoint` finished after `latencyNanos` (haproxy's `server_drop_conn`).
    mutating func finished(_ endpoint: Int, latencyNanos: UInt64, now: UInt64)

    /// Something sent to `endpoint` finished without a latency worth measuring (a TCP
    /// tunnel's lifetime is not a response time).
    mutating func finished(_ endpoint: Int)
}

extension Balancer {
    public var measuresLatency: Bool { false }

    /// Algorithms that do not count requests ignore the event.
    public mutating func started(_ endpoint: Int) {}

    /// Algorithms that do not count requests or measure latency ignore the event.
    public mutating func finished(_ endpoint: Int, latencyNanos: UInt64, now: UInt64) {}

    /// Algorithms that do not count requests ignore the event.
    public mutating func finished(_ endpoint: Int) {}
}

/// What one pick may depend on; each algorithm reads the fields it needs.
public struct PickContext: Sendable {
    /// Bit `i` set skips endpoint `i` (unhealthy, or already tried by this request). Only
    /// endpoints 0 ..< 64 can be excluded; a retry beyond that simply may repeat an endpoint.
    public var excluding: UInt64
    /// Monotonic time in nanoseconds (latency-aware algorithms decay their estimates with it).
    public var now: UInt64
    /// The request's key hash (consistent hashing), from `HashKey`.
    public var hash: UInt64

    public init(excluding: UInt64 = 0, now: UInt64 = 0, hash: UInt64 = 0) {
        self.excluding = excluding
        self.now = now
        self.hash = hash
    }
}

/// Whether `mask` excludes `endpoint`; indices from 64 up are never excluded.
@inline(__always)
func isExcluded(_ endpoint: Int, by mask: UInt64) -> Bool {
    endpoint < 64 && (mask &>> UInt64(truncatingIfNeeded: endpoint)) & 1 != 0
}

/// A weight as the algorithms use it: negative reads as 0, and the top is clamped to
/// `Int32.max` so that weight × weight and weight × in-flight products cannot overflow an Int.
@inline(__always)
func effectiveWeight(_ weight: Int) -> Int {
    min(max(weight, 0), Int(Int32.max))
}
