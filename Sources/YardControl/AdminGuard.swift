// Who may use the admin API, decided before any handler runs: the Host must name this
// listener (a DNS-rebinding page cannot), and every write (any method but GET and HEAD)
// must come from a client that is not a browser page of another origin and carry the
// token when one is configured. One check for every route, so a new write route cannot
// forget it.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardIO

/// The admin tokens: `NAME:TOKEN` lines, or one bare token line (named "admin").
///
/// Threading: an immutable value; the runtime swaps it whole on SIGHUP.
public struct AdminTokens: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var token: [UInt8]
    }

    public private(set) var entries: [Entry]

    /// The names, for logs (never the tokens).
    public var names: [String] { entries.map(\.name) }

    /// Parses a token file's text. Blank lines and lines starting with `#` are skipped.
    /// Errors name the line, never its content (it may be a token).
    public init(parsing text: String) throws(AdminTokenFileError) {
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
            .map { ($0.offset + 1, $0.element.trimmingCharacters(in: .whitespaces)) }
            .filter { !$0.1.isEmpty && !$0.1.hasPrefix("#") }
        if lines.count == 1, !lines[0].1.contains(":") {
            self.entries = [Entry(name: "admin", token: Array(lines[0].1.utf8))]
            return
        }
        guard !lines.isEmpty else { throw AdminTokenFileError("the admin token file is empty") }
        var parsed: [Entry] = []
        for (number, line) in lines {
            guard let colon = line.firstIndex(of: ":") else {
                throw AdminTokenFileError("line \(number): expected NAME:TOKEN (a bare token is allowed only as the file's one line)")
            }
            let name = String(line[..<colon])
            let token = String(line[line.index(after: colon)...])
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isNameByte) else {
                throw AdminTokenFileError("line \(number): the token's name must be letters, digits, '_', '.' or '-'")
            }
            guard !token.isEmpty else { throw AdminTokenFileError("line \(number): the token after '\(name):' is empty") }
            guard !parsed.contains(where: { $0.name == name }) else {
                throw AdminTokenFileError("line \(number): the name '\(name)' is used twice")
            }
            parsed.append(Entry(name: name, token: Array(token.utf8)))
        }
        self.entries = parsed
    }

    /// Reads `path`, refusing a file that its group or others may read or write: the token
    /// is a password.
    public static func load(path: String) throws(AdminTokenFileError) -> AdminTokens {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw AdminTokenFileError("cannot read the admin token file \(path): \(String(cString: strerror(errno)))")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw AdminTokenFileError("the admin token file \(path) has mode 0\(String(mode, radix: 8)), so others may read it; 'chmod 600 \(path)'")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AdminTokenFileError("cannot read the admin token file \(path) as UTF-8 text")
        }
        do throws(AdminTokenFileError) {
            return try AdminTokens(parsing: text)
        } catch {
            throw AdminTokenFileError("the admin token file \(path): \(error.message)")
        }
    }

    /// The name of the token `presented` is (or `NAME:TOKEN` spells), nil for none. Every
    /// entry is compared, each in time that depends only on the lengths.
    public func name(of presented: [UInt8]) -> String? {
        var found: String?
        for entry in entries {
            let bare = constantTimeEqual(presented, entry.token)
            let named = constantTimeEqual(presented, Array(entry.name.utf8) + [UInt8(ascii: ":")] + entry.token)
            if bare || named, found == nil { found = entry.name }
        }
        return found
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}

/// Why a token file was refused: names the file or line, never a token.
public struct AdminTokenFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The admin listener's door: Host, Origin, Content-Type and token checks.
///
/// Threading: an immutable value, used from every admin connection thread.
public struct AdminGuard: Sendable {
    /// The port the listener is bound to; a Host with a port must name it.
    public var port: UInt16
    /// Host names (or `name:port`) accepted besides localhost, 127.0.0.1, [::1] and the
    /// bound address, lowercased.
    public var allowedHosts: [String]
    /// The bound host; a wildcard (0.0.0.0, ::) accepts any IP literal in Host (an IP
    /// cannot be rebound, only a name can).
    public var boundHost: String

