#!/usr/bin/env bash
# Heap allocations per connect: the release server under heaptrack while `dualconn-bench churn`
# opens and drops connections of one transport, then the allocation calls heaptrack counted
# (start-up included, a few thousand) divided by the connects made.
#   bash bench/churn-allocs.sh ws      # or sse; SERVER=path names another server binary
set -euo pipefail
cd "$(dirname "$0")/.."
transport=${1:?usage: bench/churn-allocs.sh ws|sse}
port=${PORT:-18952}
command -v heaptrack >/dev/null || { echo "churn-allocs: heaptrack is not installed" >&2; exit 1; }
cargo build --release --locked -q -p dualconn -p dualconn-bench
server=${SERVER:-target/release/dualconn}
out=target/prof/allocs-$transport
mkdir -p target/prof
rm -f "$out".*
. bench/server-env.sh allocs
DUALCONN_BIND="0.0.0.0:$port" heaptrack -o "$out" "$server" serve >/dev/null 2>&1 &
tracked=$!
# The server is heaptrack's child, not $tracked: it is found by its command line, and stopped
# with TERM so heaptrack writes its record. Also on the way out, if the load fails.
stop() { pkill -TERM -f "^$server serve\$" || true; }
trap stop EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
connects=0
for secs in 1 3; do # the first pass meets each player for the first time
  report=$(target/release/dualconn-bench churn --players 200 --transport "$transport" --secs "$secs" \
    --concurrency 8 --port "$port" 2>/dev/null | tail -n 1)
  connects=$((connects + $(node -e 'console.log(JSON.parse(process.argv[1]).connects)' "$report")))
done
stop
wait "$tracked" 2>/dev/null || true
calls=$(heaptrack_print "$out".* 2>/dev/null | sed -n 's/^calls to allocation functions: \([0-9]*\).*/\1/p')
awk -v c="$calls" -v n="$connects" -v t="$transport" \
  'BEGIN {printf "%s: %d allocation calls over %d connects, %.1f per connect\n", t, c, n, c / n}'
