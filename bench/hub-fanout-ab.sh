#!/usr/bin/env bash
# Before/after fan-out throughput of the hub: builds crates/dualconn/benches/hub_fanout.rs at
# BEFORE and at the work tree, then runs them interleaved on one pinned CPU. A commit that has
# the bench builds its own copy (the publish API changed with the cluster split); an older one
# gets the work tree's.
#   bash bench/hub-fanout-ab.sh [BEFORE_COMMIT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-64830e0}
rounds=${2:-3}
cpu=${BENCH_CPU:-1}
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT

git worktree add -q --detach "$tree" "$before"
mkdir -p "$tree/crates/dualconn/benches"
if [ ! -f "$tree/crates/dualconn/benches/hub_fanout.rs" ]; then
  cp crates/dualconn/benches/hub_fanout.rs "$tree/crates/dualconn/benches/"
fi
if ! grep -q 'name = "hub_fanout"' "$tree/crates/dualconn/Cargo.toml"; then
  printf '\n[[bench]]\nname = "hub_fanout"\nharness = false\n' >> "$tree/crates/dualconn/Cargo.toml"
fi
bench_bin() { # $1: manifest dir, $2: target dir
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p dualconn --bench hub_fanout --no-run --message-format=json 2>/dev/null) \
    | sed -n 's/.*"executable":"\([^"]*hub_fanout[^"]*\)".*/\1/p' | tail -1
}
a=$(bench_bin "$tree" "$PWD/target/before")
b=$(bench_bin "$PWD" "$PWD/target")
echo "before: $before   after: $(git rev-parse --short HEAD)+worktree   cpu: $cpu"
for i in $(seq "$rounds"); do
  echo "before $(taskset -c "$cpu" "$a" | tail -1 | sed 's/ (.*//')"
  echo "after  $(taskset -c "$cpu" "$b" | tail -1 | sed 's/ (.*//')"
done
