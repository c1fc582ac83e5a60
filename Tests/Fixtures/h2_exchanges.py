#!/usr/bin/env python3
"""An HTTP/2 client that shows the frames: Python's h2 (hyper-h2) on one connection.

    h2_exchanges.py PORT PLAN.json [--tls CAFILE SERVERNAME] [--window BYTES]

Without --tls it speaks h2c with prior knowledge; with it, TLS with ALPN h2 (and fails
if the server picks anything else). The plan is a list of rounds, each a list of
requests; a round's requests go out together (interleaved streams) and the next round
starts once every stream of this one has ended or been reset, on the same connection.

A request: {"name", "method", "path", "authority" (default shop.test, or the TLS server
name), "scheme", "headers": [[n, v]], "pieces": [{"text", "count", "after_headers"}],
"trailers": [[n, v]], "cancel_after", "send_all"}. A piece is `text` repeated `count`
times, sent as DATA as flow control allows; with `after_headers` it waits for the
response's HEADERS first. The last piece (or the trailers) ends the stream. A request
stops sending once its response ended or the stream was reset (with "send_all", only once
the stream was reset). With "cancel_after" (seconds) the client resets the stream
(CANCEL) that long after opening it, unless it ended.

Prints one JSON object: {"alpn", "goaway", "closed", "error", "streams": {name: {"id",
"round", "method", "status", "headers" (the raw list, in order, as received),
"headers_end_stream", "informational", "events", "event_times" (seconds from the
stream's start), "data_frames", "body" (base64), "decoded" (base64 of the gunzipped body
when content-encoding is gzip), "trailers", "ended", "reset", "sent", "cancelled"}}}.
Every wait is bounded: the whole run ends after 20 s.
"""
import base64, json, select, socket, ssl, sys, time, zlib
import h2.config, h2.connection, h2.errors, h2.events, h2.exceptions, h2.settings

PORT, PLAN = int(sys.argv[1]), json.load(open(sys.argv[2]))
OPTIONS = sys.argv[3:]
TLS = OPTIONS[OPTIONS.index("--tls") + 1:OPTIONS.index("--tls") + 3] if "--tls" in OPTIONS else None
# The client's SETTINGS_INITIAL_WINDOW_SIZE: a small one makes the proxy send in small steps.
WINDOW = int(OPTIONS[OPTIONS.index("--window") + 1]) if "--window" in OPTIONS else None
DEADLINE = time.time() + 20


def connect():
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not TLS:
        return sock, None
    context = ssl.create_default_context(cafile=TLS[0])
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(sock, server_hostname=TLS[1])
    return sock, sock.selected_alpn_protocol()


class Stream:
    def __init__(self, request, round_index):
        self.request = request
        self.pieces = [p["text"] * p.get("count", 1) for p in request.get("pieces", [])]
        self.after_headers = [p.get("after_headers", False) for p in request.get("pieces", [])]
        self.result = {"round": round_index, "method": request.get("method", "GET"), "status": None, "headers": [], "headers_end_stream": False,
                       "informational": [], "events": [], "event_times": [], "data_frames": 0, "trailers": [],
                       "ended": False, "reset": None, "sent": 0, "cancelled": False}
        self.body = b""
        self.id = None
        self.cancel_at = None

    @property
    def answered(self):
        return self.result["ended"] or self.result["reset"] is not None

    @property
    def done(self):
        # "send_all": the whole body goes out even after the response ended (not after a reset).
        if self.request.get("send_all") and self.pieces and self.result["reset"] is None:
            return False
        return self.answered

    def start(self, conn):
        r = self.request
        self.id = conn.get_next_available_stream_id()
        self.started = time.time()
        self.result["id"] = self.id
        head = [(":method", r.get("method", "GET")), (":scheme", r.get("scheme", "https" if TLS else "http")),
                (":authority", r.get("authority") or (TLS[1] if TLS else "shop.test")), (":path", r["path"])]
        head += [tuple(h) for h in r.get("headers", [])]
        conn.send_headers(self.id, head, end_stream=not self.pieces and not r.get("trailers"))
        if r.get("cancel_after") is not None:
            self.cancel_at = time.time() + r["cancel_after"]

    def cancel_if_due(self, conn):
        if self.cancel_at is None or self.done or time.time() < self.cancel_at:
            return
        try:
            conn.reset_stream(self.id, h2.errors.ErrorCodes.CANCEL)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.result["cancelled"] = True
        self.result["reset"] = int(h2.errors.ErrorCodes.CANCEL)
        self.pieces = []

    def send_body(self, conn):
        """Sends what flow control allows; stops once the response ended or the stream reset."""
        while self.pieces and not self.done:
            if self.after_headers[0] and self.result["status"] is None:
                return
            room = min(conn.local_flow_control_window(self.id), conn.max_outbound_frame_size)
            if room <= 0:
                return
            piece = self.pieces[0]
            chunk, rest = piece[:room].encode(), piece[room:]
            last = not rest and len(self.pieces) == 1 and not self.request.get("trailers")
            try:
                conn.send_data(self.id, chunk, end_stream=last)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.pieces = []
                return
            self.result["sent"] += len(chunk)
            if rest:
                self.pieces[0] = rest
            else:
                self.pieces.pop(0)
                self.after_headers.pop(0)
                if not self.pieces and self.request.get("trailers"):
                    conn.send_headers(self.id, [tuple(t) for t in self.request["trailers"]], end_stream=True)

    def finish(self):
        self.result["body"] = base64.b64encode(self.body).decode()
        encoding = dict(self.result["headers"]).get("content-encoding", "")
        if encoding == "gzip":
            try:
                self.result["decoded"] = base64.b64encode(zlib.decompress(self.body, 31)).decode()
            except zlib.error as e:
                self.result["decoded_error"] = str(e)
        return self.result


