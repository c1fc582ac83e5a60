import Testing
import YardModel

/// Times in the admin API: RFC 3339 UTC with milliseconds, read back in any offset.
@Suite struct Timestamps {
    @Test func unixTimesBecomeRFC3339InUTC() {
        #expect(RFC3339.string(unix: 0) == "1970-01-01T00:00:00.000Z")
        #expect(RFC3339.string(unix: 1_796_621_743.4549) == "2026-12-07T05:35:43.454Z")
        #expect(RFC3339.string(unix: 951_782_400) == "2000-02-29T00:00:00.000Z")
        #expect(RFC3339.string(unix: -1.5) == "1969-12-31T23:59:58.500Z")
    }

    @Test func extremeValuesAreClampedNotTrapped() {
        #expect(RFC3339.string(unix: .infinity) == "1970-01-01T00:00:00.000Z")
        #expect(RFC3339.string(unix: .nan) == "1970-01-01T00:00:00.000Z")
        #expect(RFC3339.string(unix: 1e300) == "9999-12-31T23:59:59.000Z")
        #expect(RFC3339.string(unix: -1e300) == "0001-01-01T00:00:00.000Z")
    }

    @Test func parsingReadsFractionsAndOffsets() {
        #expect(RFC3339.unix("2026-12-07T05:35:43.454Z") == 1_796_621_743.454)
        #expect(RFC3339.unix("2026-12-07T06:35:43+01:00") == 1_796_621_743)
        #expect(RFC3339.unix("1970-01-01T00:00:00Z") == 0)
        for bad in ["", "2026-12-07", "2026-13-07T05:35:43Z", "2026-12-07T05:35:43", "2026-12-07T05:35:43.Z", "2026-12-07T05:35:43Zjunk", "２０２６-12-07T05:35:43Z"] {
            #expect(RFC3339.unix(bad) == nil, "\(bad)")
        }
    }

    @Test func everyMillisecondRoundTrips() {
        for unix in stride(from: -86_400_000.0, through: 4_102_444_800, by: 97_654_321.123) {
            let millis = (unix * 1000).rounded(.down) / 1000
            let back = RFC3339.unix(RFC3339.string(unix: unix))
            #expect(back.map { abs($0 - millis) < 0.0005 } == true, "\(unix)")
        }
    }
}
