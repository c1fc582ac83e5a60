// Middlewares that may answer the client themselves instead of forwarding: ip_allow,
// redirect_scheme, redirect and rate_limit. The pure parts live here (what the Location is,
// which status, whether a token is left); Sources/YardProxy/RouteMiddlewares.swift writes
// the answers for HTTP/1.1 and HTTP/2 clients. docs/routing.md has the worked examples.

import Synchronization

/// `redirect_scheme`: the same host, path and query under another scheme (and maybe port).
public struct RedirectScheme: Sendable, Equatable {
    /// `https` or `http`.
    public var scheme: String
    /// The port to put in the Location; nil keeps none (the scheme's default port).
    public var port: Int?
    public var permanent: Bool
    /// `scheme://` as bytes.
    let prefix: [UInt8]

    public init(scheme: String = "https", port: Int? = nil, permanent: Bool = true) {
        self.scheme = scheme
        self.port = port
        self.permanent = permanent
        self.prefix = Array("\(scheme)://".utf8)
    }

    public static func == (lhs: RedirectScheme, rhs: RedirectScheme) -> Bool {
        (lhs.scheme, lhs.port, lhs.permanent) == (rhs.scheme, rhs.port, rhs.permanent)
    }

    /// Whether a request that arrived with `secure` (TLS) already has the target scheme: it
    /// is forwarded, so one route can serve both listeners.
    public func isSatisfied(secure: Bool) -> Bool { secure == (scheme == "https") }

    /// Writes the Location for a request to `host` (the Host value, its `:port` dropped)
    /// with `path` (empty means `/`) and `query` (the bytes after `?`, nil without `?`).
    public func writeLocation(host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer, query: UnsafeRawBufferPointer?,
                              _ append: (UnsafeRawBufferPointer) -> Void) {
        prefix.withUnsafeBytes { append($0) }
        let hostLength = RoutingTable.hostLengthWithoutPort(host)
        append(UnsafeRawBufferPointer(rebasing: host[0..<hostLength]))
        if let port {
            var digits = (UInt64(0), UInt64(0))
            withUnsafeMutableBytes(of: &digits) { raw in
                var value = port
                var i = 16
                repeat {
                    i -= 1
                    raw[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
                    value /= 10
                } while value > 0 && i > 1
                i -= 1
                raw[i] = UInt8(ascii: ":")
                append(UnsafeRawBufferPointer(rebasing: raw[i..<16]))
            }
        }
        PathRedirect.writePathAndQuery(path, query: query, append)
    }
}

/// `redirect`: paths under `from` (on a segment boundary; or exactly `from`) answer with a
/// redirect to `to` followed by the rest of the path, and the query.
///
/// A prefix, not a regex: a regex engine on the request path would run for every request
/// of the route, allocate (Swift's `Regex` builds Strings; Foundation is not allowed on the
/// data plane) and backtrack without a bound on a hostile path.
public struct PathRedirect: Sendable, Equatable {
    public var from: String
    public var exact: Bool
    /// A path (`/new`) or an absolute URL (`https://blog.example.com/posts`).
    public var to: String
    public var permanent: Bool
    let fromBytes: [UInt8]
    let toBytes: [UInt8]

    public init(from: String, to: String, exact: Bool = false, permanent: Bool = true) {
        self.from = from
        self.to = to
        self.exact = exact
        self.permanent = permanent
        self.fromBytes = Array(from.utf8)
        self.toBytes = Array(to.utf8)
    }

    public static func == (lhs: PathRedirect, rhs: PathRedirect) -> Bool {
        (lhs.from, lhs.to, lhs.exact, lhs.permanent) == (rhs.from, rhs.to, rhs.exact, rhs.permanent)
    }

    /// How many bytes of `path` `from` takes, or nil when the redirect does not apply.
    public func matchedLength(_ path: UnsafeRawBufferPointer) -> Int? {
        let path = path.isEmpty ? UnsafeRawBufferPointer(start: PathRedirect.slash.utf8Start, count: 1) : path
        let count = fromBytes.count
        guard count <= path.count else { return nil }
        for i in 0..<count where path[i] != fromBytes[i] { return nil }
        if count == path.count { return count }
        if exact { return nil }
        return path[count] == UInt8(ascii: "/") || fromBytes.last == UInt8(ascii: "/") ? count : nil
    }

    /// Writes the Location: `to`, the path after the `matched` bytes, then `?query`.
    public func writeLocation(path: UnsafeRawBufferPointer, matched: Int, query: UnsafeRawBufferPointer?,
                              _ append: (UnsafeRawBufferPointer) -> Void) {
        toBytes.withUnsafeBytes { append($0) }
        var rest = UnsafeRawBufferPointer(rebasing: path[min(matched, path.count)...])
        if toBytes.last == UInt8(ascii: "/") && rest.first == UInt8(ascii: "/") {
            rest = UnsafeRawBufferPointer(rebasing: rest[1...])
        }
        append(rest)
        if let query {
            append(UnsafeRawBufferPointer(start: PathRedirect.question.utf8Start, count: 1))
            append(query)
        }
    }

    static let slash: StaticString = "/"
    static let question: StaticString = "?"

    static func writePathAndQuery(_ path: UnsafeRawBufferPointer, query: UnsafeRawBufferPointer?, _ append: (UnsafeRawBufferPointer) -> Void) {
        append(path.isEmpty ? UnsafeRawBufferPointer(start: slash.utf8Start, count: 1) : path)
        if let query {
            append(UnsafeRawBufferPointer(start: question.utf8Start, count: 1))
            append(query)
        }
    }
}

/// The status of a redirect answer: 301/302 for GET and HEAD (understood by every client
/// and cache), 308/307 for other methods (which keep the method and body; a 301 would let
/// a client turn a POST into a GET).
public enum RedirectStatus {
    public static func code(permanent: Bool, safeMethod: Bool) -> Int {
        switch (permanent, safeMethod) {
        case (true, true): 301
        case (false, true): 302
        case (true, false): 308
        case (false, false): 307
        }
    }
}
