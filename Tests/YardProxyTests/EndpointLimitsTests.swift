// The per-endpoint limits: the wait queue as a value, the shared slot counters and the
// service's wait line (tickets, each loop's oldest waiter, `max_pending`).

import Testing
import YardModel
@testable import YardProxy

@Suite struct EndpointLimitsTests {
    // MARK: WaitQueue

    @Test func waitersAreServedInTheOrderTheyCame() {
        var queue = WaitQueue<String>()
        queue.push("a", ticket: 1, nowMs: 0, timeoutMs: 100)
        queue.push("b", ticket: 2, nowMs: 1, timeoutMs: 100)
        queue.push("c", ticket: 5, nowMs: 2, timeoutMs: 100)
        #expect(queue.count == 3)
        let v1 = queue.popFirst()
        #expect(v1?.element == "a")
        let v2 = queue.popFirst()
        #expect(v2?.element == "b")
        let v3 = queue.popFirst()
        #expect(v3?.element == "c")
        let v4 = queue.popFirst()
        #expect(v4 == nil)
        #expect(queue.isEmpty)
        let v5 = queue.headTicket()
        #expect(v5 == .max)
    }

    @Test func aCancelledWaiterIsSkippedAndNoLongerCounted() {
        var queue = WaitQueue<String>()
        for (i, name) in ["a", "b", "c", "d"].enumerated() { queue.push(name, ticket: UInt64(10 + i), nowMs: 0, timeoutMs: 50) }
        let v6 = queue.cancel(ticket: 10)
        #expect(v6)
        let v7 = queue.cancel(ticket: 12)
        #expect(v7)
        let v8 = queue.cancel(ticket: 12)
        #expect(!v8, "a ticket leaves once")
        let v9 = queue.cancel(ticket: 99)
        #expect(!v9, "an unknown ticket changes nothing")
        #expect(queue.count == 2)
        let v10 = queue.headTicket()
        #expect(v10 == 11)
        let v11 = queue.popFirst()
        #expect(v11?.element == "b")
        let v12 = queue.popFirst()
        #expect(v12?.element == "d")
        #expect(queue.isEmpty)
    }

    @Test func onlyWaitersPastTheirDeadlineExpire() {
        var queue = WaitQueue<Int>()
        queue.push(1, ticket: 1, nowMs: 1_000, timeoutMs: 200)
        queue.push(2, ticket: 2, nowMs: 1_100, timeoutMs: 200)
        let v13 = queue.popExpired(nowMs: 1_199)
        #expect(v13 == nil)
        let v14 = queue.popExpired(nowMs: 1_200)
        #expect(v14?.element == 1)
        let v15 = queue.popExpired(nowMs: 1_200)
        #expect(v15 == nil)
        let v16 = queue.popExpired(nowMs: 1_300)
        #expect(v16?.element == 2)
    }

    @Test func aWaiterPutBackKeepsItsPlaceAtTheFront() {
        var queue = WaitQueue<String>()
        queue.push("a", ticket: 1, nowMs: 0, timeoutMs: 100)
        queue.push("b", ticket: 2, nowMs: 0, timeoutMs: 100)
        guard let first = queue.popFirst() else { Issue.record("empty"); return }
        queue.pushFront(first)
        let v17 = queue.headTicket()
        #expect(v17 == 1)
        #expect(queue.count == 2)
        // And it can still be cancelled by its ticket.
        let v18 = queue.cancel(ticket: 1)
        #expect(v18)
        let v19 = queue.popFirst()
        #expect(v19?.element == "b")
    }

    @Test func aLongQueueStaysOrderedThroughCompaction() {
        var queue = WaitQueue<Int>()
        var served: [Int] = []
        var next: UInt64 = 1
        for round in 0..<50 {
            for i in 0..<7 {
                queue.push(round * 7 + i, ticket: next, nowMs: 0, timeoutMs: 10)
                next += 1
            }
            for _ in 0..<5 { if let e = queue.popFirst()?.element { served.append(e) } }
            if round % 3 == 0 { queue.cancel(ticket: next - 1) }
        }
        while let e = queue.popFirst()?.element { served.append(e) }
        #expect(served == served.sorted(), "FIFO across compactions")
        #expect(served.count == 350 - 17)
    }

