#!/usr/bin/env bash
# make chaos: the production HA topology under a steady mixed load, killing
# one part at a time. Two edges share Postgres and Redis, with metric
# sharing on, to two control plane instances (`codex-controlplane serve`
# twice, on one Postgres database of the same server, sharing the secrets
# key) on a three-node NATS cluster (nats-server processes, each configured
# from `codex-controlplane nats-config` plus its cluster block; the edges
# and the control plane are given every node's URL). The load (distinct
# JSON requests, cache hits, streams) is spread over both edges as a load
# balancer would. In turn: Redis is killed (SIGKILL), Postgres crashes
# (immediate stop), the NATS node leading the org's stream is killed
# (SIGKILL), one control plane instance is killed (SIGKILL), and one edge
# is stopped (SIGTERM, as an orchestrator stops an instance); each comes
# back after CHAOS_DOWN. Then the report: failed client requests per fault
# (target 0, the stopped edge draining its in-flight ones), metadata rows
# lost (0), metrics lost or doubled in the control plane (0), time to
# recover. Exits 1 when a target fails. make test runs a short version
# (CHAOS_STEADY=3s CHAOS_DOWN=2s).
#
# Knobs: CHAOS_RATE (requests/s, default 60), CHAOS_STEADY (load between
# faults, default 10s), CHAOS_DOWN (how long a component stays down,
# default 5s), CHAOS_KEEP=1 (leave .tmp/chaos for a look).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
fail() { echo "chaos: $*" >&2; exit 1; }
[ -x bin/nats-server ] || fail "bin/nats-server is missing: make nats-server (make chaos builds it)"

work="$PWD/.tmp/chaos"
rate=${CHAOS_RATE:-60} steady=${CHAOS_STEADY:-10} down=${CHAOS_DOWN:-5}
steady=${steady%s} down=${down%s}
for v in "$rate" "$steady" "$down"; do
  [[ "$v" =~ ^[0-9]+$ ]] || fail "CHAOS_RATE, CHAOS_STEADY and CHAOS_DOWN are whole numbers (seconds may end in s), not $v"
done

export CODEX_DEV_POSTGRES_BASE="$work/pg" CODEX_DEV_POSTGRES_PORT=55491
export CODEX_DEV_REDIS_BASE="$work/redis" CODEX_DEV_REDIS_PORT=56391
# A run killed before its cleanup left its servers running (they run
# detached): stop them while their pid files are still there.
scripts/dev-redis.sh stop >/dev/null 2>&1 || true
scripts/dev-postgres.sh stop >/dev/null 2>&1 || true
rm -rf "$work" && mkdir -p "$work"
chmod 755 "$PWD/.tmp" "$work"
cp_addr=(127.0.0.1:18190 127.0.0.1:18191)
nats_client=(127.0.0.1:14291 127.0.0.1:14292 127.0.0.1:14293)
nats_route=(127.0.0.1:14391 127.0.0.1:14392 127.0.0.1:14393)
nats_mon=(127.0.0.1:18291 127.0.0.1:18292 127.0.0.1:18293)
fake_addr=127.0.0.1:19190
e1=127.0.0.1:18180 a1=127.0.0.1:18181 e2=127.0.0.1:18182 a2=127.0.0.1:18183
for a in "${cp_addr[@]}" "${nats_client[@]}" "${nats_route[@]}" "${nats_mon[@]}" "$fake_addr" "$e1" "$a1" "$e2" "$a2" \
  127.0.0.1:55491 127.0.0.1:56391; do port_free "$a"; done

pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/dev-redis.sh stop >/dev/null 2>&1 || true
  scripts/dev-postgres.sh stop >/dev/null 2>&1 || true
  [ "${CHAOS_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM
now_ms() { date +%s%3N; }

echo "==> Postgres (port 55491) and Redis (port 56391) of this run, under $work"
eval "$(scripts/dev-postgres.sh start)"
eval "$(scripts/dev-redis.sh start)"
owner=$CODEX_TEST_POSTGRES_URL app=$CODEX_TEST_POSTGRES_APP_URL
psql "$owner" -qc "CREATE DATABASE codex_edge" -c "CREATE DATABASE codex_cp" >/dev/null
db_url() { sed "s|/codex?|/$2?|" <<<"$1"; }
superuser_sql() { # DB SQL: as the server's superuser, which row-level security does not hide rows from
  runuser -u postgres -- psql -h "$work/pg/sock" -p 55491 -U postgres -d "$1" -tAc "$2" 2>/dev/null ||
    psql -h "$work/pg/sock" -p 55491 -U postgres -d "$1" -tAc "$2"
}

# Every node's URL: the control plane connects through any node that is
# up, and gives the same list to the edges at enrollment (nats_public_url
# defaults to nats_url).
nats_url=$(printf 'nats://%s,' "${nats_client[@]}")
nats_url=${nats_url%,}
# The instances share the NATS authority and the session keys through the
# store, sealed: they need the same key.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secrets.kek")
cp_env() { # N: the environment of control plane instance N
  echo "CODEX_DATA_DIR=$work/controlplane$1" "CODEX_CONTROLPLANE_LISTEN=${cp_addr[$1 - 1]}" \
    "CODEX_DATABASE_URL=$(db_url "$app" codex_cp)" "CODEX_SECRETS_KEK_FILE=$work/secrets.kek" \
    "CODEX_NATS_URL=$nats_url" CODEX_NATS_STREAM_REPLICAS=3 CODEX_LOG_LEVEL=warn
}
cplane() { env $(cp_env 1) bin/codex-controlplane "$@"; } # ARGS…: the control plane's CLI
# A function's process in the background is a subshell, which a signal
# to $! would hit instead of the server: env execs the binary, so $! is it.
declare -A cp_pid nats_pid
start_cp() { # N: starts control plane instance N, waits until it is ready
  env $(cp_env "$1") bin/codex-controlplane serve >>"$work/controlplane$1.log" 2>&1 &
  cp_pid[$1]=$!
  pids+=("$!")
  wait_http "http://${cp_addr[$1 - 1]}/readyz" 30
}
start_nats() { # N: starts NATS node N (wait_nats waits until it is current)
  bin/nats-server -c "$work/nats$1/nats.conf" >>"$work/nats$1.log" 2>&1 &
  nats_pid[$1]=$!
  pids+=("$!")
}
# /healthz answers 200 once the node's JetStream is current with the
# cluster's (the meta group and every stream it holds).
wait_nats() { wait_http "http://${nats_mon[$1 - 1]}/healthz" 30; }

echo "==> NATS cluster of three nodes on ${nats_client[*]}"
CODEX_DATABASE_URL="$(db_url "$owner" codex_cp)" CODEX_DATA_DIR="$work/controlplane1" bin/codex-controlplane migrate >/dev/null
routes=$(printf 'nats-route://%s,' "${nats_route[@]}")
for n in 1 2 3; do
  mkdir -p "$work/nats$n"
  # nats-config writes the node's cluster configuration (its JetStream
  # store bounded by what the ingest account may use); the chaos run adds
  # only where the node listens for clients and for monitoring.
  {
    cplane nats-config --resolver-dir "$work/nats$n/resolver" --server-name "n$n" --store-dir "$work/nats$n/jetstream" \
      --cluster-name codex-chaos --cluster-listen "${nats_route[$n - 1]}" --routes "${routes%,}"
    printf '# The chaos run'"'"'s node %s of 3.\nlisten: %s\nhttp: %s\n' "$n" "${nats_client[$n - 1]}" "${nats_mon[$n - 1]}"
  } >"$work/nats$n/nats.conf"
done
for n in 1 2 3; do start_nats "$n"; done
for n in 1 2 3; do wait_nats "$n"; done

echo "==> two control plane instances on ${cp_addr[*]}, one Postgres database"
cp_org=$(cplane orgs create "Chaos Inc")
for n in 1 2; do start_cp "$n"; done

export FAKE_PROVIDER_KEY="fake-provider-key"
start_fake_provider "$fake_addr" "$FAKE_PROVIDER_KEY" "$work/fakeprovider.log"
pids+=("$FAKE_PID")

byok=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
edge_env() { # N: the environment of edge N, on the shared store
  local listen=$e1 admin=$a1
  [ "$1" = 2 ] && listen=$e2 admin=$a2
  echo "CODEX_DATA_DIR=$work/edge$1" "CODEX_LISTEN=$listen" "CODEX_ADMIN_LISTEN=$admin" \
    "CODEX_DATABASE_URL=$(db_url "$app" codex_edge)" "CODEX_REDIS_URL=$CODEX_TEST_REDIS_URL" \
    CODEX_KEK=byok "CODEX_BYOK_KEY=$byok" CODEX_TELEMETRY_WINDOW=2s CODEX_LOG_LEVEL=warn
}
edge() { local n=$1; shift; env $(edge_env "$n") bin/codex-edge "$@"; } # N ARGS…: edge N's CLI
declare -A edge_pid
start_edge() {
  env $(edge_env "$1") bin/codex-edge serve >>"$work/edge$1.log" 2>&1 &
  edge_pid[$1]=$!
  pids+=("$!")
  local listen=$e1
  [ "$1" = 2 ] && listen=$e2
  wait_http "http://$listen/healthz" 30
}
echo "==> two edges on $e1 and $e2, one Postgres store and one Redis, sharing metrics"
CODEX_DATABASE_URL="$(db_url "$owner" codex_edge)" CODEX_DATA_DIR="$work/edge1" bin/codex-edge migrate >/dev/null
edge 1 orgs create chaos >/dev/null
edge 1 providers set --org chaos openai --api-key-env FAKE_PROVIDER_KEY --base-url "http://$fake_addr" --allow-insecure-http >/dev/null
key=$(edge 1 keys create --org chaos --name chaos-key)
# The replicas share the store, so one enrollment is the deployment's:
# both publish under it.
token=$(cplane enroll-token create --org "$cp_org" --ttl 1h)
edge 1 telemetry enroll --url "http://${cp_addr[1]}" --token "$token" --name chaos-edges >/dev/null
edge 1 telemetry on >/dev/null
for n in 1 2; do start_edge "$n"; done

echo "==> steady load: $rate requests/s over both edges (a quarter cache hits, a quarter streams)"
bin/codex-loadgen -chaos-edges "http://$e1,http://$e2" -edge-key "$key" -rate "$rate" -chaos-out "$work/outcomes.jsonl" \
  2> >(sed 's/^/    /' >&2) &
load_pid=$!
pids+=("$load_pid") # runs until stopped: a failure below must stop it
: >"$work/faults.txt"
fault() { # NAME KILL RESTART: kills, waits CHAOS_DOWN, restarts (RESTART waits until it answers)
  sleep "$steady"
  local start; start=$(now_ms)
  echo "==> fault: $1"
  eval "$2"
  sleep "$down"
  eval "$3"
  echo "$1 $start $(now_ms)" >>"$work/faults.txt"
}
# restart waits until the server answers, or fails.
fault redis "scripts/dev-redis.sh crash" "scripts/dev-redis.sh restart >/dev/null"
fault postgres "scripts/dev-postgres.sh crash" "scripts/dev-postgres.sh restart"
# The NATS node to kill is the one leading the org's stream, when one
# says so (a node holding none of its replicas does not know): its death
# moves the stream, and whatever was being published or consumed on it.
nats_victim() {
  local n leader
  for n in 1 2 3; do
    leader=$(curl -fsS "http://${nats_mon[$n - 1]}/jsz?accounts=true&streams=true" 2>/dev/null | tr -d ' \t\n' |
      grep -o '"name":"CODEX_USAGE_[^"]*","created":"[^"]*","cluster":{[^}]*"leader":"n[0-9]"' | grep -o '[0-9]"$' | tr -d '"' | head -1 || true)
    [ -n "$leader" ] && break
  done
  victim=${leader:-2}
  if [ -n "$leader" ]; then echo "    node n$victim: the org's stream leader"; else echo "    node n$victim: no node named the org's stream leader"; fi
}
# port_free: the server is really gone, not answering on the old process.
fault nats-node "nats_victim; kill -9 \${nats_pid[\$victim]}; wait \${nats_pid[\$victim]} 2>/dev/null || true
  port_free \${nats_client[\$victim - 1]}" "start_nats \$victim; wait_nats \$victim"
# The instance the edges enrolled through: the other one consumes the
# org's stream only once it has seen the enrollment in the store.
fault controlplane-instance "kill -9 \${cp_pid[2]}; wait \${cp_pid[2]} 2>/dev/null || true; port_free ${cp_addr[1]}" "start_cp 2"
fault edge2 "kill -TERM \${edge_pid[2]}; wait \${edge_pid[2]} 2>/dev/null || true; port_free $e2" "start_edge 2"
sleep "$steady"
kill -TERM "$load_pid"
wait "$load_pid" || fail "the load generator failed"

echo "==> waiting for the edges' metadata and the control plane's totals to settle"
answered=$(grep -c '"answered":true' "$work/outcomes.jsonl" || true)
rows=0 cpreq=0 settle=$(now_ms)
# A batch a killed instance had taken from the stream, unacknowledged, is
# delivered again after the consumer's AckWait (30s): allow twice that.
for _ in $(seq 1 120); do
  rows=$(superuser_sql codex_edge "SELECT count(*) FROM requests")
  cpreq=$(superuser_sql codex_cp "SELECT coalesce(sum(requests), 0) FROM usage_minute")
  [ "$rows" = "$answered" ] && [ "$cpreq" = "$rows" ] && break
  sleep 0.5
done
awk -v ms=$(($(now_ms) - settle)) 'BEGIN { printf "    settled (or gave up) %.1fs after the load stopped\n", ms / 1000 }'
bin/codex-loadgen -chaos-report "$work/faults.txt" -chaos-out "$work/outcomes.jsonl" -chaos-rows "$rows" -chaos-cp-requests "$cpreq" ||
  fail "a target failed (table above); CHAOS_KEEP=1 make chaos keeps $work with every process's log"
echo "chaos: every target held"
