// Middlewares: named once under `middlewares:` in switchyard.yml, listed per route, run in
// order. This file holds the configured values, their validation, and `RouteSteps`, the
// byte form a route carries to the data plane (Sources/YardProxy/RouteMiddlewares.swift
// and HeadWriter.swift apply it). docs/routing.md has the worked examples.

/// One header to set on the forwarded request.
public struct HeaderSetting: Sendable, Equatable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// Header edits of a `headers` middleware: on the request to the backend and on the
/// response to the client.
public struct HeaderEdits: Sendable, Equatable {
    /// Replace every field of the name with this one.
    public var set: [HeaderSetting] = []
    /// Add this field, keeping any the message already has.
    public var add: [HeaderSetting] = []
    /// Drop every field of the name.
    public var remove: [String] = []
    public var responseSet: [HeaderSetting] = []
    public var responseAdd: [HeaderSetting] = []
    public var responseRemove: [String] = []

    public init(set: [HeaderSetting] = [], add: [HeaderSetting] = [], remove: [String] = [],
                responseSet: [HeaderSetting] = [], responseAdd: [HeaderSetting] = [], responseRemove: [String] = []) {
        self.set = set
        self.add = add
        self.remove = remove
        self.responseSet = responseSet
        self.responseAdd = responseAdd
        self.responseRemove = responseRemove
    }
}

/// What a middleware does, as configured.
public enum MiddlewareKind: Sendable, Equatable {
    /// Remove the first of these prefixes the path starts with (on a segment boundary);
    /// the removed prefix goes upstream as `X-Forwarded-Prefix`.
    case stripPrefix([String])
    /// Put this in front of the path.
    case addPrefix(String)
    /// Send this path instead; the original goes upstream as `X-Replaced-Path`.
    case replacePath(String)
    /// Header edits on the request and the response.
    case headers(HeaderEdits)
    /// Give the request an ID in this header when it has none, and pass it upstream; with
    /// `traceparent`, pass on a valid W3C `traceparent` or start a new trace.
    case requestID(header: String, traceparent: Bool = true, sampled: Bool = false)
    /// Answer with a redirect to the same host, path and query under another scheme.
    case redirectScheme(RedirectScheme)
    /// Answer with a redirect for paths under (or equal to) a prefix.
    case redirect(PathRedirect)
    /// Answer with a redirect when a regex matches the request URL (RouteAnswers.swift).
    case redirectRegex(RegexRedirect)
    /// A token bucket per client (address or header); over it, 429 with Retry-After.
    case rateLimit(RateLimit)
    /// Users of an htpasswd file; others get 401 with WWW-Authenticate.
    case basicAuth(BasicAuth)
    /// Only clients in these networks (the client address as `trusted_proxies` decides);
    /// others get 403.
    case ipAllow([Network])
    /// gzip for text responses the client accepts it for (Compress.swift).
    case compress(Compress)
    /// Ask an auth service first: its 2xx lets the request through (ForwardAuth.swift).
    case forwardAuth(ForwardAuth)
    /// Copy a share of requests to a shadow service or track (Mirror.swift).
    case mirror(MirrorSettings)

    /// The middleware's type as written in the config.
    public var typeName: String {
        switch self {
        case .stripPrefix: "strip_prefix"
        case .addPrefix: "add_prefix"
        case .replacePath: "replace_path"
        case .headers: "headers"
        case .requestID: "request_id"
        case .ipAllow: "ip_allow"
        case .redirectScheme: "redirect_scheme"
        case .redirect, .redirectRegex: "redirect"
        case .rateLimit: "rate_limit"
        case .basicAuth: "basic_auth"
        case .compress: "compress"
        case .forwardAuth: "forward_auth"
        case .mirror: "mirror"
        }
    }
}

/// A middleware that may answer instead of forwarding, checked in the route's order.
public enum RouteGate: Sendable {
    /// 403 unless the client is in one of the networks.
    case allow([Network])
    case redirectScheme(RedirectScheme)
    case redirect(PathRedirect)
    case redirectRegex(RegexRedirect)
    /// 429 when the client's bucket is empty; `header` (lower-cased) names the key, empty
    /// for the client address.
    case rateLimit(RateLimiter, header: [UInt8])
    /// 401 unless the Authorization header names a user of the file.
    case basicAuth(BasicAuthGate)
}

