#!/usr/bin/env bash
# cargo-mutants over hub/, delivery.rs, http/admit.rs, http1_head.rs and auth, with the unit
# tests and the integration tests (issue 12; ARCHITECTURE.md, "Testing notes"). It mutates the tree in place,
# so run it in a clone of its own, never in a checkout you are editing. A mutant takes about
# 35 s on this 2-core machine (10 s to build, 25 s of tests), or the timeout when it makes a test
# hang: the suite passes in about 25 s, so MUTANTS_TIMEOUT defaults to 60 s.
#
#   bash scripts/mutants.sh --shard 1/4          # one quarter
#   bash scripts/mutants.sh --rerun MISSED_TXT   # only the mutants a kept missed.txt names,
#                                                # matched without their line numbers
#   bash scripts/mutants.sh --untested           # every mutant no kept list names yet
# Results in mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
bash scripts/redis-setup.sh >/dev/null
export DUALCONN_TEST_REDIS_URL="redis://127.0.0.1:${DUALCONN_TEST_REDIS_PORT:-6379}"
# The embedding test runs the example's binary, which only `cargo test --workspace` builds.
cargo build -q --locked -p dualconn --examples

select=()
case "${1:-}" in
  --shard) select=(--shard "${2:?--shard k/n}") ;;
  --rerun) mapfile -t names < "${2:?--rerun MISSED_TXT}"; flag=-F ;;
  # Shards follow the current code and move as it grows, so a run cut short is resumed by
  # leaving out what the kept lists (tests/mutants/*/) already name.
  --untested) mapfile -t names < <(cat crates/dualconn/tests/mutants/*/*.txt); flag=-E ;;
  *) echo "usage: bash scripts/mutants.sh --shard k/n | --rerun MISSED_TXT | --untested" >&2
     exit 2 ;;
esac
# A mutant's name is "path:line:col: description"; lines move as the code changes, so match
# the path and the description (which names the function: two mutants alike in one function
# are taken, or left out, together).
if [[ -v names ]]; then
  while IFS= read -r re; do select+=("$flag" "$re"); done < <(printf '%s\n' "${names[@]}" |
    python3 -c '
import re, sys
for line in sorted(set(l.strip() for l in sys.stdin if l.strip())):
    path, rest = line.split(":", 1)
    desc = rest.split(": ", 1)[1]
    print(re.escape(path) + r":\d+:\d+: " + re.escape(desc) + "$")
')
fi

# The cache hints (`hub/warm.rs`, and the `warm` methods it calls) change no behaviour a test
# could see: a mutant of them is equivalent by construction, so none is made.
cargo mutants -p dualconn -f 'crates/dualconn/src/hub/*.rs' -f crates/dualconn/src/delivery.rs \
  -f crates/dualconn/src/http/admit.rs -f crates/dualconn/src/http1_head.rs \
  -f crates/dualconn/src/auth.rs -f 'crates/dualconn/src/auth/*.rs' \
  -e crates/dualconn/src/hub/warm.rs --exclude-re '(History|Outbox)::warm with' \
  "${select[@]}" --timeout "${MUTANTS_TIMEOUT:-60}" \
  --in-place --baseline skip --profile mutants -- --lib --test it
