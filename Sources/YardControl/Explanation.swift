#if canImport(Glibc)
import Glibc
#endif
import YardBalancing
import YardModel

/// `switchyard explain`: which route, service, track and endpoints a request would get,
/// and why. Pure: reads a routing table and runs the same `TrafficSplit` the request path
/// runs (override header, sticky key, canary share), so its answer is what curl gets.
public struct Explanation: Codable, Sendable {
    public var host: String
    public var path: String
    public var route: String?
    public var service: String?
    public var activeTrack: String?
    /// The track this request goes to, and the rule that decided (`TrafficSplit.Rule.name`).
    public var track: String?
    public var rule: String?
    public var balancer: String?
    public var candidates: [String]
    public var answer: String
    public var reasons: [String]

    enum CodingKeys: String, CodingKey {
        case host, path, route, service, track, rule, balancer, candidates, answer, reasons
        case activeTrack = "active_track"
    }

    /// The request a query describes: `host`, `path` (with an optional `?query`), `method`
    /// (default GET), `header` (one `Name: value`), `headers` (several, one per line) and
    /// `client` (the client's IP, default 127.0.0.1).
    struct Request {
        var host: String
        var path: String
        var method: String
        var headers: [(name: String, value: String)]
        var client: String

        init(query: [String: String]) {
            host = query["host"] ?? ""
            path = query["path"].map { $0.isEmpty ? "/" : $0 } ?? "/"
            method = query["method"].flatMap { $0.isEmpty ? nil : $0 } ?? "GET"
            let lines = (query["headers"].map { $0.split(separator: "\n").map(String.init) } ?? []) + (query["header"].map { [$0] } ?? [])
            headers = lines.compactMap { line -> (name: String, value: String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                let name = trimmed(line[..<colon])
                let value = trimmed(line[line.index(after: colon)...])
                return name.isEmpty ? nil : (name, value)
            }
            client = query["client"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        }

        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        func cookie(_ name: String) -> String? {
            guard let cookies = header("cookie") else { return nil }
            for pair in cookies.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, trimmed(parts[0]) == name { return trimmed(parts[1]) }
            }
            return nil
        }
    }

