// Medians and per-round ratios of a `ROUNDS=N bash bench/run.sh` run: each row's servers ran
// in turn every round, so a ratio taken within a round compares them on the same machine state.
//   node bench/medians.mjs results.jsonl
import { median, readRows } from './jsonl.mjs';

const rows = readRows(process.argv[2]);
const fixed = (x, d) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));

// The figure each row is judged by (BENCHMARKS.md, "Targets").
const measures = {
  hold: ['RSS KiB/conn', (r) => r.server_rss_per_conn_bytes / 1024],
  fanout: ['CPU-µs/delivery', (r) => r.server_cpu_us_per_delivery],
  vsnode: ['CPU-µs/delivery', (r) => r.server_cpu_us_per_delivery],
  targeted: ['latency p99 ms', (r) => r.latency_p99_us / 1000],
  spread: ['last delivery ms', (r) => r.latency_max_us / 1000],
  churn: ['CPU-µs/conn', (r) => r.server_cpu_us_per_conn],
  resume: ['CPU-µs/delivery', (r) => r.server_cpu_us_per_delivery],
};

// Shown beside it: the user-space part of set-up, which loopback's accounting of the client's
// receive does not move (BENCHMARKS.md, "Set-up: user space and the kernel"); for targeted
// publishes, what each delivery cost the server; and for the spread, when the server had
// written its last socket (its answer to the publish, or the floor's to its control line),
// which leaves out how fast the client reads.
const beside = {
  churn: [['user-space CPU-µs/conn', (r) => r.server_user_us_per_conn]],
  targeted: [['CPU-µs/delivery', (r) => r.server_cpu_us_per_delivery]],
  spread: [['last write answered ms', (r) => (r.publish_rtt_max_us === undefined ? undefined : r.publish_rtt_max_us / 1000)]],
};

// [row, figure] -> server -> values, in the order the rounds ran; the judged figure first.
const figures = new Map();
const add = (row, figure, server, value) => {
  const key = `${row}\t${figure}`;
  if (!figures.has(key)) figures.set(key, { row, figure, servers: new Map() });
  const { servers } = figures.get(key);
  if (!servers.has(server)) servers.set(server, []);
  servers.get(server).push(value);
};
for (const r of rows) {
  const kind = r.row.split('-')[0];
  if (!measures[kind] || r.row.startsWith('rooms-') || r.row.startsWith('tls-')) continue;
  for (const [figure, of] of [measures[kind], ...(beside[kind] ?? [])]) {
    const value = of(r);
    if (value !== undefined) add(r.row, figure, r.label, value);
  }
}

// Each server's values and median, then dualconn's ratio to each peer within a round.
console.log('| row | figure | server | per round | median |');
console.log('|---|---|---|---|---|');
for (const { row, figure, servers } of figures.values()) {
  for (const [server, values] of servers) {
    console.log(`| ${row} | ${figure} | ${server} | ${values.map((v) => fixed(v, 2)).join(' · ')} | ${fixed(median(values), 2)} |`);
  }
  const ours = servers.get('dualconn');
  for (const [peer, values] of servers) {
    if (!ours || peer === 'dualconn' || values.length !== ours.length) continue;
    const ratios = ours.map((v, i) => v / values[i]);
    console.log(`| ${row} | ${figure} | dualconn ÷ ${peer} | ${ratios.map((v) => fixed(v, 2)).join(' · ')} | **${fixed(median(ratios), 2)}** |`);
  }
}
