// Connection errors RFC 9113 requires of a server, and resets the client provokes: hand-made
// frames into a server session, the GOAWAY it sends read back out of its output.

import CYardNghttp2
import Testing
import YardIO
@testable import YardHTTP2

@Suite struct H2SessionConnectionErrorTests {
    /// The client preface, an empty SETTINGS and the ACK of the server's.
    private let opening = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(0x4, 0, stream: 0, []) + frame(0x4, 0x1, stream: 0, [])
    /// HEADERS flags: END_STREAM | END_HEADERS, and END_HEADERS alone.
    private let endStreamAndHeaders: UInt8 = 0x5
    private let endHeaders: UInt8 = 0x4

    // MARK: Stream ids

    @Test func aRequestOnAStreamIdBelowOneAlreadyUsedIsAProtocolErrorAtEverySplitPoint() {
        let bytes = opening + frame(0x1, endStreamAndHeaders, stream: 5, getRequestBlock)
            + frame(0x1, endStreamAndHeaders, stream: 3, getRequestBlock)
        for split in 0...bytes.count {
            let server = H2Session()
            var outcomes: [H2Session.ReceiveOutcome] = []
            for part in [bytes[0..<split], bytes[split...]] {
                outcomes.append(Array(part).withUnsafeBytes { server.receive($0, nowMs: 0) })
            }
            #expect(outcomes.contains { if case .protocolError = $0 { return true }; return false }, "split at \(split)")
            #expect(goawayCodes(drain(server)) == [NGHTTP2_PROTOCOL_ERROR.rawValue], "split at \(split)")
            #expect(!server.isActive)
        }
    }

    @Test func aRequestOnAStreamIdThatAlreadyEndedIsAConnectionError() {
        let server = H2Session()
        _ = feed(server, opening + frame(0x1, endStreamAndHeaders, stream: 1, getRequestBlock))
        var headers = H2HeaderBlock()
        server.submitResponse(stream: 1, status: 204, headers: &headers, body: nil)
        #expect(goawayCodes(drain(server)).isEmpty)
        #expect(!server.isOpen(1))
        _ = feed(server, frame(0x1, endStreamAndHeaders, stream: 1, getRequestBlock))
        let codes = goawayCodes(drain(server))
        // PROTOCOL_ERROR, or STREAM_CLOSED when nghttp2 still remembers the stream: both end
        // the connection as §5.1 asks.
        #expect(codes.count == 1 && [NGHTTP2_PROTOCOL_ERROR.rawValue, NGHTTP2_STREAM_CLOSED.rawValue].contains(codes[0]), "\(codes)")
        #expect(!server.isActive)
    }

    @Test func trailersInFlightOnAStreamTheServerResetAreIgnored() {
        let server = H2Session()
        _ = feed(server, opening + frame(0x1, endHeaders, stream: 1, getRequestBlock))
        server.resetStream(1, code: NGHTTP2_CANCEL.rawValue)
        _ = drain(server)
        // The client had not seen the RST_STREAM: its trailers (x-t: 1, a literal) cross it.
        let trailers: [UInt8] = [0x00, 3] + Array("x-t".utf8) + [1] + Array("1".utf8)
        #expect(feed(server, frame(0x1, endStreamAndHeaders, stream: 1, trailers)) == .ok)
        #expect(goawayCodes(drain(server)).isEmpty)
        #expect(server.isActive)
    }

    @Test func trailersOnAnOpenStreamAreNotAReuse() {
        let server = H2Session()
        _ = feed(server, opening + frame(0x1, endHeaders, stream: 1, getRequestBlock) + frame(0x1, endHeaders, stream: 3, getRequestBlock))
        let trailers: [UInt8] = [0x00, 3] + Array("x-t".utf8) + [1] + Array("1".utf8)
        #expect(feed(server, frame(0x1, endStreamAndHeaders, stream: 1, trailers)) == .ok)
        var events: [H2Event] = []
        server.takeEvents(into: &events)
        #expect(events.contains { if case .trailers(1, _) = $0 { return true }; return false })
        #expect(goawayCodes(drain(server)).isEmpty)
    }