    // MARK: Shared counters

    @Test func anEndpointNeverHoldsMoreClaimsThanItsLimit() {
        let counters = LimitCounters()
        let slots = counters.slots(service: "shop", poolKey: 1)
        #expect(slots.tryClaim(limit: 2))
        #expect(slots.tryClaim(limit: 2))
        #expect(!slots.tryClaim(limit: 2))
        #expect(slots.count == 2)
        #expect(slots.release() == false, "nobody waits")
        #expect(slots.tryClaim(limit: 2))
        #expect(counters.slots(service: "shop", poolKey: 1) === slots, "one counter per service endpoint for the process")
        #expect(counters.slots(service: "cart", poolKey: 1) !== slots)
    }

    @Test func theLineAdmitsUpToMaxPendingAndCountsTheRest() {
        let line = LimitCounters().line(service: "shop")
        let first = line.enter(maxPending: 2)
        let second = line.enter(maxPending: 2)
        #expect(first == 1 && second == 2)
        #expect(line.enter(maxPending: 2) == nil)
        #expect(line.waiting == 2)
        #expect(line.refusedFull.load(ordering: .relaxed) == 1)
        line.leave()
        #expect(line.enter(maxPending: 2) == 3, "tickets keep growing")
        #expect(line.enter(maxPending: 0) == nil, "max_pending 0: nobody waits")
    }

    @Test func theOldestWaiterIsFoundAcrossLoops() {
        let line = LimitCounters().line(service: "shop")
        #expect(line.oldest(workers: 4) == nil)
        line.setHead(worker: 2, ticket: 9)
        line.setHead(worker: 0, ticket: 12)
        #expect(line.oldest(workers: 4)?.worker == 2)
        line.setHead(worker: 2, ticket: .max)
        #expect(line.oldest(workers: 4)?.worker == 0)
        line.setHead(worker: 999, ticket: 1)  // out of range: ignored
        #expect(line.oldest(workers: 4)?.ticket == 12)
    }

    @Test func aBlockedHeadIsWokenButNotWaitedFor() {
        let line = LimitCounters().line(service: "shop")
        line.setHead(worker: 0, ticket: 3, blocked: true)
        line.setHead(worker: 1, ticket: 7)
        let wake = line.oldest(workers: 2)
        let standBackFor = line.oldest(workers: 2, includingBlocked: false)
        let others = line.oldest(workers: 2, includingBlocked: true, except: 0)
        #expect(wake?.worker == 0 && wake?.ticket == 3, "a release may free the slot it needs")
        #expect(standBackFor?.worker == 1, "a loop does not stand back for a waiter that cannot use a slot")
        #expect(others?.worker == 1)
    }

    @Test func aReleaseSaysWhenSomeoneWaits() {
        let counters = LimitCounters()
        let slots = counters.slots(service: "shop", poolKey: 3)
        #expect(slots.tryClaim(limit: 1))
        _ = slots.line.enter(maxPending: 5)
        #expect(slots.release() == true)
    }

    @Test func theBusyAnswerCarriesRetryAfterAndAnExactLength() {
        for close in [false, true] {
            let text = ErrorResponse.busy(close: close)
            let bytes = Array(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
            let whole = String(decoding: bytes, as: UTF8.self)
            guard let split = whole.range(of: "\r\n\r\n") else { Issue.record("no head end"); continue }
            let body = whole[split.upperBound...]
            #expect(whole.hasPrefix("HTTP/1.1 503 "))
            #expect(whole.contains("\r\nRetry-After: 1\r\n"))
            #expect(whole.contains("\r\nContent-Length: \(body.utf8.count)\r\n"))
            #expect(whole.contains("Connection: close") == close)
        }
    }
}
