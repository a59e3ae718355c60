#!/usr/bin/env bash
# scripts/soak.sh [minutes]: everything a server lives through, all at once, against the release
# binary, then proof that nothing leaked.
#
#   warm-up   the same mix for SOAK_WARMUP_SECS, then idle: RSS, descriptors and runtime tasks
#             are recorded once the server holds no connection and has forgotten every player
#             (history and session ttls are seconds here, so "idle" comes within a sweep).
#   soak      for [minutes] (default 30): broadcast publishing with random forced drops and
#             resume on both transports, targeted publishing, connection churn, slow readers
#             that must be closed with 4008, session changes (4001), tokens that expire on open connections (1008) and garbage
#             on the socket (dualconn-bench resume, fanout, churn and chaos side by side).
#   verdict   zero gaps and duplicates; RSS back within SOAK_RSS_SLACK_PCT (10) % of the
#             post-warm-up level; descriptors and tasks back to that level; no panic in the log.
#
# CI runs one minute of it on the debug binaries the test command already built, with a generous
# RSS slack (scripts/test.sh). Run it under `nice -n 10` on a shared machine. Figures are
# printed; nothing is timed.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-30}
SOAK_SECS=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
WARMUP_SECS=${SOAK_WARMUP_SECS:-20}
RSS_SLACK_PCT=${SOAK_RSS_SLACK_PCT:-10}
PROFILE=${SOAK_PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-target}

if [ "$PROFILE" = release ]; then
  cargo build --release --locked -q -p dualconn -p dualconn-bench
else
  bash scripts/build-debug.sh
fi
SERVER_BIN=$TARGET/$PROFILE/dualconn
BENCH=$TARGET/$PROFILE/dualconn-bench

. bench/server-env.sh soak
# Expiring tokens end on time, with no grace, so the expiry loop turns over quickly.
export DUALCONN_JWT_LEEWAY_SECS=0
# Players and their history are forgotten seconds after the load, so memory must come back.
export DUALCONN_HISTORY_TTL_SECS=5 DUALCONN_SESSION_TTL_SECS=5
# Below the kernel's ephemeral range (32768 and up), so no outgoing connection holds the port.
PORT=$((20000 + RANDOM % 12000))
LOG=$(mktemp)
WORK=$(mktemp -d)
DUALCONN_BIND="0.0.0.0:$PORT" "$SERVER_BIN" serve >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$LOG" "$WORK"
}
trap cleanup EXIT

fail() {
  echo "soak: FAIL: $*" >&2
  echo "soak: last lines of the server log:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
}

for _ in $(seq 100); do
  if curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null; then break; fi
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null || fail "the server did not start"