/// A route's middlewares compiled to bytes for the request path.
///
/// Path changes apply in a fixed order whatever the list order: strip_prefix, then
/// add_prefix; replace_path stands alone (a route may list at most one of each, see
/// `RouteSteps.build`). Header edits apply in list order: a later `set` wins.
/// Threading: immutable, `Sendable`, read by every event loop.
public struct RouteSteps: Sendable {
    public let stripPrefixes: [[UInt8]]
    public let addPrefix: [UInt8]
    public let replacePath: [UInt8]?
    /// Lower-cased names of request fields to drop (removed and set ones).
    public let dropFields: [[UInt8]]
    /// `Name: value\r\n` lines to append, in order.
    public let addLines: [UInt8]
    /// The same two for the response to the client.
    public let responseDropFields: [[UInt8]]
    public let responseAddLines: [UInt8]
    /// The response head is edited (only then is it looked at field by field).
    public let editsResponse: Bool
    /// Lower-cased request ID header, empty when the route has no request_id.
    public let requestIDHeader: [UInt8]
    /// The request ID header as written (for the generated field), e.g. `X-Request-ID`.
    public let requestIDName: [UInt8]
    /// Pass on a valid `traceparent` or start a trace (request_id's `traceparent`).
    public let traceparent: Bool
    /// A started trace is marked sampled (trace-flags 01).
    public let traceSampled: Bool
    /// Networks a client must be in (every ip_allow of the route must hold); empty: any.
    public let allow: [[Network]]
    /// The middlewares that may answer themselves, in the route's order.
    public let gates: [RouteGate]
    /// gzip for the response (the route's compress middleware), nil for most routes.
    public let compress: CompressRule?
    /// The auth sub-request to make before forwarding (the route's forward_auth), nil for most routes.
    public let forwardAuth: ForwardAuthStep?
    /// Anything to do at all: the request path skips every check when false.
    public let isEmpty: Bool
    /// The path is changed (the request line is rebuilt).
    public let rewritesPath: Bool
    /// The middleware names, in order (for explain and status).
    public let names: [String]
    /// Where a share of the route's requests is copied (the last `mirror` listed).
    public let mirror: MirrorSettings?

    public static let none = RouteSteps(names: [], kinds: [])

    init(names: [String], kinds: [MiddlewareKind]) {
        var strip: [[UInt8]] = []
        var add: [UInt8] = []
        var replace: [UInt8]?
        var drop: [[UInt8]] = []
        var lines: [UInt8] = []
        var responseDrop: [[UInt8]] = []
        var responseLines: [UInt8] = []
        var idName = ""
        var trace = false
        var sampled = false
        var allow: [[Network]] = []
        var gates: [RouteGate] = []
        var compress: CompressRule?
        var forwardAuth: ForwardAuthStep?
        var mirror: MirrorSettings?
        func line(_ setting: HeaderSetting) -> [UInt8] { Array("\(setting.name): \(setting.value)\r\n".utf8) }
        for (name, kind) in zip(names, kinds) {
            switch kind {
            case .stripPrefix(let prefixes): strip = prefixes.map { Array($0.utf8) }
            case .addPrefix(let prefix): add = Array(prefix.utf8)
            case .replacePath(let path): replace = Array(path.utf8)
            case .headers(let edits):
                for name in edits.remove + edits.set.map(\.name) { drop.append(Array(name.lowercased().utf8)) }
                for setting in edits.set + edits.add { lines += line(setting) }
                for name in edits.responseRemove + edits.responseSet.map(\.name) { responseDrop.append(Array(name.lowercased().utf8)) }
                for setting in edits.responseSet + edits.responseAdd { responseLines += line(setting) }
            case .requestID(let header, let traceparent, let sample):
                idName = header
                trace = traceparent
                sampled = sample
            case .ipAllow(let networks):
                allow.append(networks)
                gates.append(.allow(networks))
            case .redirectScheme(let redirect): gates.append(.redirectScheme(redirect))
            case .redirect(let redirect): gates.append(.redirect(redirect))
            case .redirectRegex(let redirect): gates.append(.redirectRegex(redirect))
            case .rateLimit(let limit):
                gates.append(.rateLimit(RateLimiterRegistry.shared.limiter(name: name, settings: limit),
                                        header: Array((limit.header ?? "").lowercased().utf8)))
            case .basicAuth(let auth):
                gates.append(.basicAuth(BasicAuthRegistry.shared.gate(name: name, settings: auth)))
                if !auth.forwardAuthorization { drop.append(Array("authorization".utf8)) }
            case .compress(let settings): compress = CompressRule(settings)
            case .forwardAuth(let settings):
                forwardAuth = ForwardAuthStep(settings)
                // What the auth service says about the client replaces what the client says.
                for name in settings.responseHeaders { drop.append(Array(name.lowercased().utf8)) }
            case .mirror(let settings): mirror = settings
            }
        }
        // The proxy's own X-Forwarded-Prefix / X-Replaced-Path replace what a client sent.
        if !strip.isEmpty { drop.append(Array("x-forwarded-prefix".utf8)) }
        if replace != nil { drop.append(Array("x-replaced-path".utf8)) }
        self.stripPrefixes = strip
        self.addPrefix = add
        self.replacePath = replace
        self.dropFields = drop
        self.addLines = lines
        self.responseDropFields = responseDrop
        self.responseAddLines = responseLines
        self.editsResponse = !responseDrop.isEmpty || !responseLines.isEmpty
        self.requestIDHeader = Array(idName.lowercased().utf8)
        self.requestIDName = Array(idName.utf8)
        self.traceparent = trace && !idName.isEmpty
        self.traceSampled = sampled
        self.rewritesPath = !strip.isEmpty || !add.isEmpty || replace != nil
        self.allow = allow
        self.gates = gates
        self.compress = compress
        self.forwardAuth = forwardAuth
        self.isEmpty = !rewritesPath && drop.isEmpty && lines.isEmpty && idName.isEmpty && gates.isEmpty && !editsResponse && compress == nil && forwardAuth == nil && mirror == nil
        self.names = names
        self.mirror = mirror
    }

