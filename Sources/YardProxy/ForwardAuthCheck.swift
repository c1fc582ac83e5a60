#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardIO
import YardModel

// forward_auth on the request path: before the request goes to its service, a GET goes to
// the auth service over the same upstream machinery (pooled keep-alive connections, epoll,
// timeouts; nothing blocks the loop). Its 2xx lets the request through with the fields named
// in `auth_response_headers`; any other answer goes back to the client as it is (at most
// 64 KiB); a connection failure is a 502 and a timeout a 504. The request never goes
// through on an error.
//
// While the check runs, the client's exchange is bound to the auth connection
// (`c.upstream`), its head stays in `c.inBuf`, and its body waits there (`pumpRequestBody`
// does nothing until `passed`).

/// One forward_auth check and what it answered.
/// Threading: owned by one client exchange on its worker's loop.
final class ForwardAuthExchange {
    let step: ForwardAuthStep
    var status = 0
    /// `Name: value` CRLF lines: the copied fields after a 2xx, the answer's fields otherwise.
    var lines: [UInt8] = []
    /// The body of an answer that is not 2xx (dechunked).
    var body: [UInt8] = []
    var dechunker = Dechunker()
    var passed = false

    init(step: ForwardAuthStep) {
        self.step = step
    }
}

extension Worker {
    /// Starts the check: binds the exchange to a connection to the auth service and sends
    /// the sub-request. Called from dispatch, after the gates.
    func startForwardAuth(_ c: ClientConnection, _ step: ForwardAuthStep, base: UnsafeRawBufferPointer) {
        guard let service = table.services.first(where: { $0.name == step.service }) else {
            return authRefused(c, status: 502, reason: "forward_auth: no service '\(step.service)' in the routing table")
        }
        guard !service.upstream.multiplexed else {
            return authRefused(c, status: 502, reason: "forward_auth: the auth service '\(service.name)' must speak HTTP/1.1")
        }
        let exchange = ForwardAuthExchange(step: step)
        c.exchange.auth = exchange
        c.phase = .forwarding
        c.deadline = 0
        // The answer is read as a GET's, whatever the client's method.
        c.exchange.requestMethod = .get
        c.exchange.retries = 0
        c.exchange.triedEndpoints = 0
        c.exchange.hashKey = 0
        c.exchange.trackDecided = false
        c.exchange.overrideTrack = -1
        c.exchange.stickyPoint = -1
        guard let u = connectUpstream(for: c, service: service, fresh: false) else {
            c.exchange.auth = nil
            return authRefused(c, status: 502, reason: "forward_auth: no endpoint of '\(service.name)' accepted a connection")
        }
        writeAuthRequest(c, step, base: base, into: &u.outBuf)
        u.deadline = now + Int64(step.timeoutMs)
        if u.phase == .active { _ = flushUpstream(u) }
    }

    /// `GET <path>` to the auth service with the original request as X-Forwarded-* fields
    /// and the client's fields named in `auth_request_headers`.
    private func writeAuthRequest(_ c: ClientConnection, _ step: ForwardAuthStep, base: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let head = c.head
        _ = out.reserve(step.requestStart.count + head.headLength + c.peerText.count + 160)
        out.append(step.requestStart)
        out.append("X-Forwarded-Method: ")
        out.append(head.methodSpan.bytes(in: base))
        out.append("\r\nX-Forwarded-Uri: ")
        out.append(head.targetSpan.bytes(in: base))
        out.append("\r\nX-Forwarded-Host: ")
        out.append(head.hostSpan.bytes(in: base))
        out.append(c.secure ? "\r\nX-Forwarded-Proto: https" : "\r\nX-Forwarded-Proto: http")
        out.append("\r\nX-Forwarded-For: ")
        out.append(c.peerText)
        out.append("\r\n")
        for i in 0..<head.headerCount {
            let field = c.fields[i]
            let name = field.name.bytes(in: base)
            guard ForwardAuthStep.lists(step.requestHeaders, name) else { continue }
            out.append(name)
            out.append(": ")
            out.append(field.value.bytes(in: base))
            out.append("\r\n")
        }
        out.append("\r\n")
    }

    /// Reads the auth service's answer as it arrives; acts once it is complete.
    func relayAuthAnswer(_ u: UpstreamConnection, _ c: ClientConnection, _ auth: ForwardAuthExchange) {
        while true {
            let event = u.response.next(u.inBuf.readable, room: Int.max, close: u.closeState,
                                        limits: responseLimits, requestMethod: .get, fields: u.fields)
            switch event {
            case .needBytes:
                if u.inBuf.writableBytes == 0 { u.inBuf.compact() }
                return
            case .interimHead:
                u.inBuf.consume(u.head.headLength)
                u.response.acceptHead()
            case .finalHead:
                auth.status = u.head.status
                takeAuthFields(u, auth)
                u.inBuf.consume(u.head.headLength)
                u.response.acceptHead()
                guard auth.lines.count <= ForwardAuth.maxAnswerBytes else {
                    return authFailed(c, u, status: 502, reason: "forward_auth: the answer of \(u.endpoint.id) has over 64 KiB of fields")
                }
            case .body(let count):
                if !(200..<300).contains(auth.status) {
                    let taken = UnsafeRawBufferPointer(rebasing: u.inBuf.readable[0..<count])
                    if u.response.body.isChunked {
                        var offset = 0
                        while offset < taken.count {
                            let rest = UnsafeRawBufferPointer(rebasing: taken[offset...])
                            let (used, piece) = auth.dechunker.next(rest)
                            if used == 0 { break }
                            if case .data(let range) = piece { auth.body.append(contentsOf: rest[range]) }
                            offset += used
                        }
                    } else {
                        auth.body.append(contentsOf: taken)
                    }
                    guard auth.body.count + auth.lines.count <= ForwardAuth.maxAnswerBytes else {
                        return authFailed(c, u, status: 502, reason: "forward_auth: the answer of \(u.endpoint.id) is over 64 KiB")
                    }
                }
                u.inBuf.consume(count)
            case .complete:
                return authAnswered(c, u, auth)
            case .switchingProtocols, .invalidHead, .invalidBody, .closedMidHead, .closedMidBody, .truncated:
                return authFailed(c, u, status: 502, reason: "forward_auth: \(u.endpoint.id) sent an invalid or cut answer")
            }
        }
    }

