#!/usr/bin/env bash
# Runs README.md's commands as written, as a new user would: the walkthrough (dev-mode server,
# token, SSE, WebSocket, publish, rooms, new session, Ctrl-C), the embedding example and `token`. The
# commands are read from the README's ```sh blocks, not copied here, so an edit to the README
# is what gets tested. Two changes only: the server binds a free port instead of 8000 (other
# servers may be running), and `cargo run` runs the debug binaries the test build made
# (scripts/build-debug.sh) instead of building its own. Needs curl and Node.js 20+. Takes about
# 10 s once built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/build-debug.sh
bin=$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# `cargo run` as the README's commands call it, on the binaries built above. Cargo's own
# `cargo run -p dualconn` would resolve the dependencies' features without the workspace's
# dev-dependencies and so compile tokio, hyper and most of the rest a second time: two of
# the test command's ten minutes on a fresh clone. Any other form of the command fails.
mkdir "$work/shim"
cat >"$work/shim/cargo" <<SHIM
#!/usr/bin/env bash
set -euo pipefail
[ "\$1" = run ] || { echo "readme-test: cargo \$* is not a README command" >&2; exit 2; }
shift
exe=$bin/dualconn
while [ \$# -gt 0 ]; do
  case \$1 in
    --release) shift ;;
    -p) [ "\$2" = dualconn ] || exit 2; shift 2 ;;
    --example) exe=$bin/examples/\$2; shift 2 ;;
    --) shift; break ;;
    *) echo "readme-test: cargo run \$1 is not a README form" >&2; exit 2 ;;
  esac
done
exec "\$exe" "\$@"
SHIM
chmod +x "$work/shim/cargo"
export PATH="$work/shim:$PATH"

fail() { echo "readme-test: $*" >&2; for f in "$work"/*.out "$work"/*.err; do [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }; done; exit 1; }

# Waits up to 20 s for a file to match a pattern.
await() {
  local file=$1 pattern=$2
  for _ in $(seq 200); do
    grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$pattern' in $file"
}

# The README's sh blocks, one file each: $work/block-N.sh.
python3 - "$work" <<'PY'
import re, sys
text = open("README.md").read()
for i, block in enumerate(re.findall(r"```sh\n(.*?)```", text, re.S)):
    open(f"{sys.argv[1]}/block-{i}.sh", "w").write(block)
PY
# The first block, in README order, that holds a string (later sections reuse the same commands).
block() {
  local f
  for f in $(printf '%s\n' "$work"/block-*.sh | sort -V); do
    grep -q -- "$1" "$f" && { echo "$f"; return 0; }
  done
  return 1
}

# 1. "cargo run --release -p dualconn -- serve", on a free port.
serve_cmd=$(grep -m1 -o 'cargo run --release -p dualconn -- serve' "$(block 'cargo run --release -p dualconn -- serve')")
$serve_cmd --bind 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
pids+=("$server")
await "$work/serve.err" 'admin key \(shown once\): +dev-admin-'
addr=$(sed -nE 's#.*DEV MODE on http://([0-9.:]+).*#\1#p' "$work/serve.err" | head -n1)
key=$(sed -nE 's#.*admin key \(shown once\): +(dev-admin-[^ ]+).*#\1#p' "$work/serve.err" | head -n1)
[ -n "$addr" ] && [ -n "$key" ] || fail "no address or admin key printed"

# The README's blocks with this server's address, and the pasted admin key.
prepare() { sed -e "s#127.0.0.1:8000#$addr#g" -e "s#^export ADMIN=dev-admin-\.\.\..*#export ADMIN=$key#" "$1"; }

# 2. Token and SSE stream: the stream runs in the background.
prepare "$(block 'curl -N')" | sed -E "s#^curl -N (.*)\$#curl -sN \1 >\"$work/sse.out\" \&\necho \$! >\"$work/sse.pid\"#" >"$work/sse.sh"
# shellcheck disable=SC1091
source "$work/sse.sh"
pids+=("$(cat "$work/sse.pid")")
[ -n "${TOKEN:-}" ] || fail "the token command gave no token"
await "$work/sse.out" '"event_type":"connected"'

# 3. The WebSocket, also in the background.
(prepare "$(block 'node --experimental-websocket')" | bash >"$work/ws.out" 2>"$work/ws.err") &
pids+=("$!")
await "$work/ws.out" '"event_type":"command_response"'
await "$work/sse.out" '"event_type":"command_response"'
session=$(sed -nE 's#.*"event_type":"connected".*"session_id":"([^"]+)".*#\1#p' "$work/sse.out" | head -n1)
grep -q "\"session_id\":\"$session\"" "$work/ws.out" || fail "the two transports are in different sessions"

# 4. Publish: the event arrives on both, with the same sequence number.
prepare "$(block '/api/publish')" | bash >"$work/publish.out"
grep -q '"success":true' "$work/publish.out" || fail "publish failed"
await "$work/ws.out" '"event_type":"chat"'
await "$work/sse.out" '"event_type":"chat"'
seq=$(sed -nE 's#.*"sequence_number":([0-9]+).*#\1#p' "$work/publish.out")
grep -q "\"sequence_number\":$seq" "$work/ws.out" || fail "the WebSocket got another number"
grep -q "^id: $seq\$" "$work/sse.out" || fail "the SSE id is not the sequence number"

# 4b. Rooms: alice joins the tavern, and a room publish reaches both her transports with room_id.
prepare "$(block '/api/rooms/tavern/members')" | bash >"$work/rooms.out"
grep -q '"member_count":1' "$work/rooms.out" || fail "joining the tavern failed"
grep -q '"success":true' "$work/rooms.out" || fail "the room publish failed"
await "$work/ws.out" '"room_id":"tavern"'
await "$work/sse.out" '"room_id":"tavern"'

# 5. A new session: both get session_terminated, the WebSocket closes with 4001, SSE ends.
prepare "$(block '/session -H')" | bash >"$work/session.out"
grep -q '"success":true' "$work/session.out" || fail "new session failed"
await "$work/ws.out" 'closed 4001'
await "$work/sse.out" '"event_type":"session_terminated"'

# 6. Ctrl-C: the server drains and exits 0.
kill -INT "$server"
wait "$server" || fail "the server did not exit 0 on Ctrl-C"

# 7. The embedding example, by the README's command.
example=$(grep -m1 -o 'cargo run -p dualconn --example embedded_game' "$(block 'embedded_game')")
$example >"$work/example.out" 2>"$work/example.err" &
pids+=("$!")
await "$work/example.out" '^token for player1: '

# 8. `token`, by the README's command.
token=$(bash "$(block ' -- token alice')" 2>"$work/token.err")
[ "$(tr -cd . <<<"$token" | wc -c)" = 2 ] || fail "token printed no JWT: $token"

echo "readme-test: every README walkthrough command ran as written"
