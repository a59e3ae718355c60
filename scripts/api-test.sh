#!/usr/bin/env bash
# Schema-driven test of the live binary: schemathesis (PyPI, pinned, in its own venv) reads
# docs/openapi.json and sends generated requests, valid and invalid, to a real server. It fails
# on any 5xx, any status or content type the description does not list, and any body or header
# that does not match its schema. Builds target/debug/dualconn (cheap when up to date) and runs
# for about a minute.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=4.32.5
venv="${DUALCONN_TOOLS_DIR:-$HOME/.cache/dualconn}/schemathesis-$version"
if [ ! -x "$venv/bin/st" ]; then
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

bash scripts/build-debug.sh
bin="${CARGO_TARGET_DIR:-target}/debug/dualconn"

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Dev mode, so /auth/dev-token is routed as documented, with a known admin key; limits high
# enough that most requests reach the handlers (429 stays documented and reachable).
export ADMIN_KEY="api-test-admin-key-$RANDOM$RANDOM"
DUALCONN_ADMIN_KEYS="$ADMIN_KEY" DUALCONN_LOG=warn \
  DUALCONN_CONNECT_RATE_PER_IP=1000 DUALCONN_CONNECT_BURST_PER_IP=1000 \
  DUALCONN_COMMAND_RATE_PER_PLAYER=1000 DUALCONN_COMMAND_BURST_PER_PLAYER=1000 \
  "$bin" serve --bind 127.0.0.1:0 2>"$work/stderr" &
server=$!
addr=""
for _ in $(seq 100); do
  addr=$(sed -nE 's#.*DEV MODE on http://([0-9.:]+).*#\1#p' "$work/stderr" | head -n1)
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start" >&2; cat "$work/stderr" >&2; exit 1; }

# The served description must be the committed one the run is driven from.
python3 - "$addr" <<'PY'
import json, sys, urllib.request
served = urllib.request.urlopen(f"http://{sys.argv[1]}/openapi.json").read()
assert json.loads(served) == json.load(open("docs/openapi.json")), "served /openapi.json differs from docs/openapi.json"
PY

PLAYER_TOKEN=$(python3 - "$addr" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://{sys.argv[1]}/auth/dev-token",
    data=b'{"player_id":"api-test"}', headers={"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req))["access_token"])
PY
)
export PLAYER_TOKEN

# One credential per scheme (schemathesis.toml); `token_query` stays unset so each request
# carries one credential, in the header. One worker: with threads, CPython 3.11's `ast` (which
# hypothesis uses to describe strategies) has failed with "recursion depth mismatch".
# Hypothesis keeps its state in the scratch directory, not in the work tree; no example database,
# so a run depends only on the seed.
HYPOTHESIS_STORAGE_DIRECTORY="$work/hypothesis" \
  "$venv/bin/st" --config-file scripts/api-test/schemathesis.toml run docs/openapi.json \
  --url "http://$addr" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples 40 --workers 1 --request-timeout 5 --seed 1 --generation-database none \
  --no-color
