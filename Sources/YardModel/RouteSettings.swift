// Per-route settings: a request body limit, timeouts and retries that override the
// proxy's (timeouts) and the service's (retries) for the requests of one route.
//
//   routes:
//     - path: /upload
//       service: files
//       max_body_bytes: 100MiB
//       timeouts: {connect: 2s, response: 5m, idle: 30s}
//       retries: {attempts: 0}

/// What a route overrides. Zero (or nil) keeps the proxy's or the service's value.
public struct RouteSettings: Sendable, Equatable {
    /// Request bodies over this many bytes get 413 (0: no limit of the route's own).
    public var maxBodyBytes: Int64 = 0
    /// Connecting to an endpoint (`timeouts.upstream_connect` otherwise).
    public var connectTimeoutMs = 0
    /// Waiting for the response head (`timeouts.upstream_response`, or the service's
    /// `retry.per_try_timeout`, otherwise).
    public var responseTimeoutMs = 0
    /// No byte of the response body for this long ends the exchange (the response
    /// timeout otherwise).
    public var idleTimeoutMs = 0
    /// Replaces the service's `retry:` for this route's requests.
    public var retry: RetryPolicy?

    public init() {}

    public static let none = RouteSettings()
}

extension ConfigLoader {
    static let routeSettingKeys = ["max_body_bytes", "timeouts", "retries"]

    /// The per-route settings among a route's `fields`.
    static func parseRouteSettings(_ fields: Fields) throws(ConfigError) -> RouteSettings {
        var settings = RouteSettings()
        if let node = fields.optional("max_body_bytes") {
            settings.maxBodyBytes = Int64(try node.bytes(in: 1...(1 << 40)))
        }
        if let node = fields.optional("timeouts") {
            let timeouts = try node.fields(allowed: ["connect", "response", "idle"])
            if let v = timeouts.optional("connect") { settings.connectTimeoutMs = try v.durationMilliseconds() }
            if let v = timeouts.optional("response") { settings.responseTimeoutMs = try v.durationMilliseconds() }
            if let v = timeouts.optional("idle") { settings.idleTimeoutMs = try v.durationMilliseconds() }
        }
        if let node = fields.optional("retries") {
            settings.retry = try parseRetry(node)
        }
        return settings
    }
}
