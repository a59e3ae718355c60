// The live dashboard, end to end: the real `dualconn serve` binary in dev mode, the page in
// headless Chromium, and real WebSocket and SSE connections opened from Node. The page must sign
// itself in (dev mode on a loopback host), then its live numbers must follow the connections as
// they open, carry events and close.
//
//   node --test web/tests/dashboard.test.mjs
//
// Needs target/debug/dualconn (or DUALCONN_BIN) and Chromium (/usr/bin/chromium or CHROMIUM);
// scripts/browser-setup.sh installs Chromium and this folder's node_modules.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "./chromium.mjs";
import WebSocket from "ws";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const BIN = process.env.DUALCONN_BIN ?? path.join(root, "target/debug/dualconn");
// Test runs save into target/ so they never dirty the tree; UPDATE_SCREENSHOTS=1 refreshes the
// committed copy the README shows.
const SCREENSHOT = process.env.UPDATE_SCREENSHOTS
  ? path.join(here, "screenshots/dashboard.png")
  : path.join(root, "target/screenshots/dashboard.png");
const WAIT = 10_000; // bound on every wait for the page to catch up (it polls every second)

let server; // { proc, base, adminKey }
let browser;
const sockets = new Set(); // everything opened from Node, closed in after() whatever happens

// ---- The server ----------------------------------------------------------------------------

function startServer() {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, RUST_LOG: "warn" };
    // Dev mode is what runs when no signing key is configured.
    for (const name of Object.keys(env)) if (name.startsWith("DUALCONN_")) delete env[name];
    const proc = spawn(BIN, ["serve", "--bind", "127.0.0.1:0"], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`the server did not print its address and admin key in time:\n${stderr}`));
    }, WAIT);
    proc.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited early (${code}):\n${stderr}`));
    });
    proc.stderr.setEncoding("utf8");
    let started = false;
    proc.stderr.on("data", (chunk) => {
      if (started) return; // later output (e.g. "shutting down") must not touch the listeners
      stderr += chunk;
      // Whole lines only, so a match cannot end at a chunk boundary.
      const addr = /running in DEV MODE on (http:\/\/\S+)\n/.exec(stderr);
      const key = /admin key \(shown once\):\s+(\S+)\n/.exec(stderr);
      if (addr && key) {
        started = true;
        clearTimeout(timer);
        proc.removeAllListeners("exit");
        resolve({ proc, base: addr[1], adminKey: key[1] });
      }
    });
  });
}

async function stopServer() {
  if (!server) return;
  const { proc } = server;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

async function post(urlPath, body, headers = {}) {
  const res = await fetch(server.base + urlPath, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `POST ${urlPath}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

async function devToken(playerId) {
  const body = await post("/auth/dev-token", { player_id: playerId });
  assert.equal(typeof body.access_token, "string");
  return body.access_token;
}

async function publish(playerIds, count) {
  for (let i = 0; i < count; i++) {
    await post(
      "/api/publish",
      { player_ids: playerIds, event_type: "chat", data: { text: `hello ${i}` } },
      { authorization: `Bearer ${server.adminKey}` },
    );
  }
}

// ---- Connections from Node -----------------------------------------------------------------

/** A WebSocket on /api/ws, resolved once the server's `connected` event arrives. */
function openWebSocket(token) {
  return new Promise((resolve, reject) => {
    const url = server.base.replace(/^http/, "ws") + "/api/ws";
    const ws = new WebSocket(url, ["bearer", token]);
    sockets.add(ws);
    const close = () =>
      new Promise((done) => {
        if (ws.readyState === WebSocket.CLOSED) return done();
        ws.once("close", () => done());
        ws.close(1000);
      });
    ws.on("error", reject);
    ws.on("message", (raw) => {
      const event = JSON.parse(raw.toString());
      if (event.event_type === "connected") {
        assert.equal(event.data.connection_type, "websocket");
        resolve({ close, id: event.data.connection_id });
      }
    });
  });
}

/** An SSE stream on /api/events read with fetch, resolved once `connected` arrives. */
async function openSse(token) {
  const abort = new AbortController();
  const handle = { close: () => abort.abort() };
  sockets.add(handle);
  const res = await fetch(server.base + "/api/events", {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
    signal: abort.signal,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the SSE stream ended before its connected event");
    buffered += value;
    const data = /^data: (.*)$/m.exec(buffered);
    if (data) {
      const event = JSON.parse(data[1]);
      assert.equal(event.event_type, "connected");
      assert.equal(event.data.connection_type, "sse");
      break;
    }
  }
  // Keep reading so the server never sees a stalled reader; stop when aborted.
  (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      /* aborted */
    }
  })();
  return {
    close: async () => {
      abort.abort();
    },
  };
}

// ---- The page ------------------------------------------------------------------------------

const OPS = { "===": "equal to", ">=": "at least", ">": "above" };

