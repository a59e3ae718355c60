#!/usr/bin/env bash
# The README's "Run a cluster" walkthrough, run for real: scripts/cluster.sh with the debug
# binary, then curl. Alice's streams on node 1 and node 2 both get what node 3 published; a new
# session through node 3 ends both; after kill -9 of node 1, its stream resumes on node 2 with
# the last id it saw and gets exactly what it missed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-debug.sh
work=$(mktemp -d)
cluster_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$cluster_pid" ]]; then
    kill "$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
  fi
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "cluster-smoke: $*" >&2; for f in "$work"/*; do echo "--- $f" >&2; tail -5 "$f" >&2; done; exit 1; }
# Waits (at most 30 s) for a file to contain a string; polling a file is all curl offers.
await_in() {
  for _ in $(seq 600); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  fail "no '$2' in $1"
}

DUALCONN_BIN="${CARGO_TARGET_DIR:-target}/debug/dualconn" CLUSTER_LOG_DIR="$work" bash scripts/cluster.sh >"$work/cluster.out" 2>&1 &
cluster_pid=$!
await_in "$work/cluster.out" '^ready$'
eval "$(grep '^export ' "$work/cluster.out")"
node1=$(sed -n 's/.*8001 (pid \([0-9]*\)).*/\1/p' "$work/cluster.out")

publish() { # node, text
  curl -sf -X POST "http://127.0.0.1:$1/api/publish" -H "Authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' \
    -d "{\"player_ids\":[\"alice\"],\"event_type\":\"chat\",\"data\":{\"text\":\"$2\"}}" >/dev/null
}

# One player, two nodes, published through a third.
curl -sN "http://127.0.0.1:8001/sse/alice?token=$TOKEN" >"$work/s1" &
s1=$!
curl -sN "http://127.0.0.1:8002/sse/alice?token=$TOKEN" >"$work/s2" &
s2=$!
await_in "$work/s1" '"connected"'
await_in "$work/s2" '"connected"'
publish 8003 hello
await_in "$work/s1" hello
await_in "$work/s2" hello
id1=$(grep -B2 hello "$work/s1" | sed -n 's/^id: //p')
id2=$(grep -B2 hello "$work/s2" | sed -n 's/^id: //p')
[[ -n "$id1" && "$id1" == "$id2" ]] || fail "ids differ: '$id1' '$id2'"

# A new session through node 3 ends both streams.
curl -sf -X POST http://127.0.0.1:8003/api/connections/alice/session -H "Authorization: Bearer $ADMIN" >/dev/null
await_in "$work/s1" session_terminated
await_in "$work/s2" session_terminated
# Both streams end by themselves.
wait "$s1" "$s2" || true

# kill -9 node 1; its stream resumes on node 2 and misses nothing.
curl -sN "http://127.0.0.1:8001/sse/alice?token=$TOKEN" >"$work/s3" &
await_in "$work/s3" '"connected"'
for n in 1 2 3; do publish 8003 "before-$n"; done
await_in "$work/s3" before-3
last=$(grep -B2 before-3 "$work/s3" | sed -n 's/^id: //p')
kill -9 "$node1"
for n in 1 2 3; do publish 8003 "after-$n"; done
curl -sN "http://127.0.0.1:8002/sse/alice?token=$TOKEN&last_event_id=$last" >"$work/s4" &
await_in "$work/s4" after-3
grep -q '"recovered":true' "$work/s4" || fail "the resume was not complete"
grep -q '"replayed":3' "$work/s4" || fail "expected exactly 3 replayed events"
for n in 1 2 3; do
  [[ $(grep -c "after-$n" "$work/s4") == 1 ]] || fail "after-$n not exactly once"
done
grep -q before- "$work/s4" && fail "an event before the cursor came again"
echo "cluster-smoke: 3 nodes, shared streams, cross-node session end, kill -9 resume: ok"
