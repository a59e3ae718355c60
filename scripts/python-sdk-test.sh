#!/usr/bin/env bash
# Tests the Python SDK (sdk/python) against the real dualconn binary (target/debug/dualconn, built
# here; cheap when it is up to date). Works on a fresh machine: makes sdk/python/.venv and installs
# the pinned packages of requirements-test.txt from PyPI when the venv is missing or the pins
# changed since the last install. Needs python3 (3.9 or newer) with venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -p dualconn --locked --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn"
cd sdk/python

stamp=.venv/.dualconn-requirements.sha256
want=$(sha256sum requirements-test.txt | cut -d' ' -f1)
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
  echo "$want" >"$stamp"
fi

# The types are part of the SDK's promise: mypy checks them strictly.
.venv/bin/python -m mypy --strict src
DUALCONN_BIN="$bin" PYTHONPATH=src .venv/bin/python -m pytest -q
