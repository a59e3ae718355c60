// The demo game page, end to end: the real `dualconn serve` binary in dev mode, two players in
// headless Chromium, each page holding a WebSocket and an SSE stream through the real client
// library. They chat; one player's WebSocket is dropped with the page's button and the chat still
// arrives, exactly once, over SSE; then the WebSocket comes back by itself.
//
//   node --test web/tests/demo.test.mjs
//
// Needs target/debug/dualconn (or DUALCONN_BIN) and Chromium (/usr/bin/chromium or CHROMIUM);
// scripts/browser-setup.sh installs Chromium and this folder's node_modules. Screenshots go to
// target/screenshots/; UPDATE_SCREENSHOTS=1 refreshes the committed ones the README shows.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "./chromium.mjs";
import { BIN, startServer, stopServer, stopAllServers } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const SHOTS = process.env.UPDATE_SCREENSHOTS
  ? path.join(here, "screenshots")
  : path.join(root, "target/screenshots");
const WAIT = 10_000; // bound on every wait for a page to catch up

let server; // the dev-mode server most tests use: { proc, base }
let browser;

before(async () => {
  assert.ok(existsSync(BIN), `no binary at ${BIN}: run cargo build -p dualconn first`);
  // Dev mode, with every default: what `dualconn serve` does on a fresh machine.
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await stopAllServers();
});

// ---- A player in a browser -------------------------------------------------------------------

/**
 * Opens the demo page in its own browser context and enters the world as `name`; with `token`,
 * pastes it when the page asks (a server not in dev mode).
 */
async function player(name, { base = server.base, token, expect404 } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`${name}: page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !(expect404 && msg.location()?.url?.endsWith(expect404))) {
      problems.push(`${name}: console error: ${msg.text()} (${msg.location()?.url ?? "?"})`);
    }
  });
  page.on("response", (res) => {
    if (res.status() >= 400 && !res.url().endsWith(expect404 ?? "\0")) {
      problems.push(`${name}: HTTP ${res.status()} for ${res.url()}`);
    }
  });
  await page.goto(base + "/");
  await page.fill("#name", name);
  await page.click("#join");
  if (token) {
    await page.locator("#token").waitFor({ timeout: WAIT });
    assert.match(await page.textContent("#join-error"), /not in dev mode/);
    await page.fill("#token", token);
    await page.click("#join");
  }
  const p = { name, page, context, problems };
  await transportIs(p, "websocket", "open");
  await transportIs(p, "sse", "open");
  // The page looks around as soon as it is connected.
  await page.locator("#log li.msg.room", { hasText: "The Great Hall" }).first().waitFor({ timeout: WAIT });
  return p;
}

async function transportIs(p, kind, state) {
  try {
    await p.page.waitForSelector(`#transport-${kind}[data-state="${state}"]`, { timeout: WAIT });
  } catch (err) {
    const shown = await p.page.getAttribute(`#transport-${kind}`, "data-state").catch(() => "?");
    throw new Error(`${p.name}'s ${kind} never became ${state} (it shows ${shown}): ${err.message}`);
  }
}

async function command(p, text) {
  await p.page.fill("#command", text);
  await p.page.press("#command", "Enter");
}

/** Waits for a `say` line with `text`, then checks it is there exactly once; returns its badge. */
async function heardOnce(p, text) {
  const lines = p.page.locator("#log li.msg.say", { hasText: text });
  await lines.first().waitFor({ timeout: WAIT });
  assert.equal(await lines.count(), 1, `${p.name} shows "${text}" ${await lines.count()} times`);
  return lines.first().locator(".via");
}

async function via(badge) {
  return {
    transports: (await badge.getAttribute("data-transports")).split(",").sort(),
    duplicates: Number(await badge.getAttribute("data-duplicates")),
  };
}

async function screenshot(p, file) {
  mkdirSync(SHOTS, { recursive: true });
  await p.page.screenshot({ path: path.join(SHOTS, file) });
}

// ---- The test ----------------------------------------------------------------------------------

