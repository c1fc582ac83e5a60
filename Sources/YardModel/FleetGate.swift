// The canary gate over the whole fleet: behind an L4 balancer each replica sees only part
// of the traffic, so every replica publishes its per-track windows in its report in the
// state store, and the gate — run on whichever replica the CLI reached — sums the live
// replicas' figures before it compares the canary with the stable track. Pure: the
// runtime gathers the windows and reports, this picks and sums.

/// One replica's per-track traffic over the last `seconds` (the span its samples covered).
public struct PublishedWindow: Sendable, Equatable, Codable {
    public var seconds: Double
    public var tracks: [String: TrackStats]

    public init(seconds: Double, tracks: [String: TrackStats]) {
        self.seconds = seconds
        self.tracks = tracks
    }

    /// The windows a replica publishes per service: a gate asking for W seconds reads
    /// another replica's shortest window that covers W (its longest when none does).
    public static let spansSeconds: [Double] = [10, 30, 60, 120, 300, 600, 900]

    /// From `windows` (ascending spans), the one a gate over `seconds` should read.
    public static func pick(_ windows: [PublishedWindow], seconds: Double) -> PublishedWindow? {
        windows.first { $0.seconds >= seconds - 0.5 } ?? windows.max { $0.seconds < $1.seconds }
    }
}

/// One replica's share of a gate's figures, shown by `canary step --json`.
public struct ReplicaGateFigures: Sendable, Equatable, Codable {
    public var replica: String
    /// The span its figures cover (for another replica: the published window read).
    public var windowSeconds: Double
    /// When the figures were published (nil: this replica's own, taken now).
    public var reportedUnix: Double?
    public var canary: TrackSummary
    public var stable: TrackSummary

    public init(replica: String, windowSeconds: Double, reportedUnix: Double?, canary: TrackSummary, stable: TrackSummary) {
        self.replica = replica
        self.windowSeconds = windowSeconds
        self.reportedUnix = reportedUnix
        self.canary = canary
        self.stable = stable
    }

    enum CodingKeys: String, CodingKey {
        case replica, canary, stable
        case windowSeconds = "window_seconds"
        case reportedUnix = "reported_at"
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        replica = try keys.decode(String.self, forKey: .replica)
        windowSeconds = try keys.decode(Double.self, forKey: .windowSeconds)
        reportedUnix = try keys.decodeTimestampIfPresent(forKey: .reportedUnix)
        canary = try keys.decode(TrackSummary.self, forKey: .canary)
        stable = try keys.decode(TrackSummary.self, forKey: .stable)
    }

    public func encode(to encoder: any Encoder) throws {
        var keys = encoder.container(keyedBy: CodingKeys.self)
        try keys.encode(replica, forKey: .replica)
        try keys.encode(windowSeconds, forKey: .windowSeconds)
        try keys.encodeTimestampIfPresent(reportedUnix, forKey: .reportedUnix)
        try keys.encode(canary, forKey: .canary)
        try keys.encode(stable, forKey: .stable)
    }
}

/// One replica's stats for the two tracks a gate compares.
public struct ReplicaTrackStats: Sendable {
    public var replica: String
    public var windowSeconds: Double
    public var reportedUnix: Double?
    public var tracks: [String: TrackStats]

    public init(replica: String, windowSeconds: Double, reportedUnix: Double?, tracks: [String: TrackStats]) {
        self.replica = replica
        self.windowSeconds = windowSeconds
        self.reportedUnix = reportedUnix
        self.tracks = tracks
    }
}

extension GatePolicy {
    /// The gate over the sum of every replica's figures; the verdict lists each one.
    /// The window reported is the longest any replica's figures cover.
    public func evaluate(
        fleet: [ReplicaTrackStats], canaryTrack: String, stableTrack: String, bucketBoundsMs: [Double]
    ) -> GateVerdict {
        var canary = TrackStats()
        var stable = TrackStats()
        var figures: [ReplicaGateFigures] = []
        for replica in fleet {
            let c = replica.tracks[canaryTrack] ?? TrackStats()
            let s = replica.tracks[stableTrack] ?? TrackStats()
            canary.add(c)
            stable.add(s)
            figures.append(ReplicaGateFigures(
                replica: replica.replica, windowSeconds: replica.windowSeconds, reportedUnix: replica.reportedUnix,
                canary: TrackSummary(c, bucketBoundsMs: bucketBoundsMs), stable: TrackSummary(s, bucketBoundsMs: bucketBoundsMs)))
        }
        var verdict = evaluate(
            canary: canary, stable: stable, canaryTrack: canaryTrack, stableTrack: stableTrack,
            windowSeconds: fleet.map(\.windowSeconds).max() ?? 0, bucketBoundsMs: bucketBoundsMs)
        verdict.replicas = figures
        return verdict
    }
}