/** Waits until the page's figure `#id`, read as a number, is `op` `value`. */
async function waitForFigure(page, id, op, value) {
  assert.ok(op in OPS);
  try {
    await page.waitForFunction(
      ({ id, op, value }) => {
        const n = Number.parseFloat((document.getElementById(id)?.textContent ?? "").replace(/,/g, ""));
        return op === "===" ? n === value : op === ">=" ? n >= value : n > value;
      },
      { id, op, value },
      { timeout: WAIT },
    );
  } catch (err) {
    const text = await page.locator(`#${id}`).textContent().catch(() => "?");
    throw new Error(
      `#${id} never became ${OPS[op]} ${value} (it shows ${JSON.stringify(text)}): ${err.message}`,
    );
  }
}

before(async () => {
  assert.ok(existsSync(BIN), `no binary at ${BIN}: run cargo build -p dualconn first`);
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await Promise.allSettled([...sockets].map((s) => (s.close ? s.close() : s.terminate?.())));
  for (const s of sockets) if (s instanceof WebSocket) s.terminate();
  await browser?.close();
  await stopServer();
});

/** Waits until a chart's legend shows these current values, by series label. */
async function waitForLegend(page, chartId, expected) {
  await page.waitForFunction(
    ({ chartId, expected }) => {
      const rows = [...document.querySelectorAll(`#${chartId} .u-legend .u-series`)];
      const shown = Object.fromEntries(
        rows.map((r) => [r.querySelector(".u-label")?.textContent, r.querySelector(".current")?.textContent]),
      );
      return Object.entries(expected).every(([label, value]) => shown[label] === value);
    },
    { chartId, expected },
    { timeout: WAIT },
  ).catch(async (err) => {
    const legend = await page.evaluate((id) => document.querySelector(`#${id} .u-legend`)?.outerHTML, chartId);
    throw new Error(`${err.message}\nwanted ${JSON.stringify(expected)} in ${legend}`);
  });
}

/** How many pixels of each colour the chart's canvas holds (antialiased edges count if close). */
async function strokePixels(page, chartId, colors) {
  return page.evaluate(
    ({ chartId, colors }) => {
      const canvas = document.querySelector(`#${chartId} canvas`);
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      const targets = Object.entries(colors).map(([name, hex]) => [name, rgb(hex)]);
      const counts = Object.fromEntries(targets.map(([name]) => [name, 0]));
      for (let p = 0; p < data.length; p += 4) {
        for (const [name, [r, g, b]] of targets) {
          if (Math.abs(data[p] - r) < 24 && Math.abs(data[p + 1] - g) < 24 && Math.abs(data[p + 2] - b) < 24) {
            counts[name]++;
          }
        }
      }
      return counts;
    },
    { chartId, colors },
  );
}

