#if canImport(Glibc)
import Glibc
#endif
internal import CYardNghttp2
import YardIO

/// An HTTP/2 session over memory: bytes in (`receive`), bytes out (`send`), events recorded
/// in between. As a server (`init(settings:bodyCapacity:)`) the owner submits responses to
/// the requests it hears of; as a client (`init(clientSettings:bodyCapacity:)`, for
/// upstream connections) it submits requests and hears of responses (H2ClientRequests.swift).
///
/// Wraps one `nghttp2_session*`, freed in `deinit`. nghttp2 calls back into file-private
/// `@convention(c)` thunks that unwrap the session from the user-data pointer and *record*
/// what happened (`events`, header and DATA bytes copied into the session's stores); they
/// never call back into nghttp2. The owner acts on the events after `receive` (or `send`)
/// returned, which is when submitting, resuming and consuming are safe.
///
/// Flow control: automatic WINDOW_UPDATE is off. Request body bytes count against the
/// stream's and the connection's windows until the owner calls `consume` for them (when it
/// has forwarded them), so a slow upstream slows the client instead of filling memory.
///
/// Threading: confined to one event loop; not Sendable.
public final class H2Session {
    let session: OpaquePointer
    public let settings: H2Settings
    /// This side opens the streams (an upstream connection).
    public let isClient: Bool

    // MARK: Recorded state
    /// Events since the last `takeEvents`.
    var events: [H2Event] = []
    /// Header fields of the recorded request/trailer events.
    public private(set) var fields: [H2Field] = []
    public private(set) var headerBytes = ByteBuffer()
    /// DATA payloads of the recorded `.data` events.
    public private(set) var dataBytes = ByteBuffer()
    /// The header block being received: where its fields start, its size so far.
    var blockStart = 0
    var blockSize = 0
    var blockTooLarge = false
    /// A header block has begun and its frame has not been received whole yet.
    var blockOpen = false

    // MARK: Rapid-reset accounting
    var resetWindowStart: Int64 = 0
    var resetsInWindow = 0
    /// The client reset streams faster than allowed, or made the proxy reset them
    /// ("MadeYouReset"); the session is ending.
    public private(set) var floodDetected = false
    var nowMs: Int64 = 0

