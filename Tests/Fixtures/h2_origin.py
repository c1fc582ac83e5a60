#!/usr/bin/env python3
"""An h2c origin with scripted answers: Python's h2 (hyper-h2) as a server, prior knowledge.

    h2_origin.py

Binds 127.0.0.1:0, prints "listening 127.0.0.1:PORT", and answers each stream by its path:

    /early-hints      103 (link), then 200 with content-length and body "ok"
    /fields/N         200 with N extra fields x-f-0..x-f-(N-1), content-length, body "ok"
    /no-length        200 without content-length: DATA "abc", DATA "def", end
    /trailers         200 without content-length: DATA "abc", then trailers x-checksum: 7
    /empty-value      200 with a field whose value is empty, content-length 0
    /no-content       204, no body
    anything else     200, body "path=<path>"

Every answer also carries x-origin: h2-origin. Serves connections one at a time, each until
the client closes it; ends after 120 s (the test stops it by its PID first).
"""
import select, socket, time
import h2.config, h2.connection, h2.events

DEADLINE = time.time() + 120


def answer(conn, stream, path):
    def headers(status, fields, end=False):
        conn.send_headers(stream, [(":status", status), ("x-origin", "h2-origin")] + fields, end_stream=end)

    if path == "/early-hints":
        headers("103", [("link", "</style.css>; rel=preload")])
        headers("200", [("content-length", "2")])
        conn.send_data(stream, b"ok", end_stream=True)
    elif path.startswith("/fields/"):
        count = int(path.split("/")[2])
        headers("200", [("x-f-%d" % i, "v%d" % i) for i in range(count)] + [("content-length", "2")])
        conn.send_data(stream, b"ok", end_stream=True)
    elif path == "/no-length":
        headers("200", [("content-type", "text/plain")])
        conn.send_data(stream, b"abc")
        conn.send_data(stream, b"def", end_stream=True)
    elif path == "/trailers":
        headers("200", [("content-type", "text/plain")])
        conn.send_data(stream, b"abc")
        conn.send_headers(stream, [("x-checksum", "7")], end_stream=True)
    elif path == "/empty-value":
        headers("200", [("x-empty", ""), ("content-length", "0")], end=True)
    elif path == "/no-content":
        headers("204", [], end=True)
    else:
        body = ("path=" + path).encode()
        headers("200", [("content-length", str(len(body)))])
        conn.send_data(stream, body, end_stream=True)


def serve(sock):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths = {}
    while time.time() < DEADLINE:
        ready, _, _ = select.select([sock], [], [], 1)
        if sock not in ready:
            continue
        data = sock.recv(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                paths[event.stream_id] = dict(event.headers).get(":path", "/")
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in paths:
                answer(conn, event.stream_id, paths.pop(event.stream_id))
        sock.sendall(conn.data_to_send())


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print("listening 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    while time.time() < DEADLINE:
        ready, _, _ = select.select([listener], [], [], 1)
        if listener in ready:
            sock, _ = listener.accept()
            try:
                serve(sock)
            finally:
                sock.close()


if __name__ == "__main__":
    main()
