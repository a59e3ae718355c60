#!/usr/bin/env bash
# The one test command (README): every Rust test, then the client's, the browser tests and the
# benchmark smoke, on a fresh machine. Each part installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

bash scripts/client-test.sh

# The browser tests and the benchmark smoke drive the debug binary built above.
for part in scripts/browser-test.sh scripts/bench-smoke.sh; do
  if [ -f "$part" ]; then
    bash "$part"
  fi
done

# One minute of the soak (scripts/soak.sh) on the same debug binaries: no leak, gap, duplicate
# or panic under the whole mix. The RSS slack is generous; the 30-minute run keeps 10 %.
SOAK_PROFILE=debug SOAK_WARMUP_SECS=10 SOAK_RSS_SLACK_PCT=50 bash scripts/soak.sh 1