    // MARK: Stream-id order (RFC 9113 §5.1.1)
    /// The highest stream id a client HEADERS frame named.
    var highestClientStream: Int32 = 0
    /// A HEADERS frame on a stream id not above `highestClientStream` whose fate is not
    /// known yet: trailers on an open stream (nghttp2 then begins a header block for it),
    /// or a stream id used again, which nghttp2 ignores (0: none).
    var reusedStreamCandidate: Int32 = 0
    /// The candidate's frame is decided by the end of the `mem_recv` call that began it
    /// (no padding or priority field to read first).
    var candidateDecidedInCall = false
    /// The client named a stream id it may no longer use; the session is ending.
    public private(set) var streamIdReused = false
    /// The last streams this side reset (a ring): a client may still send trailers on them,
    /// not having seen the RST_STREAM yet, and is not at fault for it.
    var sentResets: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) = (0, 0, 0, 0, 0, 0, 0, 0)
    var sentResetNext = 0

    // MARK: Bodies
    var spareBodies: [H2StreamBody] = []
    /// Bodies whose trailers are due (the last DATA frame went out without END_STREAM).
    var trailersDue: [H2StreamBody] = []
    /// Streams whose body went out completely and which are to be reset (`resetWhenSent`).
    var resetsDue: [Int32] = []
    let bodyCapacity: Int
    var nv: UnsafeMutablePointer<nghttp2_nv>
    var nvCapacity: Int

    /// What feeding bytes to the session came to.
    public enum ReceiveOutcome: Equatable, Sendable {
        case ok
        /// The connection did not start with the HTTP/2 client preface.
        case badPreface
        /// The peer broke the protocol or flooded the session; what is queued (GOAWAY) should
        /// be sent, then the connection closed.
        case protocolError(String)
    }

    /// A server session: the client's preface is expected, requests arrive as `.request`.
    public convenience init(settings: H2Settings = H2Settings(), bodyCapacity: Int = 32 * 1024) {
        self.init(settings: settings, bodyCapacity: bodyCapacity, client: false)
    }

    /// A client session: sends the preface and SETTINGS (server push off) on the first
    /// `send`; responses arrive as `.response`, request bodies go out from `H2StreamBody`s.
    public convenience init(clientSettings: H2Settings, bodyCapacity: Int = 32 * 1024) {
        self.init(settings: clientSettings, bodyCapacity: bodyCapacity, client: true)
    }

    private init(settings: H2Settings, bodyCapacity: Int, client: Bool) {
        self.settings = settings
        self.bodyCapacity = bodyCapacity
        self.isClient = client
        nvCapacity = 64
        nv = .allocate(capacity: nvCapacity)
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        if !client {
            nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, onBeginFrame)
            nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSend)
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_max_continuations(option, settings.maxContinuations)
        // The library's own rapid-reset bucket stays as a backstop above the window count.
        if !client { nghttp2_option_set_stream_reset_rate_limit(option, UInt64(settings.maxResetsPerWindow * 4), 33) }
        var made: OpaquePointer?
        // Allocation failure inside nghttp2 (ENOMEM) is the only way this fails.
        let rc = client ? nghttp2_session_client_new2(&made, callbacks, nil, option)
            : nghttp2_session_server_new2(&made, callbacks, nil, option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        precondition(rc == 0 && made != nil, "nghttp2_session_new2 failed: \(rc)")
        session = made!
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
        headerBytes = ByteBuffer(capacity: 4096)
        dataBytes = ByteBuffer(capacity: 16 * 1024)
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(settings.initialWindowSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(settings.maxHeaderListSize)),
        ]
        if client {
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
        } else {
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams))
        }
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        if settings.connectionWindowSize > 65_535 {
            nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
        }
    }

    deinit {
        nghttp2_session_del(session)
        headerBytes.deallocate()
        dataBytes.deallocate()
        nv.deallocate()
    }

    // MARK: Input

    /// Feeds received bytes. Events are recorded (see `takeEvents`); the session may have
    /// queued frames (SETTINGS ACK, WINDOW_UPDATE, GOAWAY) for `send`.
    public func receive(_ bytes: UnsafeRawBufferPointer, nowMs: Int64) -> ReceiveOutcome {
        self.nowMs = nowMs
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .ok }
        let rc = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rc < 0 {
            if Int32(rc) == NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue { return .badPreface }
            // Fatal for the session (a CONTINUATION flood, a flood of frames the session
            // must answer): nghttp2 queued nothing, so say why before closing.
            let flood = Int32(rc) == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue || Int32(rc) == NGHTTP2_ERR_FLOODED.rawValue
            terminate(code: flood ? NGHTTP2_ENHANCE_YOUR_CALM.rawValue : NGHTTP2_PROTOCOL_ERROR.rawValue)
            return .protocolError((String(cString: nghttp2_strerror(Int32(rc)))))
        }
        if reusedStreamCandidate != 0 && candidateDecidedInCall { decideReusedStreamCandidate() }
        if streamIdReused {
            terminate(code: NGHTTP2_PROTOCOL_ERROR.rawValue)
            return .protocolError("a HEADERS frame named a stream id already used")
        }
        checkResetFlood()
        return .ok
    }

    /// Ends the session with GOAWAY(ENHANCE_YOUR_CALM) once the resets counted in the window
    /// (the client's own and those it provoked) pass the limit.
    func checkResetFlood() {
        if resetsInWindow > settings.maxResetsPerWindow && !floodDetected && !isClient {
            floodDetected = true
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        }
    }

    /// Moves the recorded events to `batch` (which is emptied first) and clears the stores
    /// when they are no longer referenced: the caller reads fields and bytes of this batch
    /// before the next `receive`.
    public func takeEvents(into batch: inout [H2Event]) {
        batch.removeAll(keepingCapacity: true)
        swap(&batch, &events)
    }

    /// Forgets the header fields and DATA bytes of batches already handled.
    public func clearStores() {
        dataBytes.clear()
        // A header block whose frames straddle two reads is still being received: keep the
        // fields it recorded (moved to the front, offsets rebased), or its end would find
        // `blockStart` past the fields (a trap found by the h2-server fuzz target).
        guard blockOpen, blockStart < fields.count else {
            fields.removeAll(keepingCapacity: true)
            headerBytes.clear()
            blockStart = 0
            return
        }
        let shift = Int(fields[blockStart].nameStart)
        let kept = headerBytes.writerIndex - shift
        if let base = headerBytes.base, kept > 0 { memmove(base, base + shift, kept) }
        headerBytes.readerIndex = 0
        headerBytes.writerIndex = max(0, kept)
        fields.removeSubrange(0..<blockStart)
        let delta = Int32(truncatingIfNeeded: shift)
        for i in fields.indices {
            fields[i].nameStart -= delta
            fields[i].valueStart -= delta
        }
        blockStart = 0
    }

    public var hasEvents: Bool { !events.isEmpty }

    /// One recorded field (cheaper than indexing `fields`, which hands out the array).
    public func field(_ index: Int) -> H2Field { fields[index] }

    public func name(_ field: H2Field) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: headerBytes.base! + Int(field.nameStart), count: Int(field.nameCount))
    }

    public func value(_ field: H2Field) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: headerBytes.base! + Int(field.valueStart), count: Int(field.valueCount))
    }

    public func data(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: dataBytes.base! + range.lowerBound, count: range.count)
    }

    // MARK: Output

    /// Appends the frames the session wants to send to `out`, up to about `limit` bytes
    /// pending in `out` (the socket's backpressure). Returns false on a fatal error.
    /// Most output one `send` produces (it stops once `out` holds this much).
    public static let sendLimit = 256 * 1024

    public func send(into out: inout ByteBuffer, limit: Int = H2Session.sendLimit) -> Bool {
        while out.readableBytes < limit {
            var chunk: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &chunk)
            if n < 0 { return false }
            if n == 0 {
                // Bodies whose last DATA went out without END_STREAM: their trailers now.
                guard !trailersDue.isEmpty || !resetsDue.isEmpty else { break }
                let due = trailersDue
                trailersDue.removeAll(keepingCapacity: true)
                for body in due { submitTrailers(body) }
                for stream in resetsDue { resetStream(stream, code: NGHTTP2_NO_ERROR.rawValue) }
                resetsDue.removeAll(keepingCapacity: true)
                continue
            }
            _ = out.reserve(n)
            out.append(UnsafeRawBufferPointer(start: chunk, count: n))
            // Resets provoked by the client count when they go out (`onFrameSend`).
            if !floodDetected && resetsInWindow > settings.maxResetsPerWindow { checkResetFlood() }
        }
        return true
    }

    /// Whether the session still reads or writes; when neither, the connection is done.
    public var isActive: Bool {
        nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0
    }

    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    // MARK: Responses

    /// A body buffer for `stream`'s response, to pass to `submitResponse`.
    public func openBody(stream: Int32) -> H2StreamBody {
        let body = spareBodies.popLast() ?? H2StreamBody(capacity: bodyCapacity)
        body.reset(stream: stream)
        return body
    }

    /// Gives a body back once its stream's `.closed` event was handled.
    public func release(_ body: H2StreamBody) {
        body.stream = 0
        if spareBodies.count < Int(settings.maxConcurrentStreams) { spareBodies.append(body) }
    }

    /// Submits a response head (`:status` first, then `headers`) and, with `body`, a data
    /// provider that streams from it. Without a body the HEADERS frame ends the stream.
    @discardableResult
    public func submitResponse(stream: Int32, status: Int, headers: inout H2HeaderBlock, body: H2StreamBody?) -> Bool {
        // Three digits on the stack: no allocation per response.
        let digits = UInt32(truncatingIfNeeded: min(max(status, 100), 999))
        var text = (UInt8(48 + digits / 100), UInt8(48 + digits / 10 % 10), UInt8(48 + digits % 10))
        return withUnsafeBytes(of: &text) { statusText in
            withNV(headers: &headers, status: statusText) { nva, count in
                if let body {
                    var provider = yard_nghttp2_data_provider(Unmanaged.passUnretained(body).toOpaque(), readBody)
                    return nghttp2_submit_response(session, stream, nva, count, &provider) == 0
                }
                return nghttp2_submit_response(session, stream, nva, count, nil) == 0
            }
        }
    }

    // MARK: Requests (client sessions)

    /// Submits a request: `headers` holds the pseudo-headers (`:method`, `:scheme`,
    /// `:authority`, `:path`) first, then the fields. With `body`, its buffer streams as
    /// DATA (`ended` and `trailers` as for responses); without, HEADERS ends the stream.
    /// Returns the stream id, or nil when the session takes no new stream (ids used up,
    /// GOAWAY received): the owner opens another connection.
    public func submitRequest(headers: inout H2HeaderBlock, body: H2StreamBody?) -> Int32? {
        let id: Int32 = withNV(headers: &headers, status: nil) { nva, count in
            if let body {
                var provider = yard_nghttp2_data_provider(Unmanaged.passUnretained(body).toOpaque(), readBody)
                return nghttp2_submit_request(session, nil, nva, count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, nva, count, nil, nil)
        }
        guard id > 0 else { return nil }
        body?.stream = id
        return id
    }

    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unbounded until its SETTINGS arrive).
    public var peerMaxConcurrentStreams: Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }

    /// The peer sent GOAWAY, or ids ran out: no new stream can be opened on this session.
    public var acceptsNewStreams: Bool {
        nghttp2_session_check_request_allowed(session) != 0
    }

    /// The owner appended to `body.buffer` or set `ended`: resumes a deferred stream.
    public func bodyGrew(_ body: H2StreamBody) {
        guard body.deferred, body.stream != 0 else { return }
        body.deferred = false
        nghttp2_session_resume_data(session, body.stream)
    }

    /// Resets a stream (RST_STREAM with `code`, e.g. 2 INTERNAL_ERROR, 8 CANCEL).
    public func resetStream(_ stream: Int32, code: UInt32) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, code)
    }

    /// Consumes `count` request-body bytes of `stream` (forwarded): the windows reopen.
    public func consume(stream: Int32, count: Int) {
        guard count > 0 else { return }
        if nghttp2_session_consume(session, stream, count) != 0 {
            // The stream is gone; its bytes still count against the connection window.
            nghttp2_session_consume_connection(session, count)
        }
    }

    /// Bytes the client lets us send on `stream` now (stream and connection windows).
    public func sendWindow(stream: Int32) -> Int {
        let streamWindow = Int(nghttp2_session_get_stream_remote_window_size(session, stream))
        let connectionWindow = Int(nghttp2_session_get_remote_window_size(session))
        return max(0, min(streamWindow, connectionWindow))
    }

    /// Whether the stream is still open in the session (not reset or closed).
    public func isOpen(_ stream: Int32) -> Bool {
        guard let s = nghttp2_session_find_stream(session, stream) else { return false }
        return nghttp2_stream_get_state(s) != NGHTTP2_STREAM_STATE_CLOSED
    }

    // MARK: Ending

    /// Graceful shutdown, step one: a GOAWAY announcing the end without refusing streams
    /// already on their way (last-stream-id 2^31-1); `finishShutdown` follows.
    public func announceShutdown() {
        nghttp2_submit_shutdown_notice(session)
        // A PING after it: its ACK (`H2Event.pingAck` with `shutdownPing`) proves the peer
        // has read the notice, and the streams it sent before are in (RFC 9113 §6.8).
        _ = yard_nghttp2_submit_ping(session, H2Session.shutdownPing)
    }

    /// The opaque bytes of the PING that follows the shutdown notice ("yardstop").
    public static let shutdownPing: UInt64 = 0x7961_7264_7374_6F70

    /// Graceful shutdown, step two: GOAWAY with the last stream processed; streams after it
    /// are refused, streams up to it finish.
    public func finishShutdown() {
        let last = nghttp2_session_get_last_proc_stream_id(session)
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    /// Ends the session now with GOAWAY(`code`).
    public func terminate(code: UInt32) {
        nghttp2_session_terminate_session(session, code)
    }

    // MARK: Helpers

    private func submitTrailers(_ body: H2StreamBody) {
        guard body.stream != 0 else { return }
        _ = withNV(headers: &body.trailers, status: nil) { nva, count in
            nghttp2_submit_trailer(session, body.stream, nva, count) == 0
        }
    }

    /// Builds the nghttp2_nv array for `headers` (spans resolved now: the byte buffer no
    /// longer moves) and calls `body` with it. nghttp2 copies the fields before returning.
    private func withNV<Result>(headers: inout H2HeaderBlock, status: UnsafeRawBufferPointer?,
                                _ body: (UnsafeMutablePointer<nghttp2_nv>, Int) -> Result) -> Result {
        let needed = headers.spans.count + 1
        if needed > nvCapacity {
            nv.deallocate()
            nvCapacity = max(needed, nvCapacity * 2)
            nv = .allocate(capacity: nvCapacity)
        }
        var count = 0
        let flags = UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
        if let status {
            let name = UnsafeMutableRawPointer(mutating: H2Names.status.utf8Start)
            nv[0] = nghttp2_nv(name: name.assumingMemoryBound(to: UInt8.self),
                               value: UnsafeMutableRawPointer(mutating: status.baseAddress!).assumingMemoryBound(to: UInt8.self),
                               namelen: 7, valuelen: status.count, flags: flags)
            count = 1
        }
        let base = headers.bytes.base
        for span in headers.spans {
            nv[count] = nghttp2_nv(name: (base! + span.name).assumingMemoryBound(to: UInt8.self),
                                   value: (base! + span.value).assumingMemoryBound(to: UInt8.self),
                                   namelen: span.nameCount, valuelen: span.valueCount, flags: flags)
            count += 1
        }
        return body(nv, count)
    }

    // MARK: Recording (called from the thunks)

    func recordHeader(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        blockSize += name.count + value.count + 32
        if blockSize > settings.maxHeaderListSize {
            blockTooLarge = true
            return false
        }
        _ = headerBytes.reserve(name.count + value.count)
        let nameStart = headerBytes.writerIndex
        headerBytes.append(name)
        let valueStart = headerBytes.writerIndex
        headerBytes.append(value)
        fields.append(H2Field(nameStart: Int32(nameStart), nameCount: Int32(name.count),
                              valueStart: Int32(valueStart), valueCount: Int32(value.count)))
        return true
    }

    /// Whether a received block starts with `:status` (a response head, not trailers).
    func blockHasStatus(_ fields: Range<Int>) -> Bool {
        guard let first = fields.first else { return false }
        let name = self.name(self.fields[first])
        return name.count == 7 && memcmp(name.baseAddress!, H2Names.status.utf8Start, 7) == 0
    }

    func dropBlock() {
        if blockStart < fields.count { fields.removeSubrange(blockStart...) }
    }

    func recordReset() {
        if nowMs - resetWindowStart >= settings.resetWindowMs {
            resetWindowStart = nowMs
            resetsInWindow = 0
        }
        resetsInWindow += 1
    }

    /// A HEADERS frame begins: a stream id above every one the client used opens a stream;
    /// one not above is a candidate for reuse until nghttp2 shows what it made of it.
    func beginHeadersFrame(stream: Int32, flags: UInt8) {
        guard stream & 1 == 1 else { return }
        if stream > highestClientStream {
            highestClientStream = stream
            return
        }
        reusedStreamCandidate = stream
        let fieldsFirst = UInt8(NGHTTP2_FLAG_PADDED.rawValue | NGHTTP2_FLAG_PRIORITY.rawValue)
        candidateDecidedInCall = flags & fieldsFirst == 0
    }

    /// nghttp2 began no header block for the candidate: it ignored the frame, so the
    /// stream is closed. Only a stream this side reset may still see trailers in flight.
    func decideReusedStreamCandidate() {
        let stream = reusedStreamCandidate
        reusedStreamCandidate = 0
        if !recentlyReset(stream) { streamIdReused = true }
    }

    func recentlyReset(_ stream: Int32) -> Bool {
        withUnsafeBytes(of: &sentResets) { ring in
            ring.bindMemory(to: Int32.self).contains(stream)
        }
    }

    /// A RST_STREAM went out: remembered for trailers in flight, and counted toward the
    /// rapid-reset limit unless it was this side's own decision (INTERNAL_ERROR: the upstream
    /// failed; CANCEL and NO_ERROR: a timeout or an early answer), so a client that provokes
    /// resets by breaking the protocol on streams is limited like one that sends them.
    func recordSentReset(stream: Int32, code: UInt32) {
        withUnsafeMutableBytes(of: &sentResets) { ring in
            ring.storeBytes(of: stream, toByteOffset: sentResetNext * 4, as: Int32.self)
        }
        sentResetNext = (sentResetNext + 1) & 7
        if code != NGHTTP2_NO_ERROR.rawValue && code != NGHTTP2_INTERNAL_ERROR.rawValue && code != NGHTTP2_CANCEL.rawValue {
            recordReset()
        }
    }

    func recordData(stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        _ = dataBytes.reserve(bytes.count)
        let start = dataBytes.writerIndex
        dataBytes.append(bytes)
        events.append(.data(stream: stream, bytes: start..<dataBytes.writerIndex))
    }
}

