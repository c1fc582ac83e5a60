#!/usr/bin/env python3
"""bench/run's report: results.md from results.tsv (and idlemem.tsv), printed too.

    bench/report.py RESULTS_DIR DURATION

Switchyard is compared with the best peer of each scenario (the highest requests per
proxy-CPU-second, the lowest p99, the lowest peak RSS, the fewest new upstream connections)
and with each peer. Runs again on an existing results directory without measuring.
"""
import csv
import os
import sys

PEERS = ("haproxy", "nginx", "h2o", "nghttpx")
VARIANTS = ("switchyard+obs", "switchyard+checks", "switchyard+mw")
TITLES = {
    "keepalive": "keep-alive, small", "64k": "keep-alive, 64 KiB", "newconn": "new connection per request",
    "tls": "TLS keep-alive, small", "h2c": "h2c, small", "h2tls": "h2 over TLS, small",
    "h2c-up": "h2c → h2c origin", "h1-h2up": "HTTP/1.1 → h2c origin",
    "middlewares": "keep-alive, route middlewares",
    "compress": "keep-alive, 64 KiB text, gzip",
}


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def ratio(a, b):
    a, b = num(a), num(b)
    return f"{a / b:.2f}×" if a is not None and b else "n/a"


def title(scenario):
    return TITLES.get(scenario, scenario)


def measured(row):
    """A row whose window completed requests (a stalled proxy's row is shown but not compared)."""
    return (num(row["req_per_s"]) or 0) > 0


def best(rows, key, highest):
    """The measured peer row with the best value of key, or None."""
    candidates = [r for r in rows if measured(r) and num(r[key]) is not None]
    if not candidates:
        return None
    return (max if highest else min)(candidates, key=lambda r: num(r[key]))


def load_table(results, lines):
    rows = list(csv.DictReader(open(os.path.join(results, "results.tsv")), delimiter="\t"))
    if not rows:
        return
    lines.append("| scenario | proxy | req/s | p50 ms | p99 ms | proxy CPU s | req per proxy-CPU-s | peak RSS MiB | anon MiB | errors | new upstream conns | per s |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rps, per_cpu = num(r["req_per_s"]), num(r["req_per_cpu_s"])
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            title(r["scenario"]), r["proxy"],
            f"{rps:,.0f}" if rps is not None else r["req_per_s"],
            r["p50_ms"], r["p99_ms"], r["cpu_s"],
            f"{per_cpu:,.0f}" if per_cpu is not None else r["req_per_cpu_s"],
            r["peak_rss_mib"], r.get("anon_mib") or "n/a", r["errors"], r["upstream_conns"], r["upstream_conns_per_s"]))
    stalled = [f"{title(r['scenario'])}: {r['proxy']}" for r in rows if not measured(r)]
    if stalled:
        lines += ["", "No request completed in the window (stalled; not compared below, run it again): "
                  + "; ".join(stalled) + "."]

    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    by = {(r["scenario"], r["proxy"]): r for r in rows}

    against_best = []
    for scenario in scenarios:
        mine = by.get((scenario, "switchyard"))
        peers = [by[(scenario, p)] for p in PEERS if (scenario, p) in by]
        if not mine or not measured(mine) or not peers:
            continue
        fast = best(peers, "req_per_cpu_s", highest=True)
        quick = best(peers, "p99_ms", highest=False)
        small = best(peers, "peak_rss_mib", highest=False)
        private = best(peers, "anon_mib", highest=False) if mine.get("anon_mib") else None
        calm = best(peers, "upstream_conns_per_s", highest=False)
        cell = lambda peer, key: (f"{ratio(mine[key], peer[key])} ({peer['proxy']})" if peer else "n/a")
        against_best.append("| {} | {} | {} | {} | {} | {} / {} ({}) |".format(
            title(scenario), cell(fast, "req_per_cpu_s"), cell(quick, "p99_ms"), cell(small, "peak_rss_mib"), cell(private, "anon_mib"),
            mine["upstream_conns_per_s"], calm["upstream_conns_per_s"] if calm else "n/a", calm["proxy"] if calm else "-"))
    if against_best:
        lines += ["", "Switchyard against the best peer of each scenario (in brackets): req per proxy-CPU-s "
                  "(higher is better; the issue-14 targets are ≥ 1.1×), p99 (lower is better), peak RSS "
                  "(lower is better; target ≤ 1.5×), anonymous memory as the window ends (RssAnon: heap, stacks "
                  "and buffers, without the mapped code the page cache shares), new upstream connections per second "
                  "(Switchyard / the fewest of a peer):", "",
                  "| scenario | req/CPU-s vs best | p99 vs best | peak RSS vs best | anon vs best | new upstream conn/s |",
                  "|---|---:|---:|---:|---:|---:|"] + against_best

    per_peer = []
    for scenario in scenarios:
        mine = by.get((scenario, "switchyard"))
        if not mine:
            continue
        for variant in VARIANTS:
            other = by.get((scenario, variant))
            if other:
                per_peer.append(f"| {title(scenario)} | {variant} vs switchyard | "
                                f"{ratio(other['req_per_cpu_s'], mine['req_per_cpu_s'])} | {ratio(other['p99_ms'], mine['p99_ms'])} |")
        for peer in PEERS:
            theirs = by.get((scenario, peer))
            if theirs and measured(theirs) and measured(mine):
                per_peer.append(f"| {title(scenario)} | {peer} | "
                                f"{ratio(mine['req_per_cpu_s'], theirs['req_per_cpu_s'])} | {ratio(mine['p99_ms'], theirs['p99_ms'])} |")
    if per_peer:
        lines += ["", "Switchyard relative to each peer (req per proxy-CPU-s: higher is better; p99: lower is better):", "",
                  "| scenario | peer | req/CPU-s ratio | p99 ratio |", "|---|---|---:|---:|"] + per_peer
    elif not against_best:
        lines += ["", "(No Switchyard rows: no ratios. Run without --peers-only once .build/release/switchyard exists.)"]


