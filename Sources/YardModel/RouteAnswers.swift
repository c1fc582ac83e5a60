// Middlewares that may answer the client themselves instead of forwarding: ip_allow,
// redirect_scheme, redirect (by prefix or by regex) and rate_limit. The pure parts live here (what the Location is,
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
/// The regex form is `RegexRedirect` (LinearRegex: linear time, no allocation per match).
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

/// `redirect` with `regex:` and `replacement:`, as Traefik's redirectRegex: the regex is
/// searched in the request URL `scheme://host/path?query` (host as sent, with its port;
/// path as routed, normalized); the leftmost match is replaced by the replacement, the text
/// around it kept, and the result is the Location. No match: the request goes on.
///
/// Traefik (Go's ReplaceAllString) replaces every match; this replaces the first only, so
/// one request costs one linear pass. The two agree for the usual patterns that match the
/// whole URL (`^http://old\.example/(.*)`); docs/routing.md says so.
///
/// A Location made of anything but visible ASCII (a captured CR, LF, space, control or
/// non-ASCII byte) is refused: the request is forwarded instead and `refusals` counts it.
/// Threading: immutable but for the atomic count; any event loop.
public struct RegexRedirect: Sendable, Equatable {
    public let regex: LinearRegex
    public let replacement: String
    public let permanent: Bool
    /// The replacement as literal bytes and group references.
    let pieces: [ReplacementPiece]
    /// Capture slots the VM keeps: groups 0 up to the highest one the replacement names.
    let slots: Int
    /// Locations refused since the config was loaded (see above).
    public let refusals: RedirectRefusals

    enum ReplacementPiece: Sendable, Equatable {
        case literal([UInt8])
        case group(Int)
    }

    /// What `writeLocation` did.
    public enum Outcome: Sendable, Equatable {
        /// The regex does not match the URL: the request goes on.
        case noMatch
        /// The Location was written.
        case redirected
        /// The Location would carry bytes a header value cannot (nothing was written).
        case refused
    }

    public init(regex: LinearRegex, replacement: String, permanent: Bool = true) throws(RegexProblem) {
        self.regex = regex
        self.replacement = replacement
        self.permanent = permanent
        self.pieces = try RegexRedirect.parse(replacement, groups: regex.groupCount)
        let highest = pieces.reduce(0) { if case .group(let n) = $1 { max($0, n) } else { $0 } }
        self.slots = 2 * (highest + 1)
        self.refusals = RedirectRefusals()
    }

    public static func == (lhs: RegexRedirect, rhs: RegexRedirect) -> Bool {
        (lhs.regex, lhs.replacement, lhs.permanent) == (rhs.regex, rhs.replacement, rhs.permanent)
    }

    /// `$1`..`$9`, `${0}`..`${9}` and `$$`, as Go's Expand reads them; what Go would read
    /// differently from what a user most likely meant is refused instead: `$1x` (Go: the
    /// group named "1x", empty), `$name` (named groups), a lone `$` (Go: a literal `$`).
    static func parse(_ text: String, groups: Int) throws(RegexProblem) -> [ReplacementPiece] {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw RegexProblem("the replacement is empty; give the Location, e.g. https://example.com/$1") }
        if let bad = bytes.firstIndex(where: { $0 <= 0x20 || $0 >= 0x7f }) {
            throw RegexProblem("the replacement has a space, a control or a non-ASCII character at byte \(bad + 1); a Location cannot carry it (percent-encode it)")
        }
        func isNameByte(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_")
        }
        var pieces: [ReplacementPiece] = []
        var literal: [UInt8] = []
        var i = 0
        func group(_ digit: UInt8, at offset: Int) throws(RegexProblem) -> ReplacementPiece {
            let number = Int(truncatingIfNeeded: digit &- UInt8(ascii: "0"))
            guard number <= groups else {
                throw RegexProblem("the replacement names group $\(number) at byte \(offset + 1), but the regex has \(groups == 0 ? "no groups" : "only \(groups)")")
            }
            return .group(number)
        }
        while i < bytes.count {
            let byte = bytes[i]
            guard byte == UInt8(ascii: "$") else {
                literal.append(byte)
                i += 1
                continue
            }
            let next = i + 1 < bytes.count ? bytes[i + 1] : 0
            if next == UInt8(ascii: "$") {
                literal.append(byte)
                i += 2
                continue
            }
            let reference: ReplacementPiece
            if next >= UInt8(ascii: "0") && next <= UInt8(ascii: "9") {
                if i + 2 < bytes.count && isNameByte(bytes[i + 2]) {
                    throw RegexProblem("'$\(Character(Unicode.Scalar(next)))\(Character(Unicode.Scalar(bytes[i + 2])))' at byte \(i + 1) is ambiguous (Go would read a group named '\(Character(Unicode.Scalar(next)))\(Character(Unicode.Scalar(bytes[i + 2])))...'); write ${\(Character(Unicode.Scalar(next)))}\(Character(Unicode.Scalar(bytes[i + 2])))")
                }
                reference = try group(next, at: i)
                i += 2
            } else if next == UInt8(ascii: "{"), i + 3 < bytes.count, bytes[i + 3] == UInt8(ascii: "}"),
                      bytes[i + 2] >= UInt8(ascii: "0"), bytes[i + 2] <= UInt8(ascii: "9") {
                reference = try group(bytes[i + 2], at: i)
                i += 4
            } else if next == UInt8(ascii: "{") || isNameByte(next) {
                throw RegexProblem("the reference at byte \(i + 1) is not $1..$9 or ${0}..${9}; named groups and numbers above 9 are not supported")
            } else {
                throw RegexProblem("a lone '$' at byte \(i + 1); write $$ for a literal $")
            }
            if !literal.isEmpty { pieces.append(.literal(literal)) }
            literal = []
            pieces.append(reference)
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        return pieces
    }

