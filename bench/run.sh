#!/usr/bin/env bash
# Reproduces every row of BENCHMARKS.md: dualconn, the raw TCP floor and the Node.js peer in one
# run, each server pinned to CPU 0 and the load generator to CPU 1. Prints the table and keeps
# every JSON line in $OUT (default target/bench-run). Takes about 8 minutes on 2 cores (4 of
# them the rooms rounds).
#
#   bash bench/run.sh            # everything
#   ROWS="hold fanout" bash bench/run.sh   # some rows only
#   ROWS="fanout spread churn" ROUNDS=5 bash bench/run.sh   # the target rows, 5 interleaved
#                                          # rounds, with medians and per-round ratios (~8 min)
#   ROWS=fanout-light ROUNDS=5 bash bench/run.sh   # the fan-out at 20k deliveries/s, a load
#                                          # Node keeps up with on a slower host (~7 min)
#   ROWS=rooms ROOMS_ROUNDS=5 bash bench/run.sh   # room vs list publishing, 5 rounds (~4 min)
#   ROWS=tls TLS_ROUNDS=3 bash bench/run.sh       # TLS beside plain, 3 rounds (~10 min)
#   ROWS=tls TLS_LOADS=light bash bench/run.sh    # only the 2k-connection fan-out pairs (~2 min)
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-"hold fanout vsnode targeted spread churn resume rooms"}
OUT=${OUT:-target/bench-run}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
: >"$OUT/commands.txt"

cargo build --release --locked -q -p dualconn -p dualconn-bench
BIN=${CARGO_TARGET_DIR:-target}/release
# Only rows that run the Node peer need its packages.
case " $ROWS " in
  *" hold "* | *" fanout "* | *" fanout-light "* | *" vsnode "* | *" targeted "* | *" spread "* | *" churn "*)
    (cd bench/baselines/node && { [ -d node_modules/ws ] || npm ci --no-audit --no-fund --silent; })
    ;;
esac

. bench/server-env.sh bench
PORT=${PORT:-18800}
SERVER=""

stop() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
  fi
}
trap stop EXIT

# start KIND: a fresh server of that kind on $PORT, pinned to CPU 0.
start() {
  stop
  sleep 0.5
  case $1 in
    dualconn) DUALCONN_BIND="0.0.0.0:$PORT" taskset -c 0 "$BIN/dualconn" serve >"$OUT/server.log" 2>&1 & ;;
    dualconn-tls)
      DUALCONN_BIND="0.0.0.0:$PORT" DUALCONN_TLS_CERT_FILE="$OUT/tls/cert.pem" DUALCONN_TLS_KEY_FILE="$OUT/tls/key.pem" \
        taskset -c 0 "$BIN/dualconn" serve >"$OUT/server.log" 2>&1 &
      ;;
    node) PORT=$PORT taskset -c 0 node bench/baselines/node/server.mjs >"$OUT/server.log" 2>&1 & ;;
    floor) taskset -c 0 "$BIN/tcp-floor" --port "$PORT" >"$OUT/server.log" 2>&1 & ;;
  esac
  SERVER=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
    sleep 0.1
  done
  cat "$OUT/server.log"
  exit 1
}

# bench ROW SERVER ARGS...: one measurement against a fresh server.
bench() {
  local row=$1 kind=$2
  shift 2
  start "$kind"
  local cmd=("$BIN/dualconn-bench" "$@" --label "$kind" --port "$PORT" --cpu 1 --server-pid "$SERVER")
  # Every connection and publish over TLS, trusting only the run's own certificate.
  if [ "$kind" = dualconn-tls ]; then cmd+=(--tls-ca "$OUT/tls/cert.pem"); fi
  echo "$row: taskset -c 1 ${cmd[*]}" >>"$OUT/commands.txt"
  local json
  json=$(taskset -c 1 "${cmd[@]}" 2>>"$OUT/summaries.txt")
  echo "{\"row\":\"$row\",${json#\{}" >>"$RESULTS"
  tail -n 3 "$OUT/summaries.txt" | sed "s/^/[$row] /" >&2
}

