#!/usr/bin/env bash
# Redis CPU per player-event of the cluster's broadcast (or targeted publish) scripts, one
# version against another, with no dualconn node running: what a cluster broadcast costs Redis
# itself. Starts a private redis-server (no persistence) on $PORT, loads the same players into
# both sides the way a cluster does (each side's own JOIN: N players, each with a WebSocket and an
# SSE connection on two of three nodes, as bench/cluster.sh spreads them), runs the two sides'
# broadcasts in alternating rounds and prints Redis's CPU time per player-event (its main
# thread's, from INFO cpu; and INFO commandstats for every command the scripts called), each
# round's B/A, and when one node's channel hears a broadcast's first and last events; then
# stops Redis. On a busy machine trust the B/A medians more than the absolute figures.
#   bash bench/redis-script-ab.sh                       # main's scripts against the work tree's
#   bash bench/redis-script-ab.sh --a git:HEAD~1 --full # another base, every history full
#   bash bench/redis-script-ab.sh --mode publish        # targeted publishes of 10 players
# Options go to bench/redis_script_ab.py (--players, --chunk, --rounds, --history, …).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-16499}
CPU=${BENCH_CPU:-1}

taskset -c "$CPU" redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no \
  >/dev/null 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true; wait $REDIS 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done
python3 bench/redis_script_ab.py --port "$PORT" "$@"
