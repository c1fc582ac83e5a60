#!/usr/bin/env python3
"""A small Docker Swarm (Engine API) emulator for Switchyard's tests.

Written from Docker's public Engine API documentation (docs.docker.com/engine/api,
v1.41-v1.45: Service, Task, Node, System and Events objects), NOT from or against a
real Docker engine: no Swarm manager can run on the test machines (podman's Docker API
answers 404 for /services, /tasks and /nodes). Only what the Swarm provider reads:

- GET /_ping, /version, /info (Swarm.LocalNodeState "active", ControlAvailable true)
- GET /services[?filters=] (id, name, label, mode), /services/ID
- GET /tasks[?filters=] (id, name, service, node, label, desired-state)
- GET /nodes[?filters=] (id, name, role), /networks, /containers/json (always empty)
- GET /events[?filters=] a chunked stream, one JSON object per line, of the Swarm
  event types (service and node create/update/remove), scope "swarm". As in Docker,
  tasks have no events of their own: a task's DesiredState turning to "shutdown" is
  seen only by listing /tasks again (the cause of the rolling-update 502s).
Paths may carry a version prefix (/v1.43/services). `filters` is the JSON object
map[string][]string (the older map[string]map[string]bool form is accepted too).

Test controls (not Docker API), JSON bodies, all under /_emulator/:
- POST   /_emulator/services   {"ID"?, "Name", "Labels", "ContainerLabels", "Networks": [names],
                                "Replicas"?, "Global"?, "EndpointMode"?}        -> {"ID"}
- POST   /_emulator/services/ID/update  {"Labels"?, ...same keys}    (event: service update)
- DELETE /_emulator/services/ID          and its tasks                (event: service remove)
- POST   /_emulator/tasks      {"ID"?, "ServiceID", "Slot"?, "NodeID"?, "State"?, "DesiredState"?,
                                "Addresses": {"network name": "127.0.0.2/8"}}    -> {"ID"}
- PUT    /_emulator/tasks/ID   {"State"?, "DesiredState"?, "Addresses"?}       (no event)
- DELETE /_emulator/tasks/ID
- POST   /_emulator/nodes      {"ID"?, "Hostname", "Addr"?, "State"?, "Availability"?}
- PUT    /_emulator/garbage?count=N[&path=PREFIX]  the next N reads answer broken JSON
- PUT    /_emulator/events/close               end every open /events stream
- GET    /_emulator/stats       {"requests": {path: n}, "streams": open event streams}

Usage: swarm_emulator.py [--port 0 | --unix PATH]
Binds 127.0.0.1 (or the unix socket) and prints "PORT <n>" (or "UNIX <path>") once it listens.
"""

import argparse
import itertools
import json
import os
import queue
import re
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "1.43"
_ids = itertools.count(1)


def new_id(kind):
    return "%s%022d" % (kind[:3], next(_ids))


def now_text():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


# MARK: - State

