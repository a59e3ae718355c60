#!/usr/bin/env bash
# Tests the Python SDK (sdk/python) against the real dualconn binary (target/debug/dualconn,
# built here by scripts/build-debug.sh; a no-op after `cargo test`), in the venv
# scripts/python-venv.sh makes. Works on a fresh machine; needs python3 (3.9 or newer) with venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/build-debug.sh
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn"
python=$(bash scripts/python-venv.sh)
cd sdk/python

# The types are part of the SDK's promise: mypy checks them strictly. Its cache stays out of
# the work tree, beside the venv.
"$python" -m mypy --strict --cache-dir "$(dirname "$(dirname "$python")")/mypy-cache" src
DUALCONN_BIN="$bin" PYTHONPATH=src "$python" -m pytest -q -p no:cacheprovider