def idle_table(results, lines):
    path = os.path.join(results, "idlemem.tsv")
    if not os.path.exists(path):
        return
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        return
    for r in rows:
        ok = num(r["idle_ok"]) or 0
        before, idle, after = num(r["rss_before_kib"]), num(r["rss_idle_kib"]), num(r["rss_after_close_kib"])
        r["per_conn"] = (idle - before) / ok if ok else None
        r["after_growth"] = (after - before) / before if before else None
        anon_before, anon_after = num(r.get("anon_before_kib")), num(r.get("anon_after_close_kib"))
        r["anon_change"] = (f"{anon_before / 1024:.1f} → {anon_after / 1024:.1f}"
                            if anon_before is not None and anon_after is not None else "n/a")
    lines += ["", f"Idle keep-alive connections (one request each, then idle; RSS is the current resident set "
              f"of the proxy's processes; \"after close\" is {rows[0]['after_close_s']} s after the last client closed; "
              "issue-14 targets: ≤ 2 KiB per idle connection, back within 10 % of the base after the close):", "",
              "| proxy | idle conns | failed | closed by proxy | RSS before MiB | RSS idle MiB | KiB per idle conn | RSS after close MiB | after close vs before | anon MiB before → after close |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| {} | {} | {} | {} | {:.1f} | {:.1f} | {} | {:.1f} | {} | {} |".format(
            r["proxy"], r["idle_ok"], r["failed"], r["closed_while_idle"],
            num(r["rss_before_kib"]) / 1024, num(r["rss_idle_kib"]) / 1024,
            f"{r['per_conn']:.2f}" if r["per_conn"] is not None else "n/a",
            num(r["rss_after_close_kib"]) / 1024,
            f"{r['after_growth'] * 100:+.0f} %" if r["after_growth"] is not None else "n/a", r["anon_change"]))
    mine = next((r for r in rows if r["proxy"] == "switchyard"), None)
    peers = [r for r in rows if r["proxy"] in PEERS and r["per_conn"] is not None]
    if mine and mine["per_conn"] is not None and peers:
        lean = min(peers, key=lambda r: r["per_conn"])
        lines += ["", "Switchyard KiB per idle connection against the leanest peer: "
                  + (f"{mine['per_conn'] / lean['per_conn']:.1f}× ({lean['proxy']})" if lean["per_conn"] > 0 else f"n/a ({lean['proxy']} grew by nothing)")]


def main():
    results, duration = sys.argv[1], sys.argv[2]
    lines = [open(os.path.join(results, "header.md")).read().rstrip(), ""]
    load_table(results, lines)
    idle_table(results, lines)
    text = "\n".join(lines) + "\n"
    open(os.path.join(results, "results.md"), "w").write(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