    /// The fields to keep from the answer's head: after a 2xx, those `auth_response_headers`
    /// names; otherwise every end-to-end field but the framing (the client's answer).
    private func takeAuthFields(_ u: UpstreamConnection, _ auth: ForwardAuthExchange) {
        let base = u.inBuf.readable
        let allowed = (200..<300).contains(u.head.status)
        for i in 0..<u.head.headerCount {
            let field = u.fields[i]
            let name = field.name.bytes(in: base)
            if allowed {
                guard ForwardAuthStep.lists(auth.step.responseHeaders, name) else { continue }
            } else {
                guard !field.hopByHop, field.kind == .other else { continue }
            }
            auth.lines.append(contentsOf: name)
            auth.lines.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: " ")])
            auth.lines.append(contentsOf: field.value.bytes(in: base))
            auth.lines.append(contentsOf: [13, 10])
        }
    }

    /// The answer is complete: the auth connection goes back to its pool, then the request
    /// goes on (2xx) or the client gets the answer.
    private func authAnswered(_ c: ClientConnection, _ u: UpstreamConnection, _ auth: ForwardAuthExchange) {
        // The sub-request is a GET without a body.
        let reusable = ExchangeEnd.upstreamReusable(u.head, closeDelimited: u.response.body.isCloseDelimited, requestBodyDone: true, draining: draining)
        releaseEndpoint(c)
        unbind(c, u)
        if reusable { releaseToPool(u) } else { closeUpstream(u) }
        c.exchange.requestMethod = c.head.method
        guard let route = c.exchange.route else { return }
        guard (200..<300).contains(auth.status) else { return answerWithAuthAnswer(c, auth) }
        auth.passed = true
        c.exchange.attempts = 0
        forwardToService(c, route)
        if let link = c.h2 { streamProgressed(c, link) }
    }

    /// The check failed (connection, timeout, bad answer): 502 or 504, never the request.
    func authFailed(_ c: ClientConnection, _ u: UpstreamConnection, status: Int, reason: String) {
        releaseEndpoint(c)
        unbind(c, u)
        closeUpstream(u)
        c.exchange.auth = nil
        c.exchange.requestMethod = c.head.method
        authRefused(c, status: status, reason: reason)
    }

    /// Answers an error for a request whose head is still in the client's buffer.
    private func authRefused(_ c: ClientConnection, status: Int, reason: String) {
        dropWaitingHead(c)
        respondError(c, status: status, reason: reason)
    }

    /// The head stays in `c.inBuf` while the check runs (dispatch consumes it only when it
    /// forwards); an answer of our own drops it first, as dispatch does for its 502.
    private func dropWaitingHead(_ c: ClientConnection) {
        guard c.h2 == nil else { return }
        c.inBuf.consume(c.head.headLength)
        c.scanFrom = 0
        if !c.exchange.requestBodyDone { c.exchange.keepAlive = false }
    }

    /// The auth service's own answer (401 with WWW-Authenticate, 302 with Location…) to the client.
    private func answerWithAuthAnswer(_ c: ClientConnection, _ auth: ForwardAuthExchange) {
        dropWaitingHead(c)
        auth.lines.withUnsafeBytes { lines in
            auth.body.withUnsafeBytes { body in
                if c.h2 != nil {
                    // The fields as sent, Content-Type included; h2SendOwnAnswer adds the content-length.
                    h2SendOwnAnswer(c, status: auth.status, fieldLines: lines, body: body)
                    return
                }
                let close = !c.exchange.keepAlive || !c.exchange.requestBodyDone || draining || c.readClosed
                sendOwnAnswer(c, status: auth.status, close: close) { out in
                    let start = out.writerIndex
                    _ = out.reserve(lines.count + body.count + 96)
                    out.append("HTTP/1.1 ")
                    out.appendDecimal(auth.status)
                    out.append(" ")
                    out.append(Worker.reasonPhrase(auth.status))
                    out.append("\r\n")
                    out.append(lines)
                    out.append("Content-Length: ")
                    out.appendDecimal(body.count)
                    out.append(close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n")
                    out.append(body)
                    return out.writerIndex - start
                }
            }
        }
    }
}
