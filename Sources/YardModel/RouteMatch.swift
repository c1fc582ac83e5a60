// What a route asks of a request, as configured (`RouteMatch`) and as the data plane
// compares it (`RouteMatcher`, bytes only).
//
// Matching rules (docs/routing.md has the worked examples):
// - host: any of a list; `shop.example.com` exact, `*.example.com` exactly one label in front
//   of `.example.com` (`a.example.com`, not `example.com` nor `a.b.example.com`). Case-blind,
//   the Host's port ignored.
// - path: a prefix (`path:`) or the whole path (`path_exact:`), compared byte for byte
//   after normalization (dot segments, escapes), without the query. Or `path_regex:`, a
//   LinearRegex searched in that path (unanchored, as Traefik's PathRegexp and nginx's
//   `location ~`: write `^...$` for the whole path); only routes with one pay for it.
// - methods: any of a list, exact (methods are case-sensitive; `GET` does not match `HEAD`).
// - headers: a field with exactly this value (any of repeated fields), or just present.
// - query: a parameter with exactly this raw value (not percent-decoded).
// - priority: higher wins; equal priorities fall back to the most specific route.

/// A header or query condition: `value` nil means "present with any value".
public struct RouteCondition: Sendable, Equatable, Hashable {
    /// Header names are lower-cased; query parameter names are kept as written.
    public var name: String
    public var value: String?

    public init(name: String, value: String?) {
        self.name = name
        self.value = value
    }
}

/// The request properties a route matches, as configured.
public struct RouteMatch: Sendable, Equatable, Hashable {
    /// Lower-cased host names or `*.suffix` patterns; empty matches any host.
    public var hosts: [String] = []
    /// A path prefix (always starts with `/`), or the whole path when `exactPath`.
    public var path = "/"
    public var exactPath = false
    /// A regex the path must match (then `path` is `/`); nil for prefix and exact routes.
    public var pathRegex: LinearRegex?
    /// Method tokens as written (`GET`, `POST`); empty matches any method.
    public var methods: [String] = []
    public var headers: [RouteCondition] = []
    public var query: [RouteCondition] = []
    /// Higher is tried first; 0 by default.
    public var priority = 0

    public init(hosts: [String] = [], path: String = "/", exactPath: Bool = false, methods: [String] = [],
                headers: [RouteCondition] = [], query: [RouteCondition] = [], priority: Int = 0, pathRegex: LinearRegex? = nil) {
        self.hosts = hosts
        self.path = path
        self.exactPath = exactPath
        self.pathRegex = pathRegex
        self.methods = methods
        self.headers = headers
        self.query = query
        self.priority = priority
    }

    /// A short name for messages, explain and status: `shop.example.com/api`, `*/x (exact) GET`.
    public var summary: String {
        var text = (hosts.isEmpty ? "*" : hosts.joined(separator: ","))
        if let pathRegex { text += " ~\(pathRegex.pattern)" } else { text += path }
        if exactPath { text += " (exact)" }
        if !methods.isEmpty { text += " " + methods.joined(separator: ",") }
        for header in headers { text += " [\(header.name)\(header.value.map { "=\($0)" } ?? "")]" }
        for parameter in query { text += " ?\(parameter.name)\(parameter.value.map { "=\($0)" } ?? "")" }
        if priority != 0 { text += " priority \(priority)" }
        return text
    }
}

/// Header fields of the request being routed, as the data plane holds them.
///
/// Threading: called on the event loop that owns the request; implementations compare
/// bytes in place and allocate nothing.
public protocol RouteFields {
    /// Whether a field named `name` (lower-case bytes; compare case-blind) is present and,
    /// when `value` is given, one such field's value equals it exactly.
    func contains(name: [UInt8], value: [UInt8]?) -> Bool
}

/// No header fields (the routing calls that do not look at them).
public struct NoRouteFields: RouteFields {
    public init() {}
    @inlinable public func contains(name: [UInt8], value: [UInt8]?) -> Bool { false }
}

/// Why a route did not take a request (nil from `RouteMatcher.miss` means it did).
public enum RouteMiss: Sendable, Equatable {
    case host, path, method
    /// The index into `RouteMatch.headers` / `.query` of the first unmet condition.
    case header(Int), query(Int)
}

/// A byte condition: name and optional value.
public struct ByteCondition: Sendable {
    public let name: [UInt8]
    public let value: [UInt8]?

    init(_ condition: RouteCondition, lowercaseName: Bool) {
        self.name = Array((lowercaseName ? condition.name.lowercased() : condition.name).utf8)
        self.value = condition.value.map { Array($0.utf8) }
    }
}

/// `RouteMatch` as bytes, compared in place against a request.
public struct RouteMatcher: Sendable {
    /// Lower-cased exact host names.
    public let exactHosts: [[UInt8]]
    /// `.example.com` for `*.example.com`.
    public let wildcardHosts: [[UInt8]]
    public let path: [UInt8]
    public let exactPath: Bool
    public let methods: [[UInt8]]
    public let headers: [ByteCondition]
    public let query: [ByteCondition]
    /// The path regex (`path_regex:`), nil for most routes.
    public let pathRegex: LinearRegex?
    /// Any of path regex, methods, headers, query: the plain host+path routes skip them all.
    public let hasConditions: Bool

