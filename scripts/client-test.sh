#!/usr/bin/env bash
# Builds and tests the TypeScript client (client/): unit tests, then integration tests against the
# real dualconn binary (target/debug/dualconn, built here by scripts/build-debug.sh; a no-op after `cargo test`). Works on a
# fresh clone: installs exactly the locked dev dependencies when they are missing or the lock file
# changed since the last install.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/build-debug.sh
# The integration tests run DUALCONN_BIN, by default target/debug/dualconn: follow
# CARGO_TARGET_DIR like every other script.
export DUALCONN_BIN="${DUALCONN_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn}"
# The two-node test needs a Redis.
bash scripts/redis-setup.sh
cd client

# Reinstall only when node_modules is missing or was installed from a different lock file.
stamp=node_modules/.dualconn-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

npm run --silent build
# The demo page serves a committed copy of this build (the binary embeds it): it must match.
bash ../web/build.sh --check
npm run --silent typecheck
npm test
npm run --silent test:integration
