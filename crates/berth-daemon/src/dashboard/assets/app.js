// Berth's dashboard: reads the admin listener's read-only JSON (/api/status, /api/deploys,
// /api/releases, /api/metrics, /api/alarms when the daemon has it, /api/logs with the admin
// token, /api/session to know whether it has it) and draws it. Every value
// from the server goes into the page as text (textContent), never as markup.
"use strict";

const RANGES = { "15m": [900, 10], "1h": [3600, 10], "6h": [21600, 60], "24h": [86400, 300], "7d": [604800, 1800] };
const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#953800"];
let timer = null;
let charts = [];
let features = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
  if (response.status === 401) {
    location.href = "/dashboard/login";
    throw new Error("not logged in");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || ("HTTP " + response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}

function ago(unix) {
  if (!unix) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function stateClass(state) {
  if (["healthy", "running", "succeeded", "done", "ok", "OK"].includes(state)) return "ok";
  if (["starting", "restarting", "skipped", "INSUFFICIENT_DATA"].includes(state)) return "warn";
  return "bad";
}

function badge(text, cls) {
  return el("span", { class: "badge " + (cls || stateClass(text)), text });
}

// One error line per view (a failing refresh replaces it rather than adding another).
function showError(container, error) {
  let box = container.querySelector(":scope > .error.refresh");
  if (!box) {
    box = el("div", { class: "error refresh" });
    container.prepend(box);
  }
  box.textContent = String(error.message || error);
}

function clearError(container) {
  const box = container.querySelector(":scope > .error.refresh");
  if (box) box.remove();
}

function stamp() {
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const service = path.match(/^\/service\/([^/]+)$/);
  if (timer) clearInterval(timer);
  timer = null;
  charts.forEach((c) => c.plot && c.plot.destroy());
  charts = [];
  const main = document.getElementById("main");
  main.replaceChildren();
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren();
  if (service) {
    const name = decodeURIComponent(service[1]);
    const range = RANGES[params.get("range")] ? params.get("range") : "1h";
    crumbs.append(el("a", { href: "#/", text: "overview" }), " / ", name);
    servicePage(main, name, range);
  } else {
    overview(main);
  }
}

// ---- the overview ---------------------------------------------------------------------------

function deployBox(d) {
  const done = d.steps.filter((s) => s.state !== "running").length;
  const current = d.steps.find((s) => s.state === "running");
  const box = el("div", { class: "deploy", "data-deploy-id": d.id, "data-state": d.state },
    el("strong", { text: "deploy " + d.id + " of " + d.service }), " ",
    badge(d.state), " ",
    el("span", { class: "muted", text: d.strategy + ": " + (d.from_release || "(none)") + " → " + (d.to_release || "(building)") }),
    el("div", {},
      el("span", { text: "step " + (done + (current ? 1 : 0)) + " of " + d.steps.length }),
      el("progress", { max: String(Math.max(d.steps.length, 1)), value: String(done) }),
      el("span", { class: "muted", text: current ? current.name + (current.detail ? ": " + current.detail : "") : "" }),
      d.traffic && d.traffic.requests ? el("span", { class: "muted", text: " · new release: " + d.traffic.requests + " requests, " + d.traffic.errors + " errors" }) : null),
    el("ol", {}, d.steps.map((s) => el("li", { class: s.state }, s.name + " ", badge(s.state), s.detail ? el("span", { class: "muted", text: " " + s.detail }) : null))));
  return box;
}

function deploysTable(deploys) {
  return el("table", { id: "deploys" },
    el("tr", {}, ["#", "service", "strategy", "from → to", "state", "verdict", "started", "took"].map((h) => el("th", { text: h }))),
    deploys.map((d) => el("tr", { "data-deploy-id": d.id, "data-state": d.state },
      el("td", { class: "num", text: d.id }),
      el("td", {}, el("a", { href: "#/service/" + encodeURIComponent(d.service), text: d.service })),
      el("td", { text: d.strategy + (d.rollback ? " (rollback)" : "") }),
      el("td", { text: (d.from_release || "—") + " → " + (d.to_release || "—") }),
      el("td", {}, badge(d.state)),
      el("td", { text: d.verdict ? d.verdict.rule + ": " + d.verdict.message : "" }),
      el("td", { text: ago(d.started_at) }),
      el("td", { class: "num", text: d.finished_at ? (d.finished_at - d.started_at) + "s" : "…" }))));
}

// Optional parts, when the daemon serves them (it says so in /api/features).
async function optional(name, path) {
  if (features === null) features = await api("/api/features");
  if (features[name] !== true) return null;
  return api(path);
}

async function alarms() {
  const answer = await optional("alarms", "/api/alarms");
  return answer && (answer.alarms || answer);
}

function bytesText(v) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return v.toFixed(i === 0 ? 0 : 1) + " " + units[i];
}

// Backups are listed from their destination (a bucket, maybe): every 30 s, not every refresh.
let backupsCache = { at: 0, value: null };
async function fetchBackups() {
  if (Date.now() - backupsCache.at > 30000) {
    backupsCache = { at: Date.now(), value: await optional("backups", "/api/backups") };
  }
  return backupsCache.value;
}

function backupsSection(b) {
  const parts = [el("h2", { text: "Backups" }),
    el("p", { class: "muted", text: "to " + b.destination + (b.schedule ? " · schedule " + b.schedule : " · no schedule") })];
  if (!b.backups.length) parts.push(el("p", { id: "no-backups", class: "muted", text: "no backups yet" }));
  else parts.push(el("table", { id: "backups" },
    el("tr", {}, ["backup", "reason", "made", "size", "holds", "verification"].map((h) => el("th", { text: h }))),
    b.backups.map((x) => el("tr", { "data-backup": x.id },
      el("td", { text: x.id }), el("td", { text: x.reason }), el("td", { text: ago(x.finished_at) }),
      el("td", { class: "num", text: bytesText(x.bytes) }), el("td", { text: x.parts.join(", ") }),
      el("td", {}, x.verification ? badge(x.verification, x.verification === "verified" ? "ok" : "bad") : el("span", { class: "muted", text: "not verified" }),
        x.verified_at ? el("span", { class: "muted", text: " " + ago(x.verified_at) }) : null)))));
  for (const [id, reason, at, error] of b.failures) {
    parts.push(el("div", { class: "error", text: "backup " + id + " (" + reason + ", " + ago(at) + ") failed: " + error }));
  }
  return parts;
}

async function overview(main) {
  const view = el("div", { id: "overview" });
  main.append(view);
  const draw = async () => {
    let status, deploys, alarmList, backupList;
    try {
      [status, deploys, alarmList, backupList] = await Promise.all([api("/api/status"), api("/api/deploys?limit=15"), alarms(),
        fetchBackups()]);
    } catch (e) {
      view.replaceChildren();
      showError(view, e);
      return;
    }
    document.getElementById("stack").textContent = status.stack + " · " + status.environment;
    const parts = [];
    const running = deploys.filter((d) => d.state === "running");
    if (running.length) parts.push(el("h2", { text: "Deploying" }), el("div", { id: "running" }, running.map(deployBox)));
    if (Array.isArray(alarmList)) {
      parts.push(el("h2", { text: "Alarms" }), el("table", { id: "alarms" },
        el("tr", {}, ["alarm", "state", "reason"].map((h) => el("th", { text: h }))),
        alarmList.map((a) => el("tr", { "data-alarm": a.name },
          el("td", { text: a.name }), el("td", {}, badge(String(a.state))), el("td", { class: "muted", text: a.reason || "" })))));
    }
    parts.push(el("h2", { text: "Services" }), el("table", { id: "services" },
      el("tr", {}, ["service", "release", "healthy", "state"].map((h) => el("th", { text: h }))),
      status.services.map((s) => {
        const ok = s.healthy >= s.desired && !s.held && !s.dependencies_down.length;
        const note = s.held || (s.dependencies_down.length ? "down: " + s.dependencies_down.join(", ") : "");
        return el("tr", { "data-service": s.name },
          el("td", {}, el("a", { href: "#/service/" + encodeURIComponent(s.name), text: s.name })),
          el("td", { text: s.release || "—" }),
          el("td", { class: "num", text: s.healthy + " of " + s.desired }),
          el("td", {}, badge(ok ? "ok" : "degraded", ok ? "ok" : "bad"), note ? el("span", { class: "muted", text: " " + note }) : null));
      })));
    parts.push(el("h2", { text: "Replicas" }), replicasTable(status.replicas));
    if (status.accessories.length) {
      parts.push(el("h2", { text: "Accessories" }), el("table", { id: "accessories" },
        el("tr", {}, ["accessory", "engine", "state", "port", "restarts"].map((h) => el("th", { text: h }))),
        status.accessories.map((a) => el("tr", {},
          el("td", { text: a.name }), el("td", { text: a.engine }), el("td", {}, badge(a.state)),
          el("td", { class: "num", text: a.port || "" }), el("td", { class: "num", text: a.restarts })))));
    }
    if (status.edge) {
      parts.push(el("h2", { text: "Edge" }), el("p", {}, badge(status.edge.state || "running"),
        el("span", { class: "muted", text: " listening on " + status.edge.listen.join(", ") + (status.edge.restarts ? " · restarts " + status.edge.restarts : "") })));
    }
    parts.push(el("h2", { text: "Recent deploys" }), deploysTable(deploys));
    if (backupList) parts.push(...backupsSection(backupList));
    view.replaceChildren(...parts);
    stamp();
  };
  await draw();
  timer = setInterval(draw, 2000);
}

function replicasTable(replicas) {
  return el("table", { id: "replicas" },
    el("tr", {}, ["replica", "health", "release", "pid", "port", "up since", "restarts", "last exit"].map((h) => el("th", { text: h }))),
    replicas.map((r) => el("tr", { "data-replica": r.replica },
      el("td", { text: r.replica }), el("td", {}, badge(r.health)), el("td", { text: r.release }),
      el("td", { class: "num", text: r.pid || "" }), el("td", { class: "num", text: r.port || "" }),
      el("td", { text: ago(r.started_at) }), el("td", { class: "num", text: r.restarts }),
      el("td", { class: "muted", text: r.last_exit || "" }))));
}

// ---- a service ------------------------------------------------------------------------------

const CHARTS = [
  { id: "requests", title: "Requests /s", unit: "/s", queries: [{ name: "requests", statistic: "avg", merged: true, label: "requests/s" }] },
  { id: "errors_5xx", title: "5xx /s", unit: "/s", queries: [{ name: "errors_5xx", statistic: "avg", merged: true, label: "5xx/s" }] },
  { id: "latency", title: "Latency (ms)", unit: "ms", queries: [
    { name: "latency_ms", statistic: "p50", merged: true, label: "p50" },
    { name: "latency_ms", statistic: "p99", merged: true, label: "p99" }] },
  { id: "cpu", title: "CPU (% of a core)", unit: "%", queries: [{ name: "cpu_percent", statistic: "avg", label: "replica" }] },
  { id: "memory", title: "Memory", unit: "B", queries: [{ name: "memory_bytes", statistic: "avg", label: "replica" }] },
  { id: "replicas", title: "Replicas", unit: "", queries: [{ name: "replicas", statistic: "avg", label: "replicas" }] },
];

function formatValue(v, unit) {
  if (v === null || v === undefined) return "—";
  if (unit === "B") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(v >= 100 || i === 0 ? 0 : 1) + " " + units[i];
  }
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return v.toFixed(digits) + (unit && unit !== "/s" ? " " + unit : "");
}

