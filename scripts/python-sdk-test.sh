#!/usr/bin/env bash
# Tests the Python SDK (sdk/python) against the real dualconn binary (target/debug/dualconn,
# built here by scripts/build-debug.sh; a no-op after `cargo test`). Works on a fresh machine:
# makes a venv with the pinned packages of requirements-test.txt from PyPI. Needs python3 (3.9 or
# newer) with venv. The venv lives outside the work tree, under ~/.cache/dualconn (or
# DUALCONN_TOOLS_DIR) and named after the pins' hash, so a fresh clone on the same machine (as
# CI's is) reuses it instead of spending ~20 s installing the same pins again; changed pins get
# a venv of their own.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/build-debug.sh
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn"
cd sdk/python

pins=$(sha256sum requirements-test.txt | cut -c1-16)
venv="${DUALCONN_TOOLS_DIR:-$HOME/.cache/dualconn}/python-sdk-$pins"
# The stamp is written last: a venv without it was interrupted mid-install.
if [[ ! -f "$venv/.complete" ]]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-test.txt
  touch "$venv/.complete"
fi

# The types are part of the SDK's promise: mypy checks them strictly. Its cache stays out of
# the work tree too.
"$venv/bin/python" -m mypy --strict --cache-dir "$venv/mypy-cache" src
DUALCONN_BIN="$bin" PYTHONPATH=src "$venv/bin/python" -m pytest -q
