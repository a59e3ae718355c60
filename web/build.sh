#!/usr/bin/env bash
# Rebuilds the TypeScript client (client/) and copies its ESM build into
# web/public/static/client/, where the demo page (web/public/static/demo.js) imports it. The
# binary embeds web/public at compile time, so the output is committed: `cargo build` never needs
# npm. Run this after changing client/src, then commit web/public/static/client.
#
#   bash web/build.sh           rebuild and copy
#   bash web/build.sh --check   rebuild, and fail if the committed copy is not what it gives
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=false
[[ "${1:-}" == "--check" ]] && check=true

# The same locked install (and stamp) as scripts/client-test.sh.
(
  cd client
  stamp=node_modules/.dualconn-lock.sha256
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
  npm run --silent build
)

# The browser needs only the JavaScript: no typings, no source maps (their sources are not
# served), and not the React entry point (it imports `react`, which the page does not have).
staged=$(mktemp -d)
trap 'rm -rf "$staged"' EXIT
(cd client/dist && find . -name '*.js' ! -name 'react.js' -print0) |
  while IFS= read -r -d '' f; do
    mkdir -p "$staged/$(dirname "$f")"
    sed '/^\/\/# sourceMappingURL=/d' "client/dist/$f" >"$staged/$f"
  done

out=web/public/static/client
if $check; then
  if ! diff -r "$staged" "$out" >/dev/null 2>&1; then
    echo "web/public/static/client is stale: run bash web/build.sh and commit it" >&2
    diff -r "$staged" "$out" >&2 || true
    exit 1
  fi
  echo "web/public/static/client is up to date"
else
  rm -rf "$out"
  mkdir -p "$out"
  cp -R "$staged/." "$out/"
  echo "copied the client build into $out:"
  (cd "$out" && find . -type f | sort)
fi
