#!/usr/bin/env bash
# A small smoke of every dualconn-bench scenario against a real server: a few hundred
# connections for a few seconds each, asserting zero gaps and zero duplicates. No timings are
# asserted; this only keeps the tool (and the server's delivery guarantees) working.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build-debug.sh
BIN=${CARGO_TARGET_DIR:-target}/debug
BENCH=$BIN/dualconn-bench

. bench/server-env.sh smoke
# Below the kernel's ephemeral range (32768 and up), so no outgoing connection holds the port.
PORT=$((20000 + RANDOM % 12000))
LOG=$(mktemp)
DUALCONN_BIND="0.0.0.0:$PORT" "$BIN/dualconn" serve >"$LOG" 2>&1 &
SERVER=$!
NODES=()
TLS_SERVER=""
cleanup() {
  for p in "$SERVER" $TLS_SERVER "${NODES[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "$SERVER" $TLS_SERVER "${NODES[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$LOG"
}
trap cleanup EXIT

for _ in $(seq 100); do
  if curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null; then break; fi
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null || { cat "$LOG"; exit 1; }

# check NAME JSON KEY=VALUE...: every key must have exactly that value.
check() {
  local name=$1 json=$2
  shift 2
  for kv in "$@"; do
    if ! grep -q "\"${kv%%=*}\":${kv#*=}[,}]" <<<"$json"; then
      echo "bench smoke: $name: expected ${kv%%=*} = ${kv#*=} in $json" >&2
      exit 1
    fi
  done
  echo "bench smoke: $name ok"
}

run() { timeout 60 "$BENCH" "$@" --port "$PORT" --server-pid "$SERVER" --quiet-ms 300 2>/dev/null; }

out=$(run fanout --players 100 --transport both --rate 20 --secs 2 --workers 2)
check "fanout broadcast ws+sse" "$out" connections=200 connect_failed=0 gaps=0 duplicates=0 closed_by_server=0
grep -q '"deliveries":[1-9]' <<<"$out"

out=$(run fanout --players 200 --transport ws --mode targeted --batch 5 --rate 100 --publishers 2 --secs 2)
check "fanout targeted ws" "$out" connections=200 connect_failed=0 gaps=0 duplicates=0
grep -q '"deliveries":[1-9]' <<<"$out"

out=$(run fanout --players 200 --transport sse --rate 20 --secs 1)
check "fanout broadcast sse" "$out" connections=200 connect_failed=0 gaps=0 duplicates=0

out=$(run hold --players 150 --transport both --secs 1)
check "hold" "$out" connections=300 connect_failed=0 errors=0
grep -q '"server_rss_per_conn_bytes":' <<<"$out"

out=$(run churn --players 50 --transport ws --secs 1 --concurrency 8)
check "churn ws" "$out" errors=0
grep -q '"connects":[1-9]' <<<"$out"
out=$(run churn --players 50 --transport sse --secs 1 --concurrency 8)
check "churn sse" "$out" errors=0
grep -q '"connects":[1-9]' <<<"$out"

out=$(run resume --players 100 --transport both --rate 20 --secs 3 --drop-every-ms 400)
check "resume ws+sse" "$out" connections=200 gaps=0 duplicates=0 unrecovered=0
grep -q '"reconnects":[1-9]' <<<"$out"

# Rooms: the same room load through the room route (memberships PUT first) and as player lists.
for target in room list; do
  out=$(run rooms --players 200 --rooms 4 --room-rate 10 --transport both --publishers 2 --secs 1.5 \
    --target "$target" --prefix "smoke-$target")
  check "rooms --target $target ws+sse" "$out" connections=400 connect_failed=0 gaps=0 duplicates=0 \
    publish_failed=0 publish_short=0 room_size=50
  grep -q '"deliveries":[1-9]' <<<"$out"
done
out=$(run rooms --players 200 --rooms 4 --room-rate 20 --offline --publishers 2 --secs 1 --prefix smoke-offline)
check "rooms --offline" "$out" connections=0 publish_failed=0 publish_short=0
grep -q '"server_cpu_us_per_player_event":' <<<"$out"

# TLS: a second server with a fresh self-signed certificate; WebSocket (wss://), SSE and the
# publishes all over TLS, trusting only that certificate.
TLSDIR=$(mktemp -d)
bash scripts/self-signed-cert.sh "$TLSDIR" >/dev/null
TPORT=$((PORT + 10))
DUALCONN_BIND="0.0.0.0:$TPORT" DUALCONN_TLS_CERT_FILE="$TLSDIR/cert.pem" DUALCONN_TLS_KEY_FILE="$TLSDIR/key.pem" \
  "$BIN/dualconn" serve >>"$LOG" 2>&1 &
TLS_SERVER=$!
for _ in $(seq 100); do
  if curl -sf --cacert "$TLSDIR/cert.pem" "https://localhost:$TPORT/health/live" >/dev/null; then break; fi
  sleep 0.1
done
out=$(timeout 60 "$BENCH" fanout --players 50 --transport both --rate 10 --secs 1 --port "$TPORT" \
  --server-pid "$TLS_SERVER" --tls-ca "$TLSDIR/cert.pem" --quiet-ms 300 2>/dev/null)
rm -rf "$TLSDIR"
check "fanout over TLS ws+sse" "$out" connections=100 connect_failed=0 gaps=0 duplicates=0 publish_failed=0 tls=true
grep -q '"deliveries":[1-9]' <<<"$out"
kill "$TLS_SERVER" 2>/dev/null || true
wait "$TLS_SERVER" 2>/dev/null || true
TLS_SERVER=""

# Cluster: three nodes on one Redis (own key prefix); connections spread over them, publishes
# round-robin through them, then node 1 is killed and its clients resume on the others.
bash scripts/redis-setup.sh >/dev/null
REDIS_URL="redis://127.0.0.1:${DUALCONN_TEST_REDIS_PORT:-6379}"
PREFIX="bench-smoke-$(date +%s%N)"
CPORTS=()
for i in 1 2 3; do
  p=$((PORT + i))
  DUALCONN_BIND="0.0.0.0:$p" DUALCONN_REDIS_URL="$REDIS_URL" DUALCONN_REDIS_PREFIX="$PREFIX" \
    DUALCONN_NODE_ID="smoke$i" "$BIN/dualconn" serve >>"$LOG" 2>&1 &
  NODES+=($!)
  CPORTS+=("$p")
done
for p in "${CPORTS[@]}"; do
  for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$p/health/ready" >/dev/null; then break; fi
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$p/health/ready" >/dev/null || { cat "$LOG"; exit 1; }
done
CLUSTER=$(IFS=,; echo "${CPORTS[*]}")
crun() { timeout 60 "$BENCH" "$@" --port "$CLUSTER" --quiet-ms 300 2>/dev/null; }

out=$(crun fanout --players 100 --transport both --rate 20 --secs 2 --server-pid "$(IFS=,; echo "${NODES[*]}")")
check "cluster broadcast ws+sse" "$out" connections=200 connect_failed=0 gaps=0 duplicates=0 publish_failed=0
grep -q '"server_cpu_us_per_delivery":' <<<"$out"

out=$(crun fanout --players 100 --transport both --mode targeted --batch 5 --rate 100 --secs 3 \
  --failover --kill-pid "${NODES[0]}" --kill-after-secs 1)
check "cluster node killed" "$out" connections=200 gaps=0 duplicates=0 killed=true
grep -q '"failovers":[1-9]' <<<"$out"
grep -q '"recovery_ms":' <<<"$out"
echo "bench smoke: all scenarios passed"
