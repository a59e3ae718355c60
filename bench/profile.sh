#!/usr/bin/env bash
# Where a release server's CPU goes under one load: the server pinned to CPU 0 under
# `perf record`, the load generator on CPU 1, then perf's top symbols. BENCHMARKS.md's profile
# figures ("Where the rest goes", "Idle memory, the second round") come from these loads.
#
#   bash bench/profile.sh fanout-sse     # 10k SSE streams, 5 broadcasts/s
#   bash bench/profile.sh fanout-ws      # the same over WebSockets
#   bash bench/profile.sh fanout         # the fan-out row: both transports
#   bash bench/profile.sh churn-ws       # WebSocket set-up and tear-down (churn-sse for SSE)
#   bash bench/profile.sh fanout-floor   # the raw TCP floor (`tcp-floor`) under fanout-ws's load
#
# SERVER names another server binary to profile (default: the release build of this tree).
# Sampling starts DELAY seconds into the load (default 6, past the connect phase) and lasts
# SECS (default 5). CALLGRAPH=dwarf unwinds with DWARF instead of frame pointers, which the
# release build does not keep: slower and larger, but it gives each function's inclusive share,
# printed with --children. Output: target/prof/perf-<load>.data and a report beside it, whose first
# lines are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

load=${1:?usage: bench/profile.sh fanout|fanout-sse|fanout-ws|fanout-floor|churn-ws|churn-sse}
delay=${DELAY:-6}
secs=${SECS:-5}
port=${PORT:-18760}
case $load in
  fanout) args=(fanout --players 5000 --transport both --rate 5 --secs 14 --workers 2) ;;
  fanout-sse) args=(fanout --players 10000 --transport sse --rate 5 --secs 14 --workers 2) ;;
  fanout-ws) args=(fanout --players 10000 --transport ws --rate 5 --secs 14 --workers 2) ;;
  fanout-floor)
    args=(fanout --players 10000 --transport floor --rate 5 --secs 14 --workers 2 --connect-concurrency 64) ;;
  churn-ws) args=(churn --players 200 --transport ws --secs 12 --concurrency 8) ;;
  churn-sse) args=(churn --players 200 --transport sse --secs 12 --concurrency 8) ;;
  *) echo "profile: unknown load $load" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 1; }

cargo build --release --locked -q -p dualconn -p dualconn-bench
out=target/prof
mkdir -p "$out"
. bench/server-env.sh profile
if [ "$load" = fanout-floor ]; then
  taskset -c 0 target/release/tcp-floor --port "$port" >"$out/profile-server.log" 2>&1 &
else
  DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "${SERVER:-target/release/dualconn}" serve >"$out/profile-server.log" 2>&1 &
fi
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
graph=(-F 2000 -g)
report=(--no-children --sort dso,sym)
if [ "${CALLGRAPH:-}" = dwarf ]; then
  graph=(-F 1000 --call-graph dwarf,16384)
  report=(--children --sort sym)
fi
(sleep "$delay"; perf record -e cpu-clock "${graph[@]}" -o "$out/perf-$load.data" -p "$server" -- sleep "$secs" \
  >/dev/null 2>&1) &
recorder=$!
summary=$(taskset -c 1 target/release/dualconn-bench "${args[@]}" --port "$port" --cpu 1 --server-pid "$server" \
  2>&1 >/dev/null | tail -n 3)
echo "$summary"
wait "$recorder"
perf report -i "$out/perf-$load.data" "${report[@]}" -g none -q 2>/dev/null \
  | grep '%' >"$out/perf-$load.txt" || true
# The kernel's share of the samples, and the CPU per delivery it splits (fan-out loads only).
kernel=$(perf report -i "$out/perf-$load.data" --no-children --sort dso -g none -q 2>/dev/null \
  | awk '/\[kernel/ {sub("%", "", $1); print $1}')
per=$(sed -n 's/.*CPU-µs\/delivery \([0-9.]*\).*/\1/p' <<<"$summary")
if [ -n "$kernel" ] && [ -n "$per" ]; then
  awk -v k="$kernel" -v t="$per" 'BEGIN {printf "split: kernel %.1f%% of samples; of %.2f CPU-µs/delivery, kernel %.2f, user space %.2f\n", k, t, t*k/100, t*(100-k)/100}'
fi
echo "profile: $load; top symbols (all in $out/perf-$load.txt):"
head -n 25 "$out/perf-$load.txt"