    static func explain(table: RoutingTable, query: [String: String]) -> Explanation {
        let request = Request(query: query)
        let host = request.host
        let path = request.path
        var result = Explanation(host: host, path: path, route: nil, service: nil, activeTrack: nil, track: nil, rule: nil,
                                 balancer: nil, candidates: [], answer: "", reasons: [])
        let target = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let hostBytes = Array(host.utf8)
        let pathBytes = Array((target.first.map(String.init) ?? path).utf8)
        let queryBytes = Array((target.count > 1 ? String(target[1]) : "").utf8)
        let methodBytes = Array(request.method.utf8)
        let fields = ExplainFields(headers: request.headers)
        var matched: Route?
        hostBytes.withUnsafeBytes { h in
            pathBytes.withUnsafeBytes { p in
                methodBytes.withUnsafeBytes { m in
                    queryBytes.withUnsafeBytes { q in
                        let hostLength = RoutingTable.hostLengthWithoutPort(h)
                        // The table's order: every route tried before the one that matched says why it did not.
                        for route in table.routes {
                            guard let miss = route.matcher.miss(host: h, hostLength: hostLength, path: p, method: m, query: q, fields: fields) else {
                                matched = route
                                return
                            }
                            result.reasons.append("route \(routeName(route)) did not match: \(missText(miss, route: route, request: request))")
                        }
                    }
                }
            }
        }
        guard let route = matched else {
            result.answer = "404 no route"
            result.reasons.append("no route matches \(request.method) host '\(host)' and path '\(path)'; routes are tried by priority, then most specific first (exact host, wildcard, any; exact path; longest prefix; path regex; no path)")
            return result
        }
        let name = routeName(route)
        result.route = name
        result.reasons.append("route \(name) matched (\(route.match.hosts.isEmpty ? "any host" : "host \(route.match.hosts.joined(separator: " or "))"), \(route.match.pathRegex.map { "path regex \($0.pattern)" } ?? (route.match.exactPath ? "exact path \(route.match.path)" : "path prefix \(route.match.path)"))\(route.match.methods.isEmpty && route.match.headers.isEmpty && route.match.query.isEmpty ? "" : ", and its method/header/query conditions"))")
        if !route.steps.names.isEmpty {
            result.reasons.append("the route runs middlewares \(route.steps.names.joined(separator: ", ")), in that order")
        }
        if !route.steps.allow.isEmpty {
            // The client explain is told about is the client ip_allow checks (no proxy in between).
            let allowed = addressBytes(request.client).map { bytes in
                bytes.withUnsafeBytes { address in route.steps.allow.allSatisfy { networks in networks.contains { $0.contains(address) } } }
            } ?? false
            guard allowed else {
                result.answer = "403 ip_allow"
                result.reasons.append("client \(request.client) is not in the route's ip_allow networks (pass --client ADDRESS to explain another client)")
                return result
            }
            result.reasons.append("client \(request.client) is in the route's ip_allow networks")
        }
        if let answer = gateAnswer(route, request: request, path: pathBytes, query: target.count > 1 ? queryBytes : nil, into: &result.reasons) {
            result.answer = answer
            return result
        }
        result.service = route.serviceName
        guard let service = route.service else {
            result.answer = "503 service not discovered"
            result.reasons.append("service '\(route.serviceName)' is not in discovery")
            return result
        }
        result.activeTrack = service.activeTrack
        result.balancer = service.balancer.rawValue
        result.reasons.append(service.activeTrack.map { "track '\($0)' is active" } ?? "the service has no active track: every endpoint serves")

        // MARK: The track, by the request path's rules
        let override = overrideRequest(service, request: request, reasons: &result.reasons)
        let sticky = stickyPoint(service, request: request, signed: table.stickyCookies)
        var split = TrafficSplit(canaryPermille: service.canaryPermille)
        let decision = split.decide(override: override, stickyPoint: sticky, activeHasEndpoints: !service.activeEndpoints.isEmpty)
        result.rule = decision.rule.name
        let canaryTrack = service.canary?.track ?? "canary"
        let endpoints: [Endpoint]
        switch decision.track {
        case .pinned(let index):
            let name = String(decoding: service.trackEndpoints[index].track, as: UTF8.self)
            result.track = name
            endpoints = service.trackEndpoints[index].endpoints
            result.reasons.append("the override header pins track '\(name)'; the canary split is not consulted")
        case .canary:
            result.track = canaryTrack
            endpoints = service.canaryEndpoints
        case .active:
            result.track = service.activeTrack
            endpoints = service.activeEndpoints
        }
        let share = formatPermille(service.canaryPermille)
        switch decision.rule {
        case .overrideHeader: break
        case .noCanary:
            if let canary = service.canary {
                result.reasons.append(canary.permille == 0 ? "canary '\(canary.track)' is at 0 %: every request goes to the active track"
                    : "canary '\(canary.track)' has no routable endpoint: every request goes to the active track")
            }
        case .canaryAtFull:
            result.reasons.append("canary '\(canaryTrack)' is at 100 %: every request goes to it")
        case .activeTrackEmpty:
            result.reasons.append("the active track has no routable endpoint: the canary '\(canaryTrack)' serves")
        case .stickyKey(let point):
            result.reasons.append("the sticky key puts this client at point \(point) of 1000; the canary '\(canaryTrack)' takes points below \(service.canaryPermille) (\(share)), so this client goes to \(decision.track == .canary ? "the canary" : "the active track") every time")
        case .canaryShare:
            let stable = service.activeTrack ?? "the active track"
            result.track = "\(stable) or \(canaryTrack)"
            result.reasons.append("canary '\(canaryTrack)' takes exactly \(share) of requests without a sticky key (smooth split over every 1000): this request goes to '\(stable)' or '\(canaryTrack)'")
            if service.canary?.stickyCookie != nil, case .cookie(let name)? = service.canary?.sticky {
                result.reasons.append(table.stickyCookies == nil
                    ? "the sticky cookie's key is not loaded from the state store yet: no cookie '\(name)' is set or trusted"
                    : "the request has no cookie '\(name)' signed by this fleet: the response sets one that keeps the client on the track it gets")
            }
        }

        // MARK: The endpoints
        let considered: [Endpoint]
        if case .canaryShare = decision.rule {
            considered = service.activeEndpoints + service.canaryEndpoints
        } else {
            considered = endpoints
        }
        let tracks = Set(considered.map(\.track))
        for endpoint in service.endpoints where tracks.contains(endpoint.track) || (considered.isEmpty && endpoint.track == result.track) {
            if endpoint.draining {
                result.reasons.append("\(endpoint.id) is draining")
            } else if endpoint.ejected {
                result.reasons.append("\(endpoint.id) is ejected after consecutive failures")
            } else if endpoint.effectiveWeight == 0 {
                result.reasons.append("\(endpoint.id) is \(endpoint.health)")
            }
        }
        result.candidates = considered.map { "\($0.id)\($0.track.map { " (\($0))" } ?? "") weight \(Double($0.effectiveWeight) / 100)" }
        if considered.isEmpty {
            result.answer = "503 no endpoint"
        } else if case .pinned = decision.track {
            result.answer = "forwarded to one of \(considered.count) endpoint(s) of track '\(result.track ?? "")' (rotation)"
        } else {
            result.answer = "forwarded by \(service.balancer.rawValue) to one of \(considered.count) endpoint(s)"
                + (result.track.map { " of \($0)" } ?? "")
            if service.panicking { result.reasons.append("panic mode: no endpoint is healthy, all are used") }
        }
        if service.limits.limited { result.reasons.append(limitsReason(service, considered)) }
        return result
    }

