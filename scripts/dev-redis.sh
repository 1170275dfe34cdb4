#!/usr/bin/env bash
# Throw-away Redis for development and tests, on loopback only, on a
# non-default port, with persistence ON (AOF and RDB, uncompressed, so a
# test can scan the files for plaintext) and its data under .tmp/dev-redis.
#
#   scripts/dev-redis.sh start   # install redis-server if missing, start; prints the env
#   scripts/dev-redis.sh env     # prints the env of the running server
#   scripts/dev-redis.sh stop    # stops it and deletes its data
#   scripts/dev-redis.sh crash   # kills it (SIGKILL), keeping its data
#   scripts/dev-redis.sh restart # starts it again on its data (after crash)
#
# CODEX_DEV_REDIS_PORT and CODEX_DEV_REDIS_BASE (default .tmp/dev-redis) run
# a second server beside the first (make chaos does).
#
# The printed variables:
#   CODEX_TEST_REDIS_URL       redis://127.0.0.1:PORT/0
#   CODEX_TEST_REDIS_DIR       its data directory (RDB and AOF files)
#   CODEX_TEST_REDIS_SERVER    the redis-server binary (tests restart it)
#   CODEX_TEST_REDIS_CONF      its configuration file
# Use: eval "$(scripts/dev-redis.sh start)"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PORT="${CODEX_DEV_REDIS_PORT:-56379}"
BASE="${CODEX_DEV_REDIS_BASE:-$PWD/.tmp/dev-redis}"
DATA="$BASE/data"
CONF="$BASE/redis.conf"
# A server started earlier from this BASE listens where its config says.
if [ -f "$CONF" ]; then PORT=$(awk '$1 == "port" {print $2}' "$CONF"); fi

server_bin() { command -v redis-server || { [ -x /usr/bin/redis-server ] && echo /usr/bin/redis-server; }; }
cli_bin() { command -v redis-cli || { [ -x /usr/bin/redis-cli ] && echo /usr/bin/redis-cli; }; }

install_redis() {
  echo "dev-redis: installing the Debian package redis-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq redis-server >&2
}

print_env() {
  echo "export CODEX_TEST_REDIS_URL='redis://127.0.0.1:$PORT/0'"
  echo "export CODEX_TEST_REDIS_DIR='$DATA'"
  echo "export CODEX_TEST_REDIS_SERVER='$(server_bin)'"
  echo "export CODEX_TEST_REDIS_CONF='$CONF'"
}

# running: this BASE's server answers (not merely some Redis on PORT).
running() {
  local cli; cli=$(cli_bin) || return 1
  [ -f "$BASE/redis.pid" ] && kill -0 "$(cat "$BASE/redis.pid")" 2>/dev/null || return 1
  [ "$("$cli" -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]
}

# persistence: on by default, so tests can prove what reaches disk;
# CODEX_DEV_REDIS_PERSIST=0 turns it off, as a Redis used only as a cache
# runs (make bench: AOF rewrites and snapshots on the bench's own cores
# would be measured as the edge's latency).
persistence() {
  if [ "${CODEX_DEV_REDIS_PERSIST:-1}" = 0 ]; then
    printf 'appendonly no\nsave ""\n'
  else
    printf 'appendonly yes\nappendfsync everysec\nsave 60 1\n'
  fi
}

start() {
  server_bin >/dev/null || install_redis
  if running; then print_env; return; fi
  rm -rf "$BASE"
  mkdir -p "$DATA"
  PORT=$(free_port "$PORT" "${CODEX_DEV_REDIS_PORT:-}")
  cat >"$CONF" <<CONF
bind 127.0.0.1
protected-mode yes
port $PORT
daemonize yes
pidfile $BASE/redis.pid
logfile $BASE/redis.log
dir $DATA
$(persistence)
dbfilename dump.rdb
# No compression: a compressed file could hide a plaintext canary.
rdbcompression no
maxmemory 256mb
maxmemory-policy allkeys-lru
CONF
  serve
}

serve() {
  "$(server_bin)" "$CONF" >&2
  for _ in $(seq 1 100); do
    if running; then print_env; return; fi
    sleep 0.1
  done
  echo "dev-redis: redis-server did not start; see $BASE/redis.log" >&2
  cat "$BASE/redis.log" >&2 || true
  exit 1
}

crash() {
  kill -9 "$(cat "$BASE/redis.pid")"
  for _ in $(seq 1 100); do
    running || { rm -f "$BASE/redis.pid"; return; }
    sleep 0.05
  done
  echo "dev-redis: still running after SIGKILL" >&2
  exit 1
}

stop() {
  local cli
  if cli=$(cli_bin) && running; then
    "$cli" -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  rm -rf "$BASE"
}

case "${1:-}" in
  start) start ;;
  env) running || { echo "dev-redis: not running; run scripts/dev-redis.sh start" >&2; exit 1; }; print_env ;;
  stop) stop ;;
  crash) crash ;;
  restart) serve ;;
  *) echo "usage: $0 start|stop|env|crash|restart" >&2; exit 2 ;;
esac
