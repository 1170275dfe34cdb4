#!/usr/bin/env bash
# make demo: the fake provider and the edge on embedded defaults, an org and
# a gateway key, and what to paste into an SDK. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

demo=.tmp/demo
rm -rf "$demo" && mkdir -p "$demo"
edge_addr=${CODEX_LISTEN:-127.0.0.1:8080}
admin_addr=${CODEX_ADMIN_LISTEN:-127.0.0.1:8081}
fake_addr=${FAKE_PROVIDER_LISTEN:-127.0.0.1:9090}
for a in "$edge_addr" "$admin_addr" "$fake_addr"; do port_free "$a"; done

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping the demo…"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

export FAKE_PROVIDER_KEY="fake-provider-key"
echo "==> starting the fake provider on $fake_addr (logs: $demo/fakeprovider.log)"
start_fake_provider "$fake_addr" "$FAKE_PROVIDER_KEY" "$demo/fakeprovider.log"
pids+=("$FAKE_PID")

echo "==> creating the demo org and a gateway key (data: $demo/edge)"
key=$(setup_org "$demo/edge" demo "http://$fake_addr")

echo "==> starting codex-edge on $edge_addr (logs: $demo/edge.log)"
CODEX_DATA_DIR="$demo/edge" CODEX_LISTEN="$edge_addr" CODEX_ADMIN_LISTEN="$admin_addr" \
  bin/codex-edge serve >"$demo/edge.log" 2>&1 &
pids+=("$!")
wait_http "http://$edge_addr/healthz" 30

cat <<MSG

persīv codex demo is running.

  Edge base URL:  http://$edge_addr/v1
  Gateway key:    $key
  Metrics:        http://$admin_addr/metrics

Try it:

  curl http://$edge_addr/v1/chat/completions \\
    -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'

  # Python (openai):    OpenAI(base_url="http://$edge_addr/v1", api_key="$key")
  # Python (anthropic): Anthropic(base_url="http://$edge_addr", api_key="$key")
  # Node (openai):      new OpenAI({ baseURL: "http://$edge_addr/v1", apiKey: "$key" })

Request metadata: CODEX_DATA_DIR=$demo/edge (no prompt or answer is stored).
Press Ctrl-C to stop.
MSG
wait