    /// `max_connections` as it stands: the slots in use per candidate, and the queue.
    private static func limitsReason(_ service: Service, _ considered: [Endpoint]) -> String {
        let limits = service.limits
        let inUse = considered.map { "\($0.id) \($0.slots?.count ?? 0)/\(limits.maxConnections)" }.joined(separator: ", ")
        let full = !considered.isEmpty && considered.allSatisfy { ($0.slots?.count ?? 0) >= limits.maxConnections }
        let timeout = limits.queueTimeoutMs > 0 ? "\(limits.queueTimeoutMs) ms" : "timeouts.queue"
        return "max_connections \(limits.maxConnections) per endpoint, slots in use: \(inUse.isEmpty ? "none" : inUse); "
            + "\(service.waitLine?.waiting ?? 0) waiting (max_pending \(limits.maxPending), queue_timeout \(timeout))"
            + (full ? "; every endpoint is full: the request would wait, or get 503 with Retry-After" : "")
    }

    /// A route's name for explain: its configured name, or its match summary.
    private static func routeName(_ route: Route) -> String {
        route.name.map { "'\($0)' (\(route.match.summary))" } ?? route.match.summary
    }

    private static func missText(_ miss: RouteMiss, route: Route, request: Request) -> String {
        let match = route.match
        switch miss {
        case .host:
            return "host '\(request.host)' is not \(match.hosts.joined(separator: " or "))"
                + (match.hosts.contains { $0.hasPrefix("*.") } ? " (a '*.' wildcard stands for exactly one label)" : "")
        case .path:
            if let regex = match.pathRegex { return "the path does not match the regex \(regex.pattern)" }
            return match.exactPath ? "the path is not exactly \(match.path)" : "the path does not start with \(match.path)"
        case .method:
            return "method \(request.method) is not \(match.methods.joined(separator: " or "))"
        case .header(let index):
            guard index < match.headers.count else { return "a header condition failed" }
            let condition = match.headers[index]
            return condition.value.map { "no header \(condition.name) equal to '\($0)'" } ?? "no header \(condition.name)"
        case .query(let index):
            guard index < match.query.count else { return "a query condition failed" }
            let condition = match.query[index]
            return condition.value.map { "no query parameter \(condition.name)=\($0)" } ?? "no query parameter \(condition.name)"
        }
    }

