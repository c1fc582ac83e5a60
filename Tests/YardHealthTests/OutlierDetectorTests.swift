import Testing
import YardHealth
import YardModel

/// The success-rate and latency rules as numbers: Envoy's arithmetic, the volume and host
/// minimums, windows from cumulative counters, Envoy's ejection-time growth, and the
/// checker applying them within `max_ejected_percent`.
@Suite struct OutlierDetectorTests {
    static let bounds: [Double] = [1, 2.5, 5, 10, 25, 50, 100]

    /// `count` answers in the latency bucket `bucket` (index into `bounds`, 7 = +Inf).
    static func traffic(_ requests: UInt64, failures: UInt64 = 0, bucket: Int = 2) -> EndpointTraffic {
        var buckets = Array(repeating: UInt64(0), count: bounds.count + 1)
        buckets[bucket] = requests
        return EndpointTraffic(requests: requests, failures: failures, latencyBuckets: buckets)
    }

    static func policy(factor: Double = 1.9, minimumHosts: Int = 5, volume: Int = 100, latency: Double = 0) -> HealthPolicy {
        var policy = HealthPolicy()
        policy.successRateStdevFactor = factor
        policy.successRateMinimumHosts = minimumHosts
        policy.successRateRequestVolume = volume
        policy.latencyP99Factor = latency
        policy.latencyMinimumHosts = 3
        policy.latencyRequestVolume = volume
        return policy
    }

    // MARK: Success rate

    @Test func endpointBelowMeanByStdevFactorIsAnOutlier() {
        // Rates 1, 1, 1, 1, 0.8: mean 0.96, stdev 0.08, threshold 0.96 − 1.9 × 0.08 = 0.808.
        let windows = [1: Self.traffic(100), 2: Self.traffic(100), 3: Self.traffic(100), 4: Self.traffic(100),
                       5: Self.traffic(100, failures: 20)]
        let verdicts = OutlierDetector.successRateOutliers(windows, policy: Self.policy())
        #expect(verdicts.map(\.endpointKey) == [5])
        #expect(verdicts.first?.reason == .successRate)
        #expect(verdicts.first?.detail == "success rate 80.0 % below the service's threshold 80.8 % (mean 96.0 %)")
    }

