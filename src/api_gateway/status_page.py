# ruff: noqa: E501
"""The admin listener's live status page (``GET /``): one self-contained HTML document.

No data in the HTML: its script fetches ``/health`` every ``REFRESH_MS`` and draws routes,
services (instances, breakers), the rate-limit store and the workers. Inline CSS and JS, no
external asset: it works offline. When the admin API wants a token the page asks once and keeps
it in the tab's sessionStorage. Figures carry ``data-*`` attributes and stable ids for tests.
"""

from __future__ import annotations

from typing import Final

REFRESH_MS: Final = 2500

PAGE: Final = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>api-gateway status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{opacity:.8}
main{display:grid;grid-template-columns:1fr 1fr;gap:16px;padding:16px 20px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px}
section.wide{grid-column:1/3}h2{font-size:15px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;
border-bottom:1px solid #eef0f4;white-space:nowrap}th{font-weight:600;color:#556}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#11703a}.bad{color:#b3261e;font-weight:600}.warn{color:#a15c00;font-weight:600}
#error{color:#b3261e;padding:0 20px}
</style></head><body>
<header><h1>api-gateway</h1><span id="version"></span><span id="uptime"></span>
<span id="workers-count"></span><span id="generation"></span><span id="updated"></span></header>
<p id="error"></p>
<main>
<section class="wide"><h2>Routes (last minute)</h2><table id="routes"><thead><tr><th>Route</th>
<th>Requests/s</th><th>p99 (ms)</th><th>5xx ratio</th><th>Requests</th></tr></thead>
<tbody></tbody></table></section>
<section class="wide"><h2>Services</h2><table id="services"><thead><tr><th>Service</th>
<th>Breaker</th><th>Instance</th><th>Health</th><th>Ejection</th><th>In flight</th></tr></thead>
<tbody></tbody></table></section>
<section><h2>Rate-limit store</h2><table id="store"><tbody></tbody></table></section>
<section><h2>Workers</h2><table id="workers"><thead><tr><th>PID</th><th>RSS (MiB)</th>
<th>Uptime (s)</th><th>In flight</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
"use strict";
const REFRESH = __REFRESH__;
function cell(row, text, cls, attrs) {
  const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls;
  for (const [k, v] of Object.entries(attrs || {})) td.setAttribute(k, v);
  row.appendChild(td); return td;
}
function body(id) { const t = document.querySelector("#" + id + " tbody"); t.textContent = ""; return t; }
function fmt(x, digits) { return x === null || x === undefined ? "-" : Number(x).toFixed(digits); }
function draw(h) {
  document.getElementById("version").textContent = "version " + h.version;
  document.getElementById("uptime").textContent = "up " + Math.round(h.uptime) + " s";
  const wc = document.getElementById("workers-count");
  wc.textContent = h.worker_count + " worker(s)"; wc.dataset.count = h.worker_count;
  const g = h.config || {};
  document.getElementById("generation").textContent = "config generation " + (g.generation || 0);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  let t = body("routes");
  for (const [route, f] of Object.entries(h.routes || {})) {
    const r = t.insertRow(); r.dataset.route = route; r.id = "route-" + route;
    cell(r, route);
    cell(r, fmt(f.rate, 2), "n", {"data-field": "rate", "data-value": f.rate});
    cell(r, fmt(f.p99_ms, 1), "n", {"data-field": "p99_ms", "data-value": f.p99_ms === null ? "" : f.p99_ms});
    cell(r, fmt(f.error_ratio * 100, 1) + " %", f.error_ratio > 0.01 ? "n bad" : "n",
         {"data-field": "error_ratio", "data-value": f.error_ratio});
    cell(r, String(f.requests), "n", {"data-field": "requests", "data-value": f.requests});
  }
  t = body("services");
  for (const [name, s] of Object.entries(h.services || {})) {
    const instances = s.instances.length ? s.instances : [null];
    instances.forEach((i, n) => {
      const r = t.insertRow(); r.dataset.service = name;
      cell(r, n ? "" : name);
      const b = s.breaker.state;
      cell(r, n ? "" : b, b === "CLOSED" ? "ok" : "bad", n ? {} : {"data-breaker": b});
      if (!i) { cell(r, "-"); return; }
      r.dataset.instance = i.instance;
      cell(r, i.instance);
      cell(r, i.healthy ? "healthy" : "unhealthy", i.healthy ? "ok" : "bad", {"data-healthy": i.healthy});
      const e = i.operator_ejected ? "ejected (operator)" : i.ejected ? "ejected" : "-";
      cell(r, e, i.ejected ? "warn" : "", {"data-ejected": i.ejected});
      cell(r, String(i.in_flight), "n");
    });
  }
  t = body("store");
  const st = h.store || {};
  for (const [k, v] of Object.entries(st)) {
    const r = t.insertRow(); cell(r, k);
    cell(r, String(v), k === "degraded" && v ? "bad" : "", {"data-store": k});
  }
  t = body("workers");
  for (const w of h.workers || []) {
    const r = t.insertRow(); r.dataset.pid = w.pid;
    cell(r, String(w.pid)); cell(r, fmt(w.rss / 1048576, 1), "n");
    cell(r, fmt(w.uptime, 0), "n"); cell(r, String(w.in_flight), "n");
  }
  document.body.dataset.loaded = "true";
}
async function refresh() {
  const headers = {};
  let token = sessionStorage.getItem("admin-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  try {
    const answer = await fetch("/health", {headers: headers, cache: "no-store"});
    if (answer.status === 401) {
      token = window.prompt("Admin token");
      if (token) { sessionStorage.setItem("admin-token", token); return refresh(); }
      document.getElementById("error").textContent = "the admin API needs a token";
      return;
    }
    draw(await answer.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach the gateway: " + e;
  }
}
refresh(); setInterval(refresh, REFRESH);
</script></body></html>
""".replace(b"__REFRESH__", str(REFRESH_MS).encode())
