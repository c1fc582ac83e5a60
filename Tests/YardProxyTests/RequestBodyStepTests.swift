// A request body on its way upstream, in memory: what RequestBodyStep decides for each way
// the client's bytes can arrive — every split point of a Content-Length and a chunked body
// with trailers, a pipelined request left in place, max_body_bytes at its boundary, broken
// framing, 100-continue. The pump below carries the steps out as pumpRequestBody does.

import Testing
import YardHTTP
@testable import YardProxy

private struct Pumped {
    /// What went upstream, in order.
    var forwarded: String
    /// The step that stopped the pump.
    var end: RequestBodyStep
    /// What stayed in the client's buffer (the next request).
    var left: String
    var head: RequestHead
}

/// Parses `request`'s head, then pumps what follows it, delivered in pieces ending at `cuts`
/// (offsets after the head, ascending), with `room` bytes free upstream at each step.
private func pump(_ request: String, cuts: [Int]? = nil, room: Int = 1 << 20, maxBodyBytes: Int64 = 0) -> Pumped {
    let all = Array(request.utf8)
    let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: 64)
    fields.initialize(repeating: .empty, count: 64)
    defer { fields.deallocate() }
    var head = RequestHead()
    var scanFrom = 0
    let status = all.withUnsafeBytes { parseRequestHead($0, limits: HTTPLimits(), head: &head, fields: fields, scanFrom: &scanFrom) }
    guard case .complete = status else {
        Issue.record("head did not parse: \(status)")
        return Pumped(forwarded: "", end: .needBytes, left: "", head: head)
    }
    let rest = Array(all[head.headLength...])
    // As dispatch does: a request body is never delimited by the close.
    var body = BodyProgress(head.framing == .untilClose ? .none : head.framing, refusingForbiddenTrailers: true)
    var buffer: [UInt8] = []
    var upstream: [UInt8] = []
    var pieces = (cuts ?? [rest.count])[...]
    var delivered = 0
    func result(_ end: RequestBodyStep) -> Pumped {
        Pumped(forwarded: String(decoding: upstream, as: UTF8.self), end: end,
               left: String(decoding: buffer + rest[delivered...], as: UTF8.self), head: head)
    }
    for _ in 0 ..< 100_000 {
        let step = buffer.withUnsafeBytes { RequestBodyStep.next(&body, buffered: $0, room: room, maxBodyBytes: maxBodyBytes) }
        switch step {
        case .forward(let count):
            #expect(count > 0 && count <= min(room, buffer.count))
            upstream += buffer[0 ..< count]
            buffer.removeFirst(count)
        case .needBytes:
            guard let cut = pieces.popFirst() else { return result(step) }
            buffer += rest[delivered ..< cut]
            delivered = cut
        case .needRoom, .done, .overLimit, .invalid:
            return result(step)
        }
    }
    Issue.record("the pump did not settle")
    return result(.needBytes)
}

/// Every way of delivering `count` bytes in two pieces.
private func everySplit(_ count: Int) -> [[Int]] {
    (0 ... count).map { [$0, count] }
}

private let next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"

@Suite struct RequestBodyStepTests {
    // MARK: Framing

    @Test func aContentLengthBodyIsTheSameAtEverySplitPointAndRoomAndLeavesThePipelinedRequest() {
        let request = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + next
        for room in [1, 2, 3, 4096] {
            for cuts in everySplit(5 + next.utf8.count) {
                let result = pump(request, cuts: cuts, room: room)
                #expect(result.forwarded == "hello", "room \(room), cuts \(cuts)")
                #expect(result.end == .done, "room \(room), cuts \(cuts)")
                #expect(result.left == next, "room \(room), cuts \(cuts): the next request stays for its head")
            }
        }
    }

    @Test func aChunkedBodyWithTrailersGoesUpstreamVerbatimAtEverySplitPoint() {
        let body = "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nx-sum: 8\r\nx-more: y\r\n\r\n"
        let request = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body + next
        for room in [1, 3, 4096] {
            for cuts in everySplit(body.utf8.count + next.utf8.count) {
                let result = pump(request, cuts: cuts, room: room)
                #expect(result.forwarded == body && result.end == .done && result.left == next, "room \(room), cuts \(cuts)")
            }
        }
        let byteByByte = Array(1 ... body.utf8.count + next.utf8.count)
        let result = pump(request, cuts: byteByByte)
        #expect(result.forwarded == body && result.end == .done && result.left == next)
    }

