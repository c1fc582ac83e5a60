// The service-wide `switchyard.*` labels: what services.yml says per service (balancer,
// health timings, retries, upstream protocol, the traffic split), said by a workload's
// labels instead. Pure: labels in, settings or a problem naming the label out.

import YardModel

/// Settings a workload's labels give its service; nil fields were not labelled.
/// `LabeledCatalog.assemble` applies, per field, the first value in instance order.
public struct ServiceLabelSettings: Sendable, Equatable {
    public var balancer: BalancerKind?
    public var hashOn: HashSource?
    public var healthIntervalMs: Int?
    public var healthTimeoutMs: Int?
    public var healthRise: Int?
    public var healthFall: Int?
    public var retryAttempts: Int?
    public var upstreamProtocol: UpstreamTransport.WireProtocol?
    public var canaryTrack: String?
    public var canaryPermille: Int?
    public var canarySticky: StickySource?
    public var canaryStickyCookie: StickyCookieSettings?

    public init() {}

    /// Per field, the first value `list` has (instance order: the first labelled wins).
    static func first(_ list: [ServiceLabelSettings]) -> ServiceLabelSettings {
        var merged = ServiceLabelSettings()
        for settings in list.reversed() {
            merged.balancer = settings.balancer ?? merged.balancer
            merged.hashOn = settings.hashOn ?? merged.hashOn
            merged.healthIntervalMs = settings.healthIntervalMs ?? merged.healthIntervalMs
            merged.healthTimeoutMs = settings.healthTimeoutMs ?? merged.healthTimeoutMs
            merged.healthRise = settings.healthRise ?? merged.healthRise
            merged.healthFall = settings.healthFall ?? merged.healthFall
            merged.retryAttempts = settings.retryAttempts ?? merged.retryAttempts
            merged.upstreamProtocol = settings.upstreamProtocol ?? merged.upstreamProtocol
            merged.canaryTrack = settings.canaryTrack ?? merged.canaryTrack
            merged.canaryPermille = settings.canaryPermille ?? merged.canaryPermille
            merged.canarySticky = settings.canarySticky ?? merged.canarySticky
            merged.canaryStickyCookie = settings.canaryStickyCookie ?? merged.canaryStickyCookie
        }
        return merged
    }
}

extension SwitchyardLabels {
    public static let balancer = "switchyard.balancer"
    public static let hashOn = "switchyard.hash_on"
    public static let healthInterval = "switchyard.health.interval"
    public static let healthTimeout = "switchyard.health.timeout"
    public static let healthRise = "switchyard.health.rise"
    public static let healthFall = "switchyard.health.fall"
    public static let retries = "switchyard.retries"
    public static let upstreamProtocol = "switchyard.upstream.protocol"
    public static let canaryTrack = "switchyard.canary.track"
    public static let canaryPercent = "switchyard.canary.percent"
    public static let canarySticky = "switchyard.canary.sticky"
    public static let canaryStickyCookie = "switchyard.canary.sticky_cookie"

