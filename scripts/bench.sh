#!/usr/bin/env bash
# make bench: measures the fake provider directly and through the edge in one
# run (fixed rate, cache hits, saturation, streams), prints percentiles and
# edge/direct ratios, then puts the edge under hostile input (slowloris,
# slow bodies, 10,000-deep JSON, a 1 MiB SSE line) beside the same legitimate
# load and judges each criterion PASS or FAIL (it reports; it does not fail),
# then runs the Go benchmarks of the hot path.
# make soak: BENCH_PHASES=soak BENCH_SOAK=10m BENCH_GO=0, a long mixed load
# that samples the edge's memory.
# The benchmark key carries a rate limit and a budget (BENCH_GOVERN=1), in
# process on the first edge and in Redis on the second; the fixed-redis
# phase compares the two at the fixed rate.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

work=.tmp/bench
bench_redis=(CODEX_DEV_REDIS_BASE="$PWD/$work/redis" CODEX_DEV_REDIS_PORT=56392 CODEX_DEV_REDIS_PERSIST=0)
# A run killed before its cleanup left its Redis running (detached): stop
# it while its pid file is still there.
env "${bench_redis[@]}" scripts/dev-redis.sh stop >/dev/null 2>&1 || true
rm -rf "$work" && mkdir -p "$work"
fake_addr=127.0.0.1:19090 edge_addr=127.0.0.1:18080 admin_addr=127.0.0.1:18081 baseline_addr=127.0.0.1:19091
hostile_addr=127.0.0.1:19092 full_addr=127.0.0.1:18084 full_admin=127.0.0.1:18085
for a in "$fake_addr" "$edge_addr" "$admin_addr" "$baseline_addr" "$hostile_addr" "$full_addr" "$full_admin"; do port_free "$a"; done
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# 1,000 concurrent streams need more descriptors than the usual 1,024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

export FAKE_PROVIDER_KEY="fake-provider-key"
long_line=$((1 << 20)) # the hostile phase's single SSE line from the provider
echo "==> fake provider on $fake_addr (streams: 20 chunks, 20ms apart)"
CODEX_FAKE_OPENAI_KEY="$FAKE_PROVIDER_KEY" CODEX_FAKE_ANTHROPIC_KEY="$FAKE_PROVIDER_KEY" \
  bin/codex-fakeprovider -listen "$fake_addr" -stamp -chunks 20 -chunk-delay 20ms -long-line-bytes "$long_line" >"$work/fakeprovider.log" 2>&1 &
pids+=("$!")
wait_http "http://$fake_addr/healthz" 10
# The hostile phase's attackers are another org whose provider is a fake of
# its own: the stand-in provider's work for their 1 MiB answers then does not
# slow the legitimate requests' answers, as a real, remote provider's would
# not; everything the edge does for them still counts.
CODEX_FAKE_OPENAI_KEY="$FAKE_PROVIDER_KEY" CODEX_FAKE_ANTHROPIC_KEY="$FAKE_PROVIDER_KEY" \
  bin/codex-fakeprovider -listen "$hostile_addr" -chunks 20 -chunk-delay 20ms -long-line-bytes "$long_line" >"$work/fakeprovider-hostile.log" 2>&1 &
pids+=("$!")
wait_http "http://$hostile_addr/healthz" 10
echo "==> bare Go reverse proxy on $baseline_addr (the floor any proxy pays for the extra hop)"
bin/codex-loadgen -baseline-listen "$baseline_addr" -baseline-to "http://$fake_addr" >"$work/baseline.log" 2>&1 &
baseline_pid=$!
pids+=("$baseline_pid")
wait_http "http://$baseline_addr/healthz" 10
key=$(setup_org "$work/edge" bench "http://$fake_addr")
# A rate limit and a budget on the benchmark key (BENCH_GOVERN=0: none).
[ "${BENCH_GOVERN:-1}" = 1 ] && govern_key "$work/edge" bench
# The edge is measured with its audit log on (DESIGN §9: level hash), and so
# is the Redis edge below: every forwarding row runs with a memory and the
# audit level BENCH_AUDIT. Level full is measured beside them on an edge
# process of its own (edge-full), whose synchronous commits then share the
# machine but not the edge's process, its writer or its added-latency
# figures.
CODEX_DATA_DIR="$work/edge" bin/codex-edge audit level --org bench "${BENCH_AUDIT:-hash}" >/dev/null
full_key=$(setup_org "$work/edge-full" bench "http://$fake_addr")
CODEX_DATA_DIR="$work/edge-full" bin/codex-edge audit level --org bench full >/dev/null
hostile_key=$(setup_org "$work/edge" hostile "http://$hostile_addr")
# DESIGN §9 measures the edge with a memory set for the org: every
# forwarded request carries it (about 1 KiB) in front of its system
# instruction. BENCH_MEMORY=0 measures without.
if [ "${BENCH_MEMORY:-1}" = 1 ]; then
  echo "==> a 1 KiB memory for the bench org (BENCH_MEMORY=0 for none)"
  set_bench_memory "$work/edge" bench
