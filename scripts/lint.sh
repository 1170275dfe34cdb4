#!/usr/bin/env bash
# Lints every module: gofmt, go vet, then golangci-lint with the checks that
# .golangci.yml enables (errcheck, gosec, bodyclose, sqlclosecheck, sloglint
# and the defaults: govet, staticcheck, unused, ineffassign). Every excluded
# finding is excluded there or at its line, with the reason.
#
# golangci-lint is built once from source through the Go module proxy into
# .tmp/bin (a few minutes on a fresh machine); a re-run only lints, and its
# cache (~/.cache/golangci-lint) makes an unchanged module quick.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
# golangci-lint loads one module at a time: it is run in each module's
# directory, not over the go.work workspace.
MODULES=(edge controlplane shared schemas deploy/deploytest)

step() { printf '\n==> %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l "${MODULES[@]}")
if [ -n "$unformatted" ]; then
  echo "gofmt needed:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go vet"
go vet $(printf './%s/... ' "${MODULES[@]}")

mkdir -p .tmp/bin
bin="$PWD/.tmp/bin/golangci-lint"
if ! { [ -x "$bin" ] && [ "$("$bin" version --short 2>/dev/null)" = "${GOLANGCI_LINT_VERSION#v}" ]; }; then
  step "installing golangci-lint $GOLANGCI_LINT_VERSION (Go module proxy; built from source, a few minutes the first time)"
  log=.tmp/golangci-lint-install.log
  # go install -v names each package as it builds: count them as progress,
  # and show everything if the build fails.
  if ! GOBIN="$PWD/.tmp/bin" go install -v "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION" 2>&1 |
    tee "$log" |
    awk '/^go: downloading/ { if (d++ % 50 == 0) { print "  downloading modules (" d ")"; fflush() } next }
         /^go: / { print; fflush(); next }
         { if (++n % 100 == 0) { print "  built " n " packages"; fflush() } }
         END { print "  built " n + 0 " packages" }'; then
    echo "lint: installing golangci-lint failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  "$bin" version
fi

root=$PWD
failed=()
for m in "${MODULES[@]}"; do
  step "golangci-lint $m"
  start=$SECONDS
  if (cd "$m" && "$bin" run --config "$root/.golangci.yml" ./...); then
    echo "($((SECONDS - start))s)"
  else
    failed+=("$m")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo
  echo "lint: golangci-lint findings in: ${failed[*]} (fix them, or exclude one in .golangci.yml or at its line with the reason)" >&2
  exit 1
fi
