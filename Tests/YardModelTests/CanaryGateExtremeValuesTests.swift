import Testing
@testable import YardModel

/// The gate explains itself for any policy numbers, however extreme: formatting a
/// non-finite or huge Double never traps (it used to convert with `Int(_:)`).
@Suite struct CanaryGateExtremeValues {
    @Test func extremeThresholdsAreExplainedNotTrapped() {
        let failing = TrackStats(requests: 200, serverErrors: 100, latencyBuckets: [0, 200])
        let fine = TrackStats(requests: 200, latencyBuckets: [200, 0])
        for value in [-Double.infinity, .infinity, .nan, -1e300, 1e300, 9.3e18, -9.3e18] {
            let policy = GatePolicy(maxErrorRateIncrease: value, maxP99IncreasePercent: value, p99FloorMs: value, minRequests: 1)
            let verdict = policy.evaluate(canary: failing, stable: fine, canaryTrack: "green", stableTrack: "blue",
                                          windowSeconds: 60, bucketBoundsMs: [5])
            #expect(verdict.reasons.allSatisfy { !$0.isEmpty })
        }
    }

    @Test func percentAndMillisecondsPrintEveryDouble() {
        #expect(percent(12) == "12%")
        #expect(percent(12.345) == "12.35%")
        #expect(percent(-.infinity) == "-inf%")
        #expect(percent(.nan) == "nan%")
        #expect(percent(1e300) == "1e+300%")
        #expect(ms(-1e300) == "-1e+300 ms")
        #expect(ms(25) == "25 ms")
    }
}
