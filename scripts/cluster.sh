#!/usr/bin/env bash
# Three dualconn nodes sharing one Redis, on this machine, for trying cluster mode by hand
# (README, "Run a cluster"):
#   bash scripts/cluster.sh        # Ctrl-C stops all three
# Nodes listen on 127.0.0.1:8001, :8002 and :8003 as node1..node3. Redis is started when
# nothing answers on 127.0.0.1:6379 (scripts/redis-setup.sh). The nodes share a signing secret
# and an admin key (random unless DUALCONN_JWT_SECRET / DUALCONN_ADMIN_KEYS are set); the
# script prints both, a token for alice, and each node's pid. DUALCONN_BIN picks the binary
# (default: the release build, built here).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/redis-setup.sh
if [[ -z "${DUALCONN_BIN:-}" ]]; then
  cargo build --release -p dualconn --locked --quiet
  DUALCONN_BIN=target/release/dualconn
fi
random() { head -c "$1" /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$2"; }
export DUALCONN_JWT_SECRET=${DUALCONN_JWT_SECRET:-$(random 48 40)}
export DUALCONN_ADMIN_KEYS=${DUALCONN_ADMIN_KEYS:-cluster-admin-$(random 24 20)}
export DUALCONN_REDIS_URL=${DUALCONN_REDIS_URL:-redis://127.0.0.1:6379}
export DUALCONN_REDIS_PREFIX=${DUALCONN_REDIS_PREFIX:-dualconn-cluster-$$}
export DUALCONN_ALLOWED_ORIGINS=${DUALCONN_ALLOWED_ORIGINS:-http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003}
export NO_COLOR=1

pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM
for i in 1 2 3; do
  DUALCONN_NODE_ID=node$i "$DUALCONN_BIN" serve --bind "127.0.0.1:800$i" 2>"${CLUSTER_LOG_DIR:-/tmp}/dualconn-node$i.log" &
  pids+=("$!")
done
for i in 1 2 3; do
  for _ in $(seq 200); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:800$i/health/ready")" == 200 ]] && break
    sleep 0.05
  done
done

cat <<INFO
cluster up: http://127.0.0.1:8001 (pid ${pids[0]}), :8002 (pid ${pids[1]}), :8003 (pid ${pids[2]})
logs: ${CLUSTER_LOG_DIR:-/tmp}/dualconn-node{1,2,3}.log

export ADMIN=$DUALCONN_ADMIN_KEYS
export TOKEN=$("$DUALCONN_BIN" token alice)
INFO
echo "ready"
wait
