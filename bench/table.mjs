// Prints bench/run.sh's JSON lines as a Markdown table.
import { readRows } from './jsonl.mjs';

const rows = readRows(process.argv[2]);
const ms = (us) => (us === undefined ? '' : (us / 1000).toFixed(2));
const n = (x, d = 0) => (x === undefined || x === null ? '' : Number(x).toFixed(d));
const cols = [
  ['row', (r) => r.row],
  ['server', (r) => r.label],
  ['conns', (r) => r.connections ?? ''],
  ['connect p50/p99 ms', (r) => (r.connect_p50_us === undefined ? '' : `${ms(r.connect_p50_us)} / ${ms(r.connect_p99_us)}`)],
  ['connects/s', (r) => n(r.connects_per_s)],
  ['deliveries/s', (r) => n(r.deliveries_per_s)],
  ['latency p50/p99/max ms', (r) => (r.latency_p50_us === undefined ? '' : `${ms(r.latency_p50_us)} / ${ms(r.latency_p99_us)} / ${ms(r.latency_max_us)}`)],
  ['gaps', (r) => r.gaps ?? ''],
  ['dups', (r) => r.duplicates ?? ''],
  ['RSS KiB/conn', (r) => (r.server_rss_per_conn_bytes === undefined ? '' : (r.server_rss_per_conn_bytes / 1024).toFixed(2))],
  ['CPU-µs/conn', (r) => n(r.server_cpu_us_per_conn, 1)],
  ['CPU-µs/delivery', (r) => n(r.server_cpu_us_per_delivery, 2)],
  ['server CPU %', (r) => n(r.server_cpu_pct, 0)],
  ['client CPU %', (r) => n(r.client_cpu_pct ?? r.client_cpu_pct_connect, 0)],
];
console.log('| ' + cols.map((c) => c[0]).join(' | ') + ' |');
console.log('|' + cols.map(() => '---').join('|') + '|');
for (const r of rows) console.log('| ' + cols.map((c) => c[1](r)).join(' | ') + ' |');
