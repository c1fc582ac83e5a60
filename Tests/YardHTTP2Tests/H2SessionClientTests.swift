// The client session (upstream connections) against the server session in memory: a
// request with a body and trailers out, a response with 1xx, body and trailers back, and
// the receive window held until the owner consumes.

import Testing
import YardIO
@testable import YardHTTP2

@Suite struct H2ClientSessionTests {
    /// Moves bytes both ways until neither side has anything to send.
    private func pump(_ client: H2Session, _ server: H2Session, clientEvents: inout [H2Event], serverEvents: inout [H2Event]) {
        var buffer = ByteBuffer(capacity: 1 << 16)
        defer { buffer.deallocate() }
        var batch: [H2Event] = []
        for _ in 0..<50 {
            buffer.clear()
            #expect(client.send(into: &buffer))
            let fromClient = buffer.readableBytes
            if fromClient > 0 { #expect(server.receive(buffer.readable, nowMs: 0) == .ok) }
            server.takeEvents(into: &batch)
            serverEvents += batch
            buffer.clear()
            #expect(server.send(into: &buffer))
            let fromServer = buffer.readableBytes
            if fromServer > 0 { #expect(client.receive(buffer.readable, nowMs: 0) == .ok) }
            client.takeEvents(into: &batch)
            clientEvents += batch
            if fromClient == 0 && fromServer == 0 { return }
        }
    }

    private func block(_ pairs: [(String, String)]) -> H2HeaderBlock {
        var headers = H2HeaderBlock()
        for (name, value) in pairs {
            Array(name.utf8).withUnsafeBytes { n in Array(value.utf8).withUnsafeBytes { v in headers.add(name: n, value: v) } }
        }
        return headers
    }

    @Test func requestWithBodyAndTrailersGetsResponseWithBodyAndTrailers() throws {
        let client = H2Session(clientSettings: H2Settings())
        let server = H2Session()
        var headers = block([(":method", "POST"), (":scheme", "http"), (":authority", "api.test"), (":path", "/echo"), ("te", "trailers")])
        let body = client.openBody(stream: 0)
        Array("ping".utf8).withUnsafeBytes { body.buffer.append($0) }
        body.ended = true
        body.trailers = block([("x-sum", "4")])
        let stream = try #require(client.submitRequest(headers: &headers, body: body))
        #expect(stream == 1 && body.stream == 1)

        var clientEvents: [H2Event] = [], serverEvents: [H2Event] = []
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)
        #expect(serverEvents.contains { if case .request(1, _, false) = $0 { return true }; return false })
        #expect(serverEvents.contains { if case .trailers(1, _) = $0 { return true }; return false })
        let received = serverEvents.compactMap { e -> String? in
            if case .data(_, let range) = e { return String(decoding: server.data(range), as: UTF8.self) }
            return nil
        }.joined()
        #expect(received == "ping")

        var responseHeaders = block([("content-type", "application/grpc")])
        let response = server.openBody(stream: 1)
        Array("pong".utf8).withUnsafeBytes { response.buffer.append($0) }
        response.ended = true
        response.trailers = block([("grpc-status", "0")])
        #expect(server.submitResponse(stream: 1, status: 200, headers: &responseHeaders, body: response))
        clientEvents.removeAll()
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)

        let head = try #require(clientEvents.compactMap { e -> Range<Int>? in
            if case .response(1, let fields, false) = e { return fields }
            return nil
        }.first)
        #expect(head.map { client.field($0) }.map { String(decoding: client.name($0), as: UTF8.self) } == [":status", "content-type"])
        let trailers = try #require(clientEvents.compactMap { e -> Range<Int>? in
            if case .trailers(1, let fields) = e { return fields }
            return nil
        }.first)
        #expect(trailers.map { String(decoding: client.value(client.field($0)), as: UTF8.self) } == ["0"])
        #expect(clientEvents.contains { if case .data(1, let r) = $0 { return r.count == 4 }; return false })
        #expect(clientEvents.contains { if case .closed(1, 0) = $0 { return true }; return false })
    }

    @Test func theFinalHeadAfterAnInterimOneIsAResponseNotTrailers() throws {
        let client = H2Session(clientSettings: H2Settings())
        let server = H2Session()
        var headers = block([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")])
        _ = try #require(client.submitRequest(headers: &headers, body: nil))
        var clientEvents: [H2Event] = [], serverEvents: [H2Event] = []
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)
        // nghttp2 has no call for a non-final head on a server session; the 1xx path is
        // the same HEADERS category as the final head after it, which this checks.
        var final = block([("x-a", "b")])
        #expect(server.submitResponse(stream: 1, status: 204, headers: &final, body: nil))
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)
        #expect(clientEvents.contains { if case .response(1, _, true) = $0 { return true }; return false })
        #expect(!clientEvents.contains { if case .trailers = $0 { return true }; return false })
    }

    @Test func theResponseWindowStaysClosedUntilTheOwnerConsumes() throws {
        var settings = H2Settings()
        settings.initialWindowSize = 16_384
        let client = H2Session(clientSettings: settings)
        let server = H2Session()
        var headers = block([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/big")])
        let stream = try #require(client.submitRequest(headers: &headers, body: nil))
        var clientEvents: [H2Event] = [], serverEvents: [H2Event] = []
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)
        var none = H2HeaderBlock()
        let body = server.openBody(stream: stream)
        _ = body.buffer.reserve(100_000)
        Array(repeating: UInt8(ascii: "x"), count: 100_000).withUnsafeBytes { body.buffer.append($0) }
        body.ended = true
        #expect(server.submitResponse(stream: stream, status: 200, headers: &none, body: body))
        clientEvents.removeAll()
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)
        func received() -> Int {
            clientEvents.reduce(0) { sum, e in if case .data(_, let r) = e { return sum + r.count }; return sum }
        }
        #expect(received() == 16_384)
        client.consume(stream: stream, count: received())
        client.clearStores()
        pump(client, server, clientEvents: &clientEvents, serverEvents: &serverEvents)
        #expect(received() == 32_768)
    }
}