test("the dashboard signs itself in and follows connections as they open and close", async () => {
  const context = await browser.newContext({ viewport: { width: 1360, height: 820 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });

  // The page and its assets come from the binary, under the CSP.
  const response = await page.goto(`${server.base}/dashboard`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /default-src 'self'/);

  // Dev mode on a loopback host: no key typed, no form shown, and live data flowing.
  await page.waitForFunction(() => document.body.dataset.state === "live", null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => document.body.dataset.auth), "dev");
  assert.equal(await page.locator("#signin").isVisible(), false);
  assert.equal(await page.locator("#live").isVisible(), true);
  assert.equal(await page.evaluate(() => document.querySelectorAll(".uplot").length), 5);
  await waitForFigure(page, "ws-connections", "===", 0);
  await waitForFigure(page, "sse-connections", "===", 0);
  await waitForFigure(page, "dual-players", "===", 0);
  await waitForFigure(page, "health-pct", "===", 100);

  // alice: two WebSockets and an SSE stream (dual); bob: one WebSocket.
  const [aliceToken, bobToken] = await Promise.all([devToken("alice"), devToken("bob")]);
  const aliceWs1 = await openWebSocket(aliceToken);
  const aliceSse = await openSse(aliceToken);

  // One WebSocket and one SSE stream: equal values, and both lines must still show, with the
  // legend saying 1 for each.
  await waitForFigure(page, "ws-connections", "===", 1);
  await waitForFigure(page, "sse-connections", "===", 1);
  await waitForLegend(page, "chart-connections", { WebSocket: "1", SSE: "1" });
  const shown = await strokePixels(page, "chart-connections", { ws: "#4ea1ff", sse: "#f2a93b" });
  assert.ok(shown.ws > 20 && shown.sse > 20, `both series drawn: ${JSON.stringify(shown)}`);
  const styles = await page.evaluate(() =>
    window.dashboardCharts.connections.series.slice(1).map((s) => `${s.width}/${s.dash ?? "solid"}`),
  );
  assert.equal(new Set(styles).size, styles.length, `distinct styles: ${styles}`);

  const aliceWs2 = await openWebSocket(aliceToken);
  const bobWs = await openWebSocket(bobToken);

  await waitForFigure(page, "ws-connections", "===", 3);
  await waitForFigure(page, "sse-connections", "===", 1);
  // The node budget counts every stream the node holds, against its cap.
  await waitForFigure(page, "node-connections", "===", 4);
  await waitForFigure(page, "node-connections-max", ">", 4);
  // Rooms: two memberships in one room, counted, never listed by id.
  for (const player of ["alice", "bob"]) {
    const res = await fetch(`${server.base}/api/rooms/hall/members/${player}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${server.adminKey}` },
    });
    assert.equal(res.status, 200, await res.text());
  }
  await waitForFigure(page, "rooms-total", "===", 1);
  await waitForFigure(page, "room-memberships", "===", 2);
  await waitForFigure(page, "dual-players", "===", 1);
  await waitForFigure(page, "players-online", "===", 2);
  await waitForFigure(page, "health-pct", "===", 100);
  await waitForFigure(page, "ws-est-avg", ">", 0);
  await waitForFigure(page, "sse-est-avg", ">", 0);

  // The players table shows each player with the health of each connection.
  await page.waitForFunction(
    () => {
      const row = (id) => document.querySelector(`#players-body tr[data-player="${id}"]`);
      const alice = row("alice");
      const bob = row("bob");
      return (
        alice && bob &&
        alice.querySelector(".badge.healthy") &&
        alice.querySelectorAll(".conn.websocket.healthy").length === 2 &&
        alice.querySelectorAll(".conn.sse.healthy").length === 1 &&
        bob.querySelectorAll(".conn.websocket.healthy").length === 1 &&
        bob.querySelectorAll(".conn.sse").length === 0
      );
    },
    null,
    { timeout: WAIT },
  );

  // Events: 3 bursts of 10 to both players, each reaching 4 connections. Deliveries per second
  // is the difference between two polls, so it shows while events flow.
  for (let burst = 1; burst <= 3; burst++) {
    await publish(["alice", "bob"], 10);
    await waitForFigure(page, "deliveries-total", ">=", burst * 40);
  }
  await waitForFigure(page, "deliveries-per-sec", ">", 0);
  await page.screenshot({ path: SCREENSHOT_PATH(), fullPage: true });

  // Close bob's socket, one of alice's, and alice's stream: alice is WebSocket-only now.
  await Promise.all([bobWs.close(), aliceWs2.close(), aliceSse.close()]);
  await waitForFigure(page, "ws-connections", "===", 1);
  await waitForFigure(page, "sse-connections", "===", 0);
  await waitForFigure(page, "dual-players", "===", 0);
  await waitForFigure(page, "players-online", "===", 1);
  await page.waitForFunction(
    () => !document.querySelector('#players-body tr[data-player="bob"]'),
    null,
    { timeout: WAIT },
  );
  // No events now, so the rate falls back to zero.
  await waitForFigure(page, "deliveries-per-sec", "===", 0);

  await aliceWs1.close();
  await waitForFigure(page, "ws-connections", "===", 0);
  await waitForFigure(page, "players-online", "===", 0);
  await page.locator("#players-empty").waitFor({ state: "visible", timeout: WAIT });

  assert.deepEqual(problems, [], "the page logged errors (a CSP violation shows up here)");
  await context.close();
});

test("without dev mode's key the dashboard asks for one, and a wrong key is refused", async () => {
  // Same server, but reached as a non-loopback host name would be: the page must not find a key
  // by itself. Chromium resolves the name to 127.0.0.1 so the server is still this one.
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.route("**/api/dev/admin-key", (route) =>
    route.fulfill({ status: 403, contentType: "application/json", body: '{"error":true}' }),
  );
  await page.goto(`${server.base}/dashboard`);
  await page.locator("#signin").waitFor({ state: "visible", timeout: WAIT });
  assert.equal(await page.evaluate(() => document.body.dataset.state), "signed-out");

  await page.fill("#admin-key", "not-the-admin-key");
  await page.click("#signin-form button[type=submit]");
  await page.locator("#signin-error").filter({ hasText: /refused/ }).waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.getItem("dualconn.adminKey")), null);

  await page.fill("#admin-key", server.adminKey);
  await page.click("#signin-form button[type=submit]");
  await page.waitForFunction(() => document.body.dataset.state === "live", null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => document.body.dataset.auth), "key");
  assert.equal(
    await page.evaluate(() => sessionStorage.getItem("dualconn.adminKey")),
    server.adminKey,
  );

  // A reload keeps the key for this tab.
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.state === "live", null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => document.body.dataset.auth), "key");
  await context.close();
});

function SCREENSHOT_PATH() {
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  return SCREENSHOT;
}
