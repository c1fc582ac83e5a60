"""The Consul emulator's data: nodes, services, checks, KV and the raft index.

Part of consul_emulator.py (see its header): written from Consul's public HTTP API
documentation, not from or against a real Consul agent. Pure state, guarded by one lock;
the HTTP layer is in consul_emulator.py.
"""

import base64
import json
import os
import re
import threading
import time

DATACENTER = "dc1"
AGENT_NODE = "emulator"
AGENT_ADDRESS = "127.0.0.1"


# MARK: - Durations

def parse_duration(text):
    """Go-style durations as Consul accepts them: 10s, 5m, 250ms, 1m30s."""
    if text is None or text == "":
        return None
    total = 0.0
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9.]+)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError("invalid duration %r" % text)
    for amount, unit in parts:
        total += float(amount) * units[unit]
    return total


# MARK: - State

class State:
    """All data, guarded by one lock; `changed` is notified on every write."""

    def __init__(self, data_file=None):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.data_file = data_file
        self.index = 1
        self.nodes = {}        # name -> node dict
        self.services = {}     # (node, id) -> service dict
        self.checks = {}       # (node, check id) -> check dict (with private "_" keys)
        self.kv = {}           # key -> entry
        self.tombstones = {}   # deleted key -> index of the delete
        self.service_index = {}  # service name -> last index touching it
        self.table_index = {"services": 1, "nodes": 1, "checks": 1}
        self.wake_generation = 0
        self.spurious = False
        self.garbage = []      # [path prefix, remaining]
        self.requests = {}
        self.blocking = 0
        if data_file:
            self.load()
        self.ensure_node(AGENT_NODE, AGENT_ADDRESS)

    # MARK: Persistence

    def load(self):
        try:
            with open(self.data_file) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return
        self.index = saved["index"]
        self.nodes = saved["nodes"]
        self.services = {tuple(k.split("\0", 1)): v for k, v in saved["services"].items()}
        self.checks = {tuple(k.split("\0", 1)): v for k, v in saved["checks"].items()}
        self.kv = saved["kv"]
        self.tombstones = saved["tombstones"]
        self.service_index = saved["service_index"]
        self.table_index = saved["table_index"]

    def save(self):
        if not self.data_file:
            return
        saved = {
            "index": self.index, "nodes": self.nodes,
            "services": {"\0".join(k): v for k, v in self.services.items()},
            "checks": {"\0".join(k): v for k, v in self.checks.items()},
            "kv": self.kv, "tombstones": self.tombstones,
            "service_index": self.service_index, "table_index": self.table_index,
        }
        tmp = self.data_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(saved, f)
        os.replace(tmp, self.data_file)

    # MARK: Writes (lock held)

    def bump(self):
        self.index += 1
        return self.index

    def commit(self):
        self.save()
        self.changed.notify_all()

    def touch_service(self, name, index):
        self.service_index[name] = index
        self.table_index["services"] = index

    def ensure_node(self, name, address, meta=None, tagged=None):
        node = self.nodes.get(name)
        if node and node["Address"] == address and (meta is None or node["Meta"] == meta):
            return node
        index = self.bump()
        created = node["CreateIndex"] if node else index
        self.nodes[name] = {
            "ID": "", "Node": name, "Address": address, "Datacenter": DATACENTER,
            "TaggedAddresses": tagged or {"lan": address, "wan": address},
            "Meta": meta or {}, "CreateIndex": created, "ModifyIndex": index,
        }
        self.table_index["nodes"] = index
        if (name, "serfHealth") not in self.checks:
            self.checks[(name, "serfHealth")] = self.new_check(
                name, "serfHealth", "Serf Health Status", "passing", "", "", [], index)
        for svc in self.services.values():
            if svc["_node"] == name:
                self.touch_service(svc["Service"], index)
        return self.nodes[name]

    def new_check(self, node, check_id, name, status, service_id, service_name, tags, index,
                  ttl=None, deregister_after=None):
        return {
            "Node": node, "CheckID": check_id, "Name": name, "Status": status, "Notes": "",
            "Output": "", "ServiceID": service_id, "ServiceName": service_name,
            "ServiceTags": list(tags), "Type": "ttl" if ttl else "",
            "CreateIndex": index, "ModifyIndex": index,
            "_ttl": ttl, "_deregister_after": deregister_after,
            "_expires": time.monotonic() + ttl if ttl else None,
            "_critical_since": time.monotonic() if status == "critical" else None,
        }

    def register_service(self, node, body, agent=False):
        svc = body if agent else (body.get("Service") or {})
        name = svc.get("Service") or svc.get("Name")
        if not name:
            raise ApiError(400, "Missing service name")
        sid = svc.get("ID") or name
        old = self.services.get((node, sid))
        index = self.bump()
        weights = svc.get("Weights") or {"Passing": 1, "Warning": 1}
        self.services[(node, sid)] = {
            "ID": sid, "Service": name, "Tags": list(svc.get("Tags") or []),
            "Address": svc.get("Address", ""), "Port": int(svc.get("Port", 0)),
            "Meta": svc.get("Meta") or {}, "Weights": weights, "EnableTagOverride": False,
            "CreateIndex": old["CreateIndex"] if old else index, "ModifyIndex": index, "_node": node,
        }
        if old and old["Service"] != name:
            self.touch_service(old["Service"], index)
        self.touch_service(name, index)
        checks = []
        if agent:
            if svc.get("Check"):
                checks = [svc["Check"]]
            checks += svc.get("Checks") or []
        else:
            if body.get("Check"):
                checks = [body["Check"]]
            checks += body.get("Checks") or []
        for n, check in enumerate(checks):
            if agent:
                check_id = check.get("CheckID") or ("service:%s" % sid if len(checks) == 1 else "service:%s:%d" % (sid, n + 1))
            else:
                check_id = check.get("CheckID") or "service:%s" % sid
            ttl = parse_duration(check.get("TTL"))
            status = check.get("Status") or ("critical" if ttl or agent else "passing")
            self.checks[(node, check_id)] = self.new_check(
                node, check_id, check.get("Name") or "Service '%s' check" % name, status, sid, name,
                svc.get("Tags") or [], index, ttl, parse_duration(check.get("DeregisterCriticalServiceAfter")))
        self.table_index["checks"] = index
        self.commit()

    def deregister(self, node, service_id=None, check_id=None):
        if node not in self.nodes:
            return
        index = self.bump()
        if check_id:
            check = self.checks.pop((node, check_id), None)
            if check and check["ServiceName"]:
                self.touch_service(check["ServiceName"], index)
        elif service_id:
            self.remove_service(node, service_id, index)
        else:
            for key in [k for k in self.services if k[0] == node]:
                self.remove_service(node, key[1], index)
            for key in [k for k in self.checks if k[0] == node]:
                del self.checks[key]
            del self.nodes[node]
            self.table_index["nodes"] = index
        self.table_index["checks"] = index
        self.commit()

    def remove_service(self, node, service_id, index):
        svc = self.services.pop((node, service_id), None)
        if not svc:
            return
        for key in [k for k, c in self.checks.items() if k[0] == node and c["ServiceID"] == service_id]:
            del self.checks[key]
        self.touch_service(svc["Service"], index)

    def set_check(self, check_id, status, output=None):
        check = self.checks.get((AGENT_NODE, check_id))
        if not check:
            raise ApiError(404, 'Unknown check ID "%s"' % check_id)
        now = time.monotonic()
        if check["_ttl"]:
            check["_expires"] = now + check["_ttl"]
        if output is not None:
            check["Output"] = output
        if check["Status"] == status:
            return
        index = self.bump()
        check["Status"] = status
        check["ModifyIndex"] = index
        check["_critical_since"] = now if status == "critical" else None
        self.table_index["checks"] = index
        if check["ServiceName"]:
            self.touch_service(check["ServiceName"], index)
        self.commit()

    def reap(self):
        """TTL expiry and DeregisterCriticalServiceAfter (run by a timer thread)."""
        now = time.monotonic()
        changed = False
        for (node, _), check in list(self.checks.items()):
            if check["_expires"] and now > check["_expires"] and check["Status"] != "critical":
                index = self.bump()
                check.update(Status="critical", ModifyIndex=index, Output="TTL expired", _critical_since=now)
                if check["ServiceName"]:
                    self.touch_service(check["ServiceName"], index)
                changed = True
            after = check["_deregister_after"]
            if after is not None and check["_critical_since"] and now - check["_critical_since"] >= after:
                self.remove_service(node, check["ServiceID"], self.bump())
                changed = True
        if changed:
            self.table_index["checks"] = self.index
            self.commit()

    def rewind(self, to):
        """A snapshot restore: every index drops to at most `to`."""
        to = max(1, to)
        self.index = to
        for group in (self.nodes.values(), self.services.values(), self.checks.values(), self.kv.values()):
            for item in group:
                item["CreateIndex"] = min(item["CreateIndex"], to)
                item["ModifyIndex"] = min(item["ModifyIndex"], to)
        self.tombstones = {k: min(v, to) for k, v in self.tombstones.items()}
        self.service_index = {k: min(v, to) for k, v in self.service_index.items()}
        self.table_index = {k: min(v, to) for k, v in self.table_index.items()}
        self.wake_generation += 1
        self.commit()

    # MARK: KV (lock held)

    def kv_index(self, prefix, recurse):
        if not recurse:
            entry = self.kv.get(prefix)
            return entry["ModifyIndex"] if entry else self.tombstones.get(prefix, 1)
        found = [e["ModifyIndex"] for k, e in self.kv.items() if k.startswith(prefix)]
        found += [i for k, i in self.tombstones.items() if k.startswith(prefix)]
        return max(found) if found else 1

    def kv_put(self, key, value, flags, cas):
        old = self.kv.get(key)
        if cas is not None:
            if cas == 0 and old is not None:
                return False
            if cas > 0 and (old is None or old["ModifyIndex"] != cas):
                return False
        index = self.bump()
        self.kv[key] = {
            "Key": key, "Flags": flags if flags is not None else (old["Flags"] if old else 0),
            "Value": base64.b64encode(value).decode() if value else None, "LockIndex": 0,
            "CreateIndex": old["CreateIndex"] if old else index, "ModifyIndex": index,
        }
        self.tombstones.pop(key, None)
        self.commit()
        return True

    def kv_delete(self, key, recurse, cas):
        keys = [k for k in self.kv if k.startswith(key)] if recurse else [key]
        if cas is not None:
            entry = self.kv.get(key)
            if cas == 0 or entry is None or entry["ModifyIndex"] != cas:
                return False
        index = self.bump()
        for k in keys:
            if self.kv.pop(k, None) is not None:
                self.tombstones[k] = index
        self.commit()
        return True

    # MARK: Reads (lock held)

    def health_entries(self, name, passing, tags):
        entries = []
        for (node, _), svc in sorted(self.services.items()):
            if svc["Service"] != name or not all(t in svc["Tags"] for t in tags):
                continue
            checks = [public(c) for (n, _), c in sorted(self.checks.items())
                      if n == node and (c["ServiceID"] in ("", svc["ID"]))]
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            nodeinfo = self.nodes[node]
            entries.append({
                "Node": {k: nodeinfo[k] for k in ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex", "ModifyIndex")},
                "Service": public(svc), "Checks": checks,
            })
        return entries

    def catalog_entries(self, name, tags):
        result = []
        for (node, _), svc in sorted(self.services.items()):
            if svc["Service"] != name or not all(t in svc["Tags"] for t in tags):
                continue
            n = self.nodes[node]
            result.append({
                "ID": n["ID"], "Node": node, "Address": n["Address"], "Datacenter": DATACENTER,
                "TaggedAddresses": n["TaggedAddresses"], "NodeMeta": n["Meta"],
                "ServiceID": svc["ID"], "ServiceName": name, "ServiceTags": svc["Tags"],
                "ServiceAddress": svc["Address"], "ServicePort": svc["Port"], "ServiceMeta": svc["Meta"],
                "ServiceWeights": svc["Weights"], "ServiceEnableTagOverride": False,
                "CreateIndex": svc["CreateIndex"], "ModifyIndex": svc["ModifyIndex"],
            })
        return result


def public(item):
    return {k: v for k, v in item.items() if not k.startswith("_")}


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message
