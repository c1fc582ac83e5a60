import YardHTTP

/// The upstream's answer to one request, as its bytes arrive: interim heads, the final head,
/// the body, the end — a value-typed state machine that never touches a socket.
///
/// A relay (HTTP/1.1 client: `relayResponse`; HTTP/2 stream: `relayResponseToStream`) gives
/// it the bytes buffered from the upstream, how much room the client side has and whether
/// the upstream has closed; it answers with one `Event` and the relay acts on it (writes a
/// head, moves body bytes, finishes, aborts). The relay consumes the bytes an event names
/// from its buffer before asking again.
///
///     head ──interim──▶ headParsed ──acceptHead──▶ head (the next one)
///     head ──final────▶ headParsed ──acceptHead──▶ body ──▶ complete
///     head ──layOutHead──▶ laidOut ──next──▶ headParsed (as if parsed)
///     (a final head without a body goes straight to complete)
///
/// Threading: a value owned by one upstream connection, used on its worker's loop.
struct ResponseReader {
    /// How the upstream's side of the connection stands.
    enum Close: Equatable {
        case open
        /// Closed, with TLS close_notify when over TLS.
        case clean
        /// A TLS connection that ended without close_notify: a close-delimited body may be
        /// truncated.
        case withoutCloseNotify
    }

    enum Event: Equatable {
        /// Nothing to do until more bytes arrive (or the client side has room).
        case needBytes
        /// A 1xx head (not 101) was parsed: relay or drop its `head.headLength` bytes, then
        /// `acceptHead()`.
        case interimHead
        /// 101 Switching Protocols was parsed: the relay decides whether it is allowed.
        case switchingProtocols
        /// The final head was parsed: relay it, `acceptHead()`, consume its bytes.
        case finalHead
        /// The first `count` bytes given are body (never more than the room given).
        case body(count: Int)
        /// The whole response has arrived.
        case complete
        case invalidHead(HTTPParseError)
        /// Broken chunked framing in the body.
        case invalidBody(HTTPParseError)
        /// The upstream closed before its head was complete.
        case closedMidHead
        /// The upstream closed before a Content-Length or chunked body ended.
        case closedMidBody
        /// A close-delimited body ended without TLS close_notify.
        case truncated
    }

    private enum State { case head, laidOut, headParsed, body, complete }

    private var state = State.head
    private var scanFrom = 0
    /// The head parsed last (interim or final); kept until the next one is parsed.
    private(set) var head = ResponseHead()
    /// The body's framing and progress, from the final head on.
    private(set) var body = BodyProgress()

    /// The final head has been accepted: the body (if any) is what arrives next.
    var headDone: Bool { state == .body || state == .complete }
    /// The whole response has arrived.
    var isComplete: Bool { state == .complete }

    /// The next step, given the bytes buffered from the upstream (after what earlier events
    /// named), the room on the client side for body bytes, and the upstream's close.
    mutating func next(_ bytes: UnsafeRawBufferPointer, room: Int, close: Close, limits: HTTPLimits,
                       requestMethod: HTTPMethod, fields: UnsafeMutablePointer<HeaderField>) -> Event {
        switch state {
        case .laidOut:
            state = .headParsed
            if head.status == 101 { return .switchingProtocols }
            return head.isInterim ? .interimHead : .finalHead
        case .head:
            guard !bytes.isEmpty else { return close == .open ? .needBytes : .closedMidHead }
            switch parseResponseHead(bytes, limits: limits, requestMethod: requestMethod, head: &head, fields: fields, scanFrom: &scanFrom) {
            case .incomplete:
                return close == .open ? .needBytes : .closedMidHead
            case .invalid(let error):
                return .invalidHead(error)
            case .complete:
                state = .headParsed
                if head.status == 101 { return .switchingProtocols }
                return head.isInterim ? .interimHead : .finalHead
            }
        case .headParsed:
            return .needBytes
        case .body:
            if body.isComplete {
                state = .complete
                return .complete
            }
            if bytes.isEmpty {
                if close == .open { return .needBytes }
                if body.inputEnded(cleanly: close == .clean) {
                    state = .complete
                    return .complete
                }
                return body.isCloseDelimited ? .truncated : .closedMidBody
            }
            guard room > 0 else { return .needBytes }
            switch body.advance(over: UnsafeRawBufferPointer(rebasing: bytes[0 ..< min(bytes.count, room)])) {
            case .body(let count):
                if body.isComplete && count == 0 {
                    state = .complete
                    return .complete
                }
                return .body(count: count)
            case .invalid(let error):
                return .invalidBody(error)
            }
        case .complete:
            return .complete
        }
    }

    /// Whether a head laid out by its producer (`layOutHead`) may be taken now: the reader
    /// waits for a head and none of its bytes has been scanned.
    var takesLaidOutHead: Bool { state == .head && scanFrom == 0 }

    /// Takes a head its producer wrote at the start of the bytes and completed itself
    /// (`completeLaidOutResponseHead`: the HTTP/2 upstream path), instead of parsing it: the
    /// next event is the one its parse would have given. Only when `takesLaidOutHead`.
    mutating func layOutHead(_ laidOut: ResponseHead) {
        guard takesLaidOutHead else { return }
        head = laidOut
        state = .laidOut
    }

    /// `count` body bytes went from the upstream to the client without passing through the
    /// relay's buffers (spliced, ResponseSplice.swift): a Content-Length body only.
    mutating func bodyPassedAround(_ count: Int) {
        guard state == .body else { return }
        body.skip(count)
        if body.isComplete { state = .complete }
    }

    /// The relay has taken the head just parsed: after an interim one, the next head is
    /// parsed; after the final one, the body follows (or the response is complete).
    mutating func acceptHead() {
        guard state == .headParsed else { return }
        scanFrom = 0
        if head.isInterim || head.status == 101 {
            head = ResponseHead()
            state = .head
            return
        }
        body = BodyProgress(head.framing)
        state = body.isComplete ? .complete : .body
    }
}
