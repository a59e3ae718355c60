#!/usr/bin/env bash
# Builds the debug binaries the test scripts drive (dualconn, dualconn-bench, the embedding
# example) exactly as `cargo test --workspace` builds them: every workspace member with its
# dev-dependencies' features. After the test command's `cargo test` this is a no-op. A narrower
# `cargo build -p dualconn` resolves other features for tokio, hyper, reqwest and the rest
# (dev-dependencies turn more on), so each such build compiled them and the crate again: on
# this 2-core machine `-p dualconn` took 205 s and `-p dualconn -p dualconn-bench` 35 s more
# after the test build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --workspace --bins --examples --locked --quiet