metric() {
  curl -sf -H "Authorization: Bearer $DUALCONN_ADMIN_KEYS" "http://127.0.0.1:$PORT/metrics" |
    awk -v name="$1" '$1 == name { printf "%d", $2 }'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER/status"; }
fds() { find "/proc/$SERVER/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# Waits until the server holds no connection, no queued byte and no session (the sweeper runs
# every 30 s), then lets the allocator settle; fails if it never gets there.
wait_idle() {
  for _ in $(seq 1200); do
    if [ "$(metric dualconn_node_connections)" = 0 ] && [ "$(metric dualconn_node_queued_bytes)" = 0 ] &&
      [ "$(metric dualconn_sessions)" = 0 ]; then
      sleep 2
      return 0
    fi
    sleep 0.1
  done
  fail "never idle: $(metric dualconn_node_connections) connections, $(metric dualconn_sessions) sessions"
}

# load SECS NAME: the whole mix, each part writing its JSON line to $WORK/NAME-PART.json.
load() {
  local secs=$1 name=$2
  local common=(--port "$PORT" --server-pid "$SERVER" --quiet-ms 1000)
  local pids=()
  timeout $((secs + 120)) "$BENCH" resume "${common[@]}" --prefix r --players 100 --transport both \
    --mode broadcast --rate 20 --drop-every-ms 700 --secs "$secs" >"$WORK/$name-resume.json" 2>"$WORK/$name-resume.err" &
  pids+=($!)
  timeout $((secs + 120)) "$BENCH" fanout "${common[@]}" --prefix t --players 100 --transport both \
    --mode targeted --batch 5 --rate 40 --secs "$secs" >"$WORK/$name-fanout.json" 2>"$WORK/$name-fanout.err" &
  pids+=($!)
  timeout $((secs + 120)) "$BENCH" churn "${common[@]}" --prefix c --players 50 --transport both \
    --concurrency 4 --secs "$secs" >"$WORK/$name-churn.json" 2>"$WORK/$name-churn.err" &
  pids+=($!)
  timeout $((secs + 120)) "$BENCH" chaos --port "$PORT" --secs "$secs" \
    >"$WORK/$name-chaos.json" 2>"$WORK/$name-chaos.err" &
  pids+=($!)
  local failed=0
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
  [ "$failed" = 0 ] || fail "$name: a load generator failed: $(cat "$WORK/$name"-*.err)"
}

# field FILE KEY: a number from a one-line JSON result.
field() { grep -o "\"$2\":[0-9]*" "$1" | head -n 1 | cut -d: -f2; }

echo "soak: $PROFILE server pid $SERVER on port $PORT; warm-up ${WARMUP_SECS}s, soak ${SOAK_SECS}s"
base_fds=$(fds)
base_tasks=$(metric dualconn_runtime_alive_tasks)
load "$WARMUP_SECS" warmup
wait_idle
warm_rss=$(rss_kib)
warm_fds=$(fds)
warm_tasks=$(metric dualconn_runtime_alive_tasks)
echo "soak: before load fds=$base_fds tasks=$base_tasks; after warm-up rss=${warm_rss}KiB fds=$warm_fds tasks=$warm_tasks"

peak=0
( while kill -0 "$SERVER" 2>/dev/null; do rss_kib >>"$WORK/rss"; sleep 5; done ) &
SAMPLER=$!
load "$SOAK_SECS" soak
kill "$SAMPLER" 2>/dev/null || true
peak=$(sort -n "$WORK/rss" | tail -n 1)
wait_idle
end_rss=$(rss_kib)
end_fds=$(fds)
end_tasks=$(metric dualconn_runtime_alive_tasks)

gaps=0
dups=0
for part in resume fanout; do
  g=$(field "$WORK/soak-$part.json" gaps)
  d=$(field "$WORK/soak-$part.json" duplicates)
  [ -n "$g" ] && [ -n "$d" ] || fail "$part printed no gap and duplicate counts: $(cat "$WORK/soak-$part.json")"
  gaps=$((gaps + g))
  dups=$((dups + d))
done
deliveries=$(($(field "$WORK/soak-resume.json" deliveries) + $(field "$WORK/soak-fanout.json" deliveries)))
reconnects=$(field "$WORK/soak-resume.json" reconnects)
connects=$(field "$WORK/soak-churn.json" connects)
chaos=$(cat "$WORK/soak-chaos.json")
unexpected=$(field "$WORK/soak-chaos.json" unexpected)
panics=$(grep -ci "panicked" "$LOG" || true)
shed=$(metric dualconn_node_shed_connections_total)
limit_kib=$((warm_rss + warm_rss * RSS_SLACK_PCT / 100))

echo "soak: ${SOAK_SECS}s: deliveries=$deliveries reconnects=$reconnects churn_connects=$connects shed_by_budget=$shed"
echo "soak: chaos $chaos"
echo "soak: gaps=$gaps duplicates=$dups panics=$panics"
echo "soak: rss warm-up=${warm_rss}KiB peak=${peak}KiB end=${end_rss}KiB (limit ${limit_kib}KiB, +${RSS_SLACK_PCT}%)"
echo "soak: fds warm-up=$warm_fds end=$end_fds; tasks warm-up=$warm_tasks end=$end_tasks"

[ "$gaps" = 0 ] || fail "$gaps events were lost"
[ "$dups" = 0 ] || fail "$dups events arrived twice"
[ "$unexpected" = 0 ] || fail "chaos saw $unexpected unexpected outcomes: $(cat "$WORK/soak-chaos.err")"
for k in slow_closed_4008 session_closed_4001 expired_closed_1008 garbage_sent; do
  [ "$(field "$WORK/soak-chaos.json" "$k")" -gt 0 ] || fail "chaos never got $k"
done
[ "$panics" = 0 ] || fail "the server log has a panic"
[ "$end_rss" -le "$limit_kib" ] || fail "RSS ${end_rss}KiB is more than ${RSS_SLACK_PCT}% above ${warm_rss}KiB"
# Each runtime worker that has broadcast keeps its io_uring's descriptor for the thread's life
# (`send_ring.rs`): one per core at most, opened during the warm-up, never again after it.
[ "$warm_fds" -le $((base_fds + $(nproc))) ] || fail "descriptors: $warm_fds open after the warm-up, $base_fds before the load"
[ "$end_fds" -le "$warm_fds" ] || fail "descriptors: $end_fds open, $warm_fds after the warm-up"
[ "$end_tasks" -le "$base_tasks" ] || fail "runtime tasks: $end_tasks alive, $base_tasks before the load"
echo "soak: passed"
