#!/usr/bin/env bash
# Instructions per connect, by function: the release server under callgrind while
# `dualconn-bench churn` opens and drops connections of one transport, then callgrind's
# inclusive counts divided by the connects made. Instruction counts repeat from run to run
# whatever else the machine is doing, so two transports, or two builds, compare exactly in
# user space (the kernel is not counted). valgrind's CPU has no SHA extensions, so SHA-256 (the
# credential's digest) and SHA-1 (the WebSocket accept key) run in software here, about 13k
# instructions per WebSocket connect, where a native run on this machine (`sha_ni` in
# /proc/cpuinfo) takes the hardware path.
#   bash bench/churn-instructions.sh ws      # or sse; SERVER=path names another server binary
set -euo pipefail
cd "$(dirname "$0")/.."
transport=${1:?usage: bench/churn-instructions.sh ws|sse}
port=${PORT:-18953}
command -v valgrind >/dev/null || { echo "churn-instructions: valgrind is not installed" >&2; exit 1; }
cargo build --release --locked -q -p dualconn -p dualconn-bench
server=${SERVER:-target/release/dualconn}
out=target/prof/callgrind-churn-$transport.out
mkdir -p target/prof
rm -f "$out" "$out".*
. bench/server-env.sh instructions
DUALCONN_BIND="0.0.0.0:$port" valgrind --tool=callgrind --callgrind-out-file="$out" \
  "$server" serve >/dev/null 2>&1 &
traced=$!
stop() { kill -TERM "$traced" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
# A first pass meets each player for the first time; the second is the one counted, after
# zeroing callgrind's counters.
target/release/dualconn-bench churn --players 50 --transport "$transport" --secs 3 \
  --concurrency 4 --port "$port" >/dev/null 2>&1
callgrind_control --zero "$traced" >/dev/null
report=$(target/release/dualconn-bench churn --players 50 --transport "$transport" --secs "${SECS:-10}" \
  --concurrency 4 --port "$port" 2>/dev/null | tail -n 1)
connects=$(node -e 'console.log(JSON.parse(process.argv[1]).connects)' "$report")
callgrind_control --dump "$traced" >/dev/null
stop
wait "$traced" 2>/dev/null || true
# The dump asked for above; the one written at exit holds only the shutdown.
dump=$out.1
total=$(callgrind_annotate "$dump" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
awk -v t="$total" -v n="$connects" -v x="$transport" \
  'BEGIN {printf "%s: %d instructions over %d connects, %.0f per connect\n", x, t, n, t / n}'
echo "inclusive, per connect (all in $dump):"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null \
  | awk -v n="$connects" '/^ *[0-9,]+ / {c=$1; gsub(",", "", c); $1=""; printf "%8.0f %s\n", c / n, $0}' \
  | head -n "${TOP:-60}"
