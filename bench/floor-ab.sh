#!/usr/bin/env bash
# One server binary against the raw TCP floor, interleaved, at the fan-out row's load on one
# transport: 10k connections, 5 broadcasts/s (50k deliveries/s), server on CPU 0, load on
# CPU 1. Prints CPU-µs per delivery and latency per run; ratios are taken within one run.
#   bash bench/floor-ab.sh SERVER_BINARY [TRANSPORT=sse|ws|both] [ROUNDS=2]
# FLOOR_ARGS adds arguments to the floor, e.g. FLOOR_ARGS="--order scattered"; SERVER_BINARY
# `none` runs the floor alone.
set -euo pipefail
cd "$(dirname "$0")/.."
server=$1 transport=${2:-sse} rounds=${3:-2}
# 10k connections either way: `both` gives each player a WebSocket and an SSE stream.
players=10000
if [ "$transport" = both ]; then players=5000; fi
cargo build --release --locked -q -p dualconn-bench
BIN=target/release
. bench/server-env.sh bench
port=${PORT:-18970}
show() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s.trim().split("\n").pop());console.log(`${j.label}: cpu_us_per_delivery=${j.server_cpu_us_per_delivery} latency_p50_ms=${(j.latency_p50_us/1000).toFixed(1)} latency_p99_ms=${(j.latency_p99_us/1000).toFixed(1)} gaps=${j.gaps} dups=${j.duplicates}`)})'
}
for _ in $(seq "$rounds"); do
  # shellcheck disable=SC2086  # FLOOR_ARGS is a list of words
  taskset -c 0 "$BIN/tcp-floor" --port "$port" ${FLOOR_ARGS:-} >/dev/null 2>&1 &
  pid=$!
  sleep 0.5
  taskset -c 1 "$BIN/dualconn-bench" fanout --players 10000 --transport floor --rate 5 --secs 10 --workers 2 \
    --connect-concurrency 64 --label floor --port "$port" --cpu 1 --server-pid "$pid" 2>/dev/null | show
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$server" = none ]; then continue; fi
  DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "$server" serve >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
  taskset -c 1 "$BIN/dualconn-bench" fanout --players "$players" --transport "$transport" --rate 5 --secs 10 --workers 2 \
    --label "dualconn-$transport" --port "$port" --cpu 1 --server-pid "$pid" 2>/dev/null | show
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
