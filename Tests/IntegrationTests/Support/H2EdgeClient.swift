import Foundation

// HTTP/2 edge cases from a client the proxy did not write: Python's `h2` (hyper-h2, a
// pure-Python protocol stack, installed by scripts/install-deps). Each case prints one
// result line the Swift test checks.

/// Runs one case of the edge-case client against 127.0.0.1:`port`.
func runH2Edge(_ name: String, port: UInt16, _ arguments: [String] = [], dir: ScratchDir,
               timeout: Duration = .seconds(30)) throws -> CommandResult {
    let script = dir.file("h2edge.py")
    if !FileManager.default.fileExists(atPath: script) {
        try Data(h2EdgeSource.utf8).write(to: URL(fileURLWithPath: script))
    }
    return try runCommand("/usr/bin/env", ["python3", script, name, "\(port)"] + arguments, dir: dir,
                          label: "h2edge-\(name)", timeout: timeout)
}

/// Starts a case in the background (for floods that run while others are served).
func startH2Edge(_ name: String, port: UInt16, _ arguments: [String] = [], dir: ScratchDir, label: String) throws -> ChildProcess {
    let script = dir.file("h2edge.py")
    if !FileManager.default.fileExists(atPath: script) {
        try Data(h2EdgeSource.utf8).write(to: URL(fileURLWithPath: script))
    }
    return try ChildProcess("/usr/bin/env", ["python3", script, name, "\(port)"] + arguments, dir: dir, label: label)
}

private let h2EdgeSource = #"""
import socket, sys, time
import h2.config, h2.connection, h2.events, h2.settings, h2.errors

CASE, PORT = sys.argv[1], int(sys.argv[2])
ARGS = sys.argv[3:]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def client(sock, settings=None):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return conn

def headers(path, method="GET"):
    return [(":method", method), (":scheme", "http"), (":authority", "shop.test"), (":path", path)]

def frame(kind, flags, stream, payload):
    n = len(payload)
    return bytes([n >> 16, (n >> 8) & 255, n & 255, kind, flags]) + stream.to_bytes(4, "big") + payload

def events_until(sock, conn, done, deadline=10):
    end = time.time() + deadline
    seen = []
    while time.time() < end:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            return seen, True
        for e in conn.receive_data(data):
            seen.append(e)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        if done(seen):
            return seen, False
    return seen, False

def goaway_code(raw):
    # The error code of the last GOAWAY in raw frames, None without one.
    i, code = 0, None
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        if raw[i + 3] == 7 and i + 17 <= len(raw):
            code = int.from_bytes(raw[i + 13:i + 17], "big")
        i += 9 + n
    return code

def goaway(seen):
    return next((e for e in seen if isinstance(e, h2.events.ConnectionTerminated)), None)

if CASE == "bad-preface":
    s = connect()
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(4, 0, 0, b""))
    s.settimeout(5)
    try:
        data = s.recv(65536)
        while data:
            data = s.recv(65536)
        print("closed")
    except ConnectionResetError:
        print("closed")
    except socket.timeout:
        print("still open")

