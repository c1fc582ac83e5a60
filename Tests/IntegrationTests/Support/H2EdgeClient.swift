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
    i, code = 0, None
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        if raw[i + 3] == 7:
            code = int.from_bytes(raw[i + 13:i + 17], "big")
        i += 9 + n
    print("goaway", code)

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
    import hpack
    s = connect()
    conn = client(s)
    conn.send_headers(1, headers("/slow?ms=1500"), end_stream=True)
    s.sendall(conn.data_to_send())
    print("sent", flush=True)
    raw = b""
    s.settimeout(10)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            raw += data
    except (ConnectionResetError, socket.timeout):
        pass
    decoder = hpack.Decoder()
    status, codes, ended, i = None, [], False, 0
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        kind, flags = raw[i + 3], raw[i + 4]
        sid = int.from_bytes(raw[i + 5:i + 9], "big") & 0x7fffffff
        payload = raw[i + 9:i + 9 + n]
        if kind == 7:
            codes.append((int.from_bytes(payload[4:8], "big"), int.from_bytes(payload[0:4], "big") & 0x7fffffff))
        if kind == 1:
            fields = dict(decoder.decode(payload))
            if sid == 1 and ":status" in fields:
                status = fields[":status"]
        if sid == 1 and flags & 1 and kind in (0, 1):
            ended = True
        i += 9 + n
    print("status", status, "goaways", codes, "ended", ended)
"""#
