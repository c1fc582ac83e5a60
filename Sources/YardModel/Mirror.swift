// The `mirror` middleware's settings: a copy of a share of a route's requests goes to a
// shadow service or track; its responses are read and dropped (YardProxy/Mirror.swift).
//
//   middlewares:
//     shadow: {mirror: {service: shop-next, percent: 10, timeout: 1s, max_body_bytes: 64KiB}}
//     canary-shadow: {mirror: {track: green, percent: 0.5}}

/// Where a share of a route's requests is copied to.
public struct MirrorSettings: Sendable, Equatable {
    /// The shadow service (nil: the route's own service).
    public var service: String?
    /// The track of that service (nil: its active endpoints).
    public var track: String?
    /// The share copied, in tenths of a percent; exact over every 1000 requests per worker.
    public var permille: Int
    /// How long one copy may take, connect to the end of its response.
    public var timeoutMs: Int

    /// A request body (any framing, HTTP/1.1 or HTTP/2) is copied when it ends within this
    /// many bytes as forwarded (chunk framing included); a longer one is not copied, and
    /// counted as `skipped_body`. The copy is held until the body ended, then sent.
    public var maxBodyBytes: Int

    public static let defaultMaxBodyBytes = 65_536
    /// The largest `max_body_bytes` accepted: every held copy costs up to this much memory.
    public static let maxBodyBytesLimit = 1_048_576
    /// Copies in flight per worker; past it a copy is dropped (and counted).
    public static let maxInFlightPerWorker = 256

    public init(service: String? = nil, track: String? = nil, permille: Int, timeoutMs: Int = 1_000,
                maxBodyBytes: Int = MirrorSettings.defaultMaxBodyBytes) {
        self.service = service
        self.track = track
        self.permille = permille
        self.timeoutMs = timeoutMs
        self.maxBodyBytes = maxBodyBytes
    }
}

extension ConfigLoader {
    static func parseMirror(_ node: ConfigNode) throws(ConfigError) -> MirrorSettings {
        let fields = try node.fields(allowed: ["service", "track", "percent", "timeout", "max_body_bytes"])
        let service = try fields.optional("service")?.string(expected: "a service name")
        let track = try fields.optional("track")?.string(expected: "a track name")
        guard service != nil || track != nil else {
            throw node.error("give 'service:' (another service) and/or 'track:' (a track of the route's service) to mirror to")
        }
        let percentNode = try fields.required("percent", hint: "the share of requests copied, e.g. 'percent: 10' (0.1 % steps)")
        let permille = try permilleValue(percentNode)
        guard permille > 0 else { throw percentNode.error("a mirror at 0 % copies nothing; remove it from the route instead") }
        var timeoutMs = 1_000
        if let timeout = fields.optional("timeout") {
            timeoutMs = try timeout.durationMilliseconds()
            guard timeoutMs <= 60_000 else { throw timeout.error("a mirror's timeout is at most 60s (copies in flight are bounded)") }
        }
        var maxBodyBytes = MirrorSettings.defaultMaxBodyBytes
        if let limit = fields.optional("max_body_bytes") {
            maxBodyBytes = try limit.bytes(in: 0...MirrorSettings.maxBodyBytesLimit)
        }
        return MirrorSettings(service: service, track: track, permille: permille, timeoutMs: timeoutMs, maxBodyBytes: maxBodyBytes)
    }
}
