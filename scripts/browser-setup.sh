#!/usr/bin/env bash
# Installs what the browser tests need: Debian's Chromium and playwright-core from npm.
# Idempotent and quiet when everything is already there. Prints the Chromium path.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

stamp=web/tests/node_modules/.lock-stamp
want=$(sha256sum web/tests/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  (cd web/tests && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$stamp"
fi
command -v chromium
