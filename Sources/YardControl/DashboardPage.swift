// MARK: - The dashboard

/// The live dashboard served at `GET /` and `GET /dashboard` on the admin listener.
///
/// One self-contained page: HTML, CSS and a small vanilla script, no build step and no
/// external resources, so it works on an air-gapped admin port. The script polls
/// `GET /status` (same origin) every 2 s. The counters there are cumulative; the page
/// differences successive polls into req/s and 5xx % per track and keeps the last five
/// minutes in memory for the charts, so a reload starts the charts afresh.
///
/// Stable hooks for tests and operators' scripts: `#service-NAME` per service card,
/// `data-track` / `.track-name` on every track element, `data-endpoint` on endpoint rows,
/// `#stale` when a poll fails.
///
/// A raw string literal, so the script's backslashes and `${...}` stay as written.
enum DashboardPage {
    static let html: String = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchyard</title>
<style>
:root {
  --bg: #f4f5f7; --card: #ffffff; --ink: #1d2330; --muted: #6b7280; --faint: #9aa1ad;
  --line: #e3e6eb; --line-soft: #eef0f3;
  --ok: #15803d; --ok-bg: #dcfce7; --bad: #b91c1c; --bad-bg: #fee2e2;
  --warn: #a16207; --warn-bg: #fef3c7; --idle: #475569; --idle-bg: #e2e8f0;
  --mono: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--ink);
  font: 13px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
header { display: flex; align-items: center; gap: 18px; padding: 10px 24px;
  background: #1d2330; color: #e5e7eb; }
header h1 { margin: 0; font-size: 17px; font-weight: 650; letter-spacing: .02em; color: #fff; }
header h1 .mark { display: inline-block; width: 10px; height: 10px; margin-right: 8px; border-radius: 2px;
  background: linear-gradient(135deg, #3b82f6 50%, #22c55e 50%); vertical-align: 0; }
.meta { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12.5px; color: #aeb4bf; }
.meta b { color: #f3f4f6; font-weight: 600; font-variant-numeric: tabular-nums; }
.spacer { flex: 1; }
#stale { display: none; padding: 3px 10px; border-radius: 4px; background: #fbbf24; color: #1d2330;
  font-weight: 650; font-size: 12px; }
#stale.on { display: inline-block; }
.live { font-size: 12px; color: #aeb4bf; }
.live::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%;
  background: #22c55e; margin-right: 6px; vertical-align: 1px; }
body.is-stale .live::before { background: #f59e0b; }
main { max-width: 1260px; margin: 0 auto; padding: 14px 24px 24px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  margin-bottom: 14px; box-shadow: 0 1px 2px rgba(16, 24, 40, .04); }
.card h2 { margin: 0; font-size: 16px; font-weight: 650; }
.card h3 { margin: 0 0 8px; font-size: 11.5px; font-weight: 650; color: var(--muted);
  text-transform: uppercase; letter-spacing: .06em; }
.empty { color: var(--muted); padding: 18px 0; text-align: center; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11.5px; font-weight: 600;
  background: var(--idle-bg); color: var(--idle); white-space: nowrap; }
.pill.ok { background: var(--ok-bg); color: var(--ok); }
.pill.bad { background: var(--bad-bg); color: var(--bad); }
.pill.warn { background: var(--warn-bg); color: var(--warn); }
.pill.plain { background: transparent; border: 1px solid var(--line); color: var(--muted); font-weight: 500; }
.dot { display: inline-block; width: 8px; height: 8px; border-radius: 2px; margin-right: 6px; vertical-align: 0; }
.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.mono { font-family: var(--mono); font-size: 12px; }

/* Service card */
.svc-head { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin-bottom: 10px; }
.svc-head .where { color: var(--muted); font-size: 12px; }
.split { display: flex; height: 22px; border-radius: 5px; overflow: hidden; background: var(--line-soft);
  border: 1px solid var(--line); }
.split .seg { display: flex; align-items: center; justify-content: center; min-width: 0; overflow: hidden;
  color: #fff; font-size: 11.5px; font-weight: 650; white-space: nowrap; transition: width .4s ease; }
.split-legend { display: flex; gap: 16px; margin: 5px 0 12px; font-size: 12px; color: var(--muted); }
.split-legend .track-name { color: var(--ink); font-weight: 600; }
.svc-body { display: grid; grid-template-columns: 300px 1fr; gap: 16px; align-items: start; }
.tiles { display: grid; gap: 8px; }
.tile { border: 1px solid var(--line); border-left: 4px solid var(--faint); border-radius: 6px; padding: 7px 10px; }
.tile.idle { opacity: .72; }
.tile-top { display: flex; align-items: center; gap: 8px; }
.tile-top .track-name { font-weight: 650; font-size: 13.5px; }
.tile-top .share { margin-left: auto; color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.tile-stats { display: flex; gap: 18px; margin-top: 3px; }
.stat .v { font-size: 19px; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.2; }
.stat .v.bad { color: var(--bad); }
.stat .k { font-size: 11px; color: var(--muted); }
.chart-box { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px 4px; min-width: 0; }
.chart-box .legend { display: flex; gap: 14px; font-size: 11.5px; color: var(--muted); margin: 0 0 2px 2px; }
.chart-box .legend .sw { display: inline-block; width: 14px; height: 3px; border-radius: 2px; margin-right: 5px;
  vertical-align: 3px; }
.chart svg { display: block; width: 100%; }
.chart text { font: 10.5px system-ui, sans-serif; fill: var(--faint); }
.chart .note { font-size: 12px; fill: var(--muted); }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 11px; font-weight: 650; color: var(--muted); text-transform: uppercase;
  letter-spacing: .05em; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th.num { text-align: right; }
td { padding: 5px 8px; border-bottom: 1px solid var(--line-soft); vertical-align: middle; }
tr:last-child td { border-bottom: none; }
tr.out td { color: var(--muted); }
.endpoints { margin-top: 12px; }

/* Bottom row */
.row { display: grid; grid-template-columns: 1fr 1.25fr; gap: 14px; }
.row .card { margin-bottom: 0; }
.kv td { padding: 5px 8px; }
.kv td:first-child { width: 1%; white-space: nowrap; }
.err-text { color: var(--bad); font-size: 12px; }
.changes { list-style: none; margin: 0; padding: 0; max-height: 190px; overflow: auto; }
.changes li { display: grid; grid-template-columns: 64px 84px 1fr; gap: 8px; padding: 4px 0;
  border-bottom: 1px solid var(--line-soft); }
.changes li:last-child { border-bottom: none; }
.changes .t { font-family: var(--mono); font-size: 12px; }
.changes .ago { color: var(--faint); font-size: 12px; text-align: right; }
.changes .msg { overflow-wrap: anywhere; }
footer { max-width: 1260px; margin: 0 auto; padding: 0 24px 20px; color: var(--faint); font-size: 11.5px; }
footer a { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1><span class="mark"></span>Switchyard</h1>
  <div class="meta">
    <span>version <b id="version">–</b></span>
    <span>uptime <b id="uptime">–</b></span>
    <span>routing table <b id="table-version">–</b></span>
    <span>refreshed <b id="refreshed">never</b></span>
  </div>
  <span class="spacer"></span>
  <span id="stale" role="status"></span>
  <span class="live">live · every 2 s</span>
</header>
<main>
  <section id="services"><div class="card empty">Loading <span class="mono">/status</span>…</div></section>
  <div class="row">
    <section class="card" id="health">
      <h3>Discovery and state</h3>
      <div id="providers"></div>
    </section>
    <section class="card">
      <h3>Recent changes <span style="text-transform:none;letter-spacing:0;font-weight:400">(latest first)</span></h3>
      <ul class="changes" id="changes"><li class="empty">No changes yet.</li></ul>
    </section>
  </div>
</main>
<footer>Polls <a href="/status">/status</a> every 2 s; rates are computed in this page from the cumulative
counters and kept for 5 minutes. Also: <a href="/metrics">/metrics</a> (Prometheus).</footer>
<script>
"use strict";
const POLL_MS = 2000;
const WINDOW_S = 300;

// Per service: the previous poll's counters and the rate samples of the last WINDOW_S.
const memory = new Map();
let lastSuccess = null;   // Date of the last good poll
let lastDoc = null;       // the last /status answer, to redraw the charts on resize

// MARK: Formatting

const esc = (value) => String(value ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const int = (n) => Number(n || 0).toLocaleString("en-US");
function rate(n) {
  if (n == null || !isFinite(n)) return "–";
  if (n >= 100) return Math.round(n).toLocaleString("en-US");
  if (n >= 1) return n.toFixed(1);
  return n === 0 ? "0" : n.toFixed(2);
}
function percent(p) {
  if (p == null || !isFinite(p)) return "–";
  if (p === 0) return "0 %";
  return (p < 0.1 ? "<0.1" : p < 10 ? p.toFixed(1) : Math.round(p)) + " %";
}
// Axis labels stay narrow: 20k, 1.5M.
function axis(n) {
  if (n >= 1e6) return +(n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return +(n / 1e3).toFixed(1) + "k";
  return rate(n);
}
const share = (p) => (Math.round(p * 10) / 10) + "%";
function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}
// Times arrive as RFC 3339 strings (docs/api.md); the page computes in Unix seconds.
const unix = (text) => text == null ? null : Date.parse(text) / 1000;
const clock = (unix) => new Date(unix * 1000).toLocaleTimeString("en-GB", { hour12: false });
const ago = (unix, now) => unix == null ? "never" : duration(now - unix) + " ago";

// Blue is blue and green is green; other track names get a stable colour from a palette.
const NAMED = { blue: "#2563eb", green: "#16a34a", red: "#dc2626", yellow: "#ca8a04", orange: "#ea580c",
  purple: "#7c3aed", canary: "#d97706", stable: "#0f766e", default: "#475569" };
const PALETTE = ["#0891b2", "#db2777", "#9333ea", "#65a30d", "#c2410c", "#0d9488"];
function colour(track) {
  const key = String(track).toLowerCase();
  if (NAMED[key]) return NAMED[key];
  let h = 0;
  for (const c of key) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

// MARK: Rates

// Differences the cumulative counters against the previous poll. A counter that went
// down (restart, endpoint removed) restarts that track's rate instead of going negative.
function ingest(doc) {
  const t = unix(doc.generated_at);
  const seen = new Set();
  for (const svc of doc.services || []) {
    seen.add(svc.name);
    let m = memory.get(svc.name);
    if (!m) { m = { prev: new Map(), samples: [], current: new Map(), endpoints: new Map() }; memory.set(svc.name, m); }
    const sample = { t, tracks: {} };
    let any = false;
    for (const track of svc.tracks || []) {
      const prev = m.prev.get(track.name);
      let r = null;
      if (prev && t > prev.t && track.requests >= prev.req && track.errors_5xx >= prev.err) {
        const dt = t - prev.t;
        r = { rps: (track.requests - prev.req) / dt, eps: (track.errors_5xx - prev.err) / dt };
        sample.tracks[track.name] = r;
        any = true;
      }
      m.current.set(track.name, r);
      m.prev.set(track.name, { t, req: track.requests, err: track.errors_5xx });
      for (const ep of track.endpoints || []) {
        const before = m.endpoints.get(ep.id);
        const rps = before && t > before.t && ep.requests >= before.req ? (ep.requests - before.req) / (t - before.t) : null;
        m.endpoints.set(ep.id, { t, req: ep.requests, rps });
      }
    }
    if (any) m.samples.push(sample);
    while (m.samples.length && m.samples[0].t < t - WINDOW_S - 5) m.samples.shift();
  }
  for (const name of [...memory.keys()]) if (!seen.has(name)) memory.delete(name);
}

// MARK: Rendering

function render(doc) {
  document.getElementById("version").textContent = doc.version;
  document.getElementById("uptime").textContent = duration(doc.uptime_seconds);
  document.getElementById("table-version").textContent = "v" + doc.table_version;
  document.getElementById("refreshed").textContent = clock(unix(doc.generated_at));

  const services = doc.services || [];
  const host = document.getElementById("services");
  host.innerHTML = services.length ? services.map((s) => serviceCard(s, unix(doc.generated_at))).join("")
    : `<div class="card empty">No services in the routing table yet.</div>`;
  for (const svc of services) {
    const box = document.getElementById(`chart-${cssId(svc.name)}`);
    if (box) box.innerHTML = chart(svc, memory.get(svc.name), unix(doc.generated_at), box.clientWidth || 800);
  }
  renderHealth(doc);
  renderChanges(doc);
}

const cssId = (name) => String(name).replace(/[^A-Za-z0-9_-]/g, "_");

function serviceCard(svc, now) {
  const m = memory.get(svc.name);
  const tracks = svc.tracks || [];
  const pills = [
    `<span class="pill plain" title="balancer">${esc(svc.balancer)}</span>`,
    svc.active_track
      ? `<span class="pill" style="background:${colour(svc.active_track)}1f;color:${colour(svc.active_track)}">active: <span class="active-track">${esc(svc.active_track)}</span></span>`
      : `<span class="pill">all tracks active</span>`,
    svc.canary ? `<span class="pill warn canary" data-track="${esc(svc.canary.track)}">canary: ${esc(svc.canary.track)} ${share(svc.canary.percent)}</span>` : "",
    svc.panic ? `<span class="pill bad" title="no healthy endpoint: serving all of them">PANIC</span>` : "",
  ].join("");
  const endpoints = tracks.flatMap((t) => (t.endpoints || []).map((e) => ({ ...e, track: t.name })));
  const serving = endpoints.filter((e) => e.health === "healthy" && !e.ejected && !e.draining).length;
  return `<article class="card service" id="service-${esc(cssId(svc.name))}" data-service="${esc(svc.name)}">
    <div class="svc-head"><h2 class="service-name">${esc(svc.name)}</h2>${pills}
      <span class="spacer"></span><span class="where">${serving} of ${endpoints.length} endpoints serving</span></div>
    ${splitBar(tracks)}
    <div class="svc-body">
      <div class="tiles">${tracks.map((t) => tile(t, m)).join("")}</div>
      <div class="chart-box">
        <div class="legend">${tracks.map((t) => `<span data-track="${esc(t.name)}"><span class="sw" style="background:${colour(t.name)}"></span>${esc(t.name)} req/s</span>`).join("")}
          <span><span class="sw" style="background:#dc2626"></span>5xx %</span><span class="spacer"></span><span class="window">last ${spanLabel(chartSpan(m, now))}</span></div>
        <div class="chart" id="chart-${esc(cssId(svc.name))}"></div>
      </div>
    </div>
    <table class="endpoints"><thead><tr>
      <th>Endpoint</th><th>Track</th><th>Health</th><th>Flags</th><th class="num" title="configured weight / effective weight (100 per unit at full strength)">Weight / eff.</th>
      <th class="num">req/s</th><th class="num">Requests</th><th class="num">5xx</th><th class="num">Active</th>
    </tr></thead><tbody>${endpoints.map((e) => endpointRow(e, m)).join("") || `<tr><td colspan="9" class="empty">No endpoints.</td></tr>`}</tbody></table>
  </article>`;
}

function splitBar(tracks) {
  const segs = tracks.filter((t) => t.share_percent > 0).map((t) =>
    `<div class="seg" data-track="${esc(t.name)}" style="width:${t.share_percent}%;background:${colour(t.name)}" title="${esc(t.name)} ${share(t.share_percent)}">${t.share_percent >= 8 ? `${esc(t.name)} ${share(t.share_percent)}` : ""}</div>`).join("");
  const legend = tracks.map((t) =>
    `<span class="split-label" data-track="${esc(t.name)}"><span class="dot" style="background:${colour(t.name)}"></span><span class="track-name">${esc(t.name)}</span> ${share(t.share_percent)}</span>`).join("");
  return `<div class="split" title="configured split of new requests">${segs}</div><div class="split-legend">${legend}</div>`;
}

function tile(track, m) {
  const r = m && m.current.get(track.name);
  const err = r && r.rps > 0 ? 100 * r.eps / r.rps : (r ? 0 : null);
  const tag = track.active ? `<span class="pill ok">active</span>` : track.share_percent > 0 ? `<span class="pill warn">canary</span>` : `<span class="pill">idle</span>`;
  return `<div class="tile track${track.share_percent > 0 || (r && r.rps > 0) ? "" : " idle"}" data-track="${esc(track.name)}" style="border-left-color:${colour(track.name)}">
    <div class="tile-top"><span class="track-name">${esc(track.name)}</span>${tag}<span class="share">${share(track.share_percent)} of new requests</span></div>
    <div class="tile-stats">
      <div class="stat"><div class="v req-rate">${r ? rate(r.rps) : "–"}</div><div class="k">req/s</div></div>
      <div class="stat"><div class="v err-rate${err > 0 ? " bad" : ""}">${percent(err)}</div><div class="k">5xx</div></div>
      <div class="stat"><div class="v requests" style="font-size:14px;padding-top:4px">${int(track.requests)}</div><div class="k">requests · ${int(track.errors_5xx)} 5xx</div></div>
    </div></div>`;
}

function healthBadge(e) {
  const cls = e.health === "healthy" ? "ok" : e.health === "unhealthy" ? "bad" : e.health === "unknown" ? "" : "warn";
  const label = e.health === "unknown" ? "checking" : e.health;
  return `<span class="pill health ${cls}" data-health="${esc(e.health)}">${esc(label)}</span>`;
}

function endpointRow(e, m) {
  // Stored overrides (switchyard endpoint maint|drain|weight) name themselves.
  const o = overrides.get(e.id);
  const held = o && o.state !== "ready";
  const flags = [e.ejected ? `<span class="pill bad flag-ejected">ejected</span>` : "",
    held ? `<span class="pill warn flag-${esc(o.state)}" title="stored on every replica; undo with: switchyard endpoint ready">${esc(o.state)}</span>` : "",
    e.draining && !held ? `<span class="pill warn flag-draining">draining</span>` : "",
    o && o.override_weight != null ? `<span class="pill plain flag-weight" title="stored runtime weight; discovery says ${esc(o.discovered_weight)}">weight ${int(o.override_weight)}</span>` : ""].filter(Boolean).join(" ");
  const out = e.ejected || e.draining || e.health === "unhealthy";
  const r = m && m.endpoints.get(e.id);
  return `<tr class="endpoint${out ? " out" : ""}" data-endpoint="${esc(e.id)}" data-track="${esc(e.track)}">
    <td class="mono endpoint-id">${esc(e.id)}</td>
    <td><span class="dot" style="background:${colour(e.track)}"></span><span class="track-name">${esc(e.track)}</span></td>
    <td>${healthBadge(e)}</td><td>${flags || `<span style="color:var(--faint)">–</span>`}</td>
    <td class="num">${int(e.weight)} / ${int(e.effective_weight)}</td>
    <td class="num">${r && r.rps != null ? rate(r.rps) : "–"}</td>
    <td class="num requests">${int(e.requests)}</td>
    <td class="num"${e.errors_5xx > 0 ? ` style="color:var(--bad)"` : ""}>${int(e.errors_5xx)}</td>
    <td class="num">${int(e.active_requests)}</td></tr>`;
}

// A "nice" axis maximum: 1, 2, 5 times a power of ten.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

// The chart's time span: the history this page has, rounded up to a half-minute (whole
// minutes past 2.5), from one minute to WINDOW_S, so a freshly opened page is not mostly
// empty. Always a multiple of the tick step in chart().
function chartSpan(m, now) {
  const held = m && m.samples.length ? now - m.samples[0].t : 0;
  const unit = held > 150 ? 60 : 30;
  return Math.min(WINDOW_S, Math.max(60, Math.ceil(held / unit) * unit));
}
const spanLabel = (span) => span % 60 ? `${span} s` : `${span / 60} min`;

// req/s per track as lines over the chart's span, and the service's 5xx % as bars in a
// strip below. A gap longer than five polls breaks the line rather than bridging it.
function chart(svc, m, now, width) {
  const W = Math.max(320, Math.floor(width)), H = 176, left = 38, right = 8, top = 8, bottom = 18;
  const stripH = 20, gap = 8, plotH = H - top - bottom - stripH - gap;
  const span = chartSpan(m, now);
  const x = (t) => left + (W - left - right) * (1 - (now - t) / span);
  const samples = (m ? m.samples : []).filter((s) => s.t >= now - span);
  let max = 0;
  for (const s of samples) for (const k in s.tracks) max = Math.max(max, s.tracks[k].rps);
  const ymax = niceCeil(max);
  const y = (v) => top + plotH * (1 - v / ymax);
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    const yy = y(ymax * f).toFixed(1);
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${yy}" y2="${yy}" stroke="#eef0f3"/>`);
    parts.push(`<text x="${left - 5}" y="${(+yy + 3.5).toFixed(1)}" text-anchor="end">${axis(ymax * f)}</text>`);
  }
  const stripTop = top + plotH + gap;
  const step = span <= 60 ? 15 : span <= 150 ? 30 : 60;
  for (let back = span; back >= 0; back -= step) {
    const xx = x(now - back).toFixed(1);
    const label = back === 0 ? "now" : back % 60 ? `−${back} s` : `−${back / 60} min`;
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${top}" y2="${stripTop + stripH}" stroke="#f3f4f6"/>`);
    parts.push(`<text x="${xx}" y="${H - 4}" text-anchor="${back === span ? "start" : back === 0 ? "end" : "middle"}">${label}</text>`);
  }
  // The error strip: the service's 5xx share of requests per sample.
  let emax = 0;
  const errs = samples.map((s) => {
    let req = 0, err = 0;
    for (const k in s.tracks) { req += s.tracks[k].rps; err += s.tracks[k].eps; }
    const p = req > 0 ? 100 * err / req : 0;
    emax = Math.max(emax, p);
    return { t: s.t, p };
  });
  const escale = Math.max(5, niceCeil(emax));
  parts.push(`<rect x="${left}" y="${stripTop}" width="${W - left - right}" height="${stripH}" fill="#fafafa" stroke="#eef0f3"/>`);
  parts.push(`<text x="${left - 5}" y="${stripTop + 8}" text-anchor="end">${escale}%</text>`);
  parts.push(`<text x="${left + 4}" y="${stripTop + stripH - 5}">5xx share</text>`);
  const barW = Math.max(1.5, (W - left - right) * (POLL_MS / 1000) / span - 0.5);
  for (const e of errs) if (e.p > 0) {
    const h = Math.max(1.5, stripH * Math.min(1, e.p / escale));
    parts.push(`<rect x="${(x(e.t) - barW).toFixed(1)}" y="${(stripTop + stripH - h).toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="#dc2626" opacity=".85"><title>${percent(e.p)} 5xx</title></rect>`);
  }
  // One line (and a faint area) per track.
  for (const track of svc.tracks || []) {
    const runs = [];
    let run = [], lastT = null;
    for (const s of samples) {
      const r = s.tracks[track.name];
      if (!r || (lastT != null && s.t - lastT > 5 * POLL_MS / 1000)) { if (run.length) runs.push(run); run = []; }
      if (r) { run.push([x(s.t), y(r.rps)]); lastT = s.t; }
    }
    if (run.length) runs.push(run);
    const c = colour(track.name);
    for (const pts of runs) {
      const d = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
      if (pts.length > 1) {
        parts.push(`<polygon points="${pts[0][0].toFixed(1)},${y(0).toFixed(1)} ${d} ${pts[pts.length - 1][0].toFixed(1)},${y(0).toFixed(1)}" fill="${c}" opacity=".07"/>`);
        parts.push(`<polyline class="series" data-track="${esc(track.name)}" points="${d}" fill="none" stroke="${c}" stroke-width="2" stroke-linejoin="round"/>`);
      } else {
        parts.push(`<circle data-track="${esc(track.name)}" cx="${pts[0][0].toFixed(1)}" cy="${pts[0][1].toFixed(1)}" r="2.5" fill="${c}"/>`);
      }
    }
  }
  if (samples.length < 2) {
    parts.push(`<text class="note" x="${(left + W - right) / 2}" y="${top + plotH / 2}" text-anchor="middle">collecting — rates appear after two polls</text>`);
  }
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="requests per second per track, last ${spanLabel(span)}">${parts.join("")}</svg>`;
}

function renderHealth(doc) {
  const now = unix(doc.generated_at);
  const providers = doc.providers || [];
  const s = doc.state_store;
  const store = s ? `<tr id="state-store"><td><b>state store</b></td>
      <td><span class="pill ${s.reachable ? "ok" : "bad"}">${s.reachable ? "healthy" : "failing"}</span></td>
      <td>${esc(s.kind)}${s.error ? `<div class="err-text">${esc(s.error)}</div>` : ""}</td><td></td></tr>` : "";
  document.getElementById("providers").innerHTML = `<table class="kv"><thead><tr><th>Component</th><th>Status</th><th>Source</th><th>Last update</th></tr></thead><tbody>${
    providers.map((p) => `<tr class="provider" data-provider="${esc(p.name)}"><td><b>${esc(p.name)}</b> <span style="color:var(--faint)">provider</span></td>
      <td><span class="pill ${p.healthy ? "ok" : "bad"}">${p.healthy ? "healthy" : "failing"}</span>${!p.healthy && p.stale_since ? ` <span class="stale" style="color:var(--faint)">stale since ${ago(unix(p.stale_since), now)}</span>` : ""}</td>
      <td class="mono" style="word-break:break-all">${esc(p.source)}${p.error && !p.healthy ? `<div class="err-text">${esc(p.error)}</div>` : ""}</td>
      <td style="white-space:nowrap">${ago(unix(p.last_update_at), now)}${p.updates != null ? ` <span style="color:var(--faint)">· ${int(p.updates)} updates</span>` : ""}</td></tr>`).join("")
    || `<tr><td colspan="4" class="empty">No providers.</td></tr>`}${store}</tbody></table>`;
}

function renderChanges(doc) {
  const changes = [...(doc.recent_changes || [])].sort((a, b) => unix(b.changed_at) - unix(a.changed_at));
  document.getElementById("changes").innerHTML = changes.length ? changes.map((c) =>
    `<li class="change"><span class="t">${clock(unix(c.changed_at))}</span><span class="ago">${duration(unix(doc.generated_at) - unix(c.changed_at))} ago</span><span class="msg">${esc(c.message)}</span></li>`).join("")
    : `<li class="empty">No changes yet.</li>`;
}

// MARK: Polling

function setStale(error) {
  const badge = document.getElementById("stale");
  document.body.classList.toggle("is-stale", !!error);
  badge.classList.toggle("on", !!error);
  if (error) {
    const since = lastSuccess ? ` — last good data ${duration((Date.now() - lastSuccess) / 1000)} ago` : "";
    badge.textContent = `STALE: ${error.message || error}${since}`;
  } else {
    badge.textContent = "";
  }
}

// Endpoint overrides by endpoint id (service/address:port), from /endpoints.
let overrides = new Map();
async function pollOverrides() {
  try {
    const response = await fetch("/endpoints", { cache: "no-store" });
    if (!response.ok) return;
    const next = new Map();
    for (const s of (await response.json()).services || []) {
      for (const e of s.endpoints || []) {
        if (e.state !== "ready" || e.override_weight != null) next.set(`${s.service}/${e.endpoint}`, e);
      }
    }
    overrides = next;
  } catch (_) {
    // /status decides whether the page is stale; overrides stay as last read.
  }
}

async function poll() {
  try {
    const response = await fetch("/status", { cache: "no-store" });
    if (!response.ok) throw new Error(`/status answered ${response.status}`);
    const doc = await response.json();
    await pollOverrides();
    ingest(doc);
    render(doc);
    lastDoc = doc;
    lastSuccess = Date.now();
    setStale(null);
  } catch (error) {
    setStale(error instanceof TypeError ? new Error("cannot reach /status") : error);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => { if (lastDoc) render(lastDoc); }, 100);
});

poll();
</script>
</body>
</html>
"""#
}
