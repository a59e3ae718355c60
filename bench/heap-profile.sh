#!/usr/bin/env bash
# Where an idle connection's memory goes: the release server (with line tables) under heaptrack,
# holding N idle connections of one transport, then heaptrack_print's peak consumers. Issue 10's
# breakdown in BENCHMARKS.md comes from this.
#
#   bash bench/heap-profile.sh ws|sse [players]      (default 15000; ~1 minute each)
#   TLS=1 bash bench/heap-profile.sh ws|sse [players]   (the same over TLS: heap-<transport>-tls)
#
# The build goes to target/prof so it does not disturb target/release. Output: the heaptrack
# file and a text report in target/prof/heap-<transport>/.
set -euo pipefail
cd "$(dirname "$0")/.."

transport=${1:?usage: bench/heap-profile.sh ws|sse [players]}
players=${2:-15000}
command -v heaptrack >/dev/null || { echo "heap-profile: heaptrack is not installed" >&2; exit 1; }

export CARGO_TARGET_DIR=${PROF_TARGET_DIR:-target/prof}
# The shipped binary uses the C allocator, which is what heaptrack sees.
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --locked -q -p dualconn \
  -p dualconn-bench
bin="$CARGO_TARGET_DIR/release"
out="$CARGO_TARGET_DIR/heap-$transport${TLS:+-tls}"
rm -rf "$out"
mkdir -p "$out"

. bench/server-env.sh heap
port=${PORT:-18850}
server_tls=()
bench_tls=()
if [ -n "${TLS:-}" ]; then
  bash scripts/self-signed-cert.sh "$out/tls" >/dev/null
  server_tls=(DUALCONN_TLS_CERT_FILE="$out/tls/cert.pem" DUALCONN_TLS_KEY_FILE="$out/tls/key.pem")
  bench_tls=(--tls-ca "$out/tls/cert.pem")
fi

env DUALCONN_BIND="0.0.0.0:$port" "${server_tls[@]}" taskset -c 0 heaptrack -o "$out/server" "$bin/dualconn" serve \
  >"$out/heaptrack.log" 2>&1 &
tracer=$!
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
server=$(pgrep -f -n "$bin/dualconn serve")

# Hold the connections for a few seconds (the peak), then let them go.
taskset -c 1 "$bin/dualconn-bench" hold --players "$players" --transport "$transport" --secs 3 \
  --workers 2 --port "$port" --cpu 1 --server-pid "$server" "${bench_tls[@]}" >"$out/bench.json" 2>"$out/bench.txt"
kill -INT "$server"
wait "$tracer" || true

file=$(compgen -G "$out/server*" | head -n1)
heaptrack_print --print-peaks 1 --peak-limit 25 --sub-peak-limit 3 --print-allocators 0 \
  --print-temporary 0 --print-leaks 0 "$file" >"$out/report.txt"
echo "heap-profile: $transport x $players; bench: $(tail -n 2 "$out/bench.txt" | tr '\n' ' ')"
grep -E '^(peak heap memory consumption|peak RSS)' "$out/report.txt" || true
echo "heap-profile: report in $out/report.txt"
