// The response half of an exchange, in memory: what ResponseReader tells a relay to do for
// each way an upstream's bytes can arrive — every split point, each framing, interim and
// switching heads, the close in each state, broken input. No sockets: the relay below is a
// few lines that carry out the events as the worker's relays do.

import Testing
import YardHTTP
@testable import YardProxy

/// What a relay saw, in order.
private enum Seen: Equatable {
    case head(Int)
    case interim(Int)
    case switching
    /// Body bytes, concatenated across consecutive `body` events.
    case body(String)
    case complete
    case invalidHead
    case invalidBody
    case closedMidHead
    case closedMidBody
    case truncated
}

/// Drives a reader over `response` delivered in pieces ending at `cuts` (ascending; the
/// last is the input's length), with `room` bytes of client-side room per body step, then
/// the upstream's `close` (if not `.open`). Returns what was seen and the bytes left over
/// (the next response on a reused connection).
private func relay(_ response: String, cuts: [Int]? = nil, method: HTTPMethod = .get, room: Int = 1 << 20,
                   close: ResponseReader.Close = .open) -> (seen: [Seen], leftover: String) {
    let all = Array(response.utf8)
    let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: 64)
    fields.initialize(repeating: .empty, count: 64)
    defer { fields.deallocate() }
    var reader = ResponseReader()
    var seen: [Seen] = []
    var buffer: [UInt8] = []
    var pieces = (cuts ?? [all.count])[...]
    var delivered = 0
    var closed = ResponseReader.Close.open
    func note(_ s: Seen) {
        if case .body(let more) = s, case .body(let earlier)? = seen.last {
            seen[seen.count - 1] = .body(earlier + more)
        } else {
            seen.append(s)
        }
    }
    for _ in 0 ..< 100_000 {
        let event = buffer.withUnsafeBytes {
            reader.next($0, room: room, close: closed, limits: HTTPLimits(), requestMethod: method, fields: fields)
        }
        switch event {
        case .needBytes:
            if let cut = pieces.popFirst() {
                buffer += all[delivered ..< cut]
                delivered = cut
            } else if close != .open && closed == .open {
                closed = close
            } else {
                return (seen, String(decoding: buffer, as: UTF8.self))
            }
        case .interimHead:
            note(.interim(reader.head.status))
            buffer.removeFirst(reader.head.headLength)
            reader.acceptHead()
        case .finalHead:
            note(.head(reader.head.status))
            buffer.removeFirst(reader.head.headLength)
            reader.acceptHead()
        case .switchingProtocols:
            note(.switching)
            return (seen, String(decoding: buffer, as: UTF8.self))
        case .body(let count):
            #expect(count > 0 && count <= room)
            note(.body(String(decoding: buffer[0 ..< count], as: UTF8.self)))
            buffer.removeFirst(count)
        case .complete:
            note(.complete)
            // Bytes after the end are the next message, not buffered input: put the
            // undelivered rest back so the caller sees all of it.
            buffer += all[delivered...]
            return (seen, String(decoding: buffer, as: UTF8.self))
        case .invalidHead(_): note(.invalidHead); return (seen, "")
        case .invalidBody(_): note(.invalidBody); return (seen, "")
        case .closedMidHead: note(.closedMidHead); return (seen, "")
        case .closedMidBody: note(.closedMidBody); return (seen, "")
        case .truncated: note(.truncated); return (seen, "")
        }
    }
    Issue.record("the reader did not settle")
    return (seen, "")
}

/// Every way of delivering `text` in two pieces.
private func everySplit(_ text: String) -> [[Int]] {
    let n = text.utf8.count
    return (0 ... n).map { [$0, n] }
}

@Suite struct ResponseReaderTests {
    let next = "HTTP/1.1 204 No Content\r\n\r\n"

    @Test func aContentLengthResponseIsTheSameAtEverySplitPoint() {
        let response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        for cuts in everySplit(response + next) {
            let result = relay(response + next, cuts: cuts)
            #expect(result.seen == [.head(200), .body("hello"), .complete], "cuts \(cuts)")
            #expect(result.leftover == next, "cuts \(cuts): the pipelined next response must stay buffered")
        }
    }

    @Test func aChunkedResponseWithTrailersIsForwardedVerbatimAtEverySplitPoint() {
        let body = "5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n"
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        for cuts in everySplit(response + next) {
            let result = relay(response + next, cuts: cuts)
            #expect(result.seen == [.head(200), .body(body), .complete], "cuts \(cuts)")
            #expect(result.leftover == next, "cuts \(cuts)")
        }
        // Byte by byte.
        let bytes = Array(1 ... (response.utf8.count))
        #expect(relay(response, cuts: bytes).seen == [.head(200), .body(body), .complete])
    }

    @Test func bodyStepsNeverExceedTheClientSideRoom() {
        let result = relay("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", room: 3)
        #expect(result.seen == [.head(200), .body("0123456789"), .complete])
    }

    @Test func headAnd204And304AnswersHaveNoBody() {
        let head = relay("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + next, method: .head)
        #expect(head.seen == [.head(200), .complete])
        #expect(head.leftover == next, "a HEAD answer's Content-Length frames nothing")
        #expect(relay("HTTP/1.1 204 No Content\r\n\r\n").seen == [.head(204), .complete])
        #expect(relay("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").seen == [.head(304), .complete])
    }

    @Test func interimHeadsComeBeforeTheFinalOne() {
        let response = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
            + "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        for cuts in everySplit(response) {
            #expect(relay(response, cuts: cuts).seen == [.interim(100), .interim(103), .head(201), .body("ok"), .complete], "cuts \(cuts)")
        }
    }