    /// What the request's override header asks for, as the request path computes it.
    private static func overrideRequest(_ service: Service, request: Request, reasons: inout [String]) -> TrafficSplit.Override {
        guard let rule = service.trackOverride, service.trackEndpoints.count > 1,
              let value = request.header(rule.header), !value.isEmpty else { return .absent }
        guard let index = service.trackEndpoints.firstIndex(where: { String(decoding: $0.track, as: UTF8.self) == value }) else {
            reasons.append("header \(rule.header): \(value) names no track of '\(service.name)'; ignored")
            return .unknownTrack
        }
        if !rule.allow.isEmpty {
            let allowed = addressBytes(request.client).map { bytes in bytes.withUnsafeBytes { peer in rule.allow.contains { $0.contains(peer) } } } ?? false
            guard allowed else {
                reasons.append("header \(rule.header): \(value) ignored: client \(request.client) is not in the override's allow list (pass --client ADDRESS to explain another client)")
                return .notAllowed
            }
        }
        return .track(index)
    }

    /// The request's sticky point, or -1 (the request path's `stickyPoint`; a proxy-set
    /// cookie counts only when `signed` verifies it).
    private static func stickyPoint(_ service: Service, request: Request, signed: StickyCookieValues?) -> Int {
        guard let sticky = service.canary?.sticky, service.canaryPermille > 0 else { return -1 }
        if service.canary?.stickyCookie != nil, case .cookie(let name) = sticky {
            guard let signed, let value = request.cookie(name) else { return -1 }
            return Array(value.utf8).withUnsafeBytes { signed.point(of: $0) }
        }
        let key: String?
        switch sticky {
        case .header(let name): key = request.header(name)
        case .cookie(let name): key = request.cookie(name)
        }
        guard let key, !key.isEmpty else { return -1 }
        return TrafficSplit.stickyPoint(key: key)
    }

    /// An IPv4 or IPv6 literal as 4 or 16 bytes.
    private static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// The explained request's headers as the route matcher reads them.
private struct ExplainFields: RouteFields {
    let headers: [(name: [UInt8], value: [UInt8])]

    init(headers: [(name: String, value: String)]) {
        self.headers = headers.map { (Array($0.name.lowercased().utf8), Array($0.value.utf8)) }
    }