elif CASE == "oversized-frame":
    s = connect()
    conn = client(s)
    events_until(s, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
    # A PING is 8 bytes; a 20,000-byte one is over the default SETTINGS_MAX_FRAME_SIZE too.
    s.sendall(frame(6, 0, 0, b"\0" * 20000))
    raw = b""
    s.settimeout(5)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            raw += data
    except (ConnectionResetError, socket.timeout):
        pass
    print("goaway", goaway_code(raw))

elif CASE == "stream-limit":
    s = connect()
    conn = client(s)
    # Before the client has seen the server's SETTINGS, it knows no limit: 101 open streams.
    for i in range(101):
        conn.send_headers(1 + 2 * i, headers("/slow?ms=3000", "POST"), end_stream=False)
    s.sendall(conn.data_to_send())
    seen, _ = events_until(s, conn, lambda seen: any(isinstance(e, h2.events.StreamReset) for e in seen))
    limit = next((e.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value for e in seen
                  if isinstance(e, h2.events.RemoteSettingsChanged)
                  and h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in e.changed_settings), None)
    resets = [(e.stream_id, int(e.error_code)) for e in seen if isinstance(e, h2.events.StreamReset)]
    print("limit", limit, "resets", resets)

elif CASE == "tiny-window":
    size = int(ARGS[0])
    s = connect()
    conn = client(s, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
    events_until(s, conn, lambda seen: any(isinstance(e, h2.events.SettingsAcknowledged) for e in seen))
    conn.send_headers(1, headers("/size/%d" % size), end_stream=True)
    s.sendall(conn.data_to_send())
    got, biggest, ended = 0, 0, False
    end = time.time() + 20
    while not ended and time.time() < end:
        data = s.recv(65536)
        if not data:
            break
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.DataReceived):
                got += len(e.data)
                biggest = max(biggest, len(e.data))
                # Open the window only by what arrived: it never exceeds 16 bytes.
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            if isinstance(e, h2.events.StreamEnded):
                ended = True
        s.sendall(conn.data_to_send())
    print("received", got, "largest", biggest, "ended", ended)

elif CASE == "rapid-reset":
    # Opens streams and cancels each at once, as fast as it can, until the server says GOAWAY.
    count = int(ARGS[0])
    s = connect()
    conn = client(s)
    events_until(s, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
    sent, code = 0, None
    s.setblocking(False)
    try:
        for i in range(count):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers("/"), end_stream=True)
            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            sent += 1
            if i % 50 == 49:
                s.sendall(conn.data_to_send())
                try:
                    data = s.recv(65536)
                    if not data:
                        break
                    for e in conn.receive_data(data):
                        if isinstance(e, h2.events.ConnectionTerminated):
                            code = int(e.error_code)
                except BlockingIOError:
                    pass
                if code is not None:
                    break
        s.sendall(conn.data_to_send())
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
        pass
    s.setblocking(True)
    s.settimeout(5)
    try:
        while code is None:
            data = s.recv(65536)
            if not data:
                break
            for e in conn.receive_data(data):
                if isinstance(e, h2.events.ConnectionTerminated):
                    code = int(e.error_code)
    except (ConnectionResetError, socket.timeout, h2.exceptions.ProtocolError):
        pass
    print("goaway", code, "after", sent)

elif CASE == "drain":
    # A slow request in flight when the proxy is told to stop: GOAWAY, and the response still
    # comes. Frames are read by hand: hyper-h2 stops processing input after any GOAWAY.
    # PINGs are acknowledged unless ARGS[0] is "noack" (a client that never answers); the
    # gap between the two GOAWAYs is printed.
    import hpack
    ack = not (ARGS and ARGS[0] == "noack")
    s = connect()
    conn = client(s)
    conn.send_headers(1, headers("/slow?ms=1500"), end_stream=True)
    s.sendall(conn.data_to_send())
    print("sent", flush=True)
    decoder = hpack.Decoder()
    status, codes, ended, times = None, [], False, []
    raw = b""
    s.settimeout(10)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            raw += data
            while len(raw) >= 9 and len(raw) >= 9 + int.from_bytes(raw[0:3], "big"):
                n = int.from_bytes(raw[0:3], "big")
                kind, flags = raw[3], raw[4]
                sid = int.from_bytes(raw[5:9], "big") & 0x7fffffff
                payload = raw[9:9 + n]
                raw = raw[9 + n:]
                if kind == 7:
                    codes.append((int.from_bytes(payload[4:8], "big"), int.from_bytes(payload[0:4], "big") & 0x7fffffff))
                    times.append(time.time())
                if kind == 6 and not flags & 1 and ack:
                    s.sendall(frame(6, 1, 0, payload))
                if kind == 1:
                    fields = dict(decoder.decode(payload))
                    if sid == 1 and ":status" in fields:
                        status = fields[":status"]
                if sid == 1 and flags & 1 and kind in (0, 1):
                    ended = True
    except (ConnectionResetError, socket.timeout):
        pass
    gap = times[1] - times[0] if len(times) >= 2 else -1
    print("status", status, "goaways", codes, "ended", ended, "gap %.2f" % gap)

elif CASE == "conn-error":
    # A connection error RFC 9113 requires, provoked with raw frames after the handshake;
    # prints the GOAWAY code, whether the proxy closed the connection, and the bytes sent.
    import hpack, threading
    kind = ARGS[0]
    s = connect()
    conn = client(s)
    events_until(s, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
    block = hpack.Encoder().encode(headers("/"))
    state = {"raw": b"", "closed": False}
    def reader():
        s.settimeout(20)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                state["raw"] += data
        except (ConnectionResetError, socket.timeout, OSError):
            pass
        state["closed"] = True
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent = 0
    s.settimeout(10)
    try:
        if kind == "lower-stream-id":
            out = frame(1, 5, 5, block) + frame(1, 5, 3, block)
            s.sendall(out)
            sent += len(out)
        elif kind == "big-headers":
            big = hpack.Encoder().encode(headers("/") + [("x-big", "a" * 20000)], huffman=False)
            out = frame(1, 5, 1, big)
            s.sendall(out)
            sent += len(out)
        elif kind == "continuation-flood":
            s.sendall(frame(1, 1, 1, block))  # END_STREAM, no END_HEADERS
            piece = frame(9, 0, 1, b"\x86" * 16384) * 64  # about 1 MiB of CONTINUATION frames
            for _ in range(64):  # 64 MiB
                if state["closed"]:
                    break
                s.sendall(piece)
                sent += len(piece)
    except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
        pass
    t.join(15)
    print("goaway", goaway_code(state["raw"]), "closed", state["closed"], "sent", sent)

elif CASE == "answered-unended":
    # N connections with M streams each: every request answered, none ended by the client
    # (no END_STREAM). Holds them and reports when the proxy closed each connection.
    import select
    n, m, wait = int(ARGS[0]), int(ARGS[1]), float(ARGS[2])
    socks, conns, answered = [], [], 0
    for _ in range(n):
        s = connect()
        conn = client(s)
        for _ in range(m):
            sid = conn.get_next_available_stream_id()
            # content-length 0: the backend answers at once; END_STREAM never comes.
            conn.send_headers(sid, headers("/") + [("content-length", "0")], end_stream=False)
        s.sendall(conn.data_to_send())
        seen, _ = events_until(s, conn, lambda seen: sum(isinstance(e, h2.events.StreamEnded) for e in seen) >= m)
        answered += sum(isinstance(e, h2.events.StreamEnded) for e in seen)
        socks.append(s)
        conns.append(conn)
    print("answered", answered, flush=True)
    start, open_socks, resets = time.time(), set(socks), 0
    while open_socks and time.time() - start < wait:
        ready, _, _ = select.select(list(open_socks), [], [], 0.2)
        for s in ready:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                open_socks.discard(s)
                continue
            try:
                resets += sum(isinstance(e, h2.events.StreamReset) for e in conns[socks.index(s)].receive_data(data))
            except h2.exceptions.ProtocolError:
                pass
    print("closed", n - len(open_socks), "of", n, "resets", resets, "after", round(time.time() - start, 1))

elif CASE == "trickle-body":
    # A request body dripped one byte every INTERVAL seconds for at most WAIT seconds:
    # prints the status the proxy answered (if any), the reset code, and when.
    interval, wait = float(ARGS[0]), float(ARGS[1])
    s = connect()
    conn = client(s)
    # By default not /echo: the demo backend answers that before the body ends.
    conn.send_headers(1, headers(ARGS[2] if len(ARGS) > 2 else "/upload", "POST"), end_stream=False)
    s.sendall(conn.data_to_send())
    s.settimeout(0.05)
    start, status, reset, last = time.time(), None, None, 0.0
    while time.time() - start < wait and reset is None:
        now = time.time() - start
        if now - last >= interval and status is None:
            last = now
            try:
                conn.send_data(1, b"x")
                s.sendall(conn.data_to_send())
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, BrokenPipeError):
                pass
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not data:
            break
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers).get(":status")
            if isinstance(e, h2.events.StreamReset):
                reset = int(e.error_code)
        out = conn.data_to_send()
        if out:
            s.sendall(out)
    print("status", status, "reset", reset, "after", round(time.time() - start, 1))