    // MARK: Frame sizes and floods

    @Test func aHeadersFrameOverTheMaxFrameSizeIsAFrameSizeError() {
        let server = H2Session()
        let block = getRequestBlock + [0x00, 5] + Array("x-big".utf8) + [0x7f, 0xa1, 0x9b, 0x01] + [UInt8](repeating: 0x61, count: 20_000)
        _ = feed(server, opening + frame(0x1, endStreamAndHeaders, stream: 1, block))
        #expect(goawayCodes(drain(server)) == [NGHTTP2_FRAME_SIZE_ERROR.rawValue])
        #expect(!server.isActive)
    }

    @Test func aContinuationFloodEndsTheSessionWithGoaway() {
        let server = H2Session()
        var bytes = opening + frame(0x1, 0x1, stream: 1, [0x82]) // END_STREAM, no END_HEADERS
        for _ in 0..<2_000 { bytes += frame(0x9, 0, stream: 1, [0x86]) }
        let outcome = feed(server, bytes)
        if case .protocolError = outcome {} else { Issue.record("a CONTINUATION flood was accepted: \(outcome)") }
        #expect(goawayCodes(drain(server)) == [NGHTTP2_ENHANCE_YOUR_CALM.rawValue])
        #expect(!server.isActive)
    }

    // MARK: MadeYouReset (CVE-2025-8671)

    @Test func resetsTheClientProvokesCountTowardTheRapidResetLimitAndEndTheConnection() {
        var settings = H2Settings()
        settings.maxResetsPerWindow = 20
        let server = H2Session(settings: settings)
        _ = feed(server, opening)
        var codes: [UInt32] = []
        // Each stream's window overflows (65,535 + 2^31-1): RST_STREAM(FLOW_CONTROL_ERROR).
        for i in 0..<30 {
            let id = UInt32(1 + 2 * i)
            _ = feed(server, frame(0x1, endStreamAndHeaders, stream: id, getRequestBlock) + frame(0x8, 0, stream: id, [0x7f, 0xff, 0xff, 0xff]), now: 10)
            codes += goawayCodes(drain(server))
        }
        #expect(server.floodDetected)
        #expect(server.resetsInWindow > 20)
        #expect(codes == [NGHTTP2_ENHANCE_YOUR_CALM.rawValue])
    }

    @Test func resetsTheServerDecidesOnItselfDoNotCount() {
        var settings = H2Settings()
        settings.maxResetsPerWindow = 20
        let server = H2Session(settings: settings)
        _ = feed(server, opening)
        for i in 0..<30 {
            let id = Int32(1 + 2 * i)
            _ = feed(server, frame(0x1, endHeaders, stream: UInt32(id), getRequestBlock), now: 10)
            server.resetStream(id, code: i % 2 == 0 ? NGHTTP2_CANCEL.rawValue : NGHTTP2_INTERNAL_ERROR.rawValue)
            _ = drain(server)
        }
        #expect(!server.floodDetected)
        #expect(server.resetsInWindow == 0)
    }

    // MARK: Helpers

    private func feed(_ server: H2Session, _ bytes: [UInt8], now: Int64 = 0) -> H2Session.ReceiveOutcome {
        bytes.withUnsafeBytes { server.receive($0, nowMs: now) }
    }

    /// Everything the server has to send.
    private func drain(_ server: H2Session) -> [UInt8] {
        var out = ByteBuffer(capacity: 4096)
        defer { out.deallocate() }
        _ = server.send(into: &out)
        return Array(out.readable)
    }

    /// The error codes of the GOAWAY frames in `bytes`.
    private func goawayCodes(_ bytes: [UInt8]) -> [UInt32] {
        var codes: [UInt32] = []
        var i = 0
        while i + 9 <= bytes.count {
            let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            if bytes[i + 3] == 0x7 && i + 17 <= bytes.count {
                codes.append(bytes[(i + 13)..<(i + 17)].reduce(0) { $0 << 8 | UInt32($1) })
            }
            i += 9 + length
        }
        return codes
    }
}
