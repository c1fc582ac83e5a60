// Where a control-plane HTTP server listens, and the values a request returns.

// MARK: - Target

/// Where a control-plane HTTP server listens: a TCP host and port (plain or TLS), or a unix
/// socket.
public enum ControlHTTPTarget: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    /// TLS over TCP (`https://`): the client's `ControlTLS` says which CA to trust and which
    /// certificate to present.
    case https(host: String, port: UInt16)
    case unix(path: String)

    /// Parses `http://HOST:PORT[/...]`, `https://HOST:PORT[/...]`, `HOST:PORT`,
    /// `unix:///path/to.sock` or `/path/to.sock`.
    public init(url: String) throws(ControlHTTPError) {
        var rest = Substring(url)
        if rest.hasPrefix("unix://") {
            rest = rest.dropFirst(7)
            guard rest.hasPrefix("/") else { throw ControlHTTPError("'\(url)': a unix socket URL needs an absolute path (unix:///var/run/docker.sock)") }
            self = .unix(path: String(rest))
            return
        }
        if rest.hasPrefix("/") { self = .unix(path: String(rest)); return }
        var secure = false
        if rest.hasPrefix("https://") {
            secure = true
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("http://") {
            rest = rest.dropFirst(7)
        } else if let scheme = rest.firstRange(of: "://") {
            throw ControlHTTPError("'\(url)': unknown scheme '\(rest[..<scheme.lowerBound])' (http://, https:// or unix://)")
        }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw ControlHTTPError("'\(url)': unclosed '[' in the address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            portText = after.hasPrefix(":") ? after.dropFirst() : ""
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
            portText = ""
        }
        guard !host.isEmpty else { throw ControlHTTPError("'\(url)': no host") }
        guard let port = portText.isEmpty ? (secure ? 443 : 80) : UInt16(portText), port > 0 else {
            throw ControlHTTPError("'\(url)': bad port '\(portText)'")
        }
        self = secure ? .https(host: String(host), port: port) : .tcp(host: String(host), port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): return "http://\(Self.authority(host, port))"
        case .https(let host, let port): return "https://\(Self.authority(host, port))"
        case .unix(let path): return "unix://\(path)"
        }
    }

    /// Whether requests go over TLS.
    public var isTLS: Bool {
        if case .https = self { return true }
        return false
    }

    /// The Host header value.
    var hostHeader: String {
        switch self {
        case .tcp(let host, let port), .https(let host, let port): return Self.authority(host, port)
        case .unix: return "localhost"
        }
    }

    private static func authority(_ host: String, _ port: UInt16) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

// MARK: - Values

/// What went wrong talking to a control-plane server, in words for an operator.
public struct ControlHTTPError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A complete response.
public struct ControlHTTPResponse: Sendable {
    public var status: Int
    /// Header fields in order; names lower-cased.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of a header (name in any case).
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name == wanted }?.value
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}
