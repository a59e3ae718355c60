#!/usr/bin/env bash
# Makes the one Python environment the SDK's and the example game's tests share, with the pinned
# packages of sdk/python/requirements-test.txt from PyPI, and prints its python. Needs python3
# (3.9 or newer) with venv. The venv lives outside the work tree, under ~/.cache/dualconn (or
# DUALCONN_TOOLS_DIR) and named after the pins' hash, so a fresh clone on the same machine (as
# CI's is) reuses it instead of spending ~20 s installing the same pins again; changed pins get a
# venv of their own.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../sdk/python"
pins=$(sha256sum requirements-test.txt | cut -c1-16)
venv="${DUALCONN_TOOLS_DIR:-$HOME/.cache/dualconn}/python-sdk-$pins"
# The stamp is written last: a venv without it was interrupted mid-install.
if [[ ! -f "$venv/.complete" ]]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-test.txt >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
