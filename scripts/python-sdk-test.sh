#!/usr/bin/env bash
# Tests the Python SDK (sdk/python) against the real dualconn binary (target/debug/dualconn, built
# here; cheap when it is up to date), in the venv scripts/python-venv.sh makes. Works on a fresh
# machine; needs python3 (3.9 or newer) with venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -p dualconn --locked --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn"
python=$(bash scripts/python-venv.sh)
cd sdk/python

# The types are part of the SDK's promise: mypy checks them strictly.
"$python" -m mypy --strict src
DUALCONN_BIN="$bin" PYTHONPATH=src "$python" -m pytest -q