    public init(_ match: RouteMatch) {
        exactHosts = match.hosts.filter { !$0.hasPrefix("*.") }.map { Array($0.lowercased().utf8) }
        wildcardHosts = match.hosts.filter { $0.hasPrefix("*.") }.map { Array($0.lowercased().utf8.dropFirst()) }
        path = Array(match.path.utf8)
        exactPath = match.exactPath
        methods = match.methods.map { Array($0.utf8) }
        headers = match.headers.map { ByteCondition($0, lowercaseName: true) }
        query = match.query.map { ByteCondition($0, lowercaseName: false) }
        pathRegex = match.pathRegex
        hasConditions = !methods.isEmpty || !headers.isEmpty || !query.isEmpty || pathRegex != nil
    }

    /// nil when the request matches, else the first property that does not.
    ///
    /// `host` is the Host value with its port already cut to `hostLength`; `query` the
    /// bytes after `?` (empty when none). Pure; allocates nothing.
    @inlinable
    public func miss<F: RouteFields>(
        host: UnsafeRawBufferPointer, hostLength: Int, path requestPath: UnsafeRawBufferPointer,
        method: UnsafeRawBufferPointer, query requestQuery: UnsafeRawBufferPointer, fields: F
    ) -> RouteMiss? {
        if !exactHosts.isEmpty || !wildcardHosts.isEmpty {
            var hostMatches = false
            for wanted in exactHosts where wanted.count == hostLength && RouteMatcher.caseBlindEqual(host, at: 0, wanted) {
                hostMatches = true
                break
            }
            if !hostMatches {
                for suffix in wildcardHosts where hostLength > suffix.count {
                    let labelLength = hostLength - suffix.count
                    guard RouteMatcher.caseBlindEqual(host, at: labelLength, suffix) else { continue }
                    var oneLabel = true
                    for i in 0..<labelLength where host[i] == UInt8(ascii: ".") { oneLabel = false; break }
                    if oneLabel { hostMatches = true; break }
                }
            }
            if !hostMatches { return .host }
        }
        if exactPath ? path.count != requestPath.count : path.count > requestPath.count { return .path }
        for i in 0..<path.count where requestPath[i] != path[i] { return .path }
        guard hasConditions else { return nil }
        if let pathRegex, !pathRegex.matches(requestPath) { return .path }
        if !methods.isEmpty {
            var methodMatches = false
            for wanted in methods where RouteMatcher.equal(method, wanted) { methodMatches = true; break }
            if !methodMatches { return .method }
        }
        for (index, condition) in headers.enumerated() where !fields.contains(name: condition.name, value: condition.value) {
            return .header(index)
        }
        for (index, condition) in query.enumerated() where !RouteMatcher.query(requestQuery, has: condition) {
            return .query(index)
        }
        return nil
    }

    /// Whether `query` (`a=1&b=2`, without `?`) has the parameter, with the value when given.
    @inlinable
    public static func query(_ query: UnsafeRawBufferPointer, has condition: ByteCondition) -> Bool {
        var start = 0
        while start <= query.count {
            var end = start
            while end < query.count && query[end] != UInt8(ascii: "&") { end += 1 }
            // One `name[=value]` pair in start..<end.
            var equals = start
            while equals < end && query[equals] != UInt8(ascii: "=") { equals += 1 }
            let name = condition.name
            if equals - start == name.count {
                var same = true
                for i in 0..<name.count where query[start + i] != name[i] { same = false; break }
                if same {
                    guard let value = condition.value else { return true }
                    let valueStart = equals < end ? equals + 1 : end
                    if end - valueStart == value.count {
                        var sameValue = true
                        for i in 0..<value.count where query[valueStart + i] != value[i] { sameValue = false; break }
                        if sameValue { return true }
                    }
                }
            }
            start = end + 1
        }
        return false
    }

    @inlinable
    static func caseBlindEqual(_ bytes: UnsafeRawBufferPointer, at offset: Int, _ lowered: [UInt8]) -> Bool {
        for i in 0..<lowered.count {
            var c = bytes[offset + i]
            if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
            if c != lowered[i] { return false }
        }
        return true
    }

    @inlinable
    static func equal(_ bytes: UnsafeRawBufferPointer, _ wanted: [UInt8]) -> Bool {
        guard bytes.count == wanted.count else { return false }
        for i in 0..<wanted.count where bytes[i] != wanted[i] { return false }
        return true
    }
}

/// Which characters a configured method, header name or query parameter name may have.
enum RouteText {
    /// RFC 9110 §5.6.2 `tchar`.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// Printable ASCII except what separates or ends a query pair.
    static func isQueryNameCharacter(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7f && byte != UInt8(ascii: "&") && byte != UInt8(ascii: "=") && byte != UInt8(ascii: "#")
    }
}
