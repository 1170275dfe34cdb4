#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs and starts what the
# tests need, then lint (gofmt, vet, golangci-lint), govulncheck,
# race-enabled tests over every module, and short fuzz runs. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# need PKG CMD...: installs the Debian package PKG when one of CMD is missing.
apt_updated=
need() {
  local pkg=$1; shift
  for c in "$@"; do
    if ! command -v "$c" >/dev/null 2>&1; then
      step "installing $pkg (for $c)"
      if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
      return
    fi
  done
}
need iproute2 ip
need util-linux unshare

step "Chromium for the dashboard's browser test"
scripts/install-chromium.sh

step "PostgreSQL for the store tests (throw-away, loopback, port ${CODEX_DEV_POSTGRES_PORT:-55432} or the next free one)"
# An assignment, not eval "$(…)": a failed start must stop the run here.
pgenv=$(scripts/dev-postgres.sh start)
eval "$pgenv"

step "Redis for the cache tests (throw-away, loopback, persistence on)"
redisenv=$(scripts/dev-redis.sh start)
eval "$redisenv"
trap 'timeout 60 scripts/dev-postgres.sh stop >/dev/null 2>&1 || true; timeout 60 scripts/dev-redis.sh stop >/dev/null 2>&1 || true' EXIT

step "lint (gofmt, go vet, golangci-lint; builds golangci-lint once per machine)"
make --no-print-directory lint

step "govulncheck, every module, offline database (built once from a pinned golang.org/x/vulndb snapshot)"
scripts/vulncheck.sh

step "tests (go test -race, all modules)"
# Everything the tests need was started above: a test that finds a service
# missing fails here instead of skipping.
export CI=true
go test -race -count=1 -timeout 20m ./edge/... ./controlplane/... ./shared/... ./schemas/...

step "awskms keyring against a local KMS (private network namespace)"
scripts/local-kms.sh test

step "chaos run, short (scripts/chaos.sh: Redis, Postgres, a NATS node, a control plane instance and an edge killed in turn under load)"
make --no-print-directory build nats-server
# Bounded: a run that hangs fails CI in minutes, not at its limit.
timeout 15m env CHAOS_STEADY=3 CHAOS_DOWN=2 scripts/chaos.sh

step "deploy checks (tofu fmt/test, helm lint/template, deploytest; builds tofu and helm once per machine)"
scripts/deploy-checks.sh

step "fuzz (short runs of every fuzz target)"
FUZZTIME="${FUZZTIME:-10s}" scripts/fuzz.sh

echo
echo "all checks passed"
