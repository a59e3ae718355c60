// Summarises the `rooms` rows of bench/run.sh: every run, then per load the median of each
// target and the room ÷ list ratios. One run on this shared machine says little; medians of
// rounds taken back to back, and ratios of runs taken side by side, are what BENCHMARKS.md quotes.
import { median, readRows } from './jsonl.mjs';

const rows = readRows(process.argv[2]).filter((r) => r.scenario === 'rooms');

const ms = (us) => (us === undefined ? '-' : (us / 1000).toFixed(2));
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');

// A run whose publishes failed, or whose streams lost or repeated anything, is not a figure.
const clean = (r) =>
  r.gaps === 0 && r.duplicates === 0 && r.publish_failed === 0 && r.publish_short === 0 && r.connect_failed === 0;

// Rows are named <load>-<target> by run.sh.
const loads = [...new Set(rows.map((r) => r.row.replace(/-(room|list)$/, '')))];
let dirty = 0;
for (const load of loads) {
  const runs = rows.filter((r) => r.row.replace(/-(room|list)$/, '') === load);
  const offline = runs.every((r) => r.offline);
  // Offline runs deliver nothing: what they measure is the publish path per player-event.
  const cpu = offline ? (r) => r.server_cpu_us_per_player_event : (r) => r.server_cpu_us_per_delivery;
  const cpuName = offline ? 'CPU-µs/player-event' : 'CPU-µs/delivery';
  console.log(`### ${load}`);
  console.log();
  console.log(`| round | target | deliveries/s | latency p50 / p99 ms | publish answer p50 / p99 ms | gaps | dups | ${cpuName} | server CPU % | client CPU % | publishes/s |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  const seen = { room: 0, list: 0 };
  for (const r of runs) {
    seen[r.target] += 1;
    if (!clean(r)) dirty += 1;
    console.log(
      `| ${seen[r.target]} | ${r.target} | ${Math.round(r.deliveries_per_s)} | ${offline ? '-' : `${ms(r.latency_p50_us)} / ${ms(r.latency_p99_us)}`} | ${ms(r.publish_rtt_p50_us)} / ${ms(r.publish_rtt_p99_us)} | ${r.gaps} | ${r.duplicates} | ${cpu(r)} | ${r.server_cpu_pct} | ${r.client_cpu_pct} | ${r.publishes_per_s} |`,
    );
  }
  const fig = {
    'deliveries/s': (r) => r.deliveries_per_s,
    'latency p50 ms': (r) => r.latency_p50_us / 1000,
    'latency p99 ms': (r) => r.latency_p99_us / 1000,
    'publish answer p50 ms': (r) => r.publish_rtt_p50_us / 1000,
    'publish answer p99 ms': (r) => r.publish_rtt_p99_us / 1000,
    [cpuName]: cpu,
    'server CPU %': (r) => r.server_cpu_pct,
    'publishes/s': (r) => r.publishes_per_s,
  };
  if (offline) {
    delete fig['deliveries/s'];
    delete fig['latency p50 ms'];
    delete fig['latency p99 ms'];
  }
  const room = runs.filter((r) => r.target === 'room');
  const list = runs.filter((r) => r.target === 'list');
  console.log();
  console.log(`| median of ${room.length} room / ${list.length} list runs | room | list | room ÷ list |`);
  console.log('|---|---|---|---|');
  for (const [name, f] of Object.entries(fig)) {
    const a = median(room.map(f));
    const b = median(list.map(f));
    console.log(`| ${name} | ${f2(a)} | ${f2(b)} | ${(a / b).toFixed(3)} |`);
  }
  // Round k's room run and list run were taken next to each other: their ratio is the least
  // exposed to the machine drifting over the whole run.
  const ratios = [];
  for (let i = 0; i < Math.min(room.length, list.length); i++) ratios.push(cpu(room[i]) / cpu(list[i]));
  console.log();
  console.log(
    `${cpuName} room ÷ list per round: ${ratios.map((x) => x.toFixed(3)).join(' · ')}; median ${median(ratios).toFixed(3)}`,
  );
  console.log();
}
if (dirty > 0) {
  console.log(`NOT CLEAN: ${dirty} run(s) with gaps, duplicates, failed or short publishes, or failed connects`);
  process.exitCode = 1;
}
