// Which track one request goes to: the override header, the sticky key, the canary share.

/// The track decision of one service: a pure value that the request path, the TCP tunnel
/// and `switchyard explain` all run, so what explain says is what a request gets.
///
/// Threading: a value owned by one event loop (`decide` advances the canary counter, so
/// each loop keeps its own, like a balancer). `decide` allocates nothing.
///
/// The rules, in order: a request pinned by the override header goes to that track; with
/// no canary every request goes to the active track; a canary at 100 % takes every
/// request; when the active track has no routable endpoint the canary serves; a request
/// carrying the sticky key goes by its point in [0, 1000) (below the share: canary); every
/// other request goes by a smooth weighted split over (1000 − share, share), so the
/// canary's share is exact over every window of 1000 requests and independent of how many
/// replicas each track has.
///
/// Slow start on every canary step: when the share rises and the service has a
/// `slow_start`, the share in force ramps linearly from where it was to the new share over
/// that window (a canary that starts gets its first requests gradually, like a new
/// endpoint). During the ramp the split is a running sum of the share in force (still
/// smooth, no allocation); when the ramp ends the exact split over (1000 − share, share)
/// takes over from a fresh counter. A share that falls applies at once: backing off a
/// canary must not wait.
public struct TrafficSplit: Sendable {
    /// Where a request goes.
    public enum Track: Sendable, Equatable {
        case active
        case canary
        /// The track at this index of the service's tracks, named by the override header.
        case pinned(Int)
    }

    /// The rule that decided.
    public enum Rule: Sendable, Equatable {
        case overrideHeader
        case noCanary
        case canaryAtFull
        case activeTrackEmpty
        /// The request's sticky key puts it at `point` (0..<1000).
        case stickyKey(point: Int)
        case canaryShare
    }

    public struct Decision: Sendable, Equatable {
        public var track: Track
        public var rule: Rule
        public init(track: Track, rule: Rule) {
            self.track = track
            self.rule = rule
        }
    }

    /// What the override header of a request asks for.
    public enum Override: Sendable, Equatable {
        /// No header (or an empty one), or the service has no override.
        case absent
        /// The header names the track at this index and the client may use it.
        case track(Int)
        /// The header names a track, but the client's network is not allowed to pin.
        case notAllowed
        /// The header names no track of the service.
        case unknownTrack
    }

    /// The canary's share in tenths of a percent (at the end of a ramp); 0: no canary.
    public private(set) var canaryPermille: Int
    /// The smooth split over (1000 − share, share): index 1 is the canary.
    private var counter: SmoothWeightedRoundRobin
    /// The ramp of a rising share: from `rampFrom` at `rampStart` (ms) to `canaryPermille`
    /// over `rampMs`; `rampMs` 0 means no ramp in progress.
    private var rampFrom = 0
    private var rampStart: Int64 = 0
    private var rampMs = 0
    /// The running sum behind the split during a ramp: each request adds the share in
    /// force; crossing 1000 sends one to the canary.
    private var rampCredit = 0

    /// A split at `canaryPermille` from the start (no ramp).
    public init(canaryPermille: Int) {
        let permille = min(max(canaryPermille, 0), 1000)
        self.canaryPermille = permille
        counter = SmoothWeightedRoundRobin(weights: [1000 - permille, permille])
    }

    /// A new share; the counter restarts only when the share changed (a table rebuilt for
    /// another reason keeps the rotation). A rise with `slowStartMs` > 0 ramps from the
    /// share in force at `now` (ms, the clock `decide` gets) to the new one.
    public mutating func update(canaryPermille: Int, slowStartMs: Int = 0, now: Int64 = 0) {
        let permille = min(max(canaryPermille, 0), 1000)
        guard permille != self.canaryPermille else { return }
        let from = share(now: now)
        self = TrafficSplit(canaryPermille: permille)
        if slowStartMs > 0 && permille > from {
            rampFrom = from
            rampStart = now
            rampMs = slowStartMs
        }
    }

