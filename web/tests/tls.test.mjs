// The demo page over https:// in headless Chromium: its WebSocket is wss://, the page, its REST
// calls and its SSE stream ride HTTP/2, and one page holds more than six SSE streams at once
// (over HTTP/1.1 the seventh would wait for a free connection, silently, for ever).
//
//   node --test web/tests/tls.test.mjs
//
// The certificate is self-signed, made at test time by scripts/self-signed-cert.sh; this test
// alone starts Chromium with --ignore-certificate-errors. Needs what demo.test.mjs needs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "./chromium.mjs";
import { BIN, startServer, stopAllServers } from "./server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WAIT = 10_000; // bound on every wait for a page to catch up
const STREAMS = 8; // more than the six HTTP/1.1 connections Chromium allows per origin

let dir;
let server;
let browser;

before(async () => {
  assert.ok(existsSync(BIN), `no binary at ${BIN}: run cargo build -p dualconn first`);
  dir = mkdtempSync(path.join(os.tmpdir(), "dualconn-tls-"));
  execFileSync("bash", [path.join(root, "scripts/self-signed-cert.sh"), dir], { stdio: "ignore" });
  server = await startServer({
    DUALCONN_TLS_CERT_FILE: path.join(dir, "cert.pem"),
    DUALCONN_TLS_KEY_FILE: path.join(dir, "key.pem"),
  });
  assert.match(server.base, /^https:\/\//);
  browser = await launchChromium([
    "--ignore-certificate-errors",
    // --disable-http2 here shows what the page would meet over HTTP/1.1: the 7th stream waits.
    ...(process.env.EXTRA_CHROMIUM_ARG ? [process.env.EXTRA_CHROMIUM_ARG] : []),
  ]);
});

after(async () => {
  await browser?.close();
  await stopAllServers();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    // A page with no icon asks for /favicon.ico, which is not served.
    if (msg.type() === "error" && !msg.location()?.url?.endsWith("/favicon.ico")) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  return { page, problems };
}

test("the demo page works over https:// with wss:// and SSE over HTTP/2", async () => {
  const { page, problems } = await newPage();
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  await page.goto(server.base + "/");
  const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  assert.equal(protocol, "h2", "the page came over HTTP/2");

  await page.fill("#name", "alice");
  await page.click("#join");
  for (const kind of ["websocket", "sse"]) {
    await page.waitForSelector(`#transport-${kind}[data-state="open"]`, { timeout: WAIT });
  }
  assert.ok(
    sockets.length > 0 && sockets.every((url) => url.startsWith("wss://")),
    `the WebSocket is wss:// (${sockets})`,
  );

  // A line said over wss:// comes back on both transports, shown once.
  await page.fill("#command", "say hello over tls");
  await page.press("#command", "Enter");
  const line = page.locator("#log li.msg.say", { hasText: "hello over tls" });
  await line.first().waitFor({ timeout: WAIT });
  await page.waitForSelector('#log li.msg.say .via[data-duplicates="1"]', { timeout: WAIT });
  assert.equal(await line.count(), 1);
  const transports = (await line.first().locator(".via").getAttribute("data-transports")).split(",").sort();
  assert.deepEqual(transports, ["sse", "websocket"]);
  assert.deepEqual(problems, []);
});

test(`one page holds ${STREAMS} SSE streams at once, and each gets its event`, async () => {
  const { page, problems } = await newPage();
  await page.goto(server.base + "/health/live");
  const result = await page.evaluate(
    async ({ count, wait }) => {
      const within = (promise, what) =>
        Promise.race([
          promise,
          new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), wait)),
        ]);
      const post = (url, body, headers = {}) =>
        fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify(body),
        }).then((r) => r.json());
      // Bounded as a whole: over HTTP/1.1 the seventh request would wait for ever.
      return within(run(), `${count} streams open and served at once`);
      async function run() {
        const { admin_key } = await (await fetch("/api/dev/admin-key")).json();
        const streams = [];
        for (let i = 0; i < count; i++) {
          const player = `tab${i}`;
          const { access_token } = await post("/auth/dev-token", { player_id: player });
          const es = new EventSource(`/sse/${player}?token=${encodeURIComponent(access_token)}`);
          const stream = { player, es, types: [] };
          stream.connected = new Promise((resolve) => {
            stream.gotPing = new Promise((resolvePing) => {
              es.onmessage = (e) => {
                const type = JSON.parse(e.data).event_type;
                stream.types.push(type);
                if (type === "connected") resolve();
                if (type === "ping") resolvePing();
              };
            });
          });
          streams.push(stream);
        }
        // Every stream is open at the same time before anything is published.
        await Promise.all(streams.map((s) => s.connected));
        const published = await post(
          "/api/publish",
          { player_ids: streams.map((s) => s.player), event_type: "ping", data: { hello: true } },
          { authorization: `Bearer ${admin_key}` },
        );
        await Promise.all(streams.map((s) => s.gotPing));
        const open = streams.filter((s) => s.es.readyState === EventSource.OPEN).length;
        for (const s of streams) s.es.close();
        return {
          open,
          reached: published.events.map((e) => e.connections),
          protocol: performance.getEntriesByType("navigation")[0].nextHopProtocol,
        };
      }
    },
    { count: STREAMS, wait: WAIT },
  );
  assert.equal(result.protocol, "h2");
  assert.equal(result.open, STREAMS, "all streams still open");
  assert.deepEqual(result.reached, Array(STREAMS).fill(1), "each player had its one stream");
  assert.deepEqual(problems, []);
});
