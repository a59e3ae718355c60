// Summarises the `tls` rows of bench/run.sh: per load, the median of the plain and the TLS
// runs, the TLS ÷ plain ratios (of the medians, and round by round, since a round's two runs
// were taken back to back), and the issue 15 targets: idle RSS under TLS ≤ 2× plain, CPU per
// delivery ≤ 1.5× plain.
import { median, readRows } from './jsonl.mjs';

const rows = readRows(process.argv[2]).filter((r) => r.row.startsWith('tls-'));

const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const clean = (r) => r.connect_failed === 0 && (r.gaps ?? 0) === 0 && (r.duplicates ?? 0) === 0 && (r.publish_failed ?? 0) === 0;

const figs = {
  'RSS KiB/conn': [(r) => r.server_rss_per_conn_bytes / 1024, 2],
  'CPU-µs/conn (set-up)': [(r) => r.server_cpu_us_per_conn, null],
  'CPU-µs/delivery': [(r) => r.server_cpu_us_per_delivery, 1.5],
  'deliveries/s': [(r) => r.deliveries_per_s, null],
  'connect p50 ms': [(r) => r.connect_p50_us / 1000, null],
  'connects/s': [(r) => r.connects_per_s, null],
  'latency p50 ms': [(r) => r.latency_p50_us / 1000, null],
  'latency p99 ms': [(r) => r.latency_p99_us / 1000, null],
  'server CPU %': [(r) => r.server_cpu_pct, null],
  'client CPU %': [(r) => r.client_cpu_pct ?? r.client_cpu_pct_connect, null],
};

let dirty = 0;
let missed = 0;
for (const load of [...new Set(rows.map((r) => r.row))]) {
  const runs = rows.filter((r) => r.row === load);
  dirty += runs.filter((r) => !clean(r)).length;
  const plain = runs.filter((r) => !r.tls);
  const tls = runs.filter((r) => r.tls);
  // Hold rows deliver nothing; fanout rows' RSS includes the queues, so the memory target is
  // judged on hold rows and the CPU target on fanout rows.
  const fanout = runs[0].scenario === 'fanout';
  console.log(`### ${load}`);
  console.log();
  console.log(`| median of ${plain.length} plain / ${tls.length} TLS runs | plain | TLS | TLS − plain | TLS ÷ plain | per round | target |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, [f, target]] of Object.entries(figs)) {
    const a = median(plain.map(f));
    const b = median(tls.map(f));
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    const perRound = [];
    for (let i = 0; i < Math.min(plain.length, tls.length); i++) perRound.push(f(tls[i]) / f(plain[i]));
    const judged = target !== null && (fanout ? name.startsWith('CPU-µs/delivery') : name.startsWith('RSS'));
    let verdict = '';
    if (judged) {
      const met = b / a <= target;
      if (!met) missed += 1;
      verdict = `≤ ${target}×: ${met ? 'met' : 'NOT met'}`;
    }
    console.log(
      `| ${name} | ${f2(a)} | ${f2(b)} | ${f2(b - a)} | ${(b / a).toFixed(3)} | ${perRound.map((x) => x.toFixed(2)).join(' · ')} | ${verdict} |`,
    );
  }
  console.log();
}
if (dirty > 0) {
  console.log(`NOT CLEAN: ${dirty} run(s) with failed connects, gaps, duplicates or failed publishes`);
  process.exitCode = 1;
}
if (missed > 0) console.log(`${missed} target(s) not met`);
