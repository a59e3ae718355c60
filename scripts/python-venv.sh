#!/usr/bin/env bash
# Makes sdk/python/.venv, the one Python environment the SDK's and the example game's tests share,
# and installs the pinned packages of sdk/python/requirements-test.txt from PyPI when the venv is
# missing or the pins changed since the last install. Needs python3 (3.9 or newer) with venv.
# Prints the venv's python.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../sdk/python"
stamp=.venv/.dualconn-requirements.sha256
want=$(sha256sum requirements-test.txt | cut -d' ' -f1)
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt >&2
  echo "$want" >"$stamp"
fi
echo "$PWD/.venv/bin/python"
