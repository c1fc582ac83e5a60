// Parsers for the value syntaxes of the config files: numbers, durations, sizes, IP
// literals and `host:port`. Pure functions over text; nil or a message means "invalid",
// and the caller turns that into a `ConfigError` that names the key and line.

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#elseif canImport(Darwin)
internal import Darwin
#endif

enum ConfigValues {
    /// Longest accepted timeout; longer values are almost certainly a unit mistake.
    static let maxDurationMilliseconds = 86_400_000

    // MARK: Numbers

    /// Decimal digits, optionally separated by `_` (`10_000`); nil on anything else or overflow.
    static func parseInteger(_ text: String) -> Int? {
        var result = 0
        var sawDigit = false
        var previousWasSeparator = false
        for byte in text.utf8 {
            if byte == UInt8(ascii: "_") {
                guard sawDigit, !previousWasSeparator else { return nil }
                previousWasSeparator = true
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            result = sum
            sawDigit = true
            previousWasSeparator = false
        }
        return sawDigit && !previousWasSeparator ? result : nil
    }

    /// Splits `"32KiB"` into `(32, "kib")`: leading number, lower-cased unit (possibly empty).
    private static func splitNumberAndUnit(_ text: String) -> (number: Int, unit: String)? {
        let digits = text.prefix { ($0 >= "0" && $0 <= "9") || $0 == "_" }
        guard let number = parseInteger(String(digits)) else { return nil }
        let unit = text[digits.endIndex...].trimmingBlanksSubstring.lowercased()
        return (number, unit)
    }

    // MARK: Durations

    /// `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds → milliseconds.
    static func parseDurationMilliseconds(_ text: String) -> Int? {
        guard let (number, unit) = splitNumberAndUnit(text) else { return nil }
        let scale: Int
        switch unit {
        case "ms": scale = 1
        case "", "s": scale = 1_000
        case "m": scale = 60_000
        case "h": scale = 3_600_000
        default: return nil
        }
        let (ms, overflow) = number.multipliedReportingOverflow(by: scale)
        return overflow ? nil : ms
    }

    // MARK: Sizes

    /// `8192`, `8k`, `32KiB`, `1MiB` → bytes. Every unit is binary (k = 1024): header and
    /// buffer sizes are conventionally powers of two, and mixing 1000 and 1024 surprises.
    static func parseSize(_ text: String) -> Int? {
        guard let (number, unit) = splitNumberAndUnit(text) else { return nil }
        let scale: Int
        switch unit {
        case "", "b": scale = 1
        case "k", "kb", "kib": scale = 1_024
        case "m", "mb", "mib": scale = 1_048_576
        default: return nil
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: scale)
        return overflow ? nil : bytes
    }

    // MARK: IP literals

    /// A dotted-quad IPv4 literal (`inet_pton` rules: no leading zeros, four parts).
    static func isIPv4Literal(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    /// An IPv6 literal without brackets or zone (`::1`, `fe80::1`, `::ffff:10.0.0.1`).
    static func isIPv6Literal(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    static func isIPLiteral(_ text: String) -> Bool {
        isIPv4Literal(text) || isIPv6Literal(text)
    }

    /// `0.0.0.0` and `::` (any spelling): valid to bind, meaningless to connect to.
    static func isUnspecifiedAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return v4.s_addr == 0 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.allSatisfy { $0 == 0 } }
        }
        return false
    }

    // MARK: Listen addresses

    /// `host:port`, `[v6]:port` or `:port` (all IPv4 interfaces). `localhost` binds
    /// 127.0.0.1: listeners take literals because a name could resolve to several
    /// addresses, and which one is bound must not depend on the resolver.
    /// - Returns: the host and port, or a message saying what is wrong.
    static func parseListenAddress(_ text: String) -> Result<(host: String, port: UInt16), AddressProblem> {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure(.init("'\(text)' has '[' without ']'; write IPv6 as [::1]:8080"))
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                return .failure(.init("'\(text)' has no port; expected [::1]:8080"))
            }
            portPart = rest.dropFirst()
            guard isIPv6Literal(String(hostPart)) else {
                return .failure(.init("'\(hostPart)' is not an IPv6 literal"))
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(.init("'\(text)' has no port; expected host:port like 127.0.0.1:8080, or :8080 for every interface"))
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") {
                return .failure(.init("IPv6 addresses need brackets: [\(hostPart)]:\(portPart)"))
            }
            if !hostPart.isEmpty, hostPart != "localhost", !isIPv4Literal(String(hostPart)) {
                return .failure(.init("'\(hostPart)' is not an IP address; listeners bind IP literals like 127.0.0.1, 0.0.0.0 or [::]"))
            }
        }
        guard let port = parseInteger(String(portPart)), port <= 65_535 else {
            return .failure(.init("port '\(portPart)' is not a number in 0...65535"))
        }
        let host = hostPart.isEmpty ? "0.0.0.0" : (hostPart == "localhost" ? "127.0.0.1" : String(hostPart))
        return .success((host, UInt16(port)))
    }

    /// Why an address did not parse, as a sentence for the operator.
    struct AddressProblem: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}

extension Substring {
    var trimmingBlanksSubstring: String { String(self).trimmingBlanks }
}

extension ConfigValues {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
    static func parseNetwork(_ text: String) -> Network? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let first = parts.first, !first.isEmpty else { return nil }
        var v4 = in_addr()
        var v6 = in6_addr()
        var bytes: [UInt8]
        if inet_pton(AF_INET, first, &v4) == 1 {
            bytes = withUnsafeBytes(of: v4) { Array($0) }
        } else if inet_pton(AF_INET6, first, &v6) == 1 {
            bytes = withUnsafeBytes(of: v6) { Array($0) }
        } else {
            return nil
        }
        let maximum = bytes.count * 8
        let prefix = parts.count == 2 ? parseInteger(parts[1]) : maximum
        guard let prefix, (0...maximum).contains(prefix) else { return nil }
        return Network(bytes: bytes, prefix: prefix)
    }
}