for row in $ROWS; do
  # ROUNDS repeats each row, its servers in turn every round, so the machine's drift falls on
  # all of them alike and bench/medians.mjs can take per-round ratios. Rooms and TLS
  # interleave their own rounds.
  case $row in rooms | tls) reps=1 ;; *) reps=${ROUNDS:-1} ;; esac
  for _ in $(seq "$reps"); do
    case $row in
      hold)
        # Idle memory and set-up cost at 15k connections, per transport.
        for t in ws sse; do
          bench "hold-15k-$t" dualconn hold --players 15000 --transport "$t" --secs 3 --workers 2
          bench "hold-15k-$t" node hold --players 15000 --transport "$t" --secs 3 --workers 2
        done
        bench "hold-15k-floor" floor hold --players 15000 --transport floor --secs 3 --workers 2 --connect-concurrency 64
        ;;
      fanout)
        # 10k connections (5k players x both transports), 5 broadcasts/s = 50k deliveries/s.
        bench fanout-10k-50k dualconn fanout --players 5000 --transport both --rate 5 --secs 10 --workers 2
        bench fanout-10k-50k node fanout --players 5000 --transport both --rate 5 --secs 10 --workers 2
        bench fanout-10k-50k floor fanout --players 10000 --transport floor --rate 5 --secs 10 --workers 2 --connect-concurrency 64
        ;;
      fanout-light)
        # The fan-out row at 2 broadcasts/s = 20k deliveries/s: on a host where Node cannot
        # keep up with 50k/s, its CPU per delivery there is that of a saturated server, which
        # flatters the ratio; here every server delivers the whole load.
        bench fanout-10k-20k dualconn fanout --players 5000 --transport both --rate 2 --secs 10 --workers 2
        bench fanout-10k-20k node fanout --players 5000 --transport both --rate 2 --secs 10 --workers 2
        bench fanout-10k-20k floor fanout --players 10000 --transport floor --rate 2 --secs 10 --workers 2 --connect-concurrency 64
        ;;
      vsnode)
        # 2k connections (1k players x both): broadcast rates up; the highest with p99 <= 50 ms counts.
        for rate in 5 10 25 50 100; do
          bench "vsnode-2k-r$rate" dualconn fanout --players 1000 --transport both --rate "$rate" --secs 4
          bench "vsnode-2k-r$rate" node fanout --players 1000 --transport both --rate "$rate" --secs 4
        done
        bench "vsnode-2k-r100" floor fanout --players 2000 --transport floor --rate 100 --secs 4
        ;;
      targeted)
        # 18k connections (9k players x both), targeted publishes of 10 players, 1000/s = 20k deliveries/s.
        bench targeted-18k-20k dualconn fanout --players 9000 --transport both --mode targeted --batch 10 --rate 1000 --publishers 4 --secs 10 --workers 2
        bench targeted-18k-20k node fanout --players 9000 --transport both --mode targeted --batch 10 --rate 1000 --publishers 4 --secs 10 --workers 2
        ;;
      spread)
        # One broadcast at a time to 10k WebSockets: latency max is the time to reach the last one.
        bench spread-10k dualconn fanout --players 10000 --transport ws --rate 1 --publishes 5 --secs 10 --workers 2
        bench spread-10k node fanout --players 10000 --transport ws --rate 1 --publishes 5 --secs 10 --workers 2
        bench spread-10k floor fanout --players 10000 --transport floor --rate 1 --publishes 5 --secs 10 --workers 2 --connect-concurrency 64
        ;;
      churn)
        # A player's token is minted on each connect, and those minted in the same second are
        # the same (a client reconnecting with the token it holds); `-fresh` rows present a
        # token no server has seen every time, so every set-up verifies one.
        for t in ws sse; do
          bench "churn-$t" dualconn churn --players 1000 --transport "$t" --secs 5 --concurrency 64
          bench "churn-$t" node churn --players 1000 --transport "$t" --secs 5 --concurrency 64
          bench "churn-$t-fresh" dualconn churn --players 1000 --transport "$t" --secs 5 --concurrency 64 --fresh-tokens
          bench "churn-$t-fresh" node churn --players 1000 --transport "$t" --secs 5 --concurrency 64 --fresh-tokens
        done
        ;;
      resume)
        # Forced drops under load; dualconn only (the Node peer keeps no history to resume from).
        bench resume-2k dualconn resume --players 1000 --transport both --rate 20 --secs 8 --drop-every-ms 1000
        ;;
      rooms)
        # Room chat: 10k connections (5k players x both) in 100 rooms of 50, 2 publishes/s per
        # room = 200 publishes/s, 10k player-events/s, 20k deliveries/s; through the room route
        # and as the same player lists through /api/publish. Then the same rooms with nobody
        # connected at 20 publishes/s per room: the publish path alone, where the two differ,
        # without the socket writes that are most of a delivery's cost. Interleaved, the order
        # flipping every round, so drift on this shared machine falls on both targets alike.
        for round in $(seq "${ROOMS_ROUNDS:-5}"); do
          if [ $((round % 2)) -eq 1 ]; then order="room list"; else order="list room"; fi
          for target in $order; do
            bench "rooms-10k-$target" dualconn rooms --players 5000 --rooms 100 --room-rate 2 \
              --target "$target" --transport both --publishers 4 --secs 8 --workers 2
          done
          for target in $order; do
            bench "rooms-offline-$target" dualconn rooms --players 5000 --rooms 100 --room-rate 20 \
              --target "$target" --offline --publishers 4 --secs 8
          done
        done
        ;;
      tls)
        # The same dualconn binary with and without a certificate: set-up CPU (handshake
        # included) and idle RSS per connection on the hold load, CPU per delivery on the fanout
        # load, both as above. Plain and TLS back to back, the order flipping every round, so the
        # machine's drift falls on both alike; bench/tls.mjs prints medians and TLS ÷ plain ratios.
        # TLS_LOADS picks parts: hold, fanout (10k connections, 50k deliveries/s) and light.
        [ -f "$OUT/tls/cert.pem" ] || bash scripts/self-signed-cert.sh "$OUT/tls" >/dev/null
        loads=" ${TLS_LOADS:-hold fanout light} "
        for round in $(seq "${TLS_ROUNDS:-3}"); do
          if [ $((round % 2)) -eq 1 ]; then order="dualconn dualconn-tls"; else order="dualconn-tls dualconn"; fi
          if [[ $loads == *" hold "* ]]; then
            for t in ws sse; do
              for kind in $order; do
                bench "tls-hold-15k-$t" "$kind" hold --players 15000 --transport "$t" --secs 3 --workers 2
              done
            done
          fi
          if [[ $loads == *" fanout "* ]]; then
            for kind in $order; do
              bench tls-fanout-10k-50k "$kind" fanout --players 5000 --transport both --rate 5 --secs 10 --workers 2
            done
          fi
          # light: a lighter load (vsnode-2k-r10's), where plain and TLS deliver alike. On a busy
          # machine the 50k row backs up, TLS further than plain; a backlog batches writes, and CPU
          # per delivery then drops with the backlog, whatever the transport.
          if [[ $loads == *" light "* ]]; then
            for kind in $order; do
              bench tls-fanout-2k-20k "$kind" fanout --players 1000 --transport both --rate 10 --secs 4
            done
          fi
        done
        ;;
    esac
  done
done
stop

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
node bench/table.mjs "$RESULTS"
if [ "${ROUNDS:-1}" -gt 1 ]; then
  echo
  node bench/medians.mjs "$RESULTS"
fi
if grep -q '"scenario":"rooms"' "$RESULTS"; then
  echo
  node bench/rooms.mjs "$RESULTS"
fi
if grep -q '"row":"tls-' "$RESULTS"; then
  echo
  node bench/tls.mjs "$RESULTS"
fi