    public init(boundHost: String, port: UInt16, allowedHosts: [String] = []) {
        self.boundHost = boundHost.lowercased()
        self.port = port
        self.allowedHosts = allowedHosts.map { $0.lowercased() }
    }

    /// nil when `request` may go on (and `tokenName` is set for a write that carried a
    /// token); otherwise the refusal. `tokens` nil: writes need no token.
    public func admit(_ request: inout AdminRequest, tokens: AdminTokens?) -> AdminResponse? {
        if let host = request.headers["host"], !accepts(authority: host) {
            return .error(421, "this admin API does not answer to Host '\(printable(host))': use 127.0.0.1:\(port), localhost:\(port), or add the name to admin.allowed_hosts")
        }
        guard request.method != "GET", request.method != "HEAD" else { return nil }
        if let origin = request.headers["origin"], !acceptsOrigin(origin) {
            return .error(403, "writes from a page of another origin ('\(printable(origin))') are refused")
        }
        // Browsers also say where a request comes from; only the admin's own page or the
        // user typing it ("none") may write.
        if let site = request.headers["sec-fetch-site"]?.lowercased(), site != "same-origin", site != "none" {
            return .error(403, "writes from a page of another site (Sec-Fetch-Site: \(printable(site))) are refused")
        }
        let contentType = request.headers["content-type"]
        let mediaType = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        if mediaType != "application/json", contentType != nil || !request.body.isEmpty {
            return .error(415, "writes take 'Content-Type: application/json'")
        }
        guard let tokens else { return nil }
        let header = request.headers["authorization"] ?? ""
        let scheme = header.prefix(7).lowercased()
        guard scheme == "bearer ", let name = tokens.name(of: Array(header.utf8.dropFirst(7))) else {
            return .error(401, header.isEmpty
                ? "this admin API needs a token for writes: send 'Authorization: Bearer TOKEN' (switchyard --token-file FILE)"
                : "the token is not one of the configured ones")
        }
        request.tokenName = name
        return nil
    }

    /// Whether a Host value (`name`, `name:port`, `[v6]:port`) names this listener.
    public func accepts(authority: String) -> Bool {
        guard let (host, hostPort) = Self.split(authority: authority.lowercased()) else { return false }
        let portMatches = hostPort == nil || hostPort == port
        if allowedHosts.contains(host) { return true }
        if let hostPort, allowedHosts.contains("\(host):\(hostPort)") { return true }
        guard portMatches else { return false }
        if ["localhost", "127.0.0.1", "::1", boundHost].contains(host) { return true }
        let wildcard = boundHost == "0.0.0.0" || boundHost == "::"
        return wildcard && SocketAddress(host: host, port: port) != nil
    }

    /// An `Origin` is accepted when it is `http(s)://` and an authority `accepts` takes.
    func acceptsOrigin(_ origin: String) -> Bool {
        let lower = origin.lowercased()
        for scheme in ["http://", "https://"] where lower.hasPrefix(scheme) {
            return accepts(authority: String(lower.dropFirst(scheme.count)))
        }
        return false
    }

    /// Host and optional port of an authority; nil when it is malformed.
    static func split(authority: String) -> (String, UInt16?)? {
        var host = Substring(authority)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex) ..< close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                portText = rest.dropFirst()
            }
        } else if let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { return nil }
        guard let portText else { return (String(host), nil) }
        guard let port = UInt16(portText) else { return nil }
        return (String(host), port)
    }

    /// At most 100 printable ASCII characters of a client's string, for an error message.
    private func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(100).filter { $0.value >= 0x20 && $0.value < 0x7f }))
    }
}

/// What the history records as `who` for a write: the token's name, with the client's own
/// claim in parentheses, so a client string alone is never taken for an identity. Without
/// tokens configured, the client's claim (or "admin-api").
func recordedWho(tokenName: String?, sent: String?) -> String {
    let claim = sent.map { String(String.UnicodeScalarView($0.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }.prefix(100))) }
        .flatMap { $0.isEmpty ? nil : $0 }
    guard let tokenName else { return claim ?? "admin-api" }
    guard let claim, claim != tokenName else { return tokenName }
    return "\(tokenName) (sent: \(claim))"
}