    /// The share in force at `now`: the configured one, or a point on the ramp towards it.
    public func share(now: Int64) -> Int {
        guard rampMs > 0 else { return canaryPermille }
        let elapsed = now &- rampStart
        if elapsed >= Int64(rampMs) { return canaryPermille }
        if elapsed <= 0 { return rampFrom }
        // elapsed < rampMs ≤ Int.max and the span ≤ 1000: no overflow.
        return rampFrom + Int(Int64(canaryPermille - rampFrom) * elapsed / Int64(rampMs))
    }

    /// Whether a ramp is still in progress at `now`.
    public func isRamping(now: Int64) -> Bool { rampMs > 0 && now &- rampStart < Int64(rampMs) }

    /// The track for one request, and why.
    ///
    /// - Parameters:
    ///   - override: what the request's override header asks for.
    ///   - stickyPoint: the request's sticky point (see `stickyPoint(hash:)`), or -1 when
    ///     the canary is not sticky or the request carries no key.
    ///   - activeHasEndpoints: whether the active track has a routable endpoint.
    ///   - now: the clock of `update` (ms); only a ramp reads it (the default: ramp over).
    public mutating func decide(override: Override, stickyPoint: Int, activeHasEndpoints: Bool, now: Int64 = .max) -> Decision {
        if case .track(let index) = override { return Decision(track: .pinned(index), rule: .overrideHeader) }
        guard canaryPermille > 0 else { return Decision(track: .active, rule: .noCanary) }
        var share = canaryPermille
        if rampMs > 0 {
            share = self.share(now: now)
            // The ramp is over: the exact split takes over from its fresh counter.
            if share == canaryPermille { rampMs = 0 }
        }
        if share >= 1000 { return Decision(track: .canary, rule: .canaryAtFull) }
        guard activeHasEndpoints else { return Decision(track: .canary, rule: .activeTrackEmpty) }
        if stickyPoint >= 0 {
            return Decision(track: stickyPoint < share ? .canary : .active, rule: .stickyKey(point: stickyPoint))
        }
        guard rampMs > 0 else { return Decision(track: counter.pick() == 1 ? .canary : .active, rule: .canaryShare) }
        rampCredit += share
        guard rampCredit >= 1000 else { return Decision(track: .active, rule: .canaryShare) }
        rampCredit -= 1000
        return Decision(track: .canary, rule: .canaryShare)
    }

    /// The seed of the sticky key's hash: fixed, so every replica (and every restart) puts
    /// a client at the same point.
    public static let stickySeed: UInt64 = 0x5357_4954_4348

    /// A sticky key's point in [0, 1000): below the canary's share, the key goes to the
    /// canary. Raising the share only moves clients forward to the canary.
    public static func stickyPoint(key: UnsafeRawBufferPointer) -> Int {
        Int(HashKey.hash(key, seed: stickySeed) % 1000)
    }

    /// The point the proxy gives a client it has just sent to the canary (or not) at
    /// `share`, for the sticky cookie it sets: uniform below the share for the canary, at or
    /// above it for the stable track. The split stays exact (the counter chose the track),
    /// and the stable clients stay spread evenly over [share, 1000), so a later rise moves
    /// its fair part of them forward (and none of the canary's back).
    public static func assignedPoint(canary: Bool, share: Int, using random: inout SplitMix64) -> Int {
        let share = min(max(share, 0), 1000)
        if canary { return share > 0 ? random.next(below: share) : 0 }
        return share < 1000 ? share + random.next(below: 1000 - share) : 999
    }

    /// `stickyPoint(key:)` of a string's UTF-8 bytes (for explain).
    public static func stickyPoint(key: String) -> Int {
        Int(HashKey.hash(key, seed: stickySeed) % 1000)
    }
}

extension TrafficSplit.Rule {
    /// The rule as the admin API and explain name it.
    public var name: String {
        switch self {
        case .overrideHeader: "override_header"
        case .noCanary: "no_canary"
        case .canaryAtFull: "canary_at_100_percent"
        case .activeTrackEmpty: "active_track_has_no_endpoint"
        case .stickyKey: "sticky_key"
        case .canaryShare: "canary_share"
        }
    }
}