    /// Builds the URL (`https` when `secure`), searches it, and when it matches writes the
    /// Location through `append` (in pieces). Nothing is allocated: the URL is assembled in
    /// the regex's per-thread scratch.
    public func writeLocation(secure: Bool, host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer,
                              query: UnsafeRawBufferPointer?, _ append: (UnsafeRawBufferPointer) -> Void) -> Outcome {
        let scheme: StaticString = secure ? "https://" : "http://"
        let slash: StaticString = "/"
        let path = path.isEmpty ? UnsafeRawBufferPointer(start: slash.utf8Start, count: 1) : path
        let length = scheme.utf8CodeUnitCount + host.count + path.count + (query.map { $0.count + 1 } ?? 0)
        let outcome = RegexScratch.with(ints: regex.scratchInts(slots: slots), bytes: length, orElse: .noMatch) { ints, bytes -> Outcome in
            var at = 0
            func put(_ piece: UnsafeRawBufferPointer) {
                guard let source = piece.baseAddress, !piece.isEmpty else { return }
                (bytes + at).update(from: source.assumingMemoryBound(to: UInt8.self), count: piece.count)
                at += piece.count
            }
            put(UnsafeRawBufferPointer(start: scheme.utf8Start, count: scheme.utf8CodeUnitCount))
            put(host)
            put(path)
            if let query {
                bytes[at] = UInt8(ascii: "?")
                at += 1
                put(query)
            }
            let url = UnsafeRawBufferPointer(start: bytes, count: at)
            guard let match = regex.run(url, slots: slots, scratch: ints), let whole = match.range(0) else { return .noMatch }
            // Check every byte first, then write: a refused Location leaves nothing behind.
            var valid = true
            var total = 0
            forEachPiece(url: url, match: match, whole: whole) { piece in
                total += piece.count
                for byte in piece where byte <= 0x20 || byte >= 0x7f { valid = false }
            }
            guard valid && total > 0 else { return .refused }
            forEachPiece(url: url, match: match, whole: whole, append)
            return .redirected
        }
        if outcome == .refused { refusals.count.add(1, ordering: .relaxed) }
        return outcome
    }

    /// The Location's pieces: the URL before the match, the replacement, the URL after it.
    private func forEachPiece(url: UnsafeRawBufferPointer, match: RegexMatch, whole: Range<Int>,
                              _ body: (UnsafeRawBufferPointer) -> Void) {
        body(UnsafeRawBufferPointer(rebasing: url[0..<whole.lowerBound]))
        for piece in pieces {
            switch piece {
            case .literal(let bytes): bytes.withUnsafeBytes { body($0) }
            case .group(let number):
                if let range = match.range(number) { body(UnsafeRawBufferPointer(rebasing: url[range])) }
            }
        }
        body(UnsafeRawBufferPointer(rebasing: url[whole.upperBound...]))
    }
}

/// How many Locations a regex redirect refused (see `RegexRedirect`). Threading: one
/// relaxed atomic, touched only on a refusal.
public final class RedirectRefusals: Sendable {
    public let count = Atomic<UInt64>(0)
    public init() {}
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
