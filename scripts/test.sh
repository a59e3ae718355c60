#!/usr/bin/env bash
# The one test command (README): every Rust test, then the client's, on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

if [ -f client/package.json ]; then
  bash scripts/client-test.sh
fi
