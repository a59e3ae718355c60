#!/usr/bin/env bash
# scripts/test.sh part by part, timed: one line per part, with the load average when it ended
# (the figures in ARCHITECTURE.md's testing notes came from this). The Rust build and the Rust
# run are timed apart; run it on a clean target directory (or a fresh clone, as CI has) to see
# what a cold build costs. Stops at the first part that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

part() {
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "test-times: $name failed; run it alone to see why" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '%-26s %7.1f s  (load %s)\n' "$name" "$(echo "$end - $start" | bc)" "$(cut -d' ' -f1 /proc/loadavg)"
}

part redis-setup bash scripts/redis-setup.sh
export DUALCONN_TEST_REDIS_URL="redis://127.0.0.1:${DUALCONN_TEST_REDIS_PORT:-6379}"
part "cargo test (build)" cargo test --workspace --locked --no-run
part "cargo test (run)" cargo test --workspace --locked
part client-test bash scripts/client-test.sh
part python-sdk-test bash scripts/python-sdk-test.sh
for p in browser-test bench-smoke api-test readme-test cluster-smoke; do
  part "$p" bash "scripts/$p.sh"
done
part "soak (1 min)" env SOAK_PROFILE=debug SOAK_WARMUP_SECS=10 SOAK_RSS_SLACK_PCT=50 bash scripts/soak.sh 1
