#!/usr/bin/env bash
# make demo: the whole product on embedded defaults. The control plane
# (embedded NATS + SQLite) with a demo org and user, an edge enrolled into
# it with metric sharing switched on, the fake provider, and a little
# traffic (repeats included, so the cache can show savings). Prints the
# dashboard login, the edge's base URL with a gateway key and an SDK
# snippet. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

demo=.tmp/demo
rm -rf "$demo" && mkdir -p "$demo"
edge_addr=${CODEX_LISTEN:-127.0.0.1:8080}
admin_addr=${CODEX_ADMIN_LISTEN:-127.0.0.1:8081}
fake_addr=${FAKE_PROVIDER_LISTEN:-127.0.0.1:9090}
cp_addr=${CODEX_CONTROLPLANE_LISTEN:-127.0.0.1:8090}
nats_addr=${CODEX_NATS_LISTEN:-127.0.0.1:4222}
for a in "$edge_addr" "$admin_addr" "$fake_addr" "$cp_addr" "$nats_addr"; do port_free "$a"; done

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping the demo…"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The control plane: its own data directory, embedded NATS and SQLite.
cplane() { CODEX_DATA_DIR="$demo/controlplane" CODEX_CONTROLPLANE_LISTEN="$cp_addr" CODEX_NATS_LISTEN="$nats_addr" bin/codex-controlplane "$@"; }
# The edge: every subcommand acts on the same data directory as serve.
edge() { CODEX_DATA_DIR="$demo/edge" CODEX_LISTEN="$edge_addr" CODEX_ADMIN_LISTEN="$admin_addr" CODEX_TELEMETRY_WINDOW=10s bin/codex-edge "$@"; }

echo "==> creating the control plane's demo org and user (data: $demo/controlplane)"
cp_org=$(cplane orgs create "Demo Inc")
email=demo@example.com
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
printf '%s\n' "$password" | cplane users create --org "$cp_org" --email "$email" --role owner >/dev/null
token=$(cplane enroll-token create --org "$cp_org" --ttl 1h)

echo "==> starting codex-controlplane on $cp_addr, NATS on $nats_addr (logs: $demo/controlplane.log)"
cplane serve >"$demo/controlplane.log" 2>&1 &
pids+=("$!")
wait_http "http://$cp_addr/healthz" 30

export FAKE_PROVIDER_KEY="fake-provider-key"
echo "==> starting the fake provider on $fake_addr (logs: $demo/fakeprovider.log)"
start_fake_provider "$fake_addr" "$FAKE_PROVIDER_KEY" "$demo/fakeprovider.log"
pids+=("$FAKE_PID")

echo "==> creating the edge's demo org and a gateway key (data: $demo/edge)"
key=$(setup_org "$demo/edge" demo "http://$fake_addr")

echo "==> enrolling the edge into the control plane and switching metric sharing on"
edge telemetry enroll --url "http://$cp_addr" --token "$token" --name demo-edge | grep -v '^sharing is off' | sed 's/^/    /'
edge telemetry on >/dev/null

echo "==> starting codex-edge on $edge_addr (logs: $demo/edge.log)"
edge serve >"$demo/edge.log" 2>&1 &
pids+=("$!")
wait_http "http://$edge_addr/healthz" 30

echo "==> sending some traffic through the edge (OpenAI and Anthropic, JSON and streams, repeats)"
ok=0 failed=0
send() { # PATH BODY [extra curl args]
  local path=$1 body=$2
  if curl -fsS -o /dev/null "http://$edge_addr$path" -H "Authorization: Bearer $key" -H "x-api-key: $key" \
    -H "anthropic-version: 2023-06-01" -H "Content-Type: application/json" -d "$body"; then
    ok=$((ok + 1))
  else
    failed=$((failed + 1))
  fi
}
for i in $(seq 1 8); do
  q=$((i % 4)) # four distinct questions, each asked twice or more: repeats
  send /v1/chat/completions "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"demo question $q\"}]}"
  send /v1/chat/completions "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"stream question $q\"}]}"
  send /v1/messages "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"claude question $q\"}]}"
  send /v1/messages "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":64,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"claude stream $q\"}]}"
  send /v1/embeddings "{\"model\":\"text-embedding-3-small\",\"input\":\"embed $q\"}"
done
echo "    $ok requests answered, $failed failed"

echo "==> waiting for the first batch to reach the control plane (window: 10s)"
for _ in $(seq 1 150); do
  if edge telemetry status --json | grep -q '"last_sent_seq":[1-9]'; then break; fi
  sleep 0.1
done
edge telemetry status | sed 's/^/    /'

cat <<MSG

persīv codex demo is running: an edge in "your network", a control plane in "our cloud".

  Dashboard:      http://$cp_addr/
  Demo login:     $email / $password

  Edge base URL:  http://$edge_addr/v1
  Gateway key:    $key
  Edge admin:     http://$admin_addr/admin/v1/telemetry   (metrics: http://$admin_addr/metrics)

Try it:

  curl http://$edge_addr/v1/chat/completions \\
    -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'

  # Python (openai):    OpenAI(base_url="http://$edge_addr/v1", api_key="$key")
  # Python (anthropic): Anthropic(base_url="http://$edge_addr", api_key="$key")
  # Node (openai):      new OpenAI({ baseURL: "http://$edge_addr/v1", apiKey: "$key" })

What left the edge, byte for byte:

  CODEX_DATA_DIR=$demo/edge bin/codex-edge telemetry ledger
  CODEX_DATA_DIR=$demo/edge bin/codex-edge telemetry off     # stops all sharing at once

Only aggregated usage (counts, tokens, cost, latency histograms, pseudonymous
workspace and key labels) is shared; no prompt or answer leaves the edge.
Press Ctrl-C to stop.
MSG
wait
