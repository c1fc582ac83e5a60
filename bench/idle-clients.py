#!/usr/bin/env python3
"""The idle clients of bench/run's idlemem scenario.

    bench/idle-clients.py HOST PORT N CLOSE_FILE DEADLINE_S

Opens N HTTP/1.1 connections to HOST:PORT (at most 512 connecting at once), sends one
keep-alive `GET /` on each and reads its whole response (Content-Length bodies), then keeps
them open and idle. Prints `ready OK FAILED SECONDS` once every connection is idle or failed
(SECONDS: how long that took; the first connection has been idle about that long); then
waits until CLOSE_FILE exists, closes every connection and prints `closed DROPPED` (how many
the proxy had closed while they were idle). Bounded: whatever happens, every connection is
closed and the process exits DEADLINE_S seconds after it started.
"""
import asyncio
import os
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench-idle\r\n\r\n"
STEP_TIMEOUT = 20.0


async def one_request(host, port, connections, semaphore):
    """Connects, makes one request, keeps the connection; True when the response was a whole 200."""
    async with semaphore:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            return False
        connections.append((reader, writer))
        try:
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)
            lines = head.decode("latin-1").split("\r\n")
            if len(lines[0].split(" ")) < 2 or lines[0].split(" ")[1] != "200":
                return False
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if length is None:
                return False
            await asyncio.wait_for(reader.readexactly(length), STEP_TIMEOUT)
            return True
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False


async def main():
    host, port, count, close_file, deadline_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    started = time.monotonic()
    deadline = started + deadline_s
    connections = []
    semaphore = asyncio.Semaphore(512)
    tasks = [asyncio.ensure_future(one_request(host, port, connections, semaphore)) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    ok = sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
    print(f"ready {ok} {count - ok} {time.monotonic() - started:.1f}", flush=True)
    while not os.path.exists(close_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    dropped = sum(1 for reader, _ in connections if reader.at_eof())
    for _, writer in connections:
        writer.close()
    if connections:
        await asyncio.wait([asyncio.ensure_future(w.wait_closed()) for _, w in connections], timeout=10)
    print(f"closed {dropped}", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
