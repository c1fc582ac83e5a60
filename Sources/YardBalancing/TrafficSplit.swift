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

    /// The canary's share in tenths of a percent; 0: no canary.
    public private(set) var canaryPermille: Int
    /// The smooth split over (1000 − share, share): index 1 is the canary.
    private var counter: SmoothWeightedRoundRobin

    public init(canaryPermille: Int) {
        let permille = min(max(canaryPermille, 0), 1000)
        self.canaryPermille = permille
        counter = SmoothWeightedRoundRobin(weights: [1000 - permille, permille])
    }

    /// A new share; the counter restarts only when the share changed (a table rebuilt for
    /// another reason keeps the rotation).
    public mutating func update(canaryPermille: Int) {
        let permille = min(max(canaryPermille, 0), 1000)
        guard permille != self.canaryPermille else { return }
        self = TrafficSplit(canaryPermille: permille)
    }

    /// The track for one request, and why.
    ///
    /// - Parameters:
    ///   - override: what the request's override header asks for.
    ///   - stickyPoint: the request's sticky point (see `stickyPoint(hash:)`), or -1 when
    ///     the canary is not sticky or the request carries no key.
    ///   - activeHasEndpoints: whether the active track has a routable endpoint.
    public mutating func decide(override: Override, stickyPoint: Int, activeHasEndpoints: Bool) -> Decision {
        if case .track(let index) = override { return Decision(track: .pinned(index), rule: .overrideHeader) }
        guard canaryPermille > 0 else { return Decision(track: .active, rule: .noCanary) }
        if canaryPermille >= 1000 { return Decision(track: .canary, rule: .canaryAtFull) }
        guard activeHasEndpoints else { return Decision(track: .canary, rule: .activeTrackEmpty) }
        if stickyPoint >= 0 {
            return Decision(track: stickyPoint < canaryPermille ? .canary : .active, rule: .stickyKey(point: stickyPoint))
        }
        return Decision(track: counter.pick() == 1 ? .canary : .active, rule: .canaryShare)
    }

    /// The seed of the sticky key's hash: fixed, so every replica (and every restart) puts
    /// a client at the same point.
    public static let stickySeed: UInt64 = 0x5357_4954_4348

    /// A sticky key's point in [0, 1000): below the canary's share, the key goes to the
    /// canary. Raising the share only moves clients forward to the canary.
    public static func stickyPoint(key: UnsafeRawBufferPointer) -> Int {
        Int(HashKey.hash(key, seed: stickySeed) % 1000)
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