    func contains(name: [UInt8], value: [UInt8]?) -> Bool {
        headers.contains { $0.name == name && (value == nil || $0.value == value) }
    }
}

/// `text` without leading and trailing spaces and tabs.
private func trimmed(_ text: Substring) -> String {
    String(text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
}

extension Explanation {
    /// What the route's redirect, rate_limit and basic_auth middlewares and its own
    /// settings do to the request: the answer when one of them answers it (as a plain-HTTP
    /// request; a redirect_scheme to https forwards what came over TLS), else nil.
    static func gateAnswer(_ route: Route, request: Request, path: [UInt8], query: [UInt8]?, into reasons: inout [String]) -> String? {
        let safe = request.method == "GET" || request.method == "HEAD"
        for gate in route.steps.gates {
            switch gate {
            case .allow:
                continue
            case .redirectScheme(let redirect):
                var location: [UInt8] = []
                Array(request.host.utf8).withUnsafeBytes { h in
                    path.withUnsafeBytes { p in
                        if let query {
                            query.withUnsafeBytes { q in redirect.writeLocation(host: h, path: p, query: q) { location += $0 } }
                        } else {
                            redirect.writeLocation(host: h, path: p, query: nil) { location += $0 }
                        }
                    }
                }
                let status = RedirectStatus.code(permanent: redirect.permanent, safeMethod: safe)
                reasons.append("redirect_scheme answers \(status) with Location \(String(decoding: location, as: UTF8.self)) (a request that came over \(redirect.scheme) is forwarded)")
                return "\(status) redirect_scheme"
            case .redirect(let redirect):
                var location: [UInt8] = []
                let applies: Bool = path.withUnsafeBytes { p in
                    guard let matched = redirect.matchedLength(p) else { return false }
                    if let query {
                        query.withUnsafeBytes { q in redirect.writeLocation(path: p, matched: matched, query: q) { location += $0 } }
                    } else {
                        redirect.writeLocation(path: p, matched: matched, query: nil) { location += $0 }
                    }
                    return true
                }
                guard applies else {
                    reasons.append("redirect from \(redirect.from) does not apply to this path")
                    continue
                }
                let status = RedirectStatus.code(permanent: redirect.permanent, safeMethod: safe)
                reasons.append("redirect answers \(status) with Location \(String(decoding: location, as: UTF8.self))")
                return "\(status) redirect"
            case .redirectRegex(let redirect):
                var location: [UInt8] = []
                let host = Array(request.host.utf8)
                let outcome = host.withUnsafeBytes { h in
                    path.withUnsafeBytes { p in
                        query.map { q in q.withUnsafeBytes { redirect.writeLocation(secure: false, host: h, path: p, query: $0) { location += $0 } } }
                            ?? redirect.writeLocation(secure: false, host: h, path: p, query: nil) { location += $0 }
                    }
                }
                let url = "http://\(request.host)\(path.isEmpty ? "/" : String(decoding: path, as: UTF8.self))\(query.map { "?" + String(decoding: $0, as: UTF8.self) } ?? "")"
                switch outcome {
                case .noMatch:
                    reasons.append("redirect regex '\(redirect.regex.pattern)' does not match \(url)")
                    continue
                case .refused:
                    reasons.append("redirect regex '\(redirect.regex.pattern)' matches \(url) but '\(redirect.replacement)' makes a Location with a space, control or non-ASCII byte: forwarded, not redirected")
                    continue
                case .redirected:
                    let status = RedirectStatus.code(permanent: redirect.permanent, safeMethod: safe)
                    reasons.append("redirect regex '\(redirect.regex.pattern)' matches \(url): answers \(status) with Location \(String(decoding: location, as: UTF8.self))")
                    return "\(status) redirect"
                }
            case .rateLimit(let limiter, _):
                let key = limiter.settings.header.map { "its \($0) header (else its address)" } ?? "its address"
                reasons.append("rate_limit: each client (by \(key)) may send \(limiter.settings.burst) at once, then \(limiter.settings.rate) per second; over it, 429")
            case .basicAuth(let auth):
                reasons.append("basic_auth: only users of \(auth.settings.file) pass (realm \(auth.settings.realm)); others get 401")
            }
        }
        if let auth = route.steps.forwardAuth {
            reasons.append("forward_auth: forwarded only if service '\(auth.service)' answers 2xx; its other answers go to the client, no answer within \(auth.timeoutMs) ms is 504, no connection 502")
        }
        if let compress = route.steps.compress {
            reasons.append("compress: gzip (level \(compress.level)) for listed text types of at least \(compress.minBytes) bytes, when the client's Accept-Encoding allows gzip")
        }
        if let mirror = route.steps.mirror {
            let target = (mirror.service.map { "service '\($0)'" } ?? "the route's service") + (mirror.track.map { " (track \($0))" } ?? "")
            let share = "\(mirror.permille / 10)" + (mirror.permille % 10 == 0 ? "" : ".\(mirror.permille % 10)")
            reasons.append("mirror: a copy of \(share) % of requests goes to \(target), bodies up to \(mirror.maxBodyBytes) bytes; its answers are dropped")
        }
        let settings = route.settings
        if settings != .none {
            var parts: [String] = []
            if settings.maxBodyBytes > 0 { parts.append("bodies up to \(settings.maxBodyBytes) bytes (413 above)") }
            if settings.connectTimeoutMs > 0 { parts.append("connect timeout \(settings.connectTimeoutMs) ms") }
            if settings.responseTimeoutMs > 0 { parts.append("response timeout \(settings.responseTimeoutMs) ms") }
            if settings.idleTimeoutMs > 0 { parts.append("idle timeout \(settings.idleTimeoutMs) ms") }
            if let retry = settings.retry { parts.append("\(retry.attempts) retries") }
            reasons.append("the route's own settings: \(parts.joined(separator: ", "))")
        }
        return nil
    }
}
