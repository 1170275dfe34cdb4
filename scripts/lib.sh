# Shared shell helpers for demo.sh and bench.sh. Sourced, not run.

# wait_http URL [SECONDS]: polls URL until it answers 200, or fails saying what to check.
wait_http() {
  local url=$1 limit=${2:-30} i=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt $((limit * 10)) ]; then
      echo "error: $url did not come up within ${limit}s; see the logs above" >&2
      return 1
    fi
    sleep 0.1
  done
}

# port_free HOST:PORT: fails with a hint when something already listens there.
port_free() {
  local hp=$1
  if (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; then
    echo "error: $hp is already in use; stop what runs there (or set CODEX_LISTEN / CODEX_ADMIN_LISTEN)" >&2
    return 1
  fi
}

# start_fake_provider ADDR KEY LOG: runs the fake provider in the background, sets FAKE_PID.
start_fake_provider() {
  local addr=$1 key=$2 log=$3
  CODEX_FAKE_OPENAI_KEY="$key" CODEX_FAKE_ANTHROPIC_KEY="$key" bin/codex-fakeprovider -listen "$addr" >"$log" 2>&1 &
  FAKE_PID=$!
  wait_http "http://$addr/healthz" 10
}

# setup_org DATA_DIR NAME PROVIDER_URL: creates an org with both providers
# pointing at PROVIDER_URL (key read from $FAKE_PROVIDER_KEY by serve), and
# prints a fresh gateway key.
setup_org() {
  local data=$1 name=$2 url=$3
  CODEX_DATA_DIR=$data bin/codex-edge orgs create "$name" >/dev/null
  CODEX_DATA_DIR=$data bin/codex-edge providers set --org "$name" openai --api-key-env FAKE_PROVIDER_KEY --base-url "$url" >/dev/null
  CODEX_DATA_DIR=$data bin/codex-edge providers set --org "$name" anthropic --api-key-env FAKE_PROVIDER_KEY --base-url "$url" >/dev/null
  CODEX_DATA_DIR=$data bin/codex-edge keys create --org "$name" --name "$name-key"
}

# set_bench_memory DATA_DIR ORG: sets a memory of about 1 KiB for the org.
set_bench_memory() {
  local data=$1 org=$2 i text=""
  for i in $(seq 38); do text+="Answer in British English. "; done
  printf '%s' "$text" | CODEX_DATA_DIR=$data bin/codex-edge memory set --org "$org" --name bench --stdin >/dev/null
}
