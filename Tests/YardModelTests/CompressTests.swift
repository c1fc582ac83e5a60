// The compress middleware's pure parts: Accept-Encoding with q-values, media types,
// Cache-Control no-transform, and its config.

import Testing
@testable import YardModel

private func acceptsGzip(_ fields: String...) -> Bool {
    var accept = AcceptEncoding()
    for field in fields { Array(field.utf8).withUnsafeBytes { accept.add($0) } }
    return accept.allowsGzip
}

@Suite struct CompressDecisions {
    @Test func gzipNeedsAWeightAboveZeroAndGzipQZeroRefusesWhateverStarSays() {
        #expect(acceptsGzip("gzip"))
        #expect(acceptsGzip("gzip, deflate, br"))
        #expect(acceptsGzip("br;q=1.0, GZIP;q=0.5"))
        #expect(acceptsGzip("x-gzip"))
        #expect(acceptsGzip("*"))
        #expect(acceptsGzip("deflate", "gzip;q=0.001"))
        #expect(acceptsGzip("gzip ; q=1"))
        #expect(!acceptsGzip())
        #expect(!acceptsGzip(""))
        #expect(!acceptsGzip("identity"))
        #expect(!acceptsGzip("gzip;q=0"))
        #expect(!acceptsGzip("gzip;q=0.000"))
        #expect(!acceptsGzip("*, gzip;q=0"))
        #expect(!acceptsGzip("*;q=0"))
        #expect(!acceptsGzip("br, *;q=0"))
        #expect(!acceptsGzip("gzipped"))
    }

    @Test func aMalformedWeightNeverTurnsGzipOn() {
        for value in ["gzip;q=", "gzip;q=2", "gzip;q=0.5000", "gzip;q=1.5", "gzip;q=abc", "gzip;q=-1", "gzip;q=0.x"] {
            #expect(!acceptsGzip(value), "\(value)")
        }
    }

    @Test func typesMatchExactlyOrByTopLevelWildcardIgnoringParametersAndCase() {
        let rule = CompressRule(Compress())
        func matches(_ value: String) -> Bool { Array(value.utf8).withUnsafeBytes { rule.matches(contentType: $0) } }
        #expect(matches("text/html"))
        #expect(matches("text/html; charset=utf-8"))
        #expect(matches("Text/CSS"))
        #expect(matches(" application/json ;charset=utf-8"))
        #expect(matches("image/svg+xml"))
        #expect(!matches("image/png"))
        #expect(!matches("application/octet-stream"))
        #expect(!matches("text/"))
        #expect(!matches("application/jsonp"))
        #expect(!matches(""))
        let only = CompressRule(Compress(types: ["application/x-ndjson"]))
        #expect(Array("application/x-ndjson".utf8).withUnsafeBytes { only.matches(contentType: $0) })
        #expect(!Array("text/plain".utf8).withUnsafeBytes { only.matches(contentType: $0) })
    }

    @Test func noTransformIsADirectiveNotASubstring() {
        func forbids(_ value: String) -> Bool { Array(value.utf8).withUnsafeBytes { cacheControlForbidsTransform($0) } }
        #expect(forbids("no-transform"))
        #expect(forbids("public, max-age=60, No-Transform"))
        #expect(!forbids("public, max-age=60"))
        #expect(!forbids("x-no-transform-please"))
        #expect(!forbids(""))
    }

    private func load(_ middleware: String) throws(ConfigError) -> SwitchyardConfig {
        try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\nmiddlewares:\n  gz: \(middleware)\nroutes:\n  - {service: s, middlewares: [gz]}\n",
                                    path: "switchyard.yml")
    }

    @Test func compressLoadsWithDefaultsAndBadSettingsAreNamed() throws {
        #expect(try load("{compress: {}}").routes[0].middlewares[0].kind == .compress(Compress()))
        #expect(try load("{compress: {types: [text/html, application/*], min_bytes: 2KiB, level: 1}}").routes[0].middlewares[0].kind
            == .compress(Compress(types: ["text/html", "application/*"], minBytes: 2_048, level: 1)))
        for (bad, message) in [("{compress: {level: 0}}", "level"), ("{compress: {level: 10}}", "level"),
                               ("{compress: {types: [html]}}", "not a media type"), ("{compress: {types: [\"*/*\"]}}", "not a media type"),
                               ("{compress: {types: []}}", "at least one"), ("{compress: {min_bytes: lots}}", "min_bytes"),
                               ("{compress: {gzip: true}}", "gzip")] {
            do {
                _ = try load(bad)
                Issue.record("\(bad) loaded")
            } catch {
                #expect(error.description.contains(message), "\(bad): \(error.description)")
            }
        }
    }
}

@Suite struct DeflateSizing {
    @Test func aSmallKnownBodyGetsASmallWindowAsNginxSizesIt() {
        // 2 KiB: half a 4 KiB window (2048 - 262) no longer holds it, so 12 bits; memLevel follows.
        #expect(DeflateSize.forBody(contentLength: 2_048) == DeflateSize(windowBits: 12, memLevel: 5))
        #expect(DeflateSize.forBody(contentLength: 1_024) == DeflateSize(windowBits: 11, memLevel: 4))
        #expect(DeflateSize.forBody(contentLength: 8_000) == DeflateSize(windowBits: 14, memLevel: 7))
        #expect(DeflateSize.forBody(contentLength: 2_048).stateBytes <= 32 * 1024, "a 2 KiB body costs at most 32 KiB of zlib state")
        #expect(DeflateSize.full.stateBytes == 256 * 1024)
    }

    @Test func theWindowNeverGoesBelowZlibsGzipMinimumNorMemLevelBelowOne() {
        for length: Int64 in [1, 10, 200, 249] {
            let size = DeflateSize.forBody(contentLength: length)
            #expect(size.windowBits == 9 && size.memLevel == 2, "\(length): \(size)")
        }
        #expect(DeflateSize.forBody(contentLength: 250) == DeflateSize(windowBits: 10, memLevel: 3))
    }

    @Test func anUnknownEmptyOrLargeBodyKeepsTheFullState() {
        #expect(DeflateSize.forBody(contentLength: nil) == .full)
        #expect(DeflateSize.forBody(contentLength: 0) == .full)
        #expect(DeflateSize.forBody(contentLength: -5) == .full)
        #expect(DeflateSize.forBody(contentLength: 16_384) == .full)
        #expect(DeflateSize.forBody(contentLength: Int64.max) == .full)
        // Just under the edge of the full window's half: one step down.
        #expect(DeflateSize.forBody(contentLength: 16_384 - 263) == DeflateSize(windowBits: 14, memLevel: 7))
    }

    @Test func aBiggerStreamServesASmallerBodyButNotTheOtherWayRound() {
        let small = DeflateSize.forBody(contentLength: 2_048)
        #expect(DeflateSize.full.covers(small))
        #expect(!small.covers(.full))
        #expect(small.covers(small))
    }
}