    @Test func endpointWithinTheNormalSpreadStays() {
        // Rates 1, 0.98, 0.99, 0.97, 0.95: mean 0.978, stdev 0.0172, threshold 0.945.
        let windows = [1: Self.traffic(100), 2: Self.traffic(100, failures: 2), 3: Self.traffic(100, failures: 1),
                       4: Self.traffic(100, failures: 3), 5: Self.traffic(100, failures: 5)]
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy()).isEmpty)
    }

    @Test func fewerThanMinimumHostsWithVolumeJudgesNothing() {
        // Five endpoints, but one had only 99 requests: four judged, below the minimum of 5.
        let windows = [1: Self.traffic(100), 2: Self.traffic(100), 3: Self.traffic(100), 4: Self.traffic(99),
                       5: Self.traffic(100, failures: 50)]
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy()).isEmpty)
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy(factor: 1.5, minimumHosts: 4)).map(\.endpointKey) == [5])
    }

    @Test func equalSuccessRatesHaveNoOutlierEvenWhenAllFail() {
        let windows = [1: Self.traffic(100, failures: 30), 2: Self.traffic(100, failures: 30), 3: Self.traffic(100, failures: 30)]
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy(minimumHosts: 3)).isEmpty)
    }

    @Test func threeHostsNeedAFactorBelowTheSquareRootOfTwo() {
        // One outlier among n otherwise equal hosts sits √(n − 1) deviations below the mean:
        // 1.41 for three, so Envoy's default 1.9 never ejects among three (docs/health.md).
        let windows = [1: Self.traffic(100), 2: Self.traffic(100, failures: 100), 3: Self.traffic(100)]
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy(minimumHosts: 3)).isEmpty)
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy(factor: 1.0, minimumHosts: 3)).map(\.endpointKey) == [2])
    }

    @Test func zeroFactorTurnsTheRuleOff() {
        let windows = [1: Self.traffic(100), 2: Self.traffic(100, failures: 100), 3: Self.traffic(100)]
        #expect(OutlierDetector.successRateOutliers(windows, policy: Self.policy(factor: 0, minimumHosts: 1, volume: 1)).isEmpty)
    }

    @Test func failuresAboveRequestsDoNotTrap() {
        let windows = [1: EndpointTraffic(requests: 100, failures: 500), 2: Self.traffic(100), 3: Self.traffic(100)]
        let verdicts = OutlierDetector.successRateOutliers(windows, policy: Self.policy(factor: 1, minimumHosts: 3))
        #expect(verdicts.map(\.endpointKey) == [1])
    }

    // MARK: Latency

    @Test func percentileInterpolatesInsideItsBucket() {
        // 100 answers in (2.5, 5]: the 99th is 99 % of the way through the bucket.
        let p99 = OutlierDetector.percentile(0.99, buckets: Self.traffic(100).latencyBuckets, boundsMs: Self.bounds)
        #expect(p99.map { abs($0 - 4.975) < 1e-9 } == true)
        // 98 fast and 2 in (50, 100]: the 99th is the first of the slow ones.
        var buckets = Array(repeating: UInt64(0), count: Self.bounds.count + 1)
        buckets[0] = 98
        buckets[6] = 2
        #expect(OutlierDetector.percentile(0.99, buckets: buckets, boundsMs: Self.bounds) == 75)
        buckets[7] = 100
        #expect(OutlierDetector.percentile(0.99, buckets: buckets, boundsMs: Self.bounds) == 100, "+Inf counts as its lower bound")
        #expect(OutlierDetector.percentile(0.99, buckets: [0, 0], boundsMs: [1]) == nil)
        #expect(OutlierDetector.percentile(0.99, buckets: [1], boundsMs: [1]) == nil, "shape mismatch")
    }

    @Test func endpointWithP99AboveFactorTimesMedianIsAnOutlier() {
        // p99s 4.975, 4.975 and 49.75 ms: median 4.975, limit 3 × 4.975.
        let windows = [1: Self.traffic(100), 2: Self.traffic(100), 3: Self.traffic(100, bucket: 5)]
        let verdicts = OutlierDetector.latencyOutliers(windows, policy: Self.policy(latency: 3), latencyBoundsMs: Self.bounds)
        #expect(verdicts.map(\.endpointKey) == [3])
        #expect(verdicts.first?.detail.hasSuffix("above 3.0 × the service's median p99 5.0 ms") == true, "\(verdicts)")
        // Twice as slow is not three times.
        let close = [1: Self.traffic(100), 2: Self.traffic(100), 3: Self.traffic(100, bucket: 3)]
        #expect(OutlierDetector.latencyOutliers(close, policy: Self.policy(latency: 3), latencyBoundsMs: Self.bounds).isEmpty)
    }

    @Test func latencyRuleNeedsVolumeAndHosts() {
        let windows = [1: Self.traffic(100), 2: Self.traffic(50), 3: Self.traffic(100, bucket: 5)]
        #expect(OutlierDetector.latencyOutliers(windows, policy: Self.policy(latency: 3), latencyBoundsMs: Self.bounds).isEmpty)
        #expect(OutlierDetector.latencyOutliers(windows, policy: Self.policy(latency: 0), latencyBoundsMs: Self.bounds).isEmpty)
    }

    @Test func bothRulesReportEachEndpointOnceWorstFirst() {
        // The integration scenario in numbers: one endpoint fails 20 %, one is 10× slower.
        let windows = [1: Self.traffic(100), 2: Self.traffic(100, failures: 20), 3: Self.traffic(100, bucket: 5)]
        let verdicts = OutlierDetector.outliers(windows, policy: Self.policy(factor: 1, minimumHosts: 3, volume: 50, latency: 3),
                                                latencyBoundsMs: Self.bounds)
        #expect(verdicts.map(\.endpointKey) == [3, 2])
        #expect(verdicts.map(\.reason) == [.latency, .successRate])
    }

    // MARK: Windows

    @Test func sweepHandsOutTheTrafficOfEachInterval() {
        var sweep = OutlierSweep()
        #expect(sweep.feed([1: Self.traffic(10)], intervalMs: 1_000, now: 0) == nil, "the first reading is the baseline")
        #expect(sweep.feed([1: Self.traffic(50)], intervalMs: 1_000, now: 999) == nil)
        let first = sweep.feed([1: Self.traffic(110, failures: 5), 2: Self.traffic(7)], intervalMs: 1_000, now: 1_000)
        #expect(first == [1: Self.traffic(100, failures: 5)], "endpoint 2 has no baseline yet")
        let second = sweep.feed([1: Self.traffic(30), 2: Self.traffic(17)], intervalMs: 1_000, now: 2_000)
        #expect(second == [1: Self.traffic(30), 2: Self.traffic(10)], "a counter that went back counts from zero")
    }

    // MARK: Ejection time (Envoy)

    @Test func outlierEjectionGrowsLinearlyAndDecaysPerHealthyInterval() {
        var policy = HealthPolicy()
        policy.baseEjectionMs = 1_000
        policy.maxEjectionMs = 2_500
        var health = EndpointHealth(policy: policy, now: 0)
        var until = health.ejectAsOutlier(.successRate, policy: policy, now: 0)
        #expect(until == 1_000)
        #expect(!health.isRoutable(now: 999))
        health.outlierIntervalPassed(now: 500)
        #expect(health.outlierMultiplier == 1, "no decay while ejected")
        let ended = health.endEjectionIfDue(now: 1_000)
        #expect(ended)
        until = health.ejectAsOutlier(.latency, policy: policy, now: 1_000)
        #expect(until == 3_000, "twice the base the second time")
        _ = health.endEjectionIfDue(now: 3_000)
        until = health.ejectAsOutlier(.latency, policy: policy, now: 3_000)
        #expect(until == 5_500, "capped at max_ejection")
        #expect(health.lastEjection == .latency)
        _ = health.endEjectionIfDue(now: 5_500)
        health.outlierIntervalPassed(now: 6_000)
        health.outlierIntervalPassed(now: 7_000)
        #expect(health.outlierMultiplier == 1)
        until = health.ejectAsOutlier(.successRate, policy: policy, now: 7_000)
        #expect(until == 9_000, "two healthy intervals took the multiplier from 3 back to 1")
    }

    // MARK: The checker

    static func checker(maxEjectedPercent: Int) -> HealthChecker {
        var policy = Self.policy(factor: 1, minimumHosts: 3, volume: 50, latency: 3)
        policy.outlierIntervalMs = 1_000
        policy.maxEjectedPercent = maxEjectedPercent
        let checker = HealthChecker(onChange: {})
        checker.update(targets: (1...3).map {
            HealthTarget(service: "shop", endpointKey: $0, address: "127.0.0.1", port: UInt16(8000 + $0), policy: policy)
        }, now: 0)
        return checker
    }

    static let idle: [Int: EndpointTraffic] = [1: traffic(0), 2: traffic(0), 3: traffic(0)]
    static let scenario: [Int: EndpointTraffic] = [1: traffic(100), 2: traffic(100, failures: 20), 3: traffic(100, bucket: 5)]

    @Test func checkerEjectsBothOutliersWithinTheCap() {
        let checker = Self.checker(maxEjectedPercent: 67)
        #expect(checker.recordTraffic(Self.idle, latencyBoundsMs: Self.bounds, now: 0).isEmpty)
        let ejected = checker.recordTraffic(Self.scenario, latencyBoundsMs: Self.bounds, now: 1_000)
        #expect(ejected.map(\.0.endpointKey) == [3, 2])
        let readings = checker.readings(now: 1_001)
        #expect(readings.filter { $0.value.ejected }.map(\.key.endpointKey).sorted() == [2, 3])
        #expect(checker.ejectionCounts()["shop"] == [.latency: 1, .successRate: 1])
    }

    @Test func checkerStopsAtMaxEjectedPercent() {
        let checker = Self.checker(maxEjectedPercent: 50)
        _ = checker.recordTraffic(Self.idle, latencyBoundsMs: Self.bounds, now: 0)
        let ejected = checker.recordTraffic(Self.scenario, latencyBoundsMs: Self.bounds, now: 1_000)
        #expect(ejected.map(\.0.endpointKey) == [3], "the worst only: 2 of 3 would be over 50 %")
        #expect(checker.readings(now: 1_001)[HealthKey(service: "shop", endpointKey: 1)]?.ejected == false)
    }
}
