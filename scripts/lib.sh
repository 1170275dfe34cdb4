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

# listening HOST:PORT: something accepts connections there.
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# port_free HOST:PORT: fails with a hint when something already listens there.
port_free() {
  if listening "$1"; then
    echo "error: $1 is already in use; stop what runs there (or set CODEX_LISTEN / CODEX_ADMIN_LISTEN)" >&2
    return 1
  fi
}

# free_port PORT ASKED: PORT when ASKED is set (the caller chose it) or
# nothing listens on 127.0.0.1:PORT; else the next free port above it
# (another checkout's server, say, holds it), within 100.
free_port() {
  local p=$1
  if [ -n "$2" ]; then echo "$p"; return; fi
  while listening "127.0.0.1:$p"; do
    p=$((p + 1))
    [ "$p" -lt $(($1 + 100)) ] || { echo "error: no free port in $1..$p" >&2; return 1; }
  done
  echo "$p"
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
# govern_key DATA_DIR NAME: puts a rate limit (rpm and tpm) and a monthly
# budget on the org's first key, far above what a benchmark uses, so that
# every request takes the limit and budget stages' whole path (DESIGN §9:
# the edge is measured with a limit and a budget on the key).
govern_key() {
  local data=$1 name=$2 id
  id=$(CODEX_DATA_DIR=$data bin/codex-edge keys list --org "$name" --json | head -1 | sed 's/.*"id":"\([^"]*\)".*/\1/')
  CODEX_DATA_DIR=$data bin/codex-edge limits set --org "$name" --key "$id" --rpm 1000000000 --tpm 1000000000000 >/dev/null
  CODEX_DATA_DIR=$data bin/codex-edge budgets set --org "$name" --key "$id" --usd 1000000 --period month >/dev/null
}

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
