// Starting and stopping the real `dualconn serve` binary for the browser tests.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.DUALCONN_BIN ?? path.join(root, "target/debug/dualconn");
const WAIT = 10_000; // bound on the server's start

const servers = new Set(); // every server started, so stopAllServers() can reach them whatever happens

/**
 * Starts `dualconn serve` on a free port with `env` (no other DUALCONN_* variable). Resolves to
 * `{ proc, base }`, `base` being `https://…` when the server was given a certificate.
 */
export function startServer(env = {}) {
  return new Promise((resolve, reject) => {
    const clean = { ...process.env, NO_COLOR: "1" };
    for (const name of Object.keys(clean)) if (name.startsWith("DUALCONN_")) delete clean[name];
    const proc = spawn(BIN, ["serve", "--bind", "127.0.0.1:0"], {
      env: { ...clean, ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    servers.add(proc);
    let stderr = "";
    let started = false;
    const fail = (err) => {
      clearTimeout(timer);
      proc.kill("SIGKILL");
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new Error(`the server did not print its address in time:\n${stderr}`)),
      WAIT,
    );
    proc.once("error", fail);
    proc.once("exit", (code) => fail(new Error(`the server exited early (${code}):\n${stderr}`)));
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      stderr += chunk;
      if (started) return;
      // A whole line only: a chunk may end in the middle of the address.
      const line = /listening addr=(\S+) scheme=(https?)\s/.exec(stderr.replace(/\x1b\[[0-9;]*m/g, ""));
      if (line) {
        started = true;
        clearTimeout(timer);
        proc.removeAllListeners("exit");
        proc.removeAllListeners("error");
        resolve({ proc, base: `${line[2]}://${line[1]}` });
      }
    });
  });
}

export async function stopServer(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
  servers.delete(proc);
}

export async function stopAllServers() {
  await Promise.all([...servers].map(stopServer));
}
