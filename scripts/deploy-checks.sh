#!/usr/bin/env bash
# Static checks of terraform/ and deploy/, run by `make test`. This machine has
# no AWS, no Docker engine and no Terraform registry, so:
#   1. OpenTofu and Helm are built from the Go module proxy into .tmp/bin
#      (once per machine; the OpenTofu build is the slow part);
#   2. `tofu fmt -check` over terraform/, `tofu test` of the provider-free
#      plan module (its init needs no provider, so it works offline);
#   3. `helm lint` and `helm template` of deploy/helm/codex-edge;
#   4. Go tests (deploy/deploytest) that parse the HCL, the Dockerfiles, the
#      compose file and the rendered chart.
# Usage: scripts/deploy-checks.sh [tools|tofu|helm|go]...  (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

TOFU_VERSION=v1.12.6
HELM_VERSION=v3.22.0
# Render for a supported cluster: a helm built with go install assumes v1.20.
KUBE_VERSION=1.31.0
bin=$root/.tmp/bin
mkdir -p "$bin"
export PATH="$bin:$PATH"
# OpenTofu: no CLI configuration, no update check, no prompts.
: >"$root/.tmp/tofurc"
export TF_CLI_CONFIG_FILE=$root/.tmp/tofurc CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'deploy-checks: %s\n' "$*" >&2; exit 1; }
# timed NAME CMD...: runs CMD and prints how long it took.
timed() {
  local name=$1 start=$SECONDS; shift
  "$@"
  printf '    (%s: %ds)\n' "$name" $((SECONDS - start))
}

# OpenTofu refuses `go install` (its go.mod has replace directives), so it is
# built as the main module from a writable copy of the module cache's tree.
build_tofu() {
  if [ -x "$bin/tofu" ] && "$bin/tofu" version 2>/dev/null | grep -q "${TOFU_VERSION#v}"; then return; fi
  step "building OpenTofu $TOFU_VERSION into .tmp/bin (once per machine; several minutes)"
  local dir src=$root/.tmp/src/opentofu-$TOFU_VERSION
  dir=$(go mod download -json "github.com/opentofu/opentofu@$TOFU_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || fail "go mod download github.com/opentofu/opentofu@$TOFU_VERSION failed: check GOPROXY and the network"
  rm -rf "$src" && mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  # GOWORK=off: the copy is its own main module, not part of our workspace.
  (cd "$src" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$bin/tofu" ./cmd/tofu) \
    || fail "building OpenTofu failed; remove .tmp/src and .tmp/bin/tofu and re-run"
  rm -rf "$src"
}

build_helm() {
  # go install leaves helm's own version string short (v3.22); the module
  # version in the binary's build info is exact.
  if [ -x "$bin/helm" ] && go version -m "$bin/helm" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v3[[:space:]]+$HELM_VERSION[[:space:]]"; then return; fi
  step "building Helm $HELM_VERSION into .tmp/bin (once per machine)"
  GOWORK=off GOBIN=$bin CGO_ENABLED=0 go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || fail "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed: check GOPROXY and the network"
}

check_tofu() {
  step "tofu fmt -check -recursive terraform/"
  if ! tofu fmt -check -recursive terraform/; then
    fail "the files above are not formatted: run .tmp/bin/tofu fmt -recursive terraform/"
  fi
  step "tofu test terraform/modules/edge/modules/plan (provider-free, offline)"
  local plan=terraform/modules/edge/modules/plan
  # A fresh data dir each run: init must never need the network here.
  export TF_DATA_DIR=$root/.tmp/tofu-plan
  rm -rf "$TF_DATA_DIR"
  (cd "$plan" && tofu init -backend=false -input=false >/dev/null) \
    || fail "tofu init in $plan failed: that module must not require any provider"
  (cd "$plan" && tofu validate -no-color) || fail "tofu validate in $plan failed"
  (cd "$plan" && tofu test -no-color) || fail "tofu test in $plan failed: see the run blocks in $plan/tests"
  unset TF_DATA_DIR
}

check_helm() {
  local chart=deploy/helm/codex-edge out=$root/.tmp/helm v
  mkdir -p "$out"
  # The chart refuses to render without a TLS Secret and a master key, so
  # it is linted and rendered with the values files in ci/.
  for v in minimal full; do
    step "helm lint --strict $chart -f ci/$v-values.yaml"
    helm lint --strict --kube-version "$KUBE_VERSION" "$chart" -f "$chart/ci/$v-values.yaml" || fail "helm lint with ci/$v-values.yaml failed: fix the chart"
    step "helm template $chart -f ci/$v-values.yaml (into .tmp/helm/$v.yaml)"
    helm template codex "$chart" --namespace codex --kube-version "$KUBE_VERSION" -f "$chart/ci/$v-values.yaml" >"$out/$v.yaml" \
      || fail "helm template with ci/$v-values.yaml failed: fix the chart"
  done
}

check_go() {
  step "go test ./deploy/deploytest/... (HCL, Dockerfiles, compose, rendered chart; builds both images without a container engine and runs their binaries)"
  # The rendered manifests come from helm on PATH; the test renders them
  # itself so it can try values that must fail.
  CODEX_HELM="$bin/helm" go test -count=1 ./deploy/deploytest/... \
    || fail "the deploy checks above failed: each failure names the file and the rule"
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(tools tofu helm go)
for w in "${what[@]}"; do
  case $w in
    tools) timed "build tofu" build_tofu; timed "build helm" build_helm ;;
    tofu) build_tofu; timed "tofu checks" check_tofu ;;
    helm) build_helm; timed "helm checks" check_helm ;;
    go) build_helm; timed "go deploy tests" check_go ;;
    *) fail "unknown step $w (use tools, tofu, helm or go)" ;;
  esac
done
echo
echo "deploy checks passed"
