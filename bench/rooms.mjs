// Summarises the `rooms` rows of bench/run.sh: every run, then the median of each target and
// the room ÷ list ratios. One run on this shared machine says little; the medians of rounds
// taken back to back, and the ratio of rounds taken side by side, are what BENCHMARKS.md quotes.
import { readFileSync } from 'node:fs';

const rows = readFileSync(process.argv[2], 'utf8')
  .trim()
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l))
  .filter((r) => r.scenario === 'rooms');

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ms = (us) => (us / 1000).toFixed(2);
const fig = {
  'deliveries/s': (r) => r.deliveries_per_s,
  'p50 ms': (r) => r.latency_p50_us / 1000,
  'p99 ms': (r) => r.latency_p99_us / 1000,
  'CPU-µs/delivery': (r) => r.server_cpu_us_per_delivery,
  'server CPU %': (r) => r.server_cpu_pct,
  'publishes/s': (r) => r.publishes_per_s,
};

// A run whose publishes failed, or whose streams lost or repeated anything, is not a figure.
const bad = rows.filter(
  (r) => r.gaps !== 0 || r.duplicates !== 0 || r.publish_failed !== 0 || r.publish_short !== 0 || r.connect_failed !== 0,
);

console.log('| round | target | deliveries/s | latency p50 / p99 ms | gaps | dups | CPU-µs/delivery | server CPU % | client CPU % | publishes/s |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
const seen = { room: 0, list: 0 };
for (const r of rows) {
  seen[r.target] += 1;
  console.log(
    `| ${seen[r.target]} | ${r.target} | ${Math.round(r.deliveries_per_s)} | ${ms(r.latency_p50_us)} / ${ms(r.latency_p99_us)} | ${r.gaps} | ${r.duplicates} | ${r.server_cpu_us_per_delivery} | ${r.server_cpu_pct} | ${r.client_cpu_pct} | ${r.publishes_per_s} |`,
  );
}

const by = (t) => rows.filter((r) => r.target === t);
const room = by('room');
const list = by('list');
console.log();
console.log(`| median of ${room.length} room / ${list.length} list runs | room | list | room ÷ list |`);
console.log('|---|---|---|---|');
for (const [name, f] of Object.entries(fig)) {
  const a = median(room.map(f));
  const b = median(list.map(f));
  console.log(`| ${name} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(a / b).toFixed(3)} |`);
}
// Round k's room run and list run were taken next to each other: their ratio is the least
// exposed to the machine drifting over the whole run.
const pairs = Math.min(room.length, list.length);
const ratios = [];
for (let i = 0; i < pairs; i++) {
  ratios.push(room[i].server_cpu_us_per_delivery / list[i].server_cpu_us_per_delivery);
}
console.log();
console.log(
  `CPU-µs/delivery room ÷ list per round: ${ratios.map((x) => x.toFixed(3)).join(' · ')}; median ${median(ratios).toFixed(3)}`,
);
if (bad.length > 0) {
  console.log(`NOT CLEAN: ${bad.length} run(s) with gaps, duplicates, failed or short publishes, or failed connects`);
  process.exitCode = 1;
}
