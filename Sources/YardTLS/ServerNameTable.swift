/// Which certificate answers which server name (SNI): exact names and one-label wildcards
/// (`*.example.com` matches `a.example.com`, not `example.com` or `a.b.example.com`,
/// RFC 6125 §6.4.3).
///
/// A pure value: built once per context on the control plane, read during handshakes.
/// Threading: immutable once built; safe to read from every event loop.
public struct ServerNameTable: Sendable, Equatable {
    private var exact: [String: Int] = [:]
    /// Keyed by what follows `*.`.
    private var wildcard: [String: Int] = [:]

    public init() {}

    /// Maps `name` (`a.test`, `*.b.test`) to certificate `index`. The first certificate
    /// to claim a name keeps it, so configuration order decides overlaps.
    public mutating func add(_ name: String, index: Int) {
        let name = Self.normalized(name)
        guard !name.isEmpty else { return }
        if name.hasPrefix("*.") {
            let suffix = String(name.dropFirst(2))
            if wildcard[suffix] == nil { wildcard[suffix] = index }
        } else if exact[name] == nil {
            exact[name] = index
        }
    }

    /// The certificate for `serverName`, or nil (then the default answers).
    public func lookup(_ serverName: String) -> Int? {
        let name = Self.normalized(serverName)
        if let index = exact[name] { return index }
        guard let dot = name.firstIndex(of: ".") else { return nil }
        return wildcard[String(name[name.index(after: dot)...])]
    }

    /// Every name in the table (for logs and tests), sorted.
    public var names: [String] {
        (Array(exact.keys) + wildcard.keys.map { "*." + $0 }).sorted()
    }

    static func normalized(_ name: String) -> String {
        var text = name.lowercased()
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }
}
