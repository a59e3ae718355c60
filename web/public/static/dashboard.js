// dualconn live dashboard.
//
// Signs in with an admin key (typed in and kept in sessionStorage for this tab, or, in dev mode
// on a loopback host, fetched from /api/dev/admin-key), then polls the admin monitoring routes
// every second and draws what they say. Charts are uPlot (vendored under ./vendor, MIT).
//
// Routes read, all with `Authorization: Bearer <admin key>`:
//   /monitoring/dual-connections   players online, dual / WS-only / SSE-only
//   /monitoring/connection-health  connections and health per transport, health trends
//   /monitoring/performance        establishment avg/max per transport; delivery counters since
//                                  start (deliveries per second = difference between two polls)
//   /monitoring/players?limit=N    each online player's connections and their health

import uPlot from "./vendor/uPlot.esm.js";

const POLL_MS = 1000;
const WINDOW_S = 300; // seconds of history kept on the charts
const PLAYERS_LIMIT = 200;
const REQUEST_TIMEOUT_MS = 5000;
const STORAGE_KEY = "dualconn.adminKey";

const $ = (id) => document.getElementById(id);

const COLORS = {
  ws: "#4ea1ff",
  sse: "#f2a93b",
  dual: "#b784f7",
  players: "#e6e9ef",
  ok: "#3ecf8e",
  bad: "#ff6b6b",
  h1: "#7fd6b0",
  h24: "#5b8f79",
};

class AuthError extends Error {}

const state = {
  key: null,
  mode: null, // "dev" | "key"
  retryDev: false, // a key from an earlier visit: if refused, try dev mode before asking
  polling: false,
  generation: 0, // bumped on sign-out so a poll in flight is ignored
  timer: null,
  lastPerf: null, // { t, ok, failed } from the previous poll
  charts: null,
  data: {
    t: [],
    ws: [], sse: [],
    players: [], dual: [],
    health: [], h1: [], h24: [],
    okPerSec: [], failedPerSec: [],
    wsAvg: [], wsMax: [], sseAvg: [], sseMax: [],
  },
};

// ---- Sign-in -------------------------------------------------------------------------------

function isLoopbackHost() {
  return ["localhost", "127.0.0.1", "[::1]", "::1"].includes(location.hostname);
}

