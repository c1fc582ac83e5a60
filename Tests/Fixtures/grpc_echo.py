#!/usr/bin/env python3
"""A real gRPC server and client (grpcio from PyPI) for Switchyard's tests.

No protobuf: the methods carry raw bytes (grpcio passes bytes through when no serializer
is given), so nothing has to be generated.

  grpc_echo.py server [--tls CERT KEY] [--health FILE]
                                            prints "listening 127.0.0.1:PORT", serves until killed
  grpc_echo.py client TARGET [--ca CA --authority NAME]
                                            runs every call through TARGET, prints one JSON object

Service /echo.Echo:
  Unary         returns the request; b"status:CODE:MESSAGE" aborts with that status;
                sends initial metadata x-initial and trailing metadata x-trailer.
  ServerStream  request b"N:SIZE": N messages of SIZE bytes each.
  ClientStream  returns b"COUNT:TOTAL" of the messages it received.
  Bidi          echoes every message as it arrives.

Service /grpc.health.v1.Health (the gRPC health-checking protocol, protobuf by hand):
  Check         answers the status FILE gives for the requested service, re-read on every
                call: one "NAME STATUS" per line, NAME "-" for the server as a whole ("");
                STATUS SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, or HANG (answers
                only after 2 s). A missing FILE or line: "" is SERVING, other names NOT_FOUND.
"""
import json
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    context.send_initial_metadata((("x-initial", "i1"),))
    context.set_trailing_metadata((("x-trailer", "t1"),))
    if request.startswith(b"status:"):
        _, code, message = request.decode().split(":", 2)
        context.abort(grpc.StatusCode[code], message)
    return request


def server_stream(request, context):
    count, size = (int(x) for x in request.decode().split(":"))
    for i in range(count):
        yield bytes([i % 256]) * size


def client_stream(request_iterator, context):
    count = total = 0
    for message in request_iterator:
        count += 1
        total += len(message)
    return f"{count}:{total}".encode()


def bidi(request_iterator, context):
    for message in request_iterator:
        yield message


HEALTH_STATUSES = {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}


def health_service_name(request):
    """The `service` field (1, length-delimited) of a HealthCheckRequest."""
    index, name = 0, b""
    while index < len(request):
        key = request[index]
        index += 1
        length = shift = 0
        while True:
            byte = request[index]
            index += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if key == 0x0A:
            name = request[index:index + length]
        index += length
    return name.decode()


def health_check(path):
    def check(request, context):
        service = health_service_name(request)
        statuses = {"": "SERVING"}
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2:
                        statuses["" if parts[0] == "-" else parts[0]] = parts[1]
        except (OSError, TypeError):
            pass
        status = statuses.get(service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        if status == "HANG":
            time.sleep(2)
            status = "SERVING"
        return bytes([0x08, HEALTH_STATUSES[status]])
    return check


def serve(args):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    health = {"Check": grpc.unary_unary_rpc_method_handler(
        health_check(args[args.index("--health") + 1] if "--health" in args else None))}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),
                                     grpc.method_handlers_generic_handler("grpc.health.v1.Health", health)))
    if "--tls" in args:
        at = args.index("--tls")
        with open(args[at + 1], "rb") as f:
            cert = f.read()
        with open(args[at + 2], "rb") as f:
            key = f.read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(((key, cert),)))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def run_client(args):
    target = args[0]
    options = []
    if "--ca" in args:
        with open(args[args.index("--ca") + 1], "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        if "--authority" in args:
            options.append(("grpc.ssl_target_name_override", args[args.index("--authority") + 1]))
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    out = {}

    call = channel.unary_unary("/echo.Echo/Unary")
    reply, state = call.with_call(b"hello", timeout=10)
    out["unary"] = reply.decode()
    out["initial"] = dict(state.initial_metadata()).get("x-initial")
    out["trailer"] = dict(state.trailing_metadata()).get("x-trailer")
    big = bytes(range(256)) * 4096
    out["unary_1mib_intact"] = call(big, timeout=20) == big
    try:
        call(b"status:NOT_FOUND:no such item", timeout=10)
        out["error"] = "no error"
    except grpc.RpcError as error:
        out["error"] = f"{error.code().name}:{error.details()}"
        out["error_trailer"] = dict(error.trailing_metadata() or ()).get("x-trailer")

    stream = channel.unary_stream("/echo.Echo/ServerStream")
    messages = list(stream(b"100:1000", timeout=20))
    out["server_stream"] = [len(messages), sum(len(m) for m in messages)]

    upload = channel.stream_unary("/echo.Echo/ClientStream")
    out["client_stream"] = upload(iter([b"x" * 5000] * 50), timeout=20).decode()

    chat = channel.stream_stream("/echo.Echo/Bidi")
    replies = list(chat(iter([f"m{i}".encode() for i in range(20)]), timeout=20))
    out["bidi"] = [r.decode() for r in replies]

    # Ping-pong: each message is sent only after the previous reply arrived, which only
    # works if both directions stream through the proxy without buffering.
    import queue
    outbox = queue.Queue()
    outbox.put(b"p0")

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    rounds = 0
    for reply in chat(requests(), timeout=20):
        rounds += 1
        outbox.put(f"p{rounds}".encode() if rounds < 10 else None)
    out["pingpong_rounds"] = rounds

    started = time.monotonic()
    calls = [call.future(f"n{i}".encode(), timeout=20) for i in range(200)]
    out["concurrent_ok"] = sum(1 for i, f in enumerate(calls) if f.result() == f"n{i}".encode())
    out["concurrent_seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    serve(rest) if mode == "server" else run_client(rest)
