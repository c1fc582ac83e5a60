// The mirror middleware's settings: config text in, settings (or a named error) out.

import Testing
@testable import YardModel

@Suite struct MirrorConfig {
    static func kind(_ body: String) throws(ConfigError) -> MiddlewareKind? {
        let text = "listeners:\n  - address: :8080\nmiddlewares:\n  shadow: {mirror: \(body)}\nroutes:\n  - {service: s, middlewares: [shadow]}\n"
        return try ConfigLoader.loadConfig(text: text, path: "switchyard.yml").routes[0].middlewares.first?.kind
    }

    static func problem(_ body: String) -> String {
        do {
            _ = try kind(body)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func aMirrorNamesAServiceOrATrackAndAShareInTenthsOfAPercent() throws {
        #expect(try Self.kind("{service: shop-next, percent: 10}") == .mirror(MirrorSettings(service: "shop-next", permille: 100)))
        #expect(try Self.kind("{track: green, percent: 0.5, timeout: 250ms}") == .mirror(MirrorSettings(track: "green", permille: 5, timeoutMs: 250)))
        let steps = RouteSteps(names: ["shadow"], kinds: [.mirror(MirrorSettings(service: "x", permille: 1))])
        #expect(!steps.isEmpty && steps.mirror?.service == "x")
    }

    @Test func aMirrorWithoutATargetOrAShareOrWithALongTimeoutIsRefused() {
        #expect(Self.problem("{percent: 10}").contains("give 'service:'"))
        #expect(Self.problem("{service: x}").contains("missing required key 'percent'"))
        #expect(Self.problem("{service: x, percent: 0}").contains("copies nothing"))
        #expect(Self.problem("{service: x, percent: 12.34}").contains("middlewares.shadow.mirror.percent"))
        #expect(Self.problem("{service: x, percent: 10, timeout: 2m}").contains("at most 60s"))
        #expect(Self.problem("{service: x, percent: 10, body: true}").contains("body"))
    }

    @Test func maxBodyBytesDefaultsTo64KiBTakesASizeAndIsBoundedAt1MiB() throws {
        #expect(try Self.kind("{service: x, percent: 10}") == .mirror(MirrorSettings(service: "x", permille: 100, maxBodyBytes: 65_536)))
        #expect(try Self.kind("{service: x, percent: 10, max_body_bytes: 8KiB}") == .mirror(MirrorSettings(service: "x", permille: 100, maxBodyBytes: 8_192)))
        #expect(try Self.kind("{service: x, percent: 10, max_body_bytes: 0}") == .mirror(MirrorSettings(service: "x", permille: 100, maxBodyBytes: 0)))
        #expect(Self.problem("{service: x, percent: 10, max_body_bytes: 2MiB}").contains("out of range"))
        #expect(Self.problem("{service: x, percent: 10, max_body_bytes: lots}").contains("max_body_bytes"))
    }
}
