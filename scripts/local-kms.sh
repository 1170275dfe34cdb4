#!/usr/bin/env bash
# Installs and runs local-kms (github.com/nsmithuk/local-kms), the AWS
# KMS-compatible server the awskms tests run against.
#
# local-kms listens on all interfaces and has no host option, so it must
# only ever run inside a private network namespace: `start` refuses to run
# where any interface other than loopback exists.
#
#   scripts/local-kms.sh test [go test flags]
#       installs local-kms (needs the Go module proxy), then, inside
#       `unshare -n`, starts it and runs the awskms tests against it
#       (go test -race -count=1 -tags localkms ./edge/keyring/awskms/... ./edge/keyring/kek/... ./edge/server/cloudmode/...
#       ./controlplane/sealer/awskms/..., then the CLI's own tests against
#       local KMS: -run 'LocalKMS$' ./edge/cmd/codex-edge/..., since the
#       rest of that package needs Redis, which the namespace cuts off; a
#       -run among the flags given replaces that one).
#   scripts/local-kms.sh install      go install it into .tmp/bin
#   scripts/local-kms.sh start        start it (inside a private namespace)
#   scripts/local-kms.sh stop         stop the instance `start` started
#   scripts/local-kms.sh env          print the variables the tests read
#
# Environment: LOCAL_KMS_PORT (default 4599), LOCAL_KMS_DIR (state: pid,
# log, key database; default .tmp/local-kms).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VERSION=v0.0.0-20260228092603-2a5e92d09ab6
PORT=${LOCAL_KMS_PORT:-4599}
STATE=${LOCAL_KMS_DIR:-$ROOT/.tmp/local-kms}
BIN=$ROOT/.tmp/bin/local-kms
ENDPOINT=http://127.0.0.1:$PORT

die() { echo "local-kms.sh: $*" >&2; exit 1; }

install() {
  if [[ -x $BIN ]]; then return; fi
  echo "installing local-kms $VERSION into .tmp/bin"
  GOBIN=$ROOT/.tmp/bin GOFLAGS= go install "github.com/nsmithuk/local-kms@$VERSION"
}

# isolated succeeds when loopback is the only network interface.
isolated() {
  local ifs
  ifs=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo || true)
  [[ -z $ifs ]]
}

up() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  [[ -x $BIN ]] || install
  isolated || die "refusing to start: local-kms listens on all interfaces; run inside 'unshare -n' (see the header of this script)"
  ip link set lo up 2>/dev/null || true
  if up; then die "port $PORT is already in use"; fi
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  # The seed path must exist-or-be-absent; point it into the empty state dir.
  KMS_DATA_PATH=$STATE/data KMS_SEED_PATH=$STATE/seed.yaml KMS_REGION=eu-west-2 PORT=$PORT \
    "$BIN" >"$STATE/log" 2>&1 &
  echo $! >"$STATE/pid"
  for _ in $(seq 100); do
    if up; then echo "local-kms listening on $ENDPOINT (pid $(cat "$STATE/pid"))"; return; fi
    kill -0 "$(cat "$STATE/pid")" 2>/dev/null || { cat "$STATE/log" >&2; die "local-kms exited"; }
    sleep 0.1
  done
  cat "$STATE/log" >&2
  die "local-kms did not answer on $ENDPOINT within 10 s"
}

stop() {
  [[ -f $STATE/pid ]] || return 0
  local pid
  pid=$(cat "$STATE/pid")
  kill "$pid" 2>/dev/null || true
  rm -f "$STATE/pid"
}

env_vars() {
  echo "CODEX_TEST_KMS_ENDPOINT=$ENDPOINT"
}

run_tests() {
  install
  # Everything below runs without network except loopback; the module and
  # build caches are on disk, so go test needs no proxy.
  # As root a new network namespace suffices; otherwise map the user to
  # root in a new user namespace to be allowed one.
  local unshare=(unshare -n)
  [[ $EUID -eq 0 ]] || unshare=(unshare -r -n)
  # The dev Postgres (scripts/dev-postgres.sh) listens on loopback, which
  # the new namespace does not share, and on a Unix socket, which it does:
  # the cloud-mode test's edges reach it there.
  local pgenv
  pgenv=$(scripts/dev-postgres.sh start | sed -E "s#@127\.0\.0\.1:([0-9]+)/codex\?#@/codex?host=${CODEX_DEV_POSTGRES_BASE:-$PWD/.tmp/dev-postgres}/sock\&port=\1\&#")
  eval "$pgenv"
  "${unshare[@]}" bash -c '
    set -euo pipefail
    ip link set lo up
    "$0" start
    trap "\"$0\" stop" EXIT
    export CODEX_TEST_KMS_ENDPOINT='"$ENDPOINT"' GOPROXY=off
    rc=0
    go test -race -count=1 -tags localkms "$@" ./edge/keyring/awskms/... ./edge/keyring/kek/... ./edge/server/cloudmode/... ./controlplane/sealer/awskms/... || rc=$?
    go test -race -count=1 -tags localkms -run "LocalKMS\$" "$@" ./edge/cmd/codex-edge/... || rc=$?
    exit $rc
  ' "$0" "$@"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) env_vars ;;
  test) shift; run_tests "$@" ;;
  *) die "usage: $0 test [go test flags] | install | start | stop | env" ;;
esac