// The chart's data: one x axis (the periods of [from, to) every step) and a line per series.
async function chartData(spec, service, range) {
  const [seconds, step] = RANGES[range];
  const to = Math.floor(Date.now() / 1000 / step) * step + step;
  const from = to - seconds;
  const xs = [];
  for (let t = from; t < to; t += step) xs.push(t);
  const index = new Map(xs.map((t, i) => [t, i]));
  const lines = [];
  for (const q of spec.queries) {
    const params = new URLSearchParams({ name: q.name, service, statistic: q.statistic, from: String(from), to: String(to), step: step + "s" });
    if (q.merged) params.set("merged", "true");
    const answer = await api("/api/metrics?" + params);
    for (const series of answer.series) {
      const ys = new Array(xs.length).fill(null);
      for (const [t, v] of series.points) {
        const i = index.get(t);
        if (i !== undefined) ys[i] = v;
      }
      const label = q.label === "replica" ? (series.labels.replica || q.name) : q.label;
      lines.push({ label, ys });
    }
  }
  return { xs, lines };
}

async function drawChart(chart, service, range) {
  const { xs, lines } = await chartData(chart.spec, service, range);
  const points = lines.reduce((n, l) => n + l.ys.filter((v) => v !== null).length, 0);
  chart.box.dataset.points = String(points);
  chart.box.dataset.series = String(lines.length);
  const labels = lines.map((l) => l.label).join("|");
  const data = [xs, ...lines.map((l) => l.ys)];
  if (chart.plot && chart.labels === labels) {
    chart.plot.setData(data);
    return;
  }
  if (chart.plot) chart.plot.destroy();
  chart.labels = labels;
  chart.empty.textContent = lines.length ? "" : "no data in this range";
  if (!lines.length) {
    chart.plot = null;
    return;
  }
  const unit = chart.spec.unit;
  const opts = {
    width: Math.max(chart.box.clientWidth - 16, 300),
    height: 180,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => formatValue(v, unit)) }],
    series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, value: (u, v) => formatValue(v, unit) }))],
  };
  chart.plot = new uPlot(opts, data, chart.holder);
}

