#!/usr/bin/env bash
# Throw-away PostgreSQL for development and tests, on loopback only, on a
# non-default port, with its data under .tmp/dev-postgres.
#
#   scripts/dev-postgres.sh start   # install if missing, initdb, start; prints the env
#   scripts/dev-postgres.sh env     # prints the env of the running server
#   scripts/dev-postgres.sh stop    # stops it and deletes its data
#   scripts/dev-postgres.sh crash   # stops it the way a crash does (immediate: no checkpoint), keeping its data
#   scripts/dev-postgres.sh restart # starts it again on its data (after crash)
#
# CODEX_DEV_POSTGRES_PORT and CODEX_DEV_POSTGRES_BASE (default .tmp/dev-postgres)
# run a second server beside the first (make chaos does).
#
# Roles: codex_owner (owns the database, may create test databases, not a
# superuser) runs migrations; codex_app (owns nothing, neither superuser nor
# BYPASSRLS) is what the control plane and edge serve with. The printed
# variables:
#   CODEX_TEST_POSTGRES_URL      owner URL (migrations, test databases)
#   CODEX_TEST_POSTGRES_APP_URL  application role URL
# Use: eval "$(scripts/dev-postgres.sh start)"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PORT="${CODEX_DEV_POSTGRES_PORT:-55432}"
BASE="${CODEX_DEV_POSTGRES_BASE:-$PWD/.tmp/dev-postgres}"
DATA="$BASE/data"
SOCK="$BASE/sock"
# A server started earlier from this BASE keeps the port it was given.
if [ -f "$BASE/port" ]; then PORT=$(cat "$BASE/port"); fi
OWNER_PW="codex_owner_dev"
APP_PW="codex_app_dev"

bindir() {
  local d
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  return 1
}

install_pg() {
  echo "dev-postgres: installing the Debian package postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

# PostgreSQL refuses to run as root: as root, run its tools as the
# postgres user (created by the Debian package).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

print_env() {
  echo "export CODEX_TEST_POSTGRES_URL='postgres://codex_owner:$OWNER_PW@127.0.0.1:$PORT/codex?sslmode=disable'"
  echo "export CODEX_TEST_POSTGRES_APP_URL='postgres://codex_app:$APP_PW@127.0.0.1:$PORT/codex?sslmode=disable'"
}

running() {
  local bin; bin=$(bindir) || return 1
  [ -f "$DATA/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
  local bin
  bin=$(bindir) || { install_pg; bin=$(bindir); }
  if running; then
    # Already up, maybe started with another CODEX_DEV_POSTGRES_PORT: the
    # URLs must name the port it listens on (line 4 of postmaster.pid).
    PORT=$(sed -n 4p "$DATA/postmaster.pid")
    print_env
    return
  fi
  rm -rf "$BASE"
  PORT=$(free_port "$PORT" "${CODEX_DEV_POSTGRES_PORT:-}")
  mkdir -p "$DATA" "$SOCK"
  echo "$PORT" >"$BASE/port"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$BASE"; chmod 755 "$PWD/.tmp"; fi
  as_pg "$bin/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale >"$BASE/initdb.log" 2>&1 \
    || { cat "$BASE/initdb.log" >&2; exit 1; }
  serve
  as_pg "$bin/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
CREATE ROLE codex_owner LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS PASSWORD '$OWNER_PW';
CREATE ROLE codex_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD '$APP_PW';
CREATE DATABASE codex OWNER codex_owner;
SQL
  print_env
}

serve() {
  local bin; bin=$(bindir)
  # 9>&-: the server must not inherit the lock, or `stop` waits forever.
  as_pg "$bin/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null 9>&- \
    || { cat "$BASE/server.log" >&2; exit 1; }
}

crash() {
  local bin; bin=$(bindir)
  as_pg "$bin/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null
}

stop() {
  local bin
  if bin=$(bindir) && [ -f "$DATA/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$BASE"
}

# Serialise start and stop: test packages of both modules may call start
# at once.
lock() {
  mkdir -p "$PWD/.tmp"
  exec 9>"$BASE.lock"
  flock 9
}

case "${1:-}" in
  start) lock; start ;;
  stop) lock; stop ;;
  crash) lock; crash ;;
  restart) lock; serve ;;
  env) running || { echo "dev-postgres: not running (run: $0 start)" >&2; exit 1; }; print_env ;;
  *) echo "usage: $0 start|stop|env|crash|restart" >&2; exit 2 ;;
esac
