#!/usr/bin/env bash
# The cluster tests need a Redis and the `redis-server` binary (one test starts its own on a
# free port and stops it). This installs Debian's redis-server when it is missing, and starts
# one on 127.0.0.1:${DUALCONN_TEST_REDIS_PORT:-6379} when nothing answers there. It keeps
# nothing on disk. Needs root for apt-get on a machine without Redis.
set -euo pipefail
port=${DUALCONN_TEST_REDIS_PORT:-6379}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-setup: installing redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }
if ! ping; then
  echo "redis-setup: starting redis-server on 127.0.0.1:$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --logfile /tmp/dualconn-test-redis.log
  for _ in $(seq 100); do
    ping && break
    sleep 0.05
  done
  ping || { echo "redis-setup: redis-server did not answer on $port" >&2; exit 1; }
fi
