// The sticky-canary cookie the proxy sets itself: its settings, and the signed values a
// client may present.
//
// A client without a valid cookie is given a point in [0, 1000) by the exact split (a
// point below the canary's share for a client sent to the canary, at or above it for one
// sent to the stable track) and the cookie `NAME=POINT.MAC` carries that point. From then on
// the point decides, as for any sticky key: raising the share only moves clients forward.
// The MAC (HMAC-SHA256 under a key every replica loads from the state store, truncated to
// 64 bits) stops a client from choosing its point; a cookie with a bad MAC is ignored and
// replaced.

/// The `sticky_cookie:` block of a canary.
public struct StickyCookieSettings: Sendable, Equatable {
    /// The cookie's `Max-Age` in seconds.
    public var maxAgeSeconds: Int

    public static let defaultMaxAgeSeconds = 86_400

    public init(maxAgeSeconds: Int = StickyCookieSettings.defaultMaxAgeSeconds) {
        self.maxAgeSeconds = maxAgeSeconds
    }

    /// `sticky_cookie: true`, `sticky_cookie: {max_age: 1h}` (or `{}`); only with a
    /// `cookie:NAME` sticky key.
    static func parse(_ node: ConfigNode, sticky: StickySource?) throws(ConfigError) -> StickyCookieSettings? {
        guard case .cookie = sticky else {
            throw node.error("sticky_cookie needs 'sticky: cookie:NAME' (the cookie the proxy sets)")
        }
        if case .scalar = node.node {
            return try node.boolean() ? StickyCookieSettings() : nil
        }
        let fields = try node.fields(allowed: ["max_age"])
        var settings = StickyCookieSettings()
        if let maxAge = fields.optional("max_age") {
            let ms = try maxAge.durationMilliseconds()
            guard ms >= 1_000, ms <= 400 * 86_400_000 else {
                throw maxAge.error("max_age must be from 1s to 9600h (400 days, the longest a browser keeps a cookie)")
            }
            settings.maxAgeSeconds = ms / 1_000
        }
        return settings
    }
}

/// The 1000 valid cookie values (one per point), signed once with the fleet's key, so the
/// request path verifies a cookie by comparing bytes instead of computing a MAC.
///
/// Threading: immutable; shared by every worker through the routing table.
public final class StickyCookieValues: Sendable {
    /// `values[point]` is the cookie value `POINT.MAC` (MAC: 16 hex digits).
    public let values: [[UInt8]]

    /// What is signed for `point`: the purpose, so the key signs nothing else by accident.
    public static func message(point: Int) -> [UInt8] { Array("switchyard-sticky-canary:\(point)".utf8) }

    /// - Parameter sign: HMAC-SHA256 of a message under the fleet's key (at least 8 bytes).
    public init(sign: (_ message: [UInt8]) -> [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        values = (0..<1000).map { point in
            var value = Array("\(point).".utf8)
            for byte in sign(Self.message(point: point)).prefix(8) {
                value.append(hex[Int(byte >> 4)])
                value.append(hex[Int(byte & 0xF)])
            }
            return value
        }
    }

    /// The point a presented cookie value carries, or -1 when it is not one of the values
    /// signed with this key (malformed, tampered, or signed with another key).
    public func point(of value: UnsafeRawBufferPointer) -> Int {
        var point = 0
        var digits = 0
        while digits < value.count, digits < 4, value[digits] >= 0x30, value[digits] <= 0x39 {
            point = point * 10 + Int(value[digits] &- 0x30)
            digits += 1
        }
        guard digits > 0, point < values.count else { return -1 }
        let expected = values[point]
        guard expected.count == value.count else { return -1 }
        // Compared in full whatever differs first: the time says nothing about the MAC.
        var difference: UInt8 = 0
        for i in 0..<expected.count { difference |= expected[i] ^ value[i] }
        return difference == 0 ? point : -1
    }

    /// `Set-Cookie: NAME=VALUE; Path=/; Max-Age=N; HttpOnly; SameSite=Lax[; Secure]` with
    /// its CRLF, for a client given `point`.
    public func setCookieLine(name: [UInt8], point: Int, maxAgeSeconds: Int, secure: Bool) -> [UInt8] {
        guard point >= 0, point < values.count else { return [] }
        var line = Array("Set-Cookie: ".utf8)
        line += name
        line.append(UInt8(ascii: "="))
        line += values[point]
        line += Array("; Path=/; Max-Age=\(maxAgeSeconds); HttpOnly; SameSite=Lax".utf8)
        if secure { line += Array("; Secure".utf8) }
        line += [0x0D, 0x0A]
        return line
    }
}