enum H2Names {
    static let status: StaticString = ":status"
}

// MARK: Thunks

// Each unwraps the session from user data and records; none calls into nghttp2.

@inline(__always)
private func owner(_ userData: UnsafeMutableRawPointer?) -> H2Session {
    Unmanaged<H2Session>.fromOpaque(userData!).takeUnretainedValue()
}

private let onBeginFrame: nghttp2_on_begin_frame_callback = { _, hd, userData in
    let s = owner(userData)
    if s.reusedStreamCandidate != 0 { s.decideReusedStreamCandidate() }
    if let hd, hd.pointee.type == UInt8(NGHTTP2_HEADERS.rawValue) {
        s.beginHeadersFrame(stream: hd.pointee.stream_id, flags: hd.pointee.flags)
    }
    return 0
}

private let onFrameSend: nghttp2_on_frame_send_callback = { _, frame, userData in
    if UInt32(yard_nghttp2_frame_type(frame)) == NGHTTP2_RST_STREAM.rawValue {
        owner(userData).recordSentReset(stream: yard_nghttp2_frame_stream_id(frame), code: yard_nghttp2_frame_rst_error_code(frame))
    }
    return 0
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    let s = owner(userData)
    if s.reusedStreamCandidate == yard_nghttp2_frame_stream_id(frame) { s.reusedStreamCandidate = 0 }
    s.blockStart = s.fields.count
    s.blockSize = 0
    s.blockTooLarge = false
    s.blockOpen = true
    return 0
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameCount, value, valueCount, _, userData in
    let s = owner(userData)
    let stream = yard_nghttp2_frame_stream_id(frame)
    if s.blockTooLarge { return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue }
    let ok = s.recordHeader(stream: stream, name: UnsafeRawBufferPointer(start: name, count: nameCount),
                            value: UnsafeRawBufferPointer(start: value, count: valueCount))
    // Over the header list limit: nghttp2 resets this stream (the block is still decoded,
    // keeping HPACK state in step) and drops what was recorded of it.
    if !ok {
        s.dropBlock()
        // nghttp2 answers with RST_STREAM(INTERNAL_ERROR): a reset the client provoked.
        if !s.isClient { s.recordReset() }
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
    }
    return 0
}