    @Test func switchingProtocolsIsTheRelaysDecision() {
        let result = relay("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframe")
        #expect(result.seen == [.switching])
    }

    @Test func aCloseDelimitedBodyEndsWithACleanCloseAndIsTruncatedWithoutCloseNotify() {
        let response = "HTTP/1.1 200 OK\r\n\r\nstreamed until the close"
        #expect(relay(response).seen == [.head(200), .body("streamed until the close")], "open: still waiting")
        #expect(relay(response, close: .clean).seen == [.head(200), .body("streamed until the close"), .complete])
        #expect(relay(response, close: .withoutCloseNotify).seen == [.head(200), .body("streamed until the close"), .truncated])
    }

    @Test func aCloseBeforeTheEndIsReportedWhereItHappened() {
        #expect(relay("HTTP/1.1 200 OK\r\nContent-Le", close: .clean).seen == [.closedMidHead])
        #expect(relay("", close: .clean).seen == [.closedMidHead])
        #expect(relay("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf", close: .clean).seen
                == [.head(200), .body("half"), .closedMidBody])
        #expect(relay("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", close: .withoutCloseNotify).seen
                == [.head(200), .body("5\r\nhel"), .closedMidBody])
    }

    @Test func brokenInputIsReportedNotRelayed() {
        #expect(relay("HTTP/1.1 2OO OK\r\n\r\n").seen == [.invalidHead])
        #expect(relay("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").seen == [.invalidHead])
        #expect(relay("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n").seen == [.head(200), .invalidBody])
    }

    @Test func nothingMovesUntilTheRelayAcceptsTheHead() {
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: 8)
        fields.initialize(repeating: .empty, count: 8)
        defer { fields.deallocate() }
        var reader = ResponseReader()
        let bytes = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)
        let first = bytes.withUnsafeBytes { reader.next($0, room: 10, close: .open, limits: HTTPLimits(), requestMethod: .get, fields: fields) }
        #expect(first == .finalHead)
        #expect(!reader.headDone)
        let again = bytes.withUnsafeBytes { reader.next($0, room: 10, close: .open, limits: HTTPLimits(), requestMethod: .get, fields: fields) }
        #expect(again == .needBytes)
        reader.acceptHead()
        #expect(reader.headDone && !reader.isComplete)
        let body = Array("ok".utf8).withUnsafeBytes { reader.next($0, room: 10, close: .open, limits: HTTPLimits(), requestMethod: .get, fields: fields) }
        #expect(body == .body(count: 2))
        let end = [UInt8]().withUnsafeBytes { reader.next($0, room: 10, close: .open, limits: HTTPLimits(), requestMethod: .get, fields: fields) }
        #expect(end == .complete)
        #expect(reader.isComplete)
    }
}

/// A head its producer laid out and completed (the HTTP/2 upstream path) gives the events a
/// parse of the same bytes would have given, and the body follows as usual.
@Suite struct LaidOutResponseHeads {
    private func run(_ text: String, head: ResponseHead) -> [ResponseReader.Event] {
        let bytes = Array(text.utf8)
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: 8)
        fields.initialize(repeating: .empty, count: 8)
        defer { fields.deallocate() }
        var reader = ResponseReader()
        #expect(reader.takesLaidOutHead)
        reader.layOutHead(head)
        #expect(!reader.takesLaidOutHead)
        var events: [ResponseReader.Event] = []
        var offset = 0
        while events.count < 8 {
            let event = bytes.withUnsafeBytes {
                reader.next(UnsafeRawBufferPointer(rebasing: $0[offset...]), room: 1 << 20, close: .open, limits: HTTPLimits(),
                            requestMethod: .get, fields: fields)
            }
            events.append(event)
            switch event {
            case .finalHead, .interimHead:
                offset += reader.head.headLength
                reader.acceptHead()
            case .body(let count):
                offset += count
            default:
                return events
            }
        }
        return events
    }

    @Test func aLaidOutFinalHeadIsTakenUnparsedAndItsBodyFollows() {
        var head = ResponseHead()
        head.status = 200
        let text = "HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok"
        head.headLength = text.utf8.count - 2
        head.headerCount = 1
        head.contentLength = 2
        head.framing = .contentLength(2)
        #expect(run(text, head: head) == [.finalHead, .body(count: 2), .complete])
    }

    @Test func aLaidOutInterimHeadLetsTheNextHeadBeLaidOutOrParsed() {
        var reader = ResponseReader()
        var interim = ResponseHead()
        interim.status = 103
        interim.headLength = 17
        interim.framing = .none
        reader.layOutHead(interim)
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: 8)
        fields.initialize(repeating: .empty, count: 8)
        defer { fields.deallocate() }
        let event = reader.next(UnsafeRawBufferPointer(start: nil, count: 0), room: 0, close: .open, limits: HTTPLimits(),
                                requestMethod: .get, fields: fields)
        #expect(event == .interimHead)
        #expect(!reader.takesLaidOutHead)
        reader.acceptHead()
        #expect(reader.takesLaidOutHead)
    }

    @Test func aReaderThatScannedPartOfAHeadTakesNoLaidOutOne() {
        var reader = ResponseReader()
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: 8)
        fields.initialize(repeating: .empty, count: 8)
        defer { fields.deallocate() }
        let part = Array("HTTP/1.1 200 OK\r\ncontent-le".utf8)
        let event = part.withUnsafeBytes {
            reader.next($0, room: 0, close: .open, limits: HTTPLimits(), requestMethod: .get, fields: fields)
        }
        #expect(event == .needBytes)
        #expect(!reader.takesLaidOutHead)
        var head = ResponseHead()
        head.status = 500
        reader.layOutHead(head)
        #expect(reader.head.status != 500)
    }
}
