import YardHTTP

/// One step of moving a request body from the client's buffer to the upstream's: how many of
/// the buffered bytes go on, or why none do — a pure decision over the body's framing
/// (`BodyProgress`), the bytes buffered, the room upstream and the route's `max_body_bytes`.
/// `pumpRequestBody` repeats it, carrying out each step, until it stops.
///
/// Bytes after the body's end (a pipelined request) are never taken: they stay in the
/// client's buffer for the next head. Nothing past `max_body_bytes` goes upstream. An
/// `Expect: 100-continue` request changes nothing here: the expectation goes upstream with
/// the head, and body bytes the client sends anyway are forwarded as they come (the client
/// decides when to send; `BodyClock` does not count the wait for `100 Continue`).
///
/// Threading: pure; used on a worker's loop.
enum RequestBodyStep: Equatable {
    /// Forward the first `count` buffered bytes (all body, framing included) and consume them.
    case forward(count: Int)
    /// The body is complete: stop (any bytes left are the next request's).
    case done
    /// Nothing buffered: wait for the client.
    case needBytes
    /// No room in the upstream's buffer: wait for the upstream to take what was sent.
    case needRoom
    /// The body grew past the route's `max_body_bytes`: 413, nothing more goes upstream.
    case overLimit(limit: Int64)
    /// The body's framing is broken (chunked syntax, a forbidden trailer): 400.
    case invalid(HTTPParseError)

    /// The next step for the bytes in `buffered`, given `room` bytes free upstream;
    /// `maxBodyBytes` 0 means no limit. Advances `body` over the bytes it forwards.
    static func next(_ body: inout BodyProgress, buffered: UnsafeRawBufferPointer, room: Int, maxBodyBytes: Int64) -> RequestBodyStep {
        guard !body.isComplete else { return .done }
        guard !buffered.isEmpty else { return .needBytes }
        let offered = min(buffered.count, room)
        guard offered > 0 else { return .needRoom }
        switch body.advance(over: UnsafeRawBufferPointer(rebasing: buffered[0 ..< offered])) {
        case .body(let count):
            if maxBodyBytes > 0 && body.dataBytes > maxBodyBytes { return .overLimit(limit: maxBodyBytes) }
            return .forward(count: count)
        case .invalid(let error):
            return .invalid(error)
        }
    }

    /// Sent bytes kept for a replay are dropped (ending replayability) only when the room
    /// left upstream is under what one step could use: all that is buffered, up to 4 KiB.
    static func needsSentBytesDropped(buffered: Int, writable: Int) -> Bool {
        writable < min(buffered, 4096)
    }

    /// A body declared larger than the route's `max_body_bytes` (0: no limit) is refused
    /// with 413 before any of it is read; a chunked body is checked as it passes (`next`).
    static func refusesUpFront(_ framing: BodyFraming, maxBodyBytes: Int64) -> Bool {
        guard maxBodyBytes > 0, case .contentLength(let length) = framing else { return false }
        return length > maxBodyBytes
    }
}