async function servicePage(main, name, range) {
  document.getElementById("stack").textContent = "";
  const status = await api("/api/status").catch((e) => { showError(main, e); return null; });
  if (!status) return;
  document.getElementById("stack").textContent = status.stack + " · " + status.environment;
  const service = status.services.find((s) => s.name === name);
  if (!service) {
    showError(main, new Error("no service `" + name + "` in this stack"));
    return;
  }
  const head = el("p", { id: "service-head" });
  const ranges = el("div", { class: "ranges" }, Object.keys(RANGES).map((r) =>
    el("a", { href: "#/service/" + encodeURIComponent(name) + "?range=" + r, class: r === range ? "on" : "", "data-range": r, text: r })));
  const grid = el("div", { class: "charts" });
  const replicas = el("div", { id: "service-replicas" });
  const deploysBox = el("div", { id: "service-deploys" });
  const releasesBox = el("div", { id: "service-releases" });
  const logsBox = el("div", { id: "service-logs" });
  main.append(el("h2", { text: name }), head, ranges, grid,
    el("h2", { text: "Replicas" }), replicas, el("h2", { text: "Deploys" }), deploysBox, el("h2", { text: "Releases" }), releasesBox,
    el("h2", { text: "Logs" }), logsBox);
  for (const spec of CHARTS) {
    const holder = el("div");
    const empty = el("div", { class: "empty" });
    const box = el("div", { class: "chart", "data-chart": spec.id, "data-points": "0" }, el("h3", { text: spec.title }), empty, holder);
    grid.append(box);
    charts.push({ spec, box, holder, empty, plot: null, labels: null });
  }
  const drawTables = async () => {
    const [status, deploys, releases] = await Promise.all([
      api("/api/status"),
      api("/api/deploys?limit=20&service=" + encodeURIComponent(name)),
      api("/api/releases?service=" + encodeURIComponent(name)),
    ]);
    const s = status.services.find((x) => x.name === name);
    if (s) head.replaceChildren("release ", el("strong", { text: s.release || "—" }), " · " + s.healthy + " healthy, " + s.desired + " wanted");
    replicas.replaceChildren(replicasTable(status.replicas.filter((r) => r.service === name)));
    const running = deploys.filter((d) => d.state === "running");
    deploysBox.replaceChildren(...running.map(deployBox), deploysTable(deploys));
    releasesBox.replaceChildren(el("table", { id: "releases" },
      el("tr", {}, ["release", "created", "source rev", "current"].map((h) => el("th", { text: h }))),
      releases.releases.map((r) => el("tr", { "data-release": r.id },
        el("td", { text: r.id }), el("td", { text: ago(r.created_at) }),
        el("td", { class: "muted", text: r.source_rev ? r.source_rev.slice(0, 12) : "" }),
        el("td", {}, r.id === (s && s.release) ? badge("current", "ok") : "")))));
  };
  // The replicas' logs need the admin token even on loopback: ask the edge first, so a page
  // without it never requests them (a 401 would be a console error) and says how to sign in.
  const session = await api("/api/session").catch(() => ({ logs: false }));
  const drawLogs = async () => {
    if (!session.logs) {
      logsBox.replaceChildren(el("p", { class: "muted", id: "logs-locked" },
        "The replicas' logs need the admin token (.berth/ENV/edge/admin.token): ",
        el("a", { href: "/dashboard/login", text: "sign in" }), "."));
      return;
    }
    const logs = await api("/api/logs?tail=200&service=" + encodeURIComponent(name));
    const pre = el("pre", { id: "logs", class: "logs", "data-lines": String(logs.lines.length) });
    pre.textContent = logs.lines.join("\n");
    logsBox.replaceChildren(pre);
  };
  const draw = async () => {
    try {
      await Promise.all([drawTables(), drawLogs(), ...charts.map((c) => drawChart(c, name, range))]);
      clearError(main);
      stamp();
    } catch (e) {
      showError(main, e);
    }
  };
  await draw();
  timer = setInterval(draw, range === "15m" ? 5000 : 15000);
}

window.addEventListener("hashchange", route);
route();