async function devAdminKey() {
  if (!isLoopbackHost()) return null;
  try {
    const res = await fetch("/api/dev/admin-key", {
      cache: "no-store",
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (!res.ok) return null;
    const body = await res.json();
    return typeof body.admin_key === "string" && body.admin_key ? body.admin_key : null;
  } catch {
    return null;
  }
}

async function start() {
  const stored = sessionStorage.getItem(STORAGE_KEY);
  if (stored) return signIn(stored, "key", { retryDev: true });
  const dev = await devAdminKey();
  if (dev) return signIn(dev, "dev");
  showSignIn("");
}

function signIn(key, mode, { retryDev = false } = {}) {
  state.key = key;
  state.mode = mode;
  state.retryDev = retryDev;
  if (mode === "key") sessionStorage.setItem(STORAGE_KEY, key);
  $("signin").hidden = true;
  $("live").hidden = false;
  $("sign-out").hidden = false;
  $("auth-mode").textContent = mode === "dev" ? "· dev mode (key from this machine)" : "· admin key";
  document.body.dataset.auth = mode;
  setStatus("connecting…", "starting");
  if (!state.charts) {
    state.charts = makeCharts();
    // The browser test reads each series' style from here.
    window.dashboardCharts = state.charts;
  }
  state.lastPerf = null;
  state.generation += 1;
  schedule(0);
}

function signOut(message) {
  state.generation += 1;
  clearTimeout(state.timer);
  state.key = null;
  state.mode = null;
  sessionStorage.removeItem(STORAGE_KEY);
  delete document.body.dataset.auth;
  showSignIn(message);
}

function showSignIn(message) {
  $("live").hidden = true;
  $("sign-out").hidden = true;
  $("signin").hidden = false;
  $("auth-mode").textContent = "";
  $("signin-error").textContent = message;
  setStatus("signed out", "signed-out");
  $("admin-key").focus();
}

function setStatus(text, kind) {
  $("status").textContent = text;
  document.body.dataset.state = kind;
}

// ---- Polling -------------------------------------------------------------------------------

async function api(path) {
  const res = await fetch(path, {
    headers: { Authorization: `Bearer ${state.key}` },
    cache: "no-store",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (res.status === 401 || res.status === 403) {
    throw new AuthError(`the server refused the admin key (HTTP ${res.status})`);
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function schedule(delay) {
  clearTimeout(state.timer);
  const generation = state.generation;
  state.timer = setTimeout(() => poll(generation), delay);
}

async function poll(generation) {
  const startedAt = performance.now();
  try {
    const [dual, health, perf, players] = await Promise.all([
      api("/monitoring/dual-connections"),
      api("/monitoring/connection-health"),
      api("/monitoring/performance"),
      api(`/monitoring/players?limit=${PLAYERS_LIMIT}`),
    ]);
    if (generation !== state.generation) return;
    render({ dual, health, perf, players });
    setStatus("live", "live");
    $("updated").textContent = new Date().toLocaleTimeString();
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof AuthError) {
      const retryDev = state.retryDev;
      signOut(err.message);
      // A stored key from an earlier server run: try dev mode again before asking.
      if (retryDev) {
        const dev = await devAdminKey();
        if (dev && generation + 1 === state.generation) signIn(dev, "dev");
      }
      return;
    }
    setStatus(`error: ${err.message || err}`, "error");
  }
  schedule(Math.max(0, POLL_MS - (performance.now() - startedAt)));
}

// ---- Rendering -----------------------------------------------------------------------------

const fmtInt = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
const fmtPct = (n) => (n == null ? "–" : `${n.toFixed(1)}%`);
const fmtMs = (n) => (n == null ? "–" : `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`);
const fmtBytes = (n) => {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
};
const fmtRate = (n) => (n == null ? "–" : n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US"));

function healthClass(pct) {
  if (pct >= 99) return "good";
  if (pct >= 90) return "fair";
  return "poor";
}

function render({ dual, health, perf, players }) {
  const now = Date.now();
  const t = now / 1000;
  const dist = dual.connection_distribution;
  const ws = health.connection_type_health.websocket;
  const sse = health.connection_type_health.sse;
  const overall = health.overall_health;
  const trends = health.health_trends;
  const est = perf.connection_establishment;
  const del = perf.message_delivery;

  // Deliveries per second: the counters run since start, so take the difference between polls.
  let okPerSec = null;
  let failedPerSec = null;
  const last = state.lastPerf;
  if (last && del.successful_deliveries >= last.ok && del.failed_deliveries >= last.failed) {
    const dt = Math.max((now - last.t) / 1000, 0.001);
    okPerSec = (del.successful_deliveries - last.ok) / dt;
    failedPerSec = (del.failed_deliveries - last.failed) / dt;
  }
  state.lastPerf = { t: now, ok: del.successful_deliveries, failed: del.failed_deliveries };

  const wsAvg = est.websocket_connections > 0 ? est.avg_websocket_establishment_ms : null;
  const wsMax = est.websocket_connections > 0 ? est.max_websocket_establishment_ms : null;
  const sseAvg = est.sse_connections > 0 ? est.avg_sse_establishment_ms : null;
  const sseMax = est.sse_connections > 0 ? est.max_sse_establishment_ms : null;

  // Figures as text.
  $("ws-connections").textContent = fmtInt(ws.total);
  $("ws-healthy").textContent = fmtInt(ws.healthy);
  $("sse-connections").textContent = fmtInt(sse.total);
  $("sse-healthy").textContent = fmtInt(sse.healthy);
  $("players-online").textContent = fmtInt(dist.total_players);
  $("ws-only-players").textContent = fmtInt(dist.websocket_only_players);
  $("sse-only-players").textContent = fmtInt(dist.sse_only_players);
  $("dual-players").textContent = fmtInt(dist.dual_connection_players);
  $("dual-pct").textContent = dist.dual_connection_percentage.toFixed(1);
  const healthEl = $("health-pct");
  healthEl.textContent = fmtPct(overall.health_percentage);
  healthEl.classList.remove("good", "fair", "poor");
  healthEl.classList.add(healthClass(overall.health_percentage));
  $("health-1h").textContent = fmtPct(trends.last_hour_health_percentage);
  $("health-24h").textContent = fmtPct(trends.last_24_hours_health_percentage);
  $("deliveries-per-sec").textContent = fmtRate(okPerSec);
  $("deliveries-total").textContent = fmtInt(del.successful_deliveries);
  $("deliveries-failed").textContent = fmtInt(del.failed_deliveries);
  $("delivery-rate").textContent = del.delivery_success_rate.toFixed(1);
  // The node's two bounds (connections, bytes queued for slow readers): past either, new
  // streams are refused with 503.
  const budget = perf.node_budget;
  $("node-connections").textContent = fmtInt(budget.connections);
  $("node-connections-max").textContent = fmtInt(budget.max_connections);
  $("node-queued").textContent = fmtBytes(budget.queued_bytes);
  $("node-queued-max").textContent = fmtBytes(budget.max_queued_bytes);
  // Rooms are counted cluster-wide, never listed: a figure, not a label per room.
  $("rooms-total").textContent = fmtInt(perf.rooms.total_rooms);
  $("room-memberships").textContent = fmtInt(perf.rooms.total_memberships);
  $("ws-est-avg").textContent = fmtMs(wsAvg);
  $("ws-est-max").textContent = fmtMs(wsMax);
  $("sse-est-avg").textContent = fmtMs(sseAvg);
  $("sse-est-max").textContent = fmtMs(sseMax);

  // Time series.
  const d = state.data;
  push(d, t, {
    ws: ws.total,
    sse: sse.total,
    players: dist.total_players,
    dual: dist.dual_connection_players,
    health: overall.health_percentage,
    h1: trends.last_hour_health_percentage,
    h24: trends.last_24_hours_health_percentage,
    okPerSec,
    failedPerSec,
    wsAvg, wsMax, sseAvg, sseMax,
  });
  const c = state.charts;
  c.connections.setData([d.t, d.ws, d.sse]);
  c.players.setData([d.t, d.players, d.dual]);
  c.health.setData([d.t, d.health, d.h1, d.h24]);
  c.deliveries.setData([d.t, d.okPerSec, d.failedPerSec]);
  c.establishment.setData([d.t, d.wsAvg, d.wsMax, d.sseAvg, d.sseMax]);
  for (const chart of Object.values(c)) showCurrent(chart);

  renderPlayers(players, now);
}

function push(d, t, point) {
  d.t.push(t);
  for (const [name, value] of Object.entries(point)) d[name].push(value);
  while (d.t.length && d.t[0] < t - WINDOW_S) {
    for (const arr of Object.values(d)) arr.shift();
  }
}

function ago(iso, now) {
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function renderPlayers(body, now) {
  const list = [...body.players].sort((a, b) => a.player_id.localeCompare(b.player_id));
  $("players-count").textContent = body.truncated
    ? `(showing ${list.length} of ${body.total_players})`
    : `(${body.total_players})`;
  $("players-empty").hidden = list.length > 0;
  const rows = list.map((p) => {
    const tr = el("tr");
    tr.dataset.player = p.player_id;
    tr.append(el("td", "id", p.player_id));
    tr.append(el("td", "id muted", p.session_id ?? "—"));
    const healthCell = el("td");
    healthCell.append(el("span", `badge ${p.overall_health}`, p.overall_health.replace("_", " ")));
    tr.append(healthCell);
    const connsCell = el("td");
    const conns = el("div", "conns");
    for (const c of p.connections) {
      const chip = el("span", `conn ${c.connection_type} ${c.healthy ? "healthy" : "unhealthy"}`);
      chip.title = `${c.connection_id}\nopened ${c.opened_at}\nlast activity ${c.last_activity}`;
      chip.append(el("span", "h"));
      chip.append(el("span", "kind", c.connection_type === "websocket" ? "WS" : "SSE"));
      chip.append(el("span", "age", ago(c.last_activity, now)));
      conns.append(chip);
    }
    connsCell.append(conns);
    tr.append(connsCell);
    return tr;
  });
  $("players-body").replaceChildren(...rows);
}

// ---- Charts --------------------------------------------------------------------------------

const AXIS = {
  stroke: "#8b94a3",
  grid: { stroke: "#232a35", width: 1 },
  ticks: { stroke: "#2a313d", width: 1 },
};

const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

function line(label, stroke, extra = {}) {
  return { label, stroke, points: { show: false }, spanGaps: false, ...extra };
}

// Series in one chart often hold equal values (one WebSocket and one SSE stream). Each later
// series is thinner and dashed differently, and uPlot draws them in order, so a line on top of
// another never hides it: the wide solid one shows around the dashes of the next.
const STYLES = [
  { width: 4 },
  { width: 2, dash: [8, 5] },
  { width: 1.5, dash: [2, 3] },
  { width: 1.5, dash: [10, 3, 2, 3] },
];

// The legend shows each series' latest value, so equal lines read as equal numbers.
function showCurrent(chart) {
  // Rows are matched by label: a non-live legend has no row for the time axis.
  for (const row of chart.root.querySelectorAll(".u-legend .u-series")) {
    const label = row.querySelector(".u-label");
    const i = chart.series.findIndex((s, k) => k > 0 && s.label === label?.textContent);
    if (i < 0) continue;
    let cell = row.querySelector(".current");
    if (!cell) {
      cell = el("span", "current");
      label.after(cell);
    }
    const values = chart.data[i] ?? [];
    const last = values.length ? values[values.length - 1] : null;
    cell.textContent = last == null ? "—" : chart.series[i].format(last);
  }
}

function plain(v) {
  return Number.isInteger(v) ? `${v}` : `${+v.toFixed(2)}`;
}

function makeChart(id, series, { yRange, yValues } = {}) {
  const host = $(id);
  const opts = {
    width: Math.max(host.clientWidth, 200),
    height: host.clientHeight || 200,
    cursor: { drag: { x: false, y: false } },
    legend: {
      live: false,
      // The legend's swatch shows the line's style too, not only its colour.
      markers: { dash: (u, i) => (!u.series[i].dash ? "solid" : u.series[i].dash[0] <= 2 ? "dotted" : "dashed") },
    },
    scales: {
      x: { time: true },
      y: { range: yRange ?? ((u, min, max) => [0, Math.max(3, Math.ceil((max || 0) * 1.2))]) },
    },
    axes: [
      // Whole seconds at least: the data comes once a second.
      { ...AXIS, space: 70, incrs: TIME_INCRS },
      { ...AXIS, size: 48, values: yValues ?? ((u, vals) => vals.map((v) => (Number.isInteger(v) ? v : ""))) },
    ],
    series: [{}, ...series.map((s, i) => ({ ...STYLES[i % STYLES.length], format: plain, ...s }))],
  };
  const chart = new uPlot(opts, [[], ...series.map(() => [])], host);
  const legendHeight = () => chart.root.querySelector(".u-legend")?.offsetHeight ?? 0;
  const fit = () => chart.setSize({ width: Math.max(host.clientWidth, 200), height: 200 - legendHeight() });
  const resized = new ResizeObserver(fit);
  resized.observe(host);
  // The legend grows when its current values first appear or wrap; the plot gives way.
  const legend = chart.root.querySelector(".u-legend");
  if (legend) resized.observe(legend);
  fit();
  return chart;
}

function makeCharts() {
  const ms = (u, vals) => vals.map((v) => `${+v.toFixed(2)}`);
  return {
    connections: makeChart("chart-connections", [
      line("WebSocket", COLORS.ws),
      line("SSE", COLORS.sse),
    ]),
    players: makeChart("chart-players", [
      line("online", COLORS.players),
      line("dual-connected", COLORS.dual),
    ]),
    health: makeChart(
      "chart-health",
      [
        line("now %", COLORS.ok, { format: fmtPct }),
        line("last hour %", COLORS.h1, { format: fmtPct }),
        line("last 24 h %", COLORS.h24, { format: fmtPct }),
      ],
      {
        yRange: (u, min) => [Math.min(90, Math.floor(((min ?? 100) - 5) / 10) * 10), 100],
        yValues: (u, vals) => vals.map((v) => `${v}%`),
      },
    ),
    deliveries: makeChart(
      "chart-deliveries",
      [
        line("delivered/s", COLORS.ok, { fill: "rgba(62, 207, 142, 0.12)" }),
        line("failed/s", COLORS.bad),
      ],
      { yValues: (u, vals) => vals.map((v) => `${+v.toFixed(1)}`) },
    ),
    establishment: makeChart(
      "chart-establishment",
      [
        line("WS avg", COLORS.ws, { format: fmtMs }),
        line("WS max", COLORS.ws, { format: fmtMs }),
        line("SSE avg", COLORS.sse, { format: fmtMs }),
        line("SSE max", COLORS.sse, { format: fmtMs }),
      ],
      {
        yRange: (u, min, max) => [0, Math.max(1, (max || 0) * 1.2)],
        yValues: ms,
      },
    ),
  };
}

// ---- Wiring --------------------------------------------------------------------------------

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("admin-key").value.trim();
  if (!key) return;
  $("admin-key").value = "";
  signIn(key, "key");
});

$("sign-out").addEventListener("click", () => signOut(""));

start();
