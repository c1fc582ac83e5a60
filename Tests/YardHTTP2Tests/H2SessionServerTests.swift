// The server session against a real nghttp2 client session in memory: requests in, every
// split point of the input, responses out through the deferred data provider, flow control,
// trailers, limits and the flood protections.

import CYardNghttp2
import Testing
import YardIO
@testable import YardHTTP2

@Suite struct H2SessionTests {
    // MARK: Requests

    @Test func requestHeadArrivesWithPseudoHeadersAtEverySplitPoint() {
        let client = TestClient()
        client.request(method: "GET", path: "/items?id=7", authority: "shop.test", headers: [("x-trace", "abc")])
        let bytes = client.output()
        for split in 0...bytes.count {
            let server = H2Session()
            var events: [H2Event] = []
            var batch: [H2Event] = []
            for part in [bytes[0..<split], bytes[split...]] {
                Array(part).withUnsafeBytes { #expect(server.receive($0, nowMs: 0) == .ok) }
                server.takeEvents(into: &batch)
                events += batch
            }
            let requests = events.compactMap { e -> (Int32, Range<Int>, Bool)? in
                if case .request(let s, let f, let end) = e { return (s, f, end) }
                return nil
            }
            #expect(requests.count == 1, "split at \(split)")
            guard let (stream, fields, endStream) = requests.first else { continue }
            #expect(stream == 1 && endStream)
            let pairs = fields.map { text(server, server.fields[$0]) }
            #expect(pairs.first { $0.0 == ":method" }?.1 == "GET")
            #expect(pairs.first { $0.0 == ":path" }?.1 == "/items?id=7")
            #expect(pairs.first { $0.0 == ":authority" }?.1 == "shop.test")
            #expect(pairs.first { $0.0 == "x-trace" }?.1 == "abc")
        }
    }

    /// The owner clears the session's stores after every read: a header block that
    /// straddles two reads keeps the fields it recorded before the split (this trapped,
    /// `blockStart` past the cleared fields, found by the h2-server fuzz target).
    @Test func aHeaderBlockSplitAcrossReadsSurvivesTheStoresBeingCleared() {
        let client = TestClient()
        client.request(method: "GET", path: "/items?id=7", authority: "shop.test",
                       headers: [("x-trace", "abc"), ("x-long", String(repeating: "v", count: 300))])
        let bytes = client.output()
        for split in 0...bytes.count {
            let server = H2Session()
            var pairs: [(String, String)] = []
            var requests = 0
            var batch: [H2Event] = []
            for part in [bytes[0..<split], bytes[split...]] {
                Array(part).withUnsafeBytes { #expect(server.receive($0, nowMs: 0) == .ok) }
                server.takeEvents(into: &batch)
                for e in batch {
                    if case .request(_, let fields, _) = e {
                        requests += 1
                        pairs = fields.map { text(server, server.fields[$0]) }
                    }
                }
                server.clearStores()
            }
            #expect(requests == 1, "split at \(split)")
            #expect(pairs.first { $0.0 == ":path" }?.1 == "/items?id=7", "split at \(split)")
            #expect(pairs.first { $0.0 == "x-trace" }?.1 == "abc", "split at \(split)")
            #expect(pairs.first { $0.0 == "x-long" }?.1.count == 300, "split at \(split)")
        }
    }

    @Test func requestBodyArrivesAsDataThenEndStreamAtEverySplitPoint() {
        let client = TestClient()
        let body = Array("hello, upstream".utf8)
        client.request(method: "POST", path: "/p", headers: [("content-length", "\(body.count)")], body: body)
        let bytes = client.output()
        for split in 0...bytes.count {
            let server = H2Session()
            var received: [UInt8] = []
            var ended = false
            var batch: [H2Event] = []
            for part in [bytes[0..<split], bytes[split...]] {
                _ = Array(part).withUnsafeBytes { server.receive($0, nowMs: 0) }
                server.takeEvents(into: &batch)
                for e in batch {
                    if case .data(_, let range) = e { received += server.data(range) }
                    if case .endStream(1) = e { ended = true }
                }
                server.clearStores()
            }
            #expect(received == body && ended, "split at \(split)")
        }
    }

    @Test func requestBodyWindowReopensOnlyAsTheOwnerConsumes() {
        let client = TestClient()
        let server = H2Session()
        let body = [UInt8](repeating: 0x61, count: 200_000)
        let stream = client.request(method: "POST", path: "/up", body: body)
        var got = 0
        for e in exchange(client, server) { if case .data(_, let r) = e { got += r.count } }
        // Only the initial stream window (65,535) may arrive before anything is consumed.
        #expect(got == 65_535)
        var total = got
        for _ in 0..<10 where total < body.count {
            server.consume(stream: stream, count: got)
            got = 0
            for e in exchange(client, server) { if case .data(_, let r) = e { got += r.count } }
            total += got
        }
        #expect(total == body.count)
    }

    // MARK: Responses

    @Test func responseBodyIsDeferredWhileEmptyAndResumedWhenItGrows() {
        let client = TestClient()
        let server = H2Session()
        let stream = client.request()
        exchange(client, server)
        let body = server.openBody(stream: stream)
        var headers = H2HeaderBlock()
        headers.add(name: "Content-Type", value: UnsafeRawBufferPointer(start: ("text/plain" as StaticString).utf8Start, count: 10))
        #expect(server.submitResponse(stream: stream, status: 200, headers: &headers, body: body))
        exchange(client, server)
        #expect(client.streams[stream]?.headers.first { $0.0 == ":status" }?.1 == "200")
        #expect(client.streams[stream]?.headers.first { $0.0 == "content-type" }?.1 == "text/plain")
        #expect(body.deferred && client.streams[stream]?.closedWith == nil)

        let part = Array("first ".utf8)
        _ = body.buffer.reserve(part.count)
        part.withUnsafeBytes { body.buffer.append($0) }
        server.bodyGrew(body)
        exchange(client, server)
        #expect(client.streams[stream]?.body == part)

        body.ended = true
        server.bodyGrew(body)
        let events = exchange(client, server)
        #expect(client.streams[stream]?.closedWith == 0)
        #expect(events.contains(.closed(stream: stream, code: 0)))
    }

    @Test func trailersFollowTheLastDataFrame() {
        let client = TestClient()
        let server = H2Session()
        let stream = client.request()
        exchange(client, server)
        let body = server.openBody(stream: stream)
        var headers = H2HeaderBlock()
        server.submitResponse(stream: stream, status: 200, headers: &headers, body: body)
        let payload = Array("data".utf8)
        _ = body.buffer.reserve(4)
        payload.withUnsafeBytes { body.buffer.append($0) }
        "0".utf8.withContiguousStorageIfAvailable { body.trailers.add(name: "Grpc-Status", value: UnsafeRawBufferPointer($0)) }
        body.ended = true
        server.bodyGrew(body)
        exchange(client, server)
        #expect(client.streams[stream]?.body == payload)
        #expect(client.streams[stream]?.trailers.first?.0 == "grpc-status")
        #expect(client.streams[stream]?.trailers.first?.1 == "0")
        #expect(client.streams[stream]?.closedWith == 0)
    }

    @Test func aTinyClientWindowLimitsWhatIsSentUntilTheClientOpensIt() {
        let client = TestClient(windowSize: 10, autoWindowUpdate: false)
        let server = H2Session()
        let stream = client.request()
        exchange(client, server)
        let body = server.openBody(stream: stream)
        var headers = H2HeaderBlock()
        server.submitResponse(stream: stream, status: 200, headers: &headers, body: body)
        let payload = [UInt8](repeating: 0x62, count: 25)
        _ = body.buffer.reserve(25)
        payload.withUnsafeBytes { body.buffer.append($0) }
        body.ended = true
        server.bodyGrew(body)
        exchange(client, server)
        #expect(client.streams[stream]?.body.count == 10)
        #expect(server.sendWindow(stream: stream) == 0)
        client.openWindow(stream, by: 100)
        exchange(client, server)
        #expect(client.streams[stream]?.body == payload)
        #expect(client.streams[stream]?.closedWith == 0)
    }

    // MARK: Limits and floods

    @Test func streamsBeyondTheConcurrencyLimitAreRefused() {
        var settings = H2Settings()
        settings.maxConcurrentStreams = 2
        let server = H2Session(settings: settings)
        // Hand-made frames: an nghttp2 client would queue the extra streams itself.
        var bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        bytes += frame(0x4, 0, stream: 0, []) + frame(0x4, 0x1, stream: 0, []) // SETTINGS, ACK
        for id in [1, 3, 5, 7] as [UInt32] { bytes += frame(0x1, 0x4, stream: id, getRequestBlock) } // no END_STREAM
        var events: [H2Event] = []
        _ = bytes.withUnsafeBytes { server.receive($0, nowMs: 0) }
        server.takeEvents(into: &events)
        let accepted = events.compactMap { e -> Int32? in if case .request(let s, _, _) = e { return s }; return nil }
        #expect(accepted == [1, 3])
        var out = ByteBuffer(capacity: 1024)
        _ = server.send(into: &out)
        let sent = Array(out.readable)
        out.deallocate()
        // After the client acknowledged the limit, libnghttp2 treats a stream beyond it as a
        // connection error: GOAWAY(last stream 3, PROTOCOL_ERROR).
        #expect(containsFrame(sent, type: 0x7, stream: 0, payloadPrefix: [0, 0, 0, 3, 0, 0, 0, 1]))
    }

    @Test func aHeaderListOverTheLimitResetsOnlyThatStream() {
        var settings = H2Settings()
        settings.maxHeaderListSize = 1_000
        let client = TestClient()
        let server = H2Session(settings: settings)
        let big = client.request(headers: [("x-big", String(repeating: "v", count: 2_000))])
        let small = client.request(path: "/small")
        let events = exchange(client, server)
        let requests = events.compactMap { e -> Int32? in if case .request(let s, _, _) = e { return s }; return nil }
        #expect(requests == [small])
        #expect(client.streams[big]?.closedWith != nil)
        #expect(client.goaways.isEmpty)
    }

    @Test func aRapidResetFloodEndsTheConnectionWithEnhanceYourCalm() {
        var settings = H2Settings()
        settings.maxResetsPerWindow = 50
        let client = TestClient()
        let server = H2Session(settings: settings)
        exchange(client, server)
        for _ in 0..<60 {
            let id = client.request()
            let head = client.output()
            client.reset(id)
            let bytes = head + client.output()
            _ = bytes.withUnsafeBytes { server.receive($0, nowMs: 10) }
        }
        exchange(client, server, now: 10)
        #expect(server.floodDetected)
        #expect(client.goaways.last?.code == NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
    }

    @Test func resetsSpreadOverTimeAreNotAFlood() {
        var settings = H2Settings()
        settings.maxResetsPerWindow = 50
        let client = TestClient()
        let server = H2Session(settings: settings)
        exchange(client, server)
        for second in 0..<4 {
            for _ in 0..<30 {
                let id = client.request()
                let head = client.output()
                client.reset(id)
                let bytes = head + client.output()
                _ = bytes.withUnsafeBytes { server.receive($0, nowMs: Int64(second) * 1_100) }
            }
            exchange(client, server, now: Int64(second) * 1_100)
        }
        #expect(server.resetsInWindow == 30)
        #expect(!server.floodDetected && client.goaways.isEmpty)
    }

    @Test func aContinuationFloodIsAProtocolError() {
        let client = TestClient()
        let server = H2Session()
        var bytes = client.output() // preface and SETTINGS
        // HEADERS without END_HEADERS, then 50 CONTINUATION frames on stream 1.
        bytes += frame(0x1, 0x1, stream: 1, [0x82]) // :method GET (indexed), END_STREAM, no END_HEADERS
        for _ in 0..<50 { bytes += frame(0x9, 0, stream: 1, [0x86]) } // :scheme http, again and again
        let result = bytes.withUnsafeBytes { server.receive($0, nowMs: 0) }
        var out = ByteBuffer(capacity: 256)
        _ = server.send(into: &out)
        out.deallocate()
        if case .protocolError = result {} else { Issue.record("a CONTINUATION flood was accepted") }
    }

    @Test func aConnectionThatDoesNotStartWithThePrefaceIsRefused() {
        let server = H2Session()
        let bytes = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(bytes.withUnsafeBytes { server.receive($0, nowMs: 0) } == .badPreface)
    }

    // MARK: Ending

    @Test func gracefulShutdownAnnouncesThenNamesTheLastStream() {
        let client = TestClient()
        let server = H2Session()
        let stream = client.request()
        exchange(client, server)
        server.announceShutdown()
        exchange(client, server)
        server.finishShutdown()
        exchange(client, server)
        #expect(client.goaways.count == 2)
        #expect(client.goaways.first?.lastStream == Int32.max)
        #expect(client.goaways.last?.lastStream == stream)
        #expect(client.goaways.last?.code == 0)
    }
}


// MARK: Hand-made frames

/// A frame: 24-bit length, type, flags, 31-bit stream id, payload.
func frame(_ type: UInt8, _ flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
    [UInt8(payload.count >> 16), UInt8(payload.count >> 8 & 0xff), UInt8(payload.count & 0xff), type, flags,
     UInt8(stream >> 24), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
}

/// HPACK for GET http://a.test/ : static-table indices and one literal authority.
let getRequestBlock: [UInt8] = [0x82, 0x86, 0x84, 0x41, 6] + Array("a.test".utf8)

/// Whether `bytes` (a sequence of frames) holds this frame.
func containsFrame(_ bytes: [UInt8], type: UInt8, stream: UInt32, payloadPrefix: [UInt8]) -> Bool {
    var i = 0
    while i + 9 <= bytes.count {
        let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
        let id = UInt32(bytes[i + 5] & 0x7f) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])
        if bytes[i + 3] == type && id == stream && Array(bytes[(i + 9)..<min(bytes.count, i + 9 + length)]).starts(with: payloadPrefix) { return true }
        i += 9 + length
    }
    return false
}