test("two players chat; one's WebSocket drops, the chat goes on over SSE, and it comes back", async () => {
  const alice = await player("alice");
  const bob = await player("bob");
  try {
    // Both in the hall, and each sees the other.
    await command(alice, "look");
    await alice.page
      .locator("#log li.msg.room", { hasText: "Here: bob" })
      .first()
      .waitFor({ timeout: WAIT });

    // Chat with both transports up: one line each, brought by both, one copy dropped.
    await command(alice, "say hello bob");
    const hello = await heardOnce(bob, "hello bob");
    await bob.page.waitForSelector('#log li.msg.say .via[data-duplicates="1"]', { timeout: WAIT });
    assert.deepEqual(await via(hello), { transports: ["sse", "websocket"], duplicates: 1 });
    await heardOnce(alice, "hello bob"); // her own words, as the room heard them
    await command(bob, "say hi alice");
    await heardOnce(alice, "hi alice");

    // Alice pulls her WebSocket's plug. SSE carries on; the page says so.
    await alice.page.click("#transport-websocket .drop");
    await transportIs(alice, "websocket", "waiting");
    assert.equal(await alice.page.getAttribute("#transport-sse", "data-state"), "open");
    assert.equal(await alice.page.textContent("#conn-state"), "connected");
    await alice.page.waitForSelector('#overall-health[data-health="degraded"]', { timeout: WAIT });

    await command(bob, "say are you still there?");
    const still = await heardOnce(alice, "are you still there?");
    assert.deepEqual(await via(still), { transports: ["sse"], duplicates: 0 });
    // Her answer goes over HTTP, since her WebSocket is down.
    await command(alice, "say yes, over SSE");
    await alice.page.waitForSelector('#last-send[data-transport="http"]', { timeout: WAIT });
    await heardOnce(bob, "yes, over SSE");
    await heardOnce(alice, "yes, over SSE");
    await screenshot(alice, "demo-ws-dropped.png");

    // The WebSocket comes back by itself and resumes from where the stream was.
    await transportIs(alice, "websocket", "open");
    await alice.page.waitForSelector('#overall-health[data-health="healthy"]', { timeout: WAIT });
    await alice.page
      .locator("#conn-log li.websocket", { hasText: "resumed after the last event seen" })
      .first()
      .waitFor({ timeout: WAIT });
    await command(bob, "say welcome back");
    const back = await heardOnce(alice, "welcome back");
    await alice.page.waitForSelector('#log li.msg.say .via[data-duplicates="1"] >> nth=-1', { timeout: WAIT });
    assert.deepEqual(await via(back), { transports: ["sse", "websocket"], duplicates: 1 });

    // Nothing was shown twice on either page, and nothing went wrong.
    for (const p of [alice, bob]) {
      for (const text of ["hello bob", "hi alice", "are you still there?", "yes, over SSE", "welcome back"]) {
        await heardOnce(p, text);
      }
      const seqs = await p.page.$$eval("#log li[data-seq]", (lis) => lis.map((li) => li.dataset.seq));
      assert.equal(new Set(seqs).size, seqs.length, `${p.name} shows an event twice`);
      assert.ok(Number(await p.page.textContent("#duplicates")) > 0);
    }
    await screenshot(alice, "demo-chat.png");
    assert.deepEqual([...alice.problems, ...bob.problems], []);
  } finally {
    await alice.context.close();
    await bob.context.close();
  }
});

test("without dev mode the page takes a pasted token; a session started elsewhere stops it until asked", async () => {
  const secret = "a-test-secret-that-is-at-least-32-bytes-long";
  const other = await startServer({
    DUALCONN_JWT_SECRET: secret,
    DUALCONN_ADMIN_KEYS: "demo-test-admin-key-0123456789",
  });
  const token = execFileSync(BIN, ["token", "carol"], {
    env: { ...process.env, DUALCONN_JWT_SECRET: secret },
    encoding: "utf8",
  }).trim();
  const carol = await player("carol", { base: other.base, token, expect404: "/auth/dev-token" });
  try {
    const first = await carol.page.getAttribute("#session-id", "title");
    assert.match(first, /^[A-Za-z0-9_-]{22,}$/);

    // Carol starts a new game on another device: this page is told, stops, and says why.
    const res = await fetch(`${other.base}/api/connections/carol/session`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(res.status, 200);
    const { session_id: second } = await res.json();
    await carol.page.locator("#banner").waitFor({ timeout: WAIT });
    assert.match(await carol.page.textContent("#banner-text"), /new session was started elsewhere/);
    await carol.page.waitForSelector('#conn-state[data-state="stopped"]', { timeout: WAIT });
    await transportIs(carol, "websocket", "stopped");
    await transportIs(carol, "sse", "stopped");
    assert.equal(await carol.page.getAttribute("#session-id", "title"), second);

    // Only when asked does it join the new session.
    await carol.page.click("#rejoin");
    await transportIs(carol, "websocket", "open");
    await transportIs(carol, "sse", "open");
    assert.equal(await carol.page.getAttribute("#session-id", "title"), second);
    await command(carol, "say back again");
    await heardOnce(carol, "back again");
    assert.deepEqual(carol.problems, []);
  } finally {
    await carol.context.close();
    await stopServer(other.proc);
  }
});