    @Test func aRequestWithoutABodyForwardsNothing() {
        for request in ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                        "POST / HTTP/1.0\r\nHost: x\r\n\r\n"] {
            let result = pump(request + next)
            #expect(result.forwarded == "" && result.end == .done && result.left == next, "\(request)")
        }
    }

    @Test func aBodyStillComingWaitsForBytes() {
        let result = pump("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
        #expect(result.forwarded == "hel" && result.end == .needBytes)
        let chunked = pump("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        #expect(chunked.forwarded == "5\r\nhello\r\n" && chunked.end == .needBytes)
    }

    @Test func aFullUpstreamBufferWaitsForRoomAndACompleteBodyDoesNot() {
        let result = pump("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", room: 0)
        #expect(result.forwarded == "" && result.end == .needRoom && result.left == "hello")
        let empty = pump("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + next, room: 0)
        #expect(empty.end == .done && empty.left == next)
    }

    // MARK: max_body_bytes

    @Test func aChunkedBodyOfExactlyTheLimitPassesAndOneByteMoreIsRefused() {
        let request = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        for cuts in everySplit(15) {
            #expect(pump(request, cuts: cuts, maxBodyBytes: 5).end == .done, "cuts \(cuts)")
            let over = pump(request, cuts: cuts, maxBodyBytes: 4)
            #expect(over.end == .overLimit(limit: 4), "cuts \(cuts)")
            #expect(!over.forwarded.contains("hello"), "cuts \(cuts): no byte past the limit goes upstream")
        }
        // Byte by byte: everything up to the limit went, the first byte over did not.
        #expect(pump(request, cuts: Array(1 ... 15), maxBodyBytes: 4).forwarded == "5\r\nhell")
        #expect(pump(request, cuts: Array(1 ... 15), maxBodyBytes: 0).end == .done, "0 is no limit")
    }

    @Test func aDeclaredLengthOverTheLimitIsRefusedUpFrontAndOneAtTheLimitIsNot() {
        #expect(!RequestBodyStep.refusesUpFront(.contentLength(5), maxBodyBytes: 5))
        #expect(RequestBodyStep.refusesUpFront(.contentLength(6), maxBodyBytes: 5))
        #expect(!RequestBodyStep.refusesUpFront(.contentLength(1 << 40), maxBodyBytes: 0), "0 is no limit")
        #expect(!RequestBodyStep.refusesUpFront(.chunked, maxBodyBytes: 1), "a chunked body is checked as it passes")
        #expect(!RequestBodyStep.refusesUpFront(.none, maxBodyBytes: 1))
        #expect(pump("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", maxBodyBytes: 5).end == .done)
    }

    // MARK: Broken framing

    @Test func brokenChunkedFramingIsRefusedWhereverItIsCut() {
        let request = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n"
        for cuts in everySplit(16) {
            guard case .invalid = pump(request, cuts: cuts).end else {
                Issue.record("cuts \(cuts): broken framing must be refused")
                continue
            }
        }
    }

    @Test func aForbiddenTrailerInARequestIsRefused() {
        let request = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n"
        guard case .invalid = pump(request).end else {
            Issue.record("a Content-Length trailer must not pass")
            return
        }
    }

    // MARK: 100-continue

    @Test func aBodyAfterExpectContinueIsForwardedAsItComes() {
        // The expectation goes upstream with the head; the proxy does not hold the body back
        // (the client decides when to send) and forwards it at every split point.
        let request = "PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + next
        for cuts in everySplit(5 + next.utf8.count) {
            let result = pump(request, cuts: cuts)
            #expect(result.head.expectContinue)
            #expect(result.forwarded == "hello" && result.end == .done && result.left == next, "cuts \(cuts)")
        }
        // Until something of the response went out, waiting for the body is not the client's fault.
        #expect(BodyClock.proxyHolds(upstreamConnecting: false, unsentToUpstream: false, clientBufferFull: false,
                                     expectsContinue: true, responseStarted: false))
    }

    @Test func anHTTP10ExpectationIsIgnored() {
        let result = pump("PUT /a HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        #expect(!result.head.expectContinue && result.forwarded == "hello" && result.end == .done)
    }

    // MARK: Room for the next step

    @Test func sentBytesAreDroppedOnlyWhenTheRoomLeftIsUnderWhatAStepCouldUse() {
        #expect(!RequestBodyStep.needsSentBytesDropped(buffered: 0, writable: 0), "nothing to move")
        #expect(RequestBodyStep.needsSentBytesDropped(buffered: 10, writable: 9))
        #expect(!RequestBodyStep.needsSentBytesDropped(buffered: 10, writable: 10))
        #expect(RequestBodyStep.needsSentBytesDropped(buffered: 100_000, writable: 4_095))
        #expect(!RequestBodyStep.needsSentBytesDropped(buffered: 100_000, writable: 4_096), "4 KiB of room is enough for a step")
    }
}
