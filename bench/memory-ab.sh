#!/usr/bin/env bash
# Idle memory per connection, two server binaries, interleaved: the hold rows of BENCHMARKS.md
# (15k idle WebSockets, then 15k idle SSE streams) against server A and B in turn, each pinned to
# CPU 0 with the load on CPU 1. Prints server RSS KiB per connection per run. Memory hardly
# depends on how busy the machine is, so this holds on a shared machine better than CPU figures.
#   bash bench/memory-ab.sh A_BINARY B_BINARY [ROUNDS] [PLAYERS]
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-2} players=${4:-15000}
cargo build --release --locked -q -p dualconn-bench
. bench/server-env.sh bench
port=${PORT:-18950}
one() { # $1 label, $2 binary, $3 transport
  DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "$2" serve >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
  taskset -c 1 target/release/dualconn-bench hold --players "$players" --transport "$3" --secs 3 \
    --workers 2 --label "$1" --port "$port" --cpu 1 --server-pid "$pid" 2>/dev/null \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s.trim().split("\n").pop());console.log(`${j.label} ${process.argv[1]}: rss_kib_per_conn=${(j.server_rss_per_conn_bytes/1024).toFixed(2)} cpu_us_per_conn=${j.server_cpu_us_per_conn} connections=${j.connections}`)})' "$3"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for _ in $(seq "$rounds"); do
  for t in ws sse; do
    one A "$a" "$t"
    one B "$b" "$t"
  done
done
