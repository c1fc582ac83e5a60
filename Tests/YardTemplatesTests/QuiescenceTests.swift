// Quiescence: wait for quiet, within a bound; a pure state machine on an injected clock.

import Testing
import YardTemplates

@Suite struct QuiescenceWaitsForQuietWithinABound {
    @Test func aSingleChangeIsDueAfterMin() {
        var q = Quiescence(minMs: 100, maxMs: 1_000)
        let due0 = q.changed(nowMs: 0)
        #expect(due0 == 100)
        let fired1 = q.fire(nowMs: 99)
        #expect(!fired1)
        let fired2 = q.fire(nowMs: 100)
        #expect(fired2)
        let fired3 = q.fire(nowMs: 200)
        #expect(!fired3, "fired once")
    }

    @Test func eachChangePushesTheRenderBackByMin() {
        var q = Quiescence(minMs: 100, maxMs: 1_000)
        _ = q.changed(nowMs: 0)
        let due50 = q.changed(nowMs: 50)
        #expect(due50 == 150)
        let due120 = q.changed(nowMs: 120)
        #expect(due120 == 220)
        let fired4 = q.fire(nowMs: 150)
        #expect(!fired4)
        let fired5 = q.fire(nowMs: 220)
        #expect(fired5)
    }

    @Test func changesEvery50msStillRenderOncePerMaxWindow() {
        var q = Quiescence(minMs: 100, maxMs: 300)
        var fired: [Int] = []
        for now in stride(from: 0, through: 1_000, by: 10) {
            if now % 50 == 0 { _ = q.changed(nowMs: now) }
            if q.fire(nowMs: now) { fired.append(now) }
        }
        #expect(fired == [300, 650, 1_000], "one render per max window while flapping (bursts start at 0, 350 and 700)")
        #expect(fired.count <= 1_000 / 300 + 1)
    }

    @Test func zeroWaitIsDueAtOnce() {
        var q = Quiescence(minMs: 0, maxMs: 0)
        let due7 = q.changed(nowMs: 7)
        #expect(due7 == 7)
        let fired6 = q.fire(nowMs: 7)
        #expect(fired6)
    }
}