    /// The steps for a route listing `names`, or a message saying why the list cannot be
    /// applied (an unknown name, two path changes of one kind, replace_path with another).
    public static func build(names: [String], defined: [String: MiddlewareKind]) -> Result<RouteSteps, MiddlewareProblem> {
        var kinds: [MiddlewareKind] = []
        var seenTypes: [String: String] = [:]
        for name in names {
            guard let kind = defined[name] else {
                let known = defined.keys.sorted()
                return .failure(MiddlewareProblem(message: "no middleware named '\(name)'; "
                    + (known.isEmpty ? "define it under 'middlewares:'" : "defined: \(known.joined(separator: ", "))")))
            }
            let type = kind.typeName
            if ["strip_prefix", "add_prefix", "replace_path", "request_id", "redirect_scheme", "compress", "forward_auth"].contains(type), let other = seenTypes[type] {
                return .failure(MiddlewareProblem(message: "'\(name)' and '\(other)' are both \(type); a route takes one"))
            }
            seenTypes[type] = name
            kinds.append(kind)
        }
        if let replace = seenTypes["replace_path"], let other = seenTypes["strip_prefix"] ?? seenTypes["add_prefix"] {
            return .failure(MiddlewareProblem(message: "'\(replace)' (replace_path) sets the whole path; '\(other)' would have no effect, list one of them"))
        }
        return .success(RouteSteps(names: names, kinds: kinds))
    }

    /// The length of the first strip prefix `path` starts with on a segment boundary
    /// (`/api` strips `/api` and `/api/x`, not `/apis`), or 0.
    @inlinable
    public func strippedLength(_ path: UnsafeRawBufferPointer) -> Int {
        for prefix in stripPrefixes where prefix.count <= path.count {
            var same = true
            for i in 0..<prefix.count where path[i] != prefix[i] { same = false; break }
            guard same else { continue }
            if prefix.count == path.count || path[prefix.count] == UInt8(ascii: "/") || prefix.last == UInt8(ascii: "/") {
                return prefix.count
            }
        }
        return 0
    }

    /// Whether the request field `name` (any case) is one the route drops.
    @inlinable
    public func drops(_ name: UnsafeRawBufferPointer) -> Bool {
        RouteSteps.listed(name, in: dropFields)
    }

    /// Whether the response field `name` (any case) is one the route drops.
    @inlinable
    public func dropsFromResponse(_ name: UnsafeRawBufferPointer) -> Bool {
        RouteSteps.listed(name, in: responseDropFields)
    }

    /// Whether `name` is `lowered` in any case (`lowered` is lower-case ASCII).
    @inlinable
    public static func sameName(_ name: UnsafeRawBufferPointer, _ lowered: StaticString) -> Bool {
        guard name.count == lowered.utf8CodeUnitCount else { return false }
        let wanted = lowered.utf8Start
        for i in 0..<name.count {
            var c = name[i]
            if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
            if c != wanted[i] { return false }
        }
        return true
    }

    @inlinable
    static func listed(_ name: UnsafeRawBufferPointer, in names: [[UInt8]]) -> Bool {
        for wanted in names where wanted.count == name.count && RouteMatcher.caseBlindEqual(name, at: 0, wanted) {
            return true
        }
        return false
    }
}

/// Why a middleware or a route's middleware list is refused.
public struct MiddlewareProblem: Error, Sendable, Equatable {
    public var message: String
}
