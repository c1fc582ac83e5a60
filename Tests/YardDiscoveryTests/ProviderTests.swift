import Testing
import YardDiscovery

// MARK: - Backoff

@Suite struct BackoffTests {
    @Test func ceilingDoublesFromInitialUntilTheCap() {
        var backoff = Backoff(initialMs: 100, maximumMs: 1_000, seed: 1)
        var ceilings: [Int64] = []
        for _ in 0..<7 {
            ceilings.append(backoff.ceilingMs)
            _ = backoff.nextDelayMs()
        }
        #expect(ceilings == [100, 200, 400, 800, 1_000, 1_000, 1_000])
    }

    @Test func everyDelayIsWithinFloorAndCeiling() {
        var backoff = Backoff(initialMs: 50, maximumMs: 3_000, floorMs: 5, seed: 42)
        for _ in 0..<1_000 {
            let ceiling = backoff.ceilingMs
            let delay = backoff.nextDelayMs()
            #expect(delay >= 5 && delay <= ceiling)
        }
    }

    @Test func fullJitterSpreadsDelaysOverTheWholeRange() {
        // At the cap, 2 000 draws should land in every tenth of [0, 1000].
        var backoff = Backoff(initialMs: 1_000, maximumMs: 1_000, floorMs: 0, seed: 7)
        var buckets = [Int](repeating: 0, count: 10)
        for _ in 0..<2_000 { buckets[min(9, Int(backoff.nextDelayMs() / 100))] += 1 }
        #expect(buckets.allSatisfy { $0 > 120 })
    }

    @Test func successResetsTheScheduleToInitial() {
        var backoff = Backoff(initialMs: 100, maximumMs: 10_000, seed: 3)
        for _ in 0..<5 { _ = backoff.nextDelayMs() }
        #expect(backoff.ceilingMs == 3_200)
        backoff.reset()
        #expect(backoff.failures == 0)
        #expect(backoff.ceilingMs == 100)
        #expect(backoff.nextDelayMs() <= 100)
    }

    @Test func sameSeedSameSchedule() {
        var a = Backoff(seed: 99)
        var b = Backoff(seed: 99)
        let first = (0..<20).map { _ in a.nextDelayMs() }
        let second = (0..<20).map { _ in b.nextDelayMs() }
        #expect(first == second)
    }

    @Test func nextAttemptIsNowPlusTheDelay() {
        var backoff = Backoff(initialMs: 100, maximumMs: 100, floorMs: 100, seed: 5)
        #expect(backoff.nextAttempt(afterFailureAt: 10_000) == 10_100)
    }

    @Test func manyFailuresNeverOverflowTheCeiling() {
        var backoff = Backoff(initialMs: 1_000, maximumMs: 60_000, seed: 11)
        for _ in 0..<200 { #expect(backoff.nextDelayMs() <= 60_000) }
        #expect(backoff.ceilingMs == 60_000)
    }
}

// MARK: - ProviderStatus

@Suite struct ProviderStatusTests {
    @Test func failureMarksStaleSinceTheFirstFailureOnly() {
        var status = ProviderStatus(name: "etcd", source: "http://127.0.0.1:2379")
        status.recordSnapshot(nowUnix: 100)
        status.record(.failing("connection refused"), nowUnix: 105)
        status.record(.failing("connection refused again"), nowUnix: 110)
        #expect(!status.healthy)
        #expect(status.staleSinceUnix == 105)
        #expect(status.errors == 2)
        #expect(status.lastError == "connection refused again")
        #expect(status.staleSeconds(nowUnix: 112) == 7)
    }

    @Test func snapshotOrHealthyClearsStalenessButKeepsTheLastError() {
        var status = ProviderStatus(name: "dns", source: "127.0.0.1:53")
        status.record(.failing("timeout"), nowUnix: 1)
        status.recordSnapshot(nowUnix: 2)
        #expect(status.healthy && status.staleSinceUnix == nil && status.updates == 1)
        #expect(status.lastError == "timeout")
        status.record(.failing("timeout"), nowUnix: 3)
        status.record(.healthy, nowUnix: 4)
        #expect(status.healthy && status.staleSinceUnix == nil)
        #expect(status.staleSeconds(nowUnix: 10) == 0)
    }
}
