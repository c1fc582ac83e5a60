#!/usr/bin/env python3
"""A small Consul HTTP API emulator for Switchyard's tests.

Written from Consul's public HTTP API documentation (api-docs: features/blocking,
features/consistency, api-structure, kv, catalog, health, agent/service, agent/check),
NOT from or against a real Consul agent: no Consul agent can run on the test machines
(no Debian package, no reachable Go module proxy). It implements the contract listed in
the project's research notes, section "Consul":

- /v1/catalog/register, /v1/catalog/deregister, /v1/catalog/services,
  /v1/catalog/service/NAME[?tag=], /v1/catalog/nodes, /v1/catalog/node/NAME,
  /v1/catalog/datacenters
- /v1/health/service/NAME[?passing][&tag=...] (tags AND), /v1/health/checks/NAME,
  /v1/health/state/STATE
- /v1/agent/service/register, /v1/agent/service/deregister/ID, /v1/agent/services,
  /v1/agent/checks, /v1/agent/check/pass|warn|fail/ID, /v1/agent/check/update/ID,
  /v1/agent/self; TTL checks start critical and expire; DeregisterCriticalServiceAfter
- /v1/kv/KEY (GET ?recurse ?keys ?raw, PUT ?cas ?flags, DELETE ?recurse ?cas)
- /v1/status/leader, /v1/status/peers
- Blocking queries on every read: ?index=N&wait=D (default 5m, capped at 10m, jitter up
  to wait/16). Indexes are per resource: per service name for catalog/health service
  reads, the max ModifyIndex under the prefix (tombstones included) for KV, the table
  index for lists. Every read answers X-Consul-Index (>= 1), X-Consul-KnownLeader and
  X-Consul-LastContact.

Test controls (not Consul API), all under /_emulator/:
- PUT  /_emulator/index/rewind?to=N   a snapshot restore: the raft index and every
                                      object's indexes drop to at most N (default 1);
                                      blocked queries wake up and see a smaller index
- PUT  /_emulator/wake                wake every blocked query with no change (spurious)
- PUT  /_emulator/spurious?on=1       every blocking query returns at once (0 turns off)
- PUT  /_emulator/garbage?count=N[&path=PREFIX]
                                      the next N reads (under PREFIX) answer broken JSON
- GET  /_emulator/stats               {"requests": {path: n}, "blocking": n, "index": n}
- PUT  /_emulator/stats/reset

The data and its rules are in consul_state.py; this file is the HTTP layer.

Usage: consul_emulator.py [--port 0] [--data FILE] [--reap-ms 200]
Binds 127.0.0.1 only and prints "PORT <n>" on standard output once it listens.
With --data, the state is saved after every write and loaded at start, so a killed and
restarted emulator keeps its catalog (like a Consul server keeps its raft log).
"""

import argparse
import base64
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from consul_state import AGENT_ADDRESS, AGENT_NODE, DATACENTER, ApiError, State, parse_duration, public


