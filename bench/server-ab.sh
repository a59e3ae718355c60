#!/usr/bin/env bash
# Same load, two server binaries, interleaved: the fan-out row of BENCHMARKS.md (10k
# connections, 5k players on both transports, about 50k deliveries/s) against server A and B in
# turn, each pinned to CPU 0 with the load on CPU 1. Prints server CPU-µs per delivery per run,
# then the medians and the median of B/A within a round.
#   bash bench/server-ab.sh A_BINARY B_BINARY [ROUNDS]
# LOAD replaces the fan-out's arguments, e.g. one transport alone:
#   LOAD="--players 10000 --transport sse --rate 5 --secs 10 --workers 2" bash bench/server-ab.sh A B
# MODE=churn measures set-up instead (CPU-µs per connection; run.sh's churn row by default),
# with its user-space part and the connects' median latency beside it:
#   MODE=churn bash bench/server-ab.sh A B 5
#   MODE=churn LOAD="--players 1000 --transport sse --secs 5 --concurrency 64" bash bench/server-ab.sh A B
# --fresh-tokens in LOAD presents a token no server has seen on every connect.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
cargo build --release --locked -q -p dualconn-bench
. bench/server-env.sh bench
port=${PORT:-18900}
MODE=${MODE:-fanout}
case "$MODE" in
  fanout) LOAD=${LOAD:---players 5000 --transport both --rate 5 --secs 10 --workers 2} ;;
  churn) LOAD=${LOAD:---players 1000 --transport ws --secs 5 --concurrency 64} ;;
  *) echo "MODE is fanout or churn" >&2; exit 2 ;;
esac
one() { # $1 label, $2 binary
  DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "$2" serve >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
  # shellcheck disable=SC2086
  taskset -c 1 target/release/dualconn-bench "$MODE" $LOAD --label "$1" --port "$port" --cpu 1 --server-pid "$pid" 2>/dev/null \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s.trim().split("\n").pop());if(process.argv[1]==="churn"){console.log(`${j.label}: cpu_us_per_conn=${j.server_cpu_us_per_conn} user_us_per_conn=${j.server_user_us_per_conn} connects=${j.connects} connect_p50_us=${j.connect_p50_us} errors=${j.errors}`);return}console.log(`${j.label}: cpu_us_per_delivery=${j.server_cpu_us_per_delivery} deliveries_per_s=${j.deliveries_per_s} latency_p50_ms=${(j.latency_p50_us/1000).toFixed(1)} latency_p99_ms=${(j.latency_p99_us/1000).toFixed(1)} latency_max_ms=${(j.latency_max_us/1000).toFixed(1)} gaps=${j.gaps} dups=${j.duplicates}`)})' "$MODE"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
# The order turns every round (A B, B A, ...): in one sitting the first of each pair measured
# higher in most rounds whichever binary it was (BENCHMARKS.md, "A/B order").
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    one A "$a"; one B "$b"
  else
    one B "$b"; one A "$a"
  fi
done | tee "$lines"
# Medians of each binary's figure, and of B/A within each round.
node --input-type=module -e '
import { readFileSync } from "node:fs";
import { median } from "./bench/jsonl.mjs";
const lines = readFileSync(process.argv[1], "utf8").trim().split("\n");
// The first figure of each line, and in churn mode the user-space part and the median
// connect latency as well.
for (const [name, field] of [["", "\\w+"], ["user-space: ", "user_us_per_conn"], ["connect p50 µs: ", "connect_p50_us"]]) {
  const rows = lines.map((l) => l.match(new RegExp(`^(A|B): .*?\\b${field}=([0-9.]+)`))).filter(Boolean);
  if (rows.length === 0) continue;
  const of = (who) => rows.filter((m) => m[1] === who).map((m) => Number(m[2]));
  const a = of("A"), b = of("B"), ratios = b.map((x, i) => x / a[i]);
  console.log(`${name}median A ${median(a).toFixed(2)}, B ${median(b).toFixed(2)}; B/A per round ${
    ratios.map((x) => x.toFixed(2)).join(" · ")}, median ${median(ratios).toFixed(2)}`);
}
' "$lines"