    /// The service-wide settings `labels` carry, or the first broken label, named with
    /// `owner` and its key (the workload is then left out, as for any broken label).
    /// `healthPath`: whether the labels ask for an HTTP check (`switchyard.health.path`),
    /// which an HTTP/2-only upstream does not answer.
    static func readServiceSettings(_ labels: [String: String], owner: String, httpCheck: Bool) -> Result<ServiceLabelSettings, LabelProblem> {
        var settings = ServiceLabelSettings()
        func value(_ key: String) -> String? {
            guard let text = labels[key] else { return nil }
            let value = trimmed(text)
            return value.isEmpty ? nil : value
        }
        func problem(_ key: String, _ text: String, _ expected: String) -> LabelProblem {
            LabelProblem("\(owner): label \(key) '\(DiscoveredValues.shown(text, quoted: false))' is not \(expected)", field: "service")
        }
        if let text = value(balancer) {
            guard let kind = BalancerKind(rawValue: text) else {
                return .failure(problem(balancer, text, "a balancer (round_robin, least_conn, p2c_ewma or consistent_hash)"))
            }
            settings.balancer = kind
        }
        if let text = value(hashOn) {
            if text == "source" {
                settings.hashOn = .sourceAddress
            } else if let key = LabelValues.sticky(text), isKeyName(key) {
                settings.hashOn = switch key { case .cookie(let name): .cookie(name); case .header(let name): .header(name) }
            } else {
                return .failure(problem(hashOn, text, "header:NAME, cookie:NAME or source"))
            }
        }
        for (key, range, assign) in [
            (healthRise, 1...100, { (s: inout ServiceLabelSettings, v: Int) in s.healthRise = v }),
            (healthFall, 1...100, { (s: inout ServiceLabelSettings, v: Int) in s.healthFall = v }),
            (retries, 0...5, { (s: inout ServiceLabelSettings, v: Int) in s.retryAttempts = v }),
        ] {
            guard let text = value(key) else { continue }
            guard let number = LabelValues.integer(text, in: range) else {
                return .failure(problem(key, text, "a whole number from \(range.lowerBound) to \(range.upperBound)"))
            }
            assign(&settings, number)
        }
        for (key, assign) in [
            (healthInterval, { (s: inout ServiceLabelSettings, v: Int) in s.healthIntervalMs = v }),
            (healthTimeout, { (s: inout ServiceLabelSettings, v: Int) in s.healthTimeoutMs = v }),
        ] {
            guard let text = value(key) else { continue }
            guard let ms = LabelValues.durationMilliseconds(text) else {
                return .failure(problem(key, text, "a duration like 2s or 500ms (above zero, at most 24h)"))
            }
            assign(&settings, ms)
        }
        let interval = settings.healthIntervalMs ?? HealthPolicy().intervalMs
        if let timeout = settings.healthTimeoutMs, timeout > interval {
            return .failure(LabelProblem("\(owner): label \(healthTimeout) (\(timeout) ms) is longer than the health interval (\(interval) ms); make it shorter", field: "service"))
        }
        if let text = value(upstreamProtocol) {
            switch UpstreamTransport.WireProtocol(rawValue: text) {
            case .http1?: settings.upstreamProtocol = .http1
            case .h2c?:
                if httpCheck {
                    return .failure(LabelProblem("\(owner): label \(upstreamProtocol)=h2c: an HTTP/2-only endpoint does not answer the HTTP/1.1 check \(healthPath) asks for; drop one of them", field: "service"))
                }
                settings.upstreamProtocol = .h2c
            case .h2?, nil:
                return .failure(problem(upstreamProtocol, text, "http1 or h2c (h2 needs upstream TLS settings, which only services.yml carries)"))
            }
        }
        if let text = value(canaryTrack) {
            if let bad = DiscoveredValues.checkName(text, field: "track") { return .failure(LabelProblem("\(owner): label \(canaryTrack): \(bad.message)", field: bad.field)) }
            settings.canaryTrack = text
        }
        if let text = value(canaryPercent) {
            guard let permille = LabelValues.permille(text) else {
                return .failure(problem(canaryPercent, text, "a percentage from 0 to 100 with at most one decimal"))
            }
            settings.canaryPermille = permille
        }
        if let text = value(canarySticky) {
            guard let source = LabelValues.sticky(text), isKeyName(source) else {
                return .failure(problem(canarySticky, text, "cookie:NAME or header:NAME (NAME of letters, digits, '-', '_' and '.')"))
            }
            settings.canarySticky = source
        }
        if let text = value(canaryStickyCookie) {
            let expected = "true, false, or the cookie's max age (1s to 9600h), with switchyard.canary.sticky=cookie:NAME on the same workload"
            guard case .cookie = settings.canarySticky else { return .failure(problem(canaryStickyCookie, text, expected)) }
            switch text.lowercased() {
            case "true": settings.canaryStickyCookie = StickyCookieSettings()
            case "false": break
            default:
                guard let ms = LabelValues.durationMilliseconds(text), ms >= 1_000, ms <= 400 * 86_400_000 else {
                    return .failure(problem(canaryStickyCookie, text, expected))
                }
                settings.canaryStickyCookie = StickyCookieSettings(maxAgeSeconds: ms / 1_000)
            }
        }
        return .success(settings)
    }

    /// Whether a cookie or header name from a label is a plain token (what a label may
    /// name; services.yml stays the place for anything unusual).
    private static func isKeyName(_ source: StickySource) -> Bool {
        switch source {
        case .cookie(let name), .header(let name): DiscoveredValues.isName(name)
        }
    }
}

extension ServiceDefinition {
    /// The service with `settings` applied over its defaults. A canary needs an active
    /// track and a canary track the instances have (other than the active one); without
    /// them it is left out until a snapshot has them (a deployment mid-change).
    mutating func apply(_ settings: ServiceLabelSettings) {
        if let balancer = settings.balancer {
            self.balancer = balancer
            if balancer == .consistentHash && hashOn == nil { hashOn = .sourceAddress }
        }
        if let hashOn = settings.hashOn { self.hashOn = hashOn }
        if let value = settings.healthIntervalMs { health.intervalMs = value }
        if let value = settings.healthTimeoutMs { health.timeoutMs = value }
        if health.timeoutMs > health.intervalMs { health.timeoutMs = health.intervalMs }
        if let value = settings.healthRise { health.rise = value }
        if let value = settings.healthFall { health.fall = value }
        if let value = settings.retryAttempts { retry.attempts = value }
        if let value = settings.upstreamProtocol {
            upstream.protocol = value
            if value == .h2c && health.kind == .http { health.kind = .tcp }
        }
        if let track = settings.canaryTrack, let active = activeTrack, track != active, tracks.contains(track) {
            canary = CanaryConfig(track: track, permille: settings.canaryPermille ?? 0, sticky: settings.canarySticky,
                                  stickyCookie: settings.canaryStickyCookie)
        }
    }
}
