#!/usr/bin/env bash
# The "Cluster" rows of BENCHMARKS.md: three dualconn nodes sharing one Redis, beside a single
# node (no Redis, the default) measured in the same run with the same load.
#
# How the two cores are shared: every dualconn process (the three nodes and the single node) is
# pinned to CPU 0; Redis and the load generator (dualconn-bench and its workers) to CPU 1. The
# Redis is a private one started here on its own port, so its CPU figures count this run only
# (another test on the machine's shared 127.0.0.1:6379 would otherwise be billed to it).
#
# Rows (each bench run is bounded by `timeout`; the whole script takes about 2 minutes):
#   targeted  15k connections (7.5k players x WS+SSE), targeted publishes of 10 players,
#             1000/s = 20k deliveries/s; cluster: connections over 3 nodes, publishes
#             round-robin through all 3.
#   broadcast 10k connections (5k players x WS+SSE), 4 broadcasts/s = 40k deliveries/s,
#             from 4 publishers so one slow broadcast does not hold back the next.
#   kill      6k connections over 3 nodes under continuous targeted publishing; node 1 gets
#             SIGKILL 3 s in; its clients resume on the next node with last_event_id.
#
#   bash bench/cluster.sh                 # everything
#   ROWS="targeted" bash bench/cluster.sh # some rows only
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-"targeted broadcast kill"}
OUT=${OUT:-target/bench-cluster}
BASE_PORT=${BASE_PORT:-18900}
REDIS_PORT=${REDIS_PORT:-16390}
mkdir -p "$OUT"
# Other engineers build on this machine: the load average goes into the output beside the figures.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
: >"$OUT/commands.txt"
: >"$OUT/summaries.txt"

cargo build --release --locked -q -p dualconn -p dualconn-bench
BIN=${CARGO_TARGET_DIR:-target}/release
# Installs redis-server when the machine has none (and starts the shared one we do not use).
bash scripts/redis-setup.sh >/dev/null

. bench/server-env.sh bench
PIDS=()
REDIS=""

stop() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  if [ -n "$REDIS" ]; then
    kill "$REDIS" 2>/dev/null || true
    wait "$REDIS" 2>/dev/null || true
    REDIS=""
  fi
}
trap stop EXIT

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "cluster bench: nothing listens on $1" >&2
  cat "$OUT"/*.log >&2
  exit 1
}

start_redis() {
  taskset -c 1 redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    >"$OUT/redis.log" 2>&1 &
  REDIS=$!
  wait_port "$REDIS_PORT"
  # The pid redis itself reports, as a Redis run elsewhere would be found.
  REDIS_PID=$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')
}

# node PORT [NODE_ID]: one release node pinned to CPU 0; with NODE_ID it joins the cluster.
node() {
  local port=$1 id=${2:-}
  if [ -n "$id" ]; then
    DUALCONN_BIND="0.0.0.0:$port" DUALCONN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
      DUALCONN_REDIS_PREFIX="$PREFIX" DUALCONN_NODE_ID="$id" \
      taskset -c 0 "$BIN"/dualconn serve >"$OUT/$id.log" 2>&1 &
  else
    DUALCONN_BIND="0.0.0.0:$port" taskset -c 0 "$BIN"/dualconn serve >"$OUT/single.log" 2>&1 &
  fi
  PIDS+=($!)
  wait_port "$port"
}

# fresh KIND: stops every server, then starts a single node (KIND=single) or Redis and three
# nodes (KIND=cluster) with a fresh key prefix. Sets PORTS and SERVER_PIDS.
fresh() {
  stop
  sleep 0.5
  PREFIX="bench-$(date +%s%N)"
  if [ "$1" = single ]; then
    node "$BASE_PORT"
    PORTS=$BASE_PORT
    SERVER_PIDS=${PIDS[0]}
    EXTRA=()
  else
    start_redis
    for i in 1 2 3; do node $((BASE_PORT + i)) "node$i"; done
    PORTS="$((BASE_PORT + 1)),$((BASE_PORT + 2)),$((BASE_PORT + 3))"
    SERVER_PIDS=$(IFS=,; echo "${PIDS[*]}")
    EXTRA=(--redis-pid "$REDIS_PID")
  fi
}

# bench ROW KIND ARGS...: one measurement against fresh servers of that kind.
bench() {
  local row=$1 kind=$2
  shift 2
  fresh "$kind"
  local cmd=("$BIN"/dualconn-bench "$@" --label "$kind" --port "$PORTS" --cpu 1
    --server-pid "$SERVER_PIDS" "${EXTRA[@]}")
  echo "$row: taskset -c 1 ${cmd[*]}" >>"$OUT/commands.txt"
  local json
  json=$(timeout 180 taskset -c 1 "${cmd[@]}" 2>>"$OUT/summaries.txt")
  echo "{\"row\":\"$row\",${json#\{}" >>"$RESULTS"
  tail -n 3 "$OUT/summaries.txt" | sed "s/^/[$row] /" >&2
}

for row in $ROWS; do
  case $row in
    targeted)
      for kind in single cluster; do
        bench targeted-15k-20k "$kind" fanout --players 7500 --transport both --mode targeted \
          --batch 10 --rate 1000 --publishers 4 --secs 10 --workers 2
      done
      ;;
    broadcast)
      for kind in single cluster; do
        bench broadcast-10k-r4 "$kind" fanout --players 5000 --transport both --rate 4 --publishers 4 --secs 10 \
          --workers 2
      done
      ;;
    kill)
      # Node 1 is the first pid of the cluster just started; the bench kills it 3 s in.
      fresh cluster
      cmd=("$BIN"/dualconn-bench fanout --players 3000 --transport both --mode targeted
        --batch 30 --rate 400 --publishers 3 --secs 8 --workers 2 --failover
        --kill-pid "${PIDS[0]}" --kill-after-secs 3 --label cluster --port "$PORTS" --cpu 1
        --redis-pid "$REDIS_PID")
      echo "kill-node-6k: taskset -c 1 ${cmd[*]}" >>"$OUT/commands.txt"
      json=$(timeout 180 taskset -c 1 "${cmd[@]}" 2>>"$OUT/summaries.txt")
      echo "{\"row\":\"kill-node-6k\",${json#\{}" >>"$RESULTS"
      tail -n 3 "$OUT/summaries.txt" | sed "s/^/[kill-node-6k] /" >&2
      ;;
  esac
done
stop

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'); $(date -u +%Y-%m-%dT%H:%MZ); load before: $LOAD_BEFORE"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$RESULTS"
