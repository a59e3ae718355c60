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
// receive does not move (BENCHMARKS.md, "Set-up: user space and the kernel"); and for the
// spread, when the server had written its last socket (its answer to the publish, or the
// floor's to its control line), which leaves out how fast the client reads.
const beside = {
  churn: [['user-space CPU-µs/conn', (r) => r.server_user_us_per_conn]],
  spread: [['last write answered ms', (r) => (r.publish_rtt_max_us === undefined ? undefined : r.publish_rtt_max_us / 1000)]],
};

// row -> server -> values, in the order the rounds ran.
const byRow = new Map();
const besideByRow = new Map();
const add = (table, r, value) => {
  if (!table.has(r.row)) table.set(r.row, new Map());
  const servers = table.get(r.row);
  if (!servers.has(r.label)) servers.set(r.label, []);
  servers.get(r.label).push(value);
};
for (const r of rows) {
  const kind = r.row.split('-')[0];
  if (!measures[kind] || r.row.startsWith('rooms-') || r.row.startsWith('tls-')) continue;
  add(byRow, r, measures[kind][1](r));
  for (const [figure, of] of beside[kind] ?? []) {
    const extra = of(r);
    if (extra !== undefined) add(besideByRow, { ...r, row: `${r.row}\t${figure}` }, extra);
  }
}

console.log('| row | figure | server | per round | median |');
console.log('|---|---|---|---|---|');
for (const [row, servers] of byRow) {
  const [figure] = measures[row.split('-')[0]];
  for (const [server, values] of servers) {
    console.log(`| ${row} | ${figure} | ${server} | ${values.map((v) => fixed(v, 2)).join(' · ')} | ${fixed(median(values), 2)} |`);
  }
  const ours = servers.get('dualconn');
  if (!ours) continue;
  for (const [peer, values] of servers) {
    if (peer === 'dualconn' || values.length !== ours.length) continue;
    const ratios = ours.map((v, i) => v / values[i]);
    console.log(`| ${row} | ${figure} | dualconn ÷ ${peer} | ${ratios.map((v) => fixed(v, 2)).join(' · ')} | **${fixed(median(ratios), 2)}** |`);
  }
  for (const [figure] of beside[row.split('-')[0]] ?? []) {
    const byServer = besideByRow.get(`${row}\t${figure}`) ?? new Map();
    for (const [server, values] of byServer) {
      console.log(`| ${row} | ${figure} | ${server} | ${values.map((v) => fixed(v, 2)).join(' · ')} | ${fixed(median(values), 2)} |`);
    }
    const ours = byServer.get('dualconn');
    for (const [peer, values] of byServer) {
      if (!ours || peer === 'dualconn' || values.length !== ours.length) continue;
      const ratios = ours.map((v, i) => v / values[i]);
      console.log(`| ${row} | ${figure} | dualconn ÷ ${peer} | ${ratios.map((v) => fixed(v, 2)).join(' · ')} | **${fixed(median(ratios), 2)}** |`);
    }
  }
}