fi
# The client timeouts the hostile phase judges slow connections against:
# the default header timeout, and a read timeout shorter than the default
# (1m) so that slow bodies are cut within a short phase; no other phase's
# request takes anywhere near it.
header_timeout=${BENCH_HEADER_TIMEOUT:-10s} read_timeout=${BENCH_READ_TIMEOUT:-15s}
echo "==> edge on $edge_addr (client header timeout $header_timeout, read timeout $read_timeout)"
CODEX_DATA_DIR="$work/edge" CODEX_LISTEN="$edge_addr" CODEX_ADMIN_LISTEN="$admin_addr" CODEX_LOG_LEVEL=warn \
  CODEX_CLIENT_HEADER_TIMEOUT="$header_timeout" CODEX_CLIENT_READ_TIMEOUT="$read_timeout" \
  bin/codex-edge serve >"$work/edge.log" 2>&1 &
edge_pid=$!
pids+=("$edge_pid")
wait_http "http://$edge_addr/healthz" 30
if [ "${BENCH_MEMORY:-1}" = 1 ]; then set_bench_memory "$work/edge-full" bench; fi
if [ "${BENCH_GOVERN:-1}" = 1 ]; then govern_key "$work/edge-full" bench; fi
echo "==> edge at audit level full on $full_addr"
CODEX_DATA_DIR="$work/edge-full" CODEX_LISTEN="$full_addr" CODEX_ADMIN_LISTEN="$full_admin" CODEX_LOG_LEVEL=warn \
  bin/codex-edge serve >"$work/edge-full.log" 2>&1 &
pids+=("$!")
wait_http "http://$full_addr/healthz" 30

redis_args=()
if [ "${BENCH_REDIS:-1}" = 1 ]; then
  redis_addr=127.0.0.1:18082 redis_admin=127.0.0.1:18083
  for a in "$redis_addr" "$redis_admin"; do port_free "$a"; done
  echo "==> Redis of its own, without persistence as a cache runs (scripts/dev-redis.sh), and a second edge on $redis_addr that caches in it"
  # Its own server, not the tests': a developer's Redis keeps its data,
  # and the persistence the tests need (AOF rewrites, snapshots on these
  # same cores) would be measured as the edge's latency.
  port_free 127.0.0.1:56392
  redisenv=$(env "${bench_redis[@]}" scripts/dev-redis.sh start)
  trap 'cleanup; env "${bench_redis[@]}" scripts/dev-redis.sh stop >/dev/null 2>&1 || true' EXIT INT TERM
  eval "$redisenv"
  rkey=$(setup_org "$work/edge-redis" bench "http://$fake_addr")
  CODEX_DATA_DIR="$work/edge-redis" bin/codex-edge audit level --org bench "${BENCH_AUDIT:-hash}" >/dev/null
  if [ "${BENCH_MEMORY:-1}" = 1 ]; then set_bench_memory "$work/edge-redis" bench; fi
  if [ "${BENCH_GOVERN:-1}" = 1 ]; then govern_key "$work/edge-redis" bench; fi
  CODEX_DATA_DIR="$work/edge-redis" CODEX_LISTEN="$redis_addr" CODEX_ADMIN_LISTEN="$redis_admin" CODEX_LOG_LEVEL=warn \
    CODEX_REDIS_URL="$CODEX_TEST_REDIS_URL" bin/codex-edge serve >"$work/edge-redis.log" 2>&1 &
  pids+=("$!")
  wait_http "http://$redis_addr/healthz" 30
  redis_args=(-redis-edge "http://$redis_addr" -redis-edge-key "$rkey")
fi

echo "==> load (results also in $work/load.json)"
# codex-loadgen reads /metrics with CODEX_ADMIN_TOKEN or CODEX_ADMIN_TOKEN_FILE
# when the environment sets one (the edge above inherits it as well).
bin/codex-loadgen -direct "http://$fake_addr" -direct-key "$FAKE_PROVIDER_KEY" -edge "http://$edge_addr" -edge-key "$key" \
  -baseline "http://$baseline_addr" "${redis_args[@]}" -audit-full-key "$full_key" -audit-full-edge "http://$full_addr" \
  -rate "${BENCH_RATE:-2000}" -duration "${BENCH_DURATION:-10s}" -conns "${BENCH_CONNS:-64}" -json "$work/load.json" \
  -streams "${BENCH_STREAMS:-100,1000}" -edge-pid "$edge_pid" -baseline-pid "$baseline_pid" -edge-metrics "http://$admin_addr/metrics" -phases "${BENCH_PHASES:-fixed,fixed-redis,hit,saturation,streams,hostile}" \
  -soak "${BENCH_SOAK:-0}" -long-line-bytes "$long_line" -header-timeout "$header_timeout" -read-timeout "$read_timeout" -hostile-key "$hostile_key" -hostile-max-rss-mib "${BENCH_HOSTILE_MAX_RSS_MIB:-320}"

[ "${BENCH_GO:-1}" = 1 ] || exit 0
echo
echo "==> Go benchmarks of the hot path"
go test -run '^$' -bench . -benchmem -benchtime "${BENCH_TIME:-1s}" \
  ./edge/apikey/ ./edge/fingerprint/ ./edge/provider/ ./edge/sse/ ./edge/usage/ ./edge/metadata/ ./edge/audit/ ./edge/proxy/ \
  ./edge/ratelimit/redis/ ./edge/budget/redis/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true