private let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    let s = owner(userData)
    let stream = yard_nghttp2_frame_stream_id(frame)
    let flags = yard_nghttp2_frame_flags(frame)
    let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(yard_nghttp2_frame_type(frame)) {
    case NGHTTP2_HEADERS.rawValue:
        s.blockOpen = false
        guard !s.blockTooLarge else { return 0 }
        let fields = min(s.blockStart, s.fields.count)..<s.fields.count
        let category = UInt32(yard_nghttp2_frame_headers_category(frame))
        if category == NGHTTP2_HCAT_REQUEST.rawValue {
            s.events.append(.request(stream: stream, fields: fields, endStream: endStream))
        } else if s.isClient && (category == NGHTTP2_HCAT_RESPONSE.rawValue || s.blockHasStatus(fields)) {
            // The first HEADERS, or the final one after 1xx (nghttp2 files it under HEADERS).
            s.events.append(.response(stream: stream, fields: fields, endStream: endStream))
        } else {
            s.events.append(.trailers(stream: stream, fields: fields))
        }
    case NGHTTP2_DATA.rawValue:
        if endStream { s.events.append(.endStream(stream: stream)) }
    case NGHTTP2_RST_STREAM.rawValue:
        s.recordReset()
        s.events.append(.reset(stream: stream, code: yard_nghttp2_frame_rst_error_code(frame)))
    case NGHTTP2_GOAWAY.rawValue:
        s.events.append(.goaway(lastStream: yard_nghttp2_frame_goaway_last_stream_id(frame),
                                code: yard_nghttp2_frame_goaway_error_code(frame)))
    case NGHTTP2_SETTINGS.rawValue:
        if flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 { s.events.append(.settingsAck) }
    case NGHTTP2_PING.rawValue:
        // nghttp2 answers a PING itself; only the ACK of one of ours is news.
        if flags & UInt8(truncatingIfNeeded: NGHTTP2_FLAG_ACK.rawValue) != 0 { s.events.append(.pingAck(opaque: yard_nghttp2_frame_ping_opaque(frame))) }
    case NGHTTP2_WINDOW_UPDATE.rawValue:
        s.events.append(.windowUpdate(stream: stream))
    default:
        break
    }
    return 0
}

