#!/usr/bin/env bash
# Browser end-to-end tests: every web/tests/*.test.mjs, against the real binary in headless
# Chromium. Installs Chromium and playwright-core (scripts/browser-setup.sh) and builds
# target/debug/dualconn first (cheap when it is up to date). Each test starts and stops its own
# server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/browser-setup.sh >/dev/null
bash scripts/build-debug.sh
DUALCONN_BIN="${DUALCONN_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn}" node --test web/tests/