def on_event(event, streams, report):
    stream = streams.get(getattr(event, "stream_id", None))
    if isinstance(event, h2.events.ConnectionTerminated):
        report["goaway"] = int(event.error_code)
    if stream is None:
        return
    r = stream.result
    before = len(r["events"])
    record(event, stream)
    r["event_times"] += [round(time.time() - stream.started, 3)] * (len(r["events"]) - before)


def record(event, stream):
    r = stream.result
    if isinstance(event, h2.events.InformationalResponseReceived):
        r["informational"].append(dict(event.headers).get(":status"))
        r["events"].append("informational")
    elif isinstance(event, h2.events.ResponseReceived):
        r["headers"] = [list(h) for h in event.headers]
        r["status"] = dict(event.headers).get(":status")
        r["headers_end_stream"] = event.stream_ended is not None
        r["events"].append("headers+end" if event.stream_ended is not None else "headers")
    elif isinstance(event, h2.events.DataReceived):
        stream.body += event.data
        r["data_frames"] += 1
        r["events"].append("data+end" if event.stream_ended is not None else "data")
    elif isinstance(event, h2.events.TrailersReceived):
        r["trailers"] = [list(h) for h in event.headers]
        r["events"].append("trailers")
    elif isinstance(event, h2.events.StreamEnded):
        r["ended"] = True
    elif isinstance(event, h2.events.StreamReset):
        r["reset"] = int(event.error_code)
        r["events"].append("reset:%d" % int(event.error_code))


def main():
    report = {"alpn": None, "goaway": None, "closed": False, "error": None, "streams": {}}
    sock, report["alpn"] = connect()
    if TLS and report["alpn"] != "h2":
        report["error"] = "ALPN picked %r" % report["alpn"]
        print(json.dumps(report))
        return
    # No inbound validation: the test asserts on the raw header list, forbidden fields included.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8", validate_inbound_headers=False, normalize_inbound_headers=False))
    conn.initiate_connection()
    if WINDOW is not None:
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
    sock.sendall(conn.data_to_send())
    sock.setblocking(False)
    finished = []
    for round_index, requests in enumerate(PLAN):
        streams = {}
        for request in requests:
            stream = Stream(request, round_index)
            stream.start(conn)
            streams[stream.id] = stream
            report["streams"][request["name"]] = stream.result
        try:
            while not all(s.done for s in streams.values()) and time.time() < DEADLINE and report["goaway"] is None:
                for s in streams.values():
                    s.cancel_if_due(conn)
                    s.send_body(conn)
                out = conn.data_to_send()
                if out:
                    sock.setblocking(True)
                    sock.sendall(out)
                    sock.setblocking(False)
                if not select.select([sock], [], [], 0.05)[0] and not (TLS and sock.pending()):
                    continue
                try:
                    data = sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                if not data:
                    report["closed"] = True
                    break
                for event in conn.receive_data(data):
                    on_event(event, streams, report)
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        except (ConnectionResetError, BrokenPipeError, h2.exceptions.ProtocolError) as e:
            report["error"] = "%s: %s" % (type(e).__name__, e)
        finished += streams.values()
        if report["closed"] or report["error"] or report["goaway"] is not None or time.time() >= DEADLINE:
            break
    for s in finished:
        s.finish()
    print(json.dumps(report))


main()