# MARK: - HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set by main
    token = None  # --token: the ACL token every /v1/ request must carry

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_POST(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        st = self.state
        with st.lock:
            st.requests[path] = st.requests.get(path, 0) + 1
        try:
            if path.startswith("/_emulator/"):
                return self.control(method, path[len("/_emulator/"):])
            dc = self.query.get("dc", [DATACENTER])[0]
            if dc != DATACENTER:
                raise ApiError(500, "No path to datacenter")
            if not path.startswith("/v1/"):
                raise ApiError(404, "Not found")
            if self.token is not None and self.headers.get("X-Consul-Token") != self.token:
                raise ApiError(403, "ACL not found")
            self.route(method, path[len("/v1/"):])
        except ApiError as e:
            self.send(e.status, e.message.encode(), content_type="text/plain; charset=utf-8")
        except (ValueError, KeyError, TypeError) as e:
            self.send(400, ("Bad request: %s" % e).encode(), content_type="text/plain; charset=utf-8")

    # MARK: Responses

    def send(self, status, body, index=None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if index is not None:
            self.send_header("X-Consul-Index", str(max(1, index)))
            self.send_header("X-Consul-KnownLeader", "true")
            self.send_header("X-Consul-LastContact", "0")
            self.send_header("X-Consul-Effective-Consistency", "leader")
        if "cached" in self.query:
            self.send_header("X-Cache", "MISS")
        self.end_headers()
        self.wfile.write(body)

    def json(self, value, index=None, status=200):
        text = json.dumps(value, indent=4 if "pretty" in self.query else None,
                          separators=None if "pretty" in self.query else (",", ":"))
        self.send(status, text.encode(), index)

    def read_json(self):
        try:
            return json.loads(self.body or b"null") or {}
        except ValueError:
            raise ApiError(400, "Request decode failed: invalid JSON")

    def blocking_read(self, index_of, render, path):
        """Runs a read with Consul's blocking semantics; `index_of` and `render` run locked."""
        st = self.state
        want = int(self.query.get("index", ["0"])[0] or 0)
        wait = parse_duration(self.query.get("wait", [""])[0]) or 300.0
        wait = min(wait, 600.0)
        with st.lock:
            if want > 0 and index_of() <= want and not st.spurious:
                st.blocking += 1
                deadline = time.monotonic() + wait + random.uniform(0, wait / 16)
                generation = st.wake_generation
                while index_of() <= want and st.wake_generation == generation:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    st.changed.wait(left)
            index = index_of()
            status, value = render()
            garbage = self.take_garbage(path)
        if garbage:
            return self.send(200, b'[{"Node": {"Node": "broken", ', index)
        if status == 404:
            return self.send(404, b"", index)
        self.json(value, index)

    def take_garbage(self, path):
        for entry in self.state.garbage:
            if path.startswith(entry[0]) and entry[1] > 0:
                entry[1] -= 1
                return True
        return False

    # MARK: Routes

    def route(self, method, path):
        st = self.state
        q = self.query
        tags = q.get("tag", [])
        if method == "GET" and path.startswith("health/service/"):
            name = path[len("health/service/"):]
            passing = "passing" in q and q["passing"][0] not in ("false", "0")
            return self.blocking_read(lambda: st.service_index.get(name, 1),
                                      lambda: (200, st.health_entries(name, passing, tags)), "/v1/" + path)
        if method == "GET" and path.startswith("health/checks/"):
            name = path[len("health/checks/"):]
            return self.blocking_read(lambda: st.service_index.get(name, 1), lambda: (200, [
                public(c) for c in st.checks.values() if c["ServiceName"] == name]), "/v1/" + path)
        if method == "GET" and path.startswith("health/state/"):
            want = path[len("health/state/"):]
            return self.blocking_read(lambda: st.table_index["checks"], lambda: (200, [
                public(c) for c in st.checks.values() if want == "any" or c["Status"] == want]), "/v1/" + path)
        if method == "GET" and path == "catalog/services":
            def services():
                names = {}
                for svc in st.services.values():
                    names.setdefault(svc["Service"], set()).update(svc["Tags"])
                return 200, {n: sorted(t) for n, t in sorted(names.items())}
            return self.blocking_read(lambda: st.table_index["services"], services, "/v1/" + path)
        if method == "GET" and path.startswith("catalog/service/"):
            name = path[len("catalog/service/"):]
            return self.blocking_read(lambda: st.service_index.get(name, 1),
                                      lambda: (200, st.catalog_entries(name, tags)), "/v1/" + path)
        if method == "GET" and path == "catalog/nodes":
            return self.blocking_read(lambda: st.table_index["nodes"],
                                      lambda: (200, [public(n) for n in st.nodes.values()]), "/v1/" + path)
        if method == "GET" and path.startswith("catalog/node/"):
            name = path[len("catalog/node/"):]
            def node():
                if name not in st.nodes:
                    return 200, None
                return 200, {"Node": st.nodes[name], "Services": {
                    s["ID"]: public(s) for s in st.services.values() if s["_node"] == name}}
            return self.blocking_read(lambda: st.table_index["nodes"], node, "/v1/" + path)
        if method == "GET" and path == "catalog/datacenters":
            return self.json([DATACENTER])
        if method == "PUT" and path == "catalog/register":
            body = self.read_json()
            with st.lock:
                st.ensure_node(body["Node"], body["Address"], body.get("NodeMeta"), body.get("TaggedAddresses"))
                if body.get("Service"):
                    st.register_service(body["Node"], body)
                else:
                    st.commit()
            return self.json(True)
        if method == "PUT" and path == "catalog/deregister":
            body = self.read_json()
            with st.lock:
                st.deregister(body["Node"], body.get("ServiceID"), body.get("CheckID"))
            return self.json(True)
        if path.startswith("agent/"):
            return self.agent(method, path[len("agent/"):])
        if path.startswith("kv/"):
            return self.kv(method, path[len("kv/"):])
        if method == "GET" and path == "status/leader":
            return self.json("127.0.0.1:8300")
        if method == "GET" and path == "status/peers":
            return self.json(["127.0.0.1:8300"])
        raise ApiError(404, "Not found")

    def agent(self, method, path):
        st = self.state
        if method == "PUT" and path == "service/register":
            body = self.read_json()
            with st.lock:
                st.register_service(AGENT_NODE, body, agent=True)
            return self.send(200, b"")
        if method == "PUT" and path.startswith("service/deregister/"):
            with st.lock:
                sid = path[len("service/deregister/"):]
                if (AGENT_NODE, sid) not in st.services:
                    raise ApiError(404, 'Unknown service ID "%s"' % sid)
                st.deregister(AGENT_NODE, service_id=sid)
            return self.send(200, b"")
        if method == "GET" and path == "services":
            with st.lock:
                return self.json({s["ID"]: public(s) for (n, _), s in st.services.items() if n == AGENT_NODE})
        if method == "GET" and path == "checks":
            with st.lock:
                return self.json({c["CheckID"]: public(c) for (n, _), c in st.checks.items() if n == AGENT_NODE})
        match = re.fullmatch(r"check/(pass|warn|fail|update)/(.+)", path)
        if method == "PUT" and match:
            verb, check_id = match.groups()
            status = {"pass": "passing", "warn": "warning", "fail": "critical"}.get(verb)
            output = self.query.get("note", [None])[0]
            if verb == "update":
                body = self.read_json()
                status, output = body.get("Status", "passing"), body.get("Output")
            with st.lock:
                st.set_check(check_id, status, output)
            return self.send(200, b"")
        if method == "GET" and path == "self":
            return self.json({"Config": {"Datacenter": DATACENTER, "NodeName": AGENT_NODE},
                              "Member": {"Name": AGENT_NODE, "Addr": AGENT_ADDRESS, "Status": 1}})
        if method == "GET" and path == "members":
            return self.json([{"Name": AGENT_NODE, "Addr": AGENT_ADDRESS, "Status": 1}])
        raise ApiError(404, "Not found")

    def kv(self, method, key):
        st = self.state
        q = self.query
        recurse = "recurse" in q
        cas = int(q["cas"][0]) if "cas" in q else None
        if method == "GET":
            def render():
                if "keys" in q:
                    found = sorted(k for k in st.kv if k.startswith(key))
                    return (200, found) if found else (404, None)
                found = [st.kv[k] for k in sorted(st.kv) if (k.startswith(key) if recurse else k == key)]
                return (200, found) if found else (404, None)
            if "raw" in q:
                with st.lock:
                    entry = st.kv.get(key)
                    index = st.kv_index(key, False)
                if not entry:
                    return self.send(404, b"", index)
                return self.send(200, base64.b64decode(entry["Value"] or ""), index, "application/octet-stream")
            return self.blocking_read(lambda: st.kv_index(key, recurse), render, "/v1/kv/" + key)
        if method == "PUT":
            flags = int(q["flags"][0]) if "flags" in q else None
            with st.lock:
                return self.json(st.kv_put(key, self.body, flags, cas))
        if method == "DELETE":
            with st.lock:
                return self.json(st.kv_delete(key, recurse, cas))
        raise ApiError(405, "Method not allowed")

    # MARK: Test controls

    def control(self, method, path):
        st = self.state
        q = self.query
        with st.lock:
            if path == "index/rewind":
                st.rewind(int(q.get("to", ["1"])[0]))
            elif path == "wake":
                st.wake_generation += 1
                st.changed.notify_all()
            elif path == "spurious":
                st.spurious = q.get("on", ["1"])[0] not in ("0", "false")
                st.wake_generation += 1
                st.changed.notify_all()
            elif path == "garbage":
                st.garbage.append([q.get("path", ["/v1/"])[0], int(q.get("count", ["1"])[0])])
            elif path == "stats":
                return self.json({"requests": st.requests, "blocking": st.blocking, "index": st.index})
            elif path == "stats/reset":
                st.requests = {}
                st.blocking = 0
            else:
                raise ApiError(404, "unknown control %s" % path)
        return self.json(True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", help="save the state here after every write; load it at start")
    parser.add_argument("--reap-ms", type=int, default=200, help="TTL/deregister timer period")
    parser.add_argument("--token", help="require this X-Consul-Token on /v1/ (else 403 ACL not found)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM) ...")
    parser.add_argument("--tls-key", help="... and key")
    parser.add_argument("--tls-client-ca", help="require a client certificate signed by this CA")
    args = parser.parse_args()
    Handler.state = State(args.data)
    Handler.token = args.token
    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.tls_client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    st = Handler.state

    def reaper():
        while True:
            time.sleep(args.reap_ms / 1000.0)
            with st.lock:
                st.reap()
    threading.Thread(target=reaper, daemon=True).start()
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
