// Starts the real `dualconn` binary for the integration tests, on a free port, in dev mode with a
// known admin key, and stops it again. Needs target/debug/dualconn (`cargo build -p dualconn`),
// or DUALCONN_BIN.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.DUALCONN_BIN ?? path.join(root, 'target/debug/dualconn');
export const ADMIN_KEY = 'integration-admin-key-0123456789';

export interface Server {
  base: string;
  stop(): Promise<void>;
  /** Everything the server printed on stderr so far, for failure messages. */
  log(): string;
}

const running = new Set<ChildProcess>();
// Whatever happens to the test process, no server outlives it.
process.once('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

export function startServer(env: Record<string, string> = {}): Promise<Server> {
  if (!existsSync(BIN)) {
    throw new Error(`${BIN} is missing: run \`cargo build -p dualconn\` first`);
  }
  const clean: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(clean)) if (name.startsWith('DUALCONN_')) delete clean[name];
  const proc = spawn(BIN, ['serve', '--bind', '127.0.0.1:0'], {
    env: {
      ...clean,
      NO_COLOR: '1',
      // Dev mode (no signing key) with a key we know instead of the random one.
      DUALCONN_ADMIN_KEYS: ADMIN_KEY,
      // These tests reconnect on purpose far faster than any person; the default attempt limits
      // (2/s per player) would answer 429 and turn the test into one of the backoff.
      DUALCONN_CONNECT_RATE_PER_IP: '10000',
      DUALCONN_CONNECT_BURST_PER_IP: '10000',
      DUALCONN_CONNECT_RATE_PER_PLAYER: '10000',
      DUALCONN_CONNECT_BURST_PER_PLAYER: '10000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(proc);
  let stderr = '';
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    running.delete(proc);
  };
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new Error(`the server did not print its address in time:\n${stderr}`)),
      10_000,
    );
    proc.once('error', fail);
    proc.once('exit', (code) => fail(new Error(`the server exited early (${code}):\n${stderr}`)));
    proc.stderr!.setEncoding('utf8');
    let started = false;
    proc.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      if (started) return;
      // Only a whole line: a chunk can end in the middle of the address. Dev mode announces
      // its URL; with a signing key only the log's `listening` line has the address.
      const dev = /running in DEV MODE on (http:\/\/\S+)\s/.exec(stderr);
      const keyed = /listening addr=(\S+)\s/.exec(stderr);
      const addr = dev ?? (keyed ? [keyed[0], `http://${keyed[1]}`] : null);
      if (addr) {
        started = true;
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        proc.removeAllListeners('error');
        resolve({ base: addr[1]!, stop, log: () => stderr });
      }
    });
  });
}
