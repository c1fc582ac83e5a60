// The gRPC health-checking protocol (grpc.health.v1) for HTTP/2-only services: one unary
// Health/Check call over the check's connection, through YardHTTP2's client session.

#if canImport(Glibc)
import Glibc
#endif
import YardHTTP2
import YardIO
import YardModel

/// `grpc.health.v1.Health/Check` over an open connection (plain: h2c with prior knowledge;
/// TLS: the handshake already chose `h2` by ALPN). `SERVING` passes; any other status, a
/// gRPC error, a reset stream or no answer by the deadline fails, with the reason.
///
/// Threading: blocking, on the health checker's probe queue (like `HealthProbe`).
enum GRPCHealthCheck {
    static let path = "/grpc.health.v1.Health/Check"

    /// `HealthCheckResponse.ServingStatus` names, by value.
    static func statusName(_ value: UInt64) -> String {
        switch value {
        case 0: "UNKNOWN"
        case 1: "SERVING"
        case 2: "NOT_SERVING"
        case 3: "SERVICE_UNKNOWN"
        default: "status \(value)"
        }
    }

    static func run(_ channel: inout HealthProbe.Channel, authority: String, policy: HealthPolicy, until deadline: Int64) -> HealthProbe.Outcome {
        let session = H2Session(clientSettings: H2Settings(), bodyCapacity: 1024)
        var headers = H2HeaderBlock()
        defer { headers.deallocate() }
        let scheme = channel.tls == nil ? "http" : "https"
        for (name, value) in [(":method", "POST"), (":scheme", scheme), (":authority", authority), (":path", path),
                              ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "switchyard-health")] {
            Array(name.utf8).withUnsafeBytes { n in Array(value.utf8).withUnsafeBytes { v in headers.add(name: n, value: v) } }
        }
        let body = session.openBody(stream: 0)
        requestMessage(service: policy.grpcService).withUnsafeBytes { body.buffer.append($0) }
        body.ended = true
        guard let stream = session.submitRequest(headers: &headers, body: body) else {
            return fail("the HTTP/2 session took no request")
        }
        var answer = Answer()
        var output = ByteBuffer(capacity: 4096)
        var input = ByteBuffer(capacity: 16 * 1024)
        defer {
            output.deallocate()
            input.deallocate()
        }
        var events: [H2Event] = []
        while true {
            // Out: whatever the session queued (preface, SETTINGS, the request, ACKs).
            output.clear()
            guard session.send(into: &output) else { return fail("HTTP/2 session error while sending") }
            var sent = 0
            while sent < output.readableBytes {
                guard HealthProbe.wait(channel.fd, events: channel.sendWaits, until: deadline) else {
                    return fail("request not sent within \(policy.timeoutMs) ms")
                }
                switch channel.write(UnsafeRawBufferPointer(rebasing: output.readable[sent...])) {
                case .bytes(let n): sent += n
                case .wouldBlock: continue
                case .closed, .failed: return fail("connection closed while sending the check")
                }
            }
            if let verdict = answer.verdict { return verdict }
            // In: one read, fed to the session; events handled before the stores clear.
            if !channel.hasBufferedInput {
                guard HealthProbe.wait(channel.fd, events: channel.receiveWaits, until: deadline) else {
                    return fail("no answer within \(policy.timeoutMs) ms")
                }
            }
            input.clear()
            switch channel.read(into: &input) {
            case .bytes: break
            case .wouldBlock: continue
            case .closed, .failed: return answer.verdict ?? fail("connection closed before the answer (does the endpoint speak HTTP/2?)")
            }
            if case .protocolError(let why) = session.receive(input.readable, nowMs: monotonicMilliseconds()) {
                return fail("HTTP/2: \(why)")
            }
            session.takeEvents(into: &events)
            for event in events { answer.take(event, stream: stream, session: session) }
            session.clearStores()
        }
    }

    /// What the answer said so far.
    struct Answer {
        var httpStatus: Int?
        var grpcStatus: String?
        var grpcMessage: String?
        var message: [UInt8] = []
        var oversized = false
        var ended = false
        var resetCode: UInt32?

        mutating func take(_ event: H2Event, stream: Int32, session: H2Session) {
            switch event {
            case .response(let id, let fields, let endStream) where id == stream:
                headers(fields, session: session)
                if endStream { ended = true }  // trailers-only: a gRPC error
            case .trailers(let id, let fields) where id == stream:
                headers(fields, session: session)
                ended = true
            case .data(let id, let range) where id == stream:
                // A HealthCheckResponse is a few bytes; more is not one (and is not kept).
                if message.count + range.count <= 4096 { message += session.data(range) } else { oversized = true }
            case .endStream(let id) where id == stream:
                ended = true
            case .reset(let id, let code) where id == stream:
                resetCode = code
            case .closed(let id, let code) where id == stream:
                if code != 0 && !ended { resetCode = code }
                ended = true
            default:
                break
            }
        }

        mutating func headers(_ fields: Range<Int>, session: H2Session) {
            for index in fields {
                let field = session.field(index)
                let name = String(decoding: session.name(field), as: UTF8.self)
                let value = String(decoding: session.value(field), as: UTF8.self)
                switch name {
                case ":status": httpStatus = Int(value)
                case "grpc-status": grpcStatus = value
                case "grpc-message": grpcMessage = value
                default: break
                }
            }
        }

        /// The outcome once the call is over (nil while it is not).
        var verdict: HealthProbe.Outcome? {
            if let resetCode { return GRPCHealthCheck.fail("the endpoint reset the call (HTTP/2 error \(resetCode))") }
            guard ended else { return nil }
            if let httpStatus, httpStatus != 200 { return GRPCHealthCheck.fail("HTTP status \(httpStatus), not a gRPC answer") }
            guard let grpcStatus else { return GRPCHealthCheck.fail("the call ended without grpc-status") }
            guard grpcStatus == "0" else {
                let detail = grpcMessage.map { ": \(String($0.prefix(200)))" } ?? ""
                return GRPCHealthCheck.fail("grpc-status \(String(grpcStatus.prefix(8)))\(detail)")
            }
            guard !oversized, let status = GRPCHealthCheck.servingStatus(message) else {
                return GRPCHealthCheck.fail("the answer is not a HealthCheckResponse")
            }
            if status == 1 { return HealthProbe.Outcome(passed: true, reason: nil) }
            return GRPCHealthCheck.fail("grpc \(GRPCHealthCheck.statusName(status))")
        }
    }

    static func fail(_ reason: String) -> HealthProbe.Outcome { HealthProbe.Outcome(passed: false, reason: reason) }

    // MARK: Messages (protobuf by hand: two fields)

    /// The length-prefixed `HealthCheckRequest { string service = 1; }`.
    static func requestMessage(service: String) -> [UInt8] {
        var payload: [UInt8] = []
        let name = Array(service.utf8)
        if !name.isEmpty {
            payload.append(0x0A)  // field 1, length-delimited
            var length = UInt64(name.count)
            repeat {
                let low = UInt8(length & 0x7F)
                length >>= 7
                payload.append(length == 0 ? low : low | 0x80)
            } while length != 0
            payload += name
        }
        let count = UInt32(payload.count)
        return [0, UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)] + payload
    }

    /// The `status` (field 1, varint) of a length-prefixed, uncompressed
    /// `HealthCheckResponse`; 0 (UNKNOWN, protobuf's default) when the field is absent; nil
    /// when the bytes are not such a message. Unknown fields are skipped.
    static func servingStatus(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count >= 5, bytes[0] == 0 else { return nil }
        let length = Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4])
        guard length == bytes.count - 5 else { return nil }
        var index = 5
        var status: UInt64 = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.count && shift < 64 {
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while index < bytes.count {
            guard let key = varint() else { return nil }
            switch key & 7 {
            case 0:
                guard let value = varint() else { return nil }
                if key >> 3 == 1 { status = value }
            case 1: index += 8
            case 2:
                guard let length = varint(), length <= UInt64(bytes.count - index) else { return nil }
                index += Int(length)
            case 5: index += 4
            default: return nil
            }
            guard index <= bytes.count else { return nil }
        }
        return status
    }
}
