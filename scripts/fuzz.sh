#!/usr/bin/env bash
# Runs each Go fuzz target for FUZZTIME (default 10s). Fuzz targets are found
# by name, so a new target is picked up without editing this script.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"
found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    found=$((found + 1))
    echo "fuzz $dir $target ($FUZZTIME)"
    for attempt in 1 2 3; do
      log=$(mktemp)
      if (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" .) 2>&1 | tee "$log"; then
        rm -f "$log"; break
      fi
      # A real finding is written to testdata; a coordinator that timed out
      # on a starved worker (go test -fuzz on a loaded machine) is retried.
      if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log" || [ "$attempt" = 3 ]; then
        rm -f "$log"
        echo "fuzz target $target in $dir failed: the failing input is under $dir/testdata/fuzz/$target; rerun with: cd $dir && go test -run $target" >&2
        exit 1
      fi
      rm -f "$log"
      echo "fuzz $target: the fuzzing engine timed out without a finding; retrying ($attempt/3)"
    done
  done
done < <(grep -rl --include='*_test.go' -E '^func Fuzz' edge controlplane shared deploy 2>/dev/null || true)
echo "$found fuzz targets ran"