elif CASE == "drip-requests":
    # N connections, M streams each: POST bodies without content-length, sent as 1-byte
    # DATA frames for SECONDS, as fast as the proxy's windows let them (WINDOW_UPDATEs
    # followed by hand). Prints "done PAYLOAD", then holds the connections for HOLD seconds.
    import hpack, select
    n, m, path, seconds, hold = int(ARGS[0]), int(ARGS[1]), ARGS[2], float(ARGS[3]), float(ARGS[4])
    one = {}
    peers = []
    for _ in range(n):
        s = connect()
        conn = client(s)
        events_until(s, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
        encoder = hpack.Encoder()
        s.sendall(b"".join(frame(1, 4, 1 + 2 * i, encoder.encode(headers(path, "POST"))) for i in range(m)))
        peers.append({"sock": s, "conn": conn.outbound_flow_control_window, "pending": b"",
                      "streams": {1 + 2 * i: conn.remote_settings.initial_window_size for i in range(m)}})
    payload, end = 0, time.time() + seconds
    while time.time() < end:
        moved = False
        for p in peers:
            while select.select([p["sock"]], [], [], 0)[0]:
                data = p["sock"].recv(65536)
                if not data:
                    break
                p["pending"] += data
            buf = p["pending"]
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[0:3], "big"):
                size = int.from_bytes(buf[0:3], "big")
                if buf[3] == 8:
                    sid = int.from_bytes(buf[5:9], "big") & 0x7fffffff
                    grant = int.from_bytes(buf[9:13], "big") & 0x7fffffff
                    if sid == 0:
                        p["conn"] += grant
                    elif sid in p["streams"]:
                        p["streams"][sid] += grant
                buf = buf[9 + size:]
            p["pending"] = buf
            for sid in p["streams"]:
                k = min(p["streams"][sid], p["conn"], 4096)
                if k <= 0:
                    continue
                if sid not in one:
                    one[sid] = frame(0, 0, sid, b"x")
                p["sock"].sendall(one[sid] * k)
                p["streams"][sid] -= k
                p["conn"] -= k
                payload += k
                moved = True
        if not moved:
            time.sleep(0.01)
    print("done", payload, flush=True)
    time.sleep(hold)

