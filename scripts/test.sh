#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs and starts what the
# tests need, then vet, race-enabled tests over every module, and short fuzz
# runs. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "lint (gofmt, go vet)"
make --no-print-directory lint

step "tests (go test -race, all modules)"
go test -race -count=1 -timeout 20m ./edge/... ./controlplane/... ./shared/... ./schemas/...

step "fuzz (short runs of every fuzz target)"
FUZZTIME="${FUZZTIME:-10s}" scripts/fuzz.sh

echo
echo "all checks passed"
