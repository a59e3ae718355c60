#!/usr/bin/env bash
# The one test command (README): every Rust test, then the client's, the Python SDK's, the browser
# tests, the benchmark smoke, the API test and the README's commands, on a fresh machine. Each
# part installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cluster tests run against a real Redis, each under its own key prefix.
bash scripts/redis-setup.sh
export DUALCONN_TEST_REDIS_URL="redis://127.0.0.1:${DUALCONN_TEST_REDIS_PORT:-6379}"

cargo test --workspace --locked

bash scripts/client-test.sh

# The Python SDK, and the example game built on it, against the debug binary built above (each
# script runs scripts/build-debug.sh, which builds what `cargo test` built: here a no-op).
bash scripts/python-sdk-test.sh
bash scripts/example-game-test.sh

# These drive the debug binary built above: the browser tests, the benchmark smoke, the
# schema-driven API test (schemathesis from docs/openapi.json), the README's commands and its
# cluster walkthrough.
for part in scripts/browser-test.sh scripts/bench-smoke.sh scripts/api-test.sh scripts/readme-test.sh \
  scripts/cluster-smoke.sh; do
  if [ -f "$part" ]; then
    bash "$part"
  fi
done

# One minute of the soak (scripts/soak.sh) on the same debug binaries: no leak, gap, duplicate
# or panic under the whole mix. The RSS slack is generous; the 30-minute run keeps 10 %.
SOAK_PROFILE=debug SOAK_WARMUP_SECS=10 SOAK_RSS_SLACK_PCT=50 bash scripts/soak.sh 1