elif CASE == "unread-downloads":
    # N connections, M streams each, downloading PATH and never reading the socket nor
    # opening a window. Prints when the requests are out, then holds.
    n, m, path = int(ARGS[0]), int(ARGS[1]), ARGS[2]
    socks = []
    for _ in range(n):
        s = connect()
        conn = client(s)
        for i in range(m):
            conn.send_headers(conn.get_next_available_stream_id(), headers(path), end_stream=True)
        s.sendall(conn.data_to_send())
        socks.append(s)
    print("sent", flush=True)
    time.sleep(float(ARGS[3]))

elif CASE == "provoked-resets":
    # Opens streams and makes the proxy reset each (a WINDOW_UPDATE that overflows the
    # stream's window: RST_STREAM FLOW_CONTROL_ERROR), one after the other (the next once
    # the reset arrived, so the client stays under the stream limit), until GOAWAY.
    count = int(ARGS[0])
    s = connect()
    conn = client(s)
    events_until(s, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
    import hpack
    encoder = hpack.Encoder()
    s.settimeout(5)
    pending, sent, resets, code = b"", 0, 0, None
    def frames():
        global pending
        while True:
            while len(pending) >= 9 and len(pending) >= 9 + int.from_bytes(pending[0:3], "big"):
                n = int.from_bytes(pending[0:3], "big")
                kind, sid, payload = pending[3], int.from_bytes(pending[5:9], "big") & 0x7fffffff, pending[9:9 + n]
                pending = pending[9 + n:]
                yield kind, sid, payload
            try:
                data = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                data = b""
            if not data:
                return
            pending += data
    reader = frames()
    try:
        for i in range(count):
            sid = 1 + 2 * i
            s.sendall(frame(1, 5, sid, encoder.encode(headers("/slow?ms=2000"))) + frame(8, 0, sid, (0x7fffffff).to_bytes(4, "big")))
            sent += 1
            for kind, fsid, payload in reader:
                if kind == 3:
                    resets += 1
                if kind == 7:
                    code = int.from_bytes(payload[4:8], "big")
                if kind == 7 or (kind == 3 and fsid == sid):
                    break
            if code is not None:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    print("goaway", code, "after", sent, "resets", resets)
"""#