class State:
    """Services, tasks, nodes and networks, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.version = 1
        self.services = {}
        self.tasks = {}
        self.nodes = {}
        self.networks = {"ingress": "netingress000000000000001"}
        self.subscribers = []   # queues of open /events streams
        self.garbage = []
        self.requests = {}
        self.add_node({"ID": "node000000000000000000001", "Hostname": "manager-1", "Addr": "127.0.0.1", "Role": "manager"})

    def bump(self):
        self.version += 1
        return self.version

    def network_id(self, name):
        if name not in self.networks:
            self.networks[name] = new_id("net")
        return self.networks[name]

    def emit(self, kind, action, actor_id, attributes):
        ns = time.time_ns()
        event = {"Type": kind, "Action": action, "Actor": {"ID": actor_id, "Attributes": attributes},
                 "scope": "swarm", "time": ns // 1_000_000_000, "timeNano": ns}
        for q in self.subscribers:
            q.put(event)

    # MARK: Nodes

    def add_node(self, body):
        nid = body.get("ID") or new_id("node")
        index = self.bump()
        self.nodes[nid] = {
            "ID": nid, "Version": {"Index": index}, "CreatedAt": now_text(), "UpdatedAt": now_text(),
            "Spec": {"Labels": body.get("Labels", {}), "Role": body.get("Role", "worker"),
                     "Availability": body.get("Availability", "active")},
            "Description": {"Hostname": body.get("Hostname", nid), "Platform": {"Architecture": "x86_64", "OS": "linux"}},
            "Status": {"State": body.get("State", "ready"), "Addr": body.get("Addr", "127.0.0.1")},
        }
        if self.nodes[nid]["Spec"]["Role"] == "manager":
            self.nodes[nid]["ManagerStatus"] = {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1:2377"}
        self.emit("node", "create", nid, {"name": self.nodes[nid]["Description"]["Hostname"]})
        return nid

    # MARK: Services

    def service_spec(self, body, old=None):
        spec = old or {"Name": body["Name"], "Labels": {},
                       "TaskTemplate": {"ContainerSpec": {"Image": body.get("Image", "localhost/app:latest"), "Labels": {}},
                                        "Networks": [], "ForceUpdate": 0},
                       "Mode": {}, "EndpointSpec": {"Mode": "vip"}}
        if "Labels" in body:
            spec["Labels"] = dict(body["Labels"])
        if "ContainerLabels" in body:
            spec["TaskTemplate"]["ContainerSpec"]["Labels"] = dict(body["ContainerLabels"])
        if "Networks" in body:
            spec["TaskTemplate"]["Networks"] = [{"Target": self.network_id(n), "Aliases": [spec["Name"]]} for n in body["Networks"]]
        if "Global" in body or "Replicas" in body or not spec["Mode"]:
            spec["Mode"] = {"Global": {}} if body.get("Global") else {"Replicated": {"Replicas": int(body.get("Replicas", 1))}}
        if "EndpointMode" in body:
            spec["EndpointSpec"] = {"Mode": body["EndpointMode"]}
        return spec

    def add_service(self, body):
        sid = body.get("ID") or new_id("svc")
        index = self.bump()
        spec = self.service_spec(body)
        self.services[sid] = {
            "ID": sid, "Version": {"Index": index}, "CreatedAt": now_text(), "UpdatedAt": now_text(),
            "Spec": spec, "Endpoint": {"Spec": spec["EndpointSpec"], "VirtualIPs": [
                {"NetworkID": n["Target"], "Addr": "10.0.9.%d/24" % (index % 250 + 2)} for n in spec["TaskTemplate"]["Networks"]]},
        }
        self.emit("service", "create", sid, {"name": spec["Name"]})
        return sid

    def update_service(self, sid, body):
        service = self.services.get(sid)
        if not service:
            raise ApiError(404, "service %s not found" % sid)
        service["PreviousSpec"] = json.loads(json.dumps(service["Spec"]))
        service["Spec"] = self.service_spec(body, service["Spec"])
        service["Version"] = {"Index": self.bump()}
        service["UpdatedAt"] = now_text()
        service["UpdateStatus"] = {"State": "updating", "StartedAt": now_text(), "Message": "update in progress"}
        self.emit("service", "update", sid, {"name": service["Spec"]["Name"], "updatestate.new": "updating"})

    def remove_service(self, sid):
        service = self.services.pop(sid, None)
        if not service:
            raise ApiError(404, "service %s not found" % sid)
        for tid in [t for t, task in self.tasks.items() if task["ServiceID"] == sid]:
            del self.tasks[tid]
        self.emit("service", "remove", sid, {"name": service["Spec"]["Name"]})

    # MARK: Tasks

    def add_task(self, body):
        sid = body["ServiceID"]
        service = self.services.get(sid)
        if not service:
            raise ApiError(404, "service %s not found" % sid)
        tid = body.get("ID") or new_id("tsk")
        index = self.bump()
        slot = int(body.get("Slot", 1 + sum(1 for t in self.tasks.values() if t["ServiceID"] == sid)))
        self.tasks[tid] = {
            "ID": tid, "Version": {"Index": index}, "CreatedAt": now_text(), "UpdatedAt": now_text(),
            "Labels": {}, "Spec": service["Spec"]["TaskTemplate"], "ServiceID": sid, "Slot": slot,
            "NodeID": body.get("NodeID") or next(iter(self.nodes)),
            "Status": {"Timestamp": now_text(), "State": body.get("State", "running"), "Message": "started",
                       "ContainerStatus": {"ContainerID": "c" + tid, "PID": 1000 + index, "ExitCode": 0}},
            "DesiredState": body.get("DesiredState", "running"),
            "NetworksAttachments": [],
        }
        self.set_addresses(self.tasks[tid], body.get("Addresses", {}))
        return tid

    def set_addresses(self, task, addresses):
        task["NetworksAttachments"] = [
            {"Network": {"ID": self.network_id(name), "Spec": {"Name": name, "Driver": "overlay"}},
             "Addresses": [address] if isinstance(address, str) else list(address)}
            for name, address in addresses.items()]

    def update_task(self, tid, body):
        task = self.tasks.get(tid)
        if not task:
            raise ApiError(404, "task %s not found" % tid)
        if "State" in body:
            task["Status"]["State"] = body["State"]
            task["Status"]["Timestamp"] = now_text()
        if "DesiredState" in body:
            task["DesiredState"] = body["DesiredState"]
        if "Addresses" in body:
            self.set_addresses(task, body["Addresses"])
        task["Version"] = {"Index": self.bump()}
        task["UpdatedAt"] = now_text()


# MARK: - Filters

def parse_filters(text):
    if not text:
        return {}
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid filter")
    return {k: (list(v.keys()) if isinstance(v, dict) else list(v)) for k, v in raw.items()}


def labels_match(labels, wanted):
    for item in wanted:
        key, _, value = item.partition("=")
        if key not in labels or ("=" in item and labels[key] != value):
            return False
    return True


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# MARK: - HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *args):
        pass

    def address_string(self):
        return "local"

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        path = re.sub(r"^/v1\.\d+", "", unquote(url.path))
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        st = self.state
        with st.lock:
            st.requests[path] = st.requests.get(path, 0) + 1
        try:
            if path.startswith("/_emulator/"):
                return self.control(method, path[len("/_emulator/"):])
            self.route(method, path)
        except ApiError as e:
            self.json({"message": e.message}, e.status)
        except (ValueError, KeyError, TypeError) as e:
            self.json({"message": "bad request: %s" % e}, 400)

    def json(self, value, status=200):
        body = json.dumps(value, separators=(",", ":")).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", API_VERSION)
        self.end_headers()
        self.wfile.write(body)

    def read(self, path, value):
        """A read answer, or broken JSON if the test asked for it."""
        st = self.state
        with st.lock:
            for entry in st.garbage:
                if path.startswith(entry[0]) and entry[1] > 0:
                    entry[1] -= 1
                    body = b'[{"ID": "broken", "Spec": '
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
        self.json(value)

    # MARK: Routes

    def route(self, method, path):
        st = self.state
        if method != "GET":
            raise ApiError(404, "page not found")
        filters = parse_filters(self.query.get("filters", [""])[0])
        if path == "/_ping":
            body = b"OK"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "2")
            self.send_header("Api-Version", API_VERSION)
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/version":
            return self.json({"Version": "24.0.7", "ApiVersion": API_VERSION, "MinAPIVersion": "1.12",
                              "Os": "linux", "Arch": "amd64", "KernelVersion": os.uname().release})
        if path == "/info":
            with st.lock:
                node = next(iter(st.nodes))
                return self.json({"ID": "emulator", "Name": "manager-1", "ServerVersion": "24.0.7",
                                  "Swarm": {"NodeID": node, "NodeAddr": "127.0.0.1", "LocalNodeState": "active",
                                            "ControlAvailable": True, "Error": "", "Nodes": len(st.nodes),
                                            "Managers": 1, "Cluster": {"ID": "cluster0001"}}})
        if path == "/events":
            return self.events(filters)
        with st.lock:
            if path == "/services":
                found = [s for s in st.services.values() if self.service_matches(s, filters)]
                value = json.loads(json.dumps(found))
            elif path.startswith("/services/"):
                sid = path[len("/services/"):]
                service = st.services.get(sid) or next((s for s in st.services.values() if s["Spec"]["Name"] == sid), None)
                if not service:
                    raise ApiError(404, "service %s not found" % sid)
                value = json.loads(json.dumps(service))
            elif path == "/tasks":
                found = [t for t in st.tasks.values() if self.task_matches(t, filters)]
                value = json.loads(json.dumps(found))
            elif path == "/nodes":
                value = [n for n in st.nodes.values()
                         if all(n["ID"] in filters.get("id", [n["ID"]]) for _ in [0])
                         and n["Spec"]["Role"] in filters.get("role", [n["Spec"]["Role"]])]
                value = json.loads(json.dumps(value))
            elif path == "/containers/json":
                # A manager's own containers: none here (lets Docker-provider tests use
                # the garbage control against this emulator too).
                value = []
            elif path == "/networks":
                value = [{"Name": n, "Id": i, "Scope": "swarm", "Driver": "overlay"} for n, i in st.networks.items()]
            else:
                raise ApiError(404, "page not found")
        self.read(path, value)

    def service_matches(self, service, filters):
        spec = service["Spec"]
        mode = "global" if "Global" in spec["Mode"] else "replicated"
        return (("id" not in filters or any(service["ID"].startswith(i) for i in filters["id"]))
                and ("name" not in filters or spec["Name"] in filters["name"])
                and ("mode" not in filters or mode in filters["mode"])
                and ("label" not in filters or labels_match(spec["Labels"], filters["label"])))

    def task_matches(self, task, filters):
        st = self.state
        service = st.services.get(task["ServiceID"])
        name = service["Spec"]["Name"] if service else ""
        return (("id" not in filters or task["ID"] in filters["id"])
                and ("service" not in filters or task["ServiceID"] in filters["service"] or name in filters["service"])
                and ("node" not in filters or task["NodeID"] in filters["node"])
                and ("name" not in filters or ("%s.%d" % (name, task["Slot"])) in filters["name"])
                and ("desired-state" not in filters or task["DesiredState"] in filters["desired-state"])
                and ("label" not in filters or labels_match(task["Labels"], filters["label"])))

    def events(self, filters):
        """A chunked stream of events until the client goes away or the test closes it."""
        st = self.state
        q = queue.Queue()
        with st.lock:
            st.subscribers.append(q)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Api-Version", API_VERSION)
        self.end_headers()
        try:
            self.wfile.flush()
            while True:
                try:
                    event = q.get(timeout=1.0)
                except queue.Empty:
                    continue
                if event is None:
                    break
                if "type" in filters and event["Type"] not in filters["type"]:
                    continue
                if "event" in filters and event["Action"] not in filters["event"]:
                    continue
                line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with st.lock:
                if q in st.subscribers:
                    st.subscribers.remove(q)
            self.close_connection = True

    # MARK: Test controls

    def control(self, method, path):
        st = self.state
        body = json.loads(self.body or b"{}")
        with st.lock:
            if method == "POST" and path == "services":
                return self.json({"ID": st.add_service(body)}, 201)
            match = re.fullmatch(r"services/([^/]+)/update", path)
            if method == "POST" and match:
                st.update_service(match.group(1), body)
                return self.json({})
            match = re.fullmatch(r"services/([^/]+)", path)
            if method == "DELETE" and match:
                st.remove_service(match.group(1))
                return self.json({})
            if method == "POST" and path == "tasks":
                return self.json({"ID": st.add_task(body)}, 201)
            match = re.fullmatch(r"tasks/([^/]+)", path)
            if method == "PUT" and match:
                st.update_task(match.group(1), body)
                return self.json({})
            if method == "DELETE" and match:
                if not st.tasks.pop(match.group(1), None):
                    raise ApiError(404, "task not found")
                return self.json({})
            if method == "POST" and path == "nodes":
                return self.json({"ID": st.add_node(body)}, 201)
            if path == "garbage":
                st.garbage.append([self.query.get("path", ["/"])[0], int(self.query.get("count", ["1"])[0])])
                return self.json({})
            if path == "events/close":
                for q in st.subscribers:
                    q.put(None)
                return self.json({})
            if path == "stats":
                return self.json({"requests": st.requests, "streams": len(st.subscribers)})
        raise ApiError(404, "unknown control %s %s" % (method, path))


class TCPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix", help="listen on this unix socket instead of TCP")
    args = parser.parse_args()
    Handler.state = State()
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        server = UnixServer(args.unix, Handler)
        print("UNIX %s" % args.unix, flush=True)
    else:
        server = TCPServer(("127.0.0.1", args.port), Handler)
        print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