private let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, data, count, userData in
    owner(userData).recordData(stream: stream, UnsafeRawBufferPointer(start: data, count: count))
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, stream, code, userData in
    owner(userData).events.append(.closed(stream: stream, code: code))
    return 0
}

/// The data provider: copies from the stream's body buffer; DEFERRED while it is empty and
/// more is to come; EOF at its end (without END_STREAM when trailers follow, which `send`
/// submits after the library returns).
private let readBody: nghttp2_data_source_read_callback = { _, stream, buf, length, dataFlags, source, userData in
    let s = owner(userData)
    let body = Unmanaged<H2StreamBody>.fromOpaque(yard_nghttp2_data_source_ptr(source)!).takeUnretainedValue()
    let n = min(length, body.buffer.readableBytes)
    if n == 0 && !body.ended {
        body.deferred = true
        return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
    if n > 0 {
        memcpy(buf!, body.buffer.base! + body.buffer.readerIndex, n)
        body.buffer.consume(n)
        if !body.ended { s.events.append(.bodyDrained(stream: stream)) }
    }
    if body.ended && body.buffer.isEmpty {
        var f = UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue)
        if body.trailers.count > 0 {
            f |= UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue)
            s.trailersDue.append(body)
        } else if body.resetWhenSent {
            s.resetsDue.append(stream)
        }
        dataFlags!.pointee = f
    }
    return n
}
