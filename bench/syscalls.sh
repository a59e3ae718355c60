#!/usr/bin/env bash
# System calls, context switches and softirqs of the server per connect or per delivery, by the
# kernel's tracepoints (`perf stat -e syscalls:...`, which works here where perf's hardware
# counters do not). Unlike `strace -c`, this does not slow the server down, so the counts are
# those of the timed rows.
#   bash bench/syscalls.sh churn-ws        # the churn row: per connect (also churn-sse)
#   bash bench/syscalls.sh fanout          # the 10k fan-out row: per delivery
#   bash bench/syscalls.sh fanout-floor    # the same load against the raw TCP floor
# SERVER names another dualconn binary; CONCURRENCY the churn's connect loops (64). A
# fan-out's counts are taken over a window inside its publishing (WINDOW seconds from DELAY),
# and divided by its deliveries per second times that window.
set -euo pipefail
cd "$(dirname "$0")/.."
row=${1:?usage: bench/syscalls.sh churn-ws|churn-sse|fanout|fanout-floor}
port=${PORT:-18970}
perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1 \
  || { echo "syscalls: perf cannot count tracepoints here" >&2; exit 1; }
cargo build --release --locked -q -p dualconn -p dualconn-bench
. bench/server-env.sh syscalls
ulimit -n 20000
counts=$(mktemp)
if [ "$row" = fanout-floor ]; then
  taskset -c 0 target/release/tcp-floor --port "$port" >/dev/null 2>&1 &
else
  DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "${SERVER:-target/release/dualconn}" serve >/dev/null 2>&1 &
fi
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$counts"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
events=raw_syscalls:sys_enter
for call in accept4 recvfrom read sendto write writev io_uring_enter epoll_wait epoll_ctl futex close; do
  events="$events,syscalls:sys_enter_$call"
done
events="$events,sched:sched_switch,irq:softirq_entry"
load() { taskset -c 1 target/release/dualconn-bench "$@" --port "$port" --cpu 1 --server-pid "$server" 2>/dev/null | tail -n 1; }
case "$row" in
  churn-ws | churn-sse)
    perf stat -x, -e "$events" -p "$server" -o "$counts" &
    counting=$!
    report=$(load churn --players 1000 --transport "${row#churn-}" --secs "${SECS:-4}" --concurrency "${CONCURRENCY:-64}")
    kill -INT "$counting"; wait "$counting" || true
    per=$(node -e 'console.log(JSON.parse(process.argv[1]).connects)' "$report")
    unit=connect
    ;;
  fanout | fanout-floor)
    window=${WINDOW:-4}
    (sleep "${DELAY:-4}"; exec perf stat -x, -e "$events" -p "$server" -o "$counts" sleep "$window") &
    counting=$!
    if [ "$row" = fanout ]; then
      report=$(load fanout --players 5000 --transport both --rate 5 --secs 10 --workers 2 --connect-concurrency 64)
    else
      report=$(load fanout --players 10000 --transport floor --rate 5 --secs 10 --workers 2 --connect-concurrency 64)
    fi
    wait "$counting"
    per=$(node -e 'console.log(JSON.parse(process.argv[1]).deliveries_per_s * process.argv[2])' "$report" "$window")
    unit=delivery
    ;;
  *) echo "syscalls: unknown row $row" >&2; exit 2 ;;
esac
echo "$row: $report"
awk -F, -v n="$per" -v unit="$unit" '/^[0-9]/ {
  name = $3 == "raw_syscalls:sys_enter" ? "all" : $3; sub(/^.*:(sys_enter_)?/, "", name)
  printf "  %-14s %10d  %6.2f per %s\n", name, $1, $1 / n, unit
}' "$counts"
