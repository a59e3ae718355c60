#!/usr/bin/env bash
# TCP segments and their kinds per connect under the churn load of one transport: the kernel's
# counters (nstat) around a `dualconn-bench churn` against a fresh server, divided by the
# connects it made. Loopback counts every segment once sent and once received. Other traffic on
# the machine lands in the same counters, so run it on a quiet machine.
#   bash bench/churn-segments.sh ws      # or sse
set -euo pipefail
cd "$(dirname "$0")/.."
transport=${1:?usage: bench/churn-segments.sh ws|sse}
port=${PORT:-18950}
command -v nstat >/dev/null || { echo "churn-segments: nstat (iproute2) is not installed" >&2; exit 1; }
cargo build --release --locked -q -p dualconn -p dualconn-bench
. bench/server-env.sh segments
DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "${SERVER:-target/release/dualconn}" serve >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
counters=$(mktemp)
nstat -n >/dev/null
report=$(taskset -c 1 target/release/dualconn-bench churn --players 1000 --transport "$transport" \
  --secs "${SECS:-3}" --concurrency 64 --port "$port" --cpu 1 --server-pid "$server" 2>/dev/null | tail -n 1)
nstat >"$counters"
connects=$(node -e 'console.log(JSON.parse(process.argv[1]).connects)' "$report")
echo "$transport: $connects connects"
awk -v n="$connects" 'NR > 1 && $2 > 0 {printf "  %-28s %10d  %6.2f per connect\n", $1, $2, $2 / n}' "$counters"
rm -f "$counters"
