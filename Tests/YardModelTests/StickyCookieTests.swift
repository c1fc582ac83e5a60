// The proxy-set sticky-canary cookie as values: signing, verifying, the Set-Cookie line,
// and the `sticky_cookie:` block of a canary.

import Testing
@testable import YardModel

@Suite struct StickyCookieTests {
    /// A stand-in MAC (the real one is HMAC-SHA256 in YardTLS): a key byte mixed into a
    /// checksum of the message, so different keys sign differently.
    static func fakeSigner(key: UInt8) -> ([UInt8]) -> [UInt8] {
        { message in
            var state = UInt64(key) &* 0x9E37_79B9_7F4A_7C15
            for byte in message { state = (state ^ UInt64(byte)) &* 0x100_0000_01B3 }
            return (0..<32).map { UInt8(truncatingIfNeeded: state >> (UInt64($0 % 8) * 8)) }
        }
    }

    static func point(_ values: StickyCookieValues, _ text: String) -> Int {
        Array(text.utf8).withUnsafeBytes { values.point(of: $0) }
    }

    @Test func everySignedValueVerifiesToItsOwnPoint() {
        let values = StickyCookieValues(sign: Self.fakeSigner(key: 1))
        #expect(values.values.count == 1000)
        for point in [0, 1, 9, 10, 99, 100, 417, 999] {
            let text = String(decoding: values.values[point], as: UTF8.self)
            #expect(text.hasPrefix("\(point)."), "\(text)")
            #expect(text.count == "\(point).".count + 16)
            #expect(Self.point(values, text) == point)
        }
    }

    @Test func aTamperedOrForeignCookieIsNotTrusted() {
        let values = StickyCookieValues(sign: Self.fakeSigner(key: 1))
        let other = StickyCookieValues(sign: Self.fakeSigner(key: 2))
        let genuine = String(decoding: values.values[700], as: UTF8.self)
        let mac = genuine.split(separator: ".")[1]
        // Another point with the genuine MAC: the client tried to choose its track.
        #expect(Self.point(values, "3.\(mac)") == -1)
        // One hex digit changed, one missing, one more, leading zeros, junk, nothing.
        var flipped = Array(genuine.utf8)
        flipped[flipped.count - 1] = flipped.last == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        #expect(Self.point(values, String(decoding: flipped, as: UTF8.self)) == -1)
        #expect(Self.point(values, String(genuine.dropLast())) == -1)
        #expect(Self.point(values, genuine + "0") == -1)
        #expect(Self.point(values, "0" + genuine) == -1)
        for junk in ["", ".", "700", "700.", "99999999999999999999.abc", "-1.0000000000000000", "abc"] {
            #expect(Self.point(values, junk) == -1, "\(junk)")
        }
        // Signed with another replica's key (another store): not trusted.
        #expect(Self.point(values, String(decoding: other.values[700], as: UTF8.self)) == -1)
    }

    @Test func theSetCookieLineIsHttpOnlyLaxAndSecureOnlyOnTLS() {
        let values = StickyCookieValues(sign: Self.fakeSigner(key: 1))
        let value = String(decoding: values.values[42], as: UTF8.self)
        let plain = String(decoding: values.setCookieLine(name: Array("shop_track".utf8), point: 42, maxAgeSeconds: 3600, secure: false), as: UTF8.self)
        #expect(plain == "Set-Cookie: shop_track=\(value); Path=/; Max-Age=3600; HttpOnly; SameSite=Lax\r\n")
        let tls = String(decoding: values.setCookieLine(name: Array("shop_track".utf8), point: 42, maxAgeSeconds: 3600, secure: true), as: UTF8.self)
        #expect(tls.hasSuffix("; SameSite=Lax; Secure\r\n"))
        #expect(values.setCookieLine(name: [], point: 1000, maxAgeSeconds: 1, secure: false).isEmpty)
    }

    static func catalog(_ canary: String) throws(ConfigError) -> ServiceCatalog {
        let yaml = """
        services:
          shop:
            active: blue
            canary:
              track: green
              percent: 10
        \(canary)
            instances:
              - {address: 127.0.0.1, port: 9101, track: blue}
              - {address: 127.0.0.1, port: 9201, track: green}
        """
        return try ConfigLoader.loadCatalog(text: yaml, path: "s.yml")
    }

    @Test func stickyCookieSettingsLoadWithADefaultMaxAge() throws {
        let on = try Self.catalog("      sticky: cookie:shop_track\n      sticky_cookie: true")
        #expect(on.services.first?.canary?.stickyCookie == StickyCookieSettings(maxAgeSeconds: 86_400))
        let hour = try Self.catalog("      sticky: cookie:shop_track\n      sticky_cookie: {max_age: 1h}")
        #expect(hour.services.first?.canary?.stickyCookie == StickyCookieSettings(maxAgeSeconds: 3600))
        let off = try Self.catalog("      sticky: cookie:shop_track\n      sticky_cookie: false")
        #expect(off.services.first?.canary?.stickyCookie == nil)
    }

    @Test func stickyCookieWithoutACookieKeyOrWithABadMaxAgeIsRefused() {
        let header = configError { () throws(ConfigError) in try Self.catalog("      sticky: header:X-User\n      sticky_cookie: true") }
        #expect(header?.message.contains("sticky: cookie:NAME") == true, "\(String(describing: header))")
        #expect(header?.key == "services.shop.canary.sticky_cookie")
        let tiny = configError { () throws(ConfigError) in try Self.catalog("      sticky: cookie:c\n      sticky_cookie: {max_age: 10ms}") }
        #expect(tiny?.message.contains("max_age must be from 1s") == true, "\(String(describing: tiny))")
        let unknown = configError { () throws(ConfigError) in try Self.catalog("      sticky: cookie:c\n      sticky_cookie: {maxage: 1h}") }
        #expect(unknown?.message.contains("max_age") == true, "\(String(describing: unknown))")
    }
}
