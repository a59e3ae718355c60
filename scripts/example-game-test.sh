#!/usr/bin/env bash
# Runs examples/fastapi_game end to end: the real dualconn binary (target/debug/dualconn, built
# here by scripts/build-debug.sh) and the example game on the SDK, in the venv scripts/python-venv.sh makes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/build-debug.sh
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/dualconn"
python=$(bash scripts/python-venv.sh)
root=$PWD
cd examples/fastapi_game
MYPYPATH="$root/sdk/python/src" "$python" -m mypy --strict --cache-dir "$(dirname "$(dirname "$python")")/mypy-cache-example" game.py test_game.py
DUALCONN_BIN="$bin" PYTHONPATH="$root/sdk/python/src:$PWD" "$python" -m pytest -q -p no:cacheprovider test_game.py
