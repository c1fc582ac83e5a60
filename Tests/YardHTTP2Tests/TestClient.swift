// An in-memory nghttp2 *client* session for driving `H2Session` byte by byte: the
// real library on both ends, no sockets.

import CYardNghttp2
import YardHTTP2
import YardIO

/// What the client saw of one stream.
struct ClientStream {
    var headers: [(String, String)] = []
    var trailers: [(String, String)] = []
    var body: [UInt8] = []
    var closedWith: UInt32?
}

/// Threading: one test at a time uses one client.
final class TestClient {
    var session: OpaquePointer!
    var streams: [Int32: ClientStream] = [:]
    var goaways: [(lastStream: Int32, code: UInt32)] = []
    var headersDone: Set<Int32> = []
    var requestBodies: [Int32: [UInt8]] = [:]

    init(windowSize: UInt32? = nil, autoWindowUpdate: Bool = true) {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameCount, value, valueCount, _, user in
            let c = Unmanaged<TestClient>.fromOpaque(user!).takeUnretainedValue()
            let id = yard_nghttp2_frame_stream_id(frame)
            let pair = (String(decoding: UnsafeRawBufferPointer(start: name, count: nameCount), as: UTF8.self),
                        String(decoding: UnsafeRawBufferPointer(start: value, count: valueCount), as: UTF8.self))
            if c.headersDone.contains(id) { c.streams[id, default: ClientStream()].trailers.append(pair) }
            else { c.streams[id, default: ClientStream()].headers.append(pair) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            let c = Unmanaged<TestClient>.fromOpaque(user!).takeUnretainedValue()
            let type = UInt32(yard_nghttp2_frame_type(frame))
            if type == NGHTTP2_HEADERS.rawValue { c.headersDone.insert(yard_nghttp2_frame_stream_id(frame)) }
            if type == NGHTTP2_GOAWAY.rawValue {
                c.goaways.append((yard_nghttp2_frame_goaway_last_stream_id(frame), yard_nghttp2_frame_goaway_error_code(frame)))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, count, user in
            let c = Unmanaged<TestClient>.fromOpaque(user!).takeUnretainedValue()
            c.streams[id, default: ClientStream()].body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: count))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, code, user in
            let c = Unmanaged<TestClient>.fromOpaque(user!).takeUnretainedValue()
            c.streams[id, default: ClientStream()].closedWith = code
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        if !autoWindowUpdate { nghttp2_option_set_no_auto_window_update(option, 1) }
        var made: OpaquePointer?
        nghttp2_session_client_new2(&made, callbacks, nil, option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        session = made
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
        var entries: [nghttp2_settings_entry] = []
        if let windowSize {
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: windowSize))
        }
        nghttp2_submit_settings(session, 0, entries, entries.count)
    }

    deinit { nghttp2_session_del(session) }

    /// Submits a request; `body` (if any) is sent as DATA from memory.
    @discardableResult
    func request(method: String = "GET", path: String = "/", authority: String = "example.test",
                 headers: [(String, String)] = [], body: [UInt8]? = nil) -> Int32 {
        var pairs = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)] + headers
        return withNV(&pairs) { nva, count in
            guard let body else { return nghttp2_submit_request(session, nil, nva, count, nil, nil) }
            var provider = nghttp2_data_provider()
            provider.read_callback = { session, id, buf, length, flags, _, user in
                let c = Unmanaged<TestClient>.fromOpaque(user!).takeUnretainedValue()
                let pending = c.requestBodies[id] ?? []
                let n = min(length, pending.count)
                pending.withUnsafeBytes { if n > 0 { memcpy(buf!, $0.baseAddress!, n) } }
                c.requestBodies[id] = Array(pending.dropFirst(n))
                if c.requestBodies[id]!.isEmpty { flags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) }
                return n
            }
            let id = nghttp2_submit_request(session, nil, nva, count, &provider, nil)
            requestBodies[id] = body
            return id
        }
    }

    func reset(_ stream: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
        nghttp2_submit_rst_stream(session, 0, stream, code)
    }

    /// Everything the client has to send.
    func output() -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var chunk: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &chunk)
            if n <= 0 { break }
            out.append(contentsOf: UnsafeRawBufferPointer(start: chunk, count: n))
        }
        return out
    }

    func input(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            if raw.count > 0 { _ = nghttp2_session_mem_recv(session, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), raw.count) }
        }
    }

    /// Opens the client's receive window for `stream` by `count` bytes.
    func openWindow(_ stream: Int32, by count: Int32) {
        nghttp2_submit_window_update(session, 0, stream, count)
    }

    private func withNV<R>(_ pairs: inout [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        var storage: [[UInt8]] = []
        for (n, v) in pairs { storage.append(Array(n.utf8)); storage.append(Array(v.utf8)) }
        var nva: [nghttp2_nv] = []
        for i in stride(from: 0, to: storage.count, by: 2) {
            nva.append(nghttp2_nv(name: storage[i].withUnsafeMutableBufferPointer { $0.baseAddress! },
                                  value: storage[i + 1].withUnsafeMutableBufferPointer { $0.baseAddress! },
                                  namelen: storage[i].count, valuelen: storage[i + 1].count, flags: 0))
        }
        // The arrays stay alive (and unmoved) in `storage` for the duration of the call.
        return withExtendedLifetime(storage) { body(nva, nva.count) }
    }
}

// MARK: Driving both ends

/// Moves bytes both ways until neither side has anything to say; returns the server's events.
@discardableResult
func exchange(_ client: TestClient, _ server: H2Session, now: Int64 = 0) -> [H2Event] {
    var all: [H2Event] = []
    var batch: [H2Event] = []
    for _ in 0..<64 {
        let toServer = client.output()
        if !toServer.isEmpty { _ = toServer.withUnsafeBytes { server.receive($0, nowMs: now) } }
        server.takeEvents(into: &batch)
        all += batch
        var out = ByteBuffer(capacity: 1024)
        _ = server.send(into: &out)
        server.takeEvents(into: &batch)
        all += batch
        let toClient = Array(out.readable)
        out.deallocate()
        client.input(toClient)
        if toServer.isEmpty && toClient.isEmpty { break }
    }
    return all
}

/// The text of a recorded field.
func text(_ server: H2Session, _ field: H2Field) -> (String, String) {
    (String(decoding: server.name(field), as: UTF8.self), String(decoding: server.value(field), as: UTF8.self))
}
