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

/// What a middleware does, as configured.
public enum MiddlewareKind: Sendable, Equatable {
    /// Remove the first of these prefixes the path starts with (on a segment boundary);
    /// the removed prefix goes upstream as `X-Forwarded-Prefix`.
    case stripPrefix([String])
    /// Put this in front of the path.
    case addPrefix(String)
    /// Send this path instead; the original goes upstream as `X-Replaced-Path`.
    case replacePath(String)
    /// Request headers: `set` replaces any field of the name, `remove` drops fields.
    case headers(set: [HeaderSetting], remove: [String])
    /// Give the request an ID in this header when it has none, and pass it upstream.
    case requestID(header: String)
    /// Only clients in these networks (the client address as `trusted_proxies` decides);
    /// others get 403.
    case ipAllow([Network])

    /// The middleware's type as written in the config.
    public var typeName: String {
        switch self {
        case .stripPrefix: "strip_prefix"
        case .addPrefix: "add_prefix"
        case .replacePath: "replace_path"
        case .headers: "headers"
        case .requestID: "request_id"
        case .ipAllow: "ip_allow"
        }
    }
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
    /// Lower-cased request ID header, empty when the route has no request_id.
    public let requestIDHeader: [UInt8]
    /// The request ID header as written (for the generated field), e.g. `X-Request-ID`.
    public let requestIDName: [UInt8]
    /// Networks a client must be in (every ip_allow of the route must hold); empty: any.
    public let allow: [[Network]]
    /// Anything to do at all: the request path skips every check when false.
    public let isEmpty: Bool
    /// The path is changed (the request line is rebuilt).
    public let rewritesPath: Bool
    /// The middleware names, in order (for explain and status).
    public let names: [String]

    public static let none = RouteSteps(names: [], kinds: [])

    init(names: [String], kinds: [MiddlewareKind]) {
        var strip: [[UInt8]] = []
        var add: [UInt8] = []
        var replace: [UInt8]?
        var drop: [[UInt8]] = []
        var lines: [UInt8] = []
        var idName = ""
        var allow: [[Network]] = []
        for kind in kinds {
            switch kind {
            case .stripPrefix(let prefixes): strip = prefixes.map { Array($0.utf8) }
            case .addPrefix(let prefix): add = Array(prefix.utf8)
            case .replacePath(let path): replace = Array(path.utf8)
            case .headers(let set, let remove):
                for name in remove + set.map(\.name) { drop.append(Array(name.lowercased().utf8)) }
                for setting in set { lines += Array("\(setting.name): \(setting.value)\r\n".utf8) }
            case .requestID(let header): idName = header
            case .ipAllow(let networks): allow.append(networks)
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
        self.requestIDHeader = Array(idName.lowercased().utf8)
        self.requestIDName = Array(idName.utf8)
        self.rewritesPath = !strip.isEmpty || !add.isEmpty || replace != nil
        self.allow = allow
        self.isEmpty = !rewritesPath && drop.isEmpty && lines.isEmpty && idName.isEmpty && allow.isEmpty
        self.names = names
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
            if ["strip_prefix", "add_prefix", "replace_path", "request_id"].contains(type), let other = seenTypes[type] {
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

    /// Whether the field `name` (any case) is one the route drops.
    @inlinable
    public func drops(_ name: UnsafeRawBufferPointer) -> Bool {
        for wanted in dropFields where wanted.count == name.count && RouteMatcher.caseBlindEqual(name, at: 0, wanted) {
            return true
        }
        return false
    }
}

/// Why a middleware or a route's middleware list is refused.
public struct MiddlewareProblem: Error, Sendable, Equatable {
    public var message: String
}
