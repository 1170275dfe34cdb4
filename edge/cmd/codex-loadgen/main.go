// Command codex-loadgen measures an OpenAI-compatible endpoint under load:
// at a fixed offered rate (open loop: latency counts from the moment a
// request was due, so a slow server cannot hide its queueing) and at
// saturation (a fixed number of connections, closed loop). `make bench`
// runs it against the fake provider directly and through the edge in one
// run and prints the edge/direct ratios.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type target struct {
	name, url, key string
}

type result struct {
	name      string
	mode      string
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	lag       []time.Duration // fixed rate: how late each request was sent
	cpu       time.Duration   // CPU time of the target's process meanwhile (0: not sampled)
}

// cpuPerRequest is the target process's CPU time per request.
func (r result) cpuPerRequest() time.Duration {
	if r.n == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.n)
}

// cpuPIDs are the processes whose CPU time interleave samples, by target
// name.
var cpuPIDs map[string]int

// procCPU is the CPU time (user and system) pid has used, 0 when pid is 0
// or unreadable. /proc/PID/stat counts in clock ticks, 100 a second here:
// a phase of seconds makes that resolution good enough.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * (time.Second / 100)
}

func (r result) pct(p float64) time.Duration { return pct(r.lat, p) }

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}

func (r result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func main() {
	var (
		direct   = flag.String("direct", "", "base URL of the provider, measured directly")
		directK  = flag.String("direct-key", "fake-provider-key", "provider key for the direct target")
		via      = flag.String("edge", "", "base URL of the edge")
		edgeK    = flag.String("edge-key", "", "gateway key for the edge (or CODEX_BENCH_KEY)")
		rate     = flag.Int("rate", 2000, "offered rate for the fixed-rate phase, requests per second")
		duration = flag.Duration("duration", 10*time.Second, "length of each phase")
		conns    = flag.Int("conns", 64, "connections for the saturation phase")
		rounds   = flag.Int("rounds", 5, "split each direct-versus-edge phase into this many alternating rounds, so that drift in the machine's load affects both alike")
		warmup   = flag.Duration("warmup", 2*time.Second, "warm-up before each phase (not measured)")
		jsonOut  = flag.String("json", "", "also write the results as JSON to this file")
		streams  = flag.String("streams", "1000", "concurrent streams for the streaming phase, or a comma-separated list of counts to run in turn (0: skip it)")
		edgePID  = flag.Int("edge-pid", 0, "the edge's process id, to sample its memory during the streaming phase and its CPU time in the fixed-rate and saturation phases")
		blPID    = flag.Int("baseline-pid", 0, "the bare proxy's process id, to sample its CPU time in the fixed-rate and saturation phases")
		metrics  = flag.String("edge-metrics", "", "the edge's /metrics URL, to read its own per-event forwarding time during the streaming phase")
		soak     = flag.Duration("soak", 0, "with phase soak: how long to keep a mixed load on the edge while sampling its memory")
		soakRate = flag.Int("soak-rate", 500, "soak: requests per second (a quarter of them repeats, cache hits)")
		soakStr  = flag.Int("soak-streams", 200, "soak: streams kept open at all times")
		redisURL = flag.String("redis-edge", "", "base URL of a second edge whose cache is Redis, for its cache-hit phase")
		redisKey = flag.String("redis-edge-key", "", "gateway key for -redis-edge")
		fullKey  = flag.String("audit-full-key", "", "a gateway key whose org's audit level is full: measured beside the edge in the fixed-rate and saturation phases (target edge-full)")
		fullEdge = flag.String("audit-full-edge", "", "base URL of the edge that serves -audit-full-key (default -edge); a separate process keeps its synchronous commits out of the edge's own figures")
		baseline = flag.String("baseline", "", "base URL of a bare Go reverse proxy in front of the provider (see -baseline-listen), measured beside the edge")
		blListen = flag.String("baseline-listen", "", "instead of measuring, serve a bare Go reverse proxy on this address, to -baseline-to")
		blTo     = flag.String("baseline-to", "", "the provider the bare reverse proxy forwards to")
		phases   = flag.String("phases", "fixed,hit,saturation,streams,hostile", "phases to run, comma-separated (also fixed-redis: distinct requests against -edge and -redis-edge)")
		ho       hostileOptions
	)
	flag.IntVar(&ho.slowloris, "slowloris", 500, "hostile: slowloris connections (request headers a line a second, never ended)")
	flag.IntVar(&ho.slowBodies, "slow-bodies", 100, "hostile: connections sending whole headers, then the body a byte a second")
	flag.IntVar(&ho.depth, "deep-depth", 10000, "hostile: nesting depth of the deep JSON bodies")
	flag.IntVar(&ho.deepRate, "deep-rate", 100, "hostile: deep JSON bodies per second")
	flag.IntVar(&ho.longLines, "long-lines", 2, "hostile: streams at a time whose answer is one long SSE line (fake provider model fake-long-line)")
	flag.IntVar(&ho.longLineBytes, "long-line-bytes", 1<<20, "hostile: the fake provider's -long-line-bytes, the length a long line must reach")
	flag.DurationVar(&ho.headerTimeout, "header-timeout", 10*time.Second, "hostile: the edge's CODEX_CLIENT_HEADER_TIMEOUT, which slowloris connections are judged against")
	flag.DurationVar(&ho.readTimeout, "read-timeout", 0, "hostile: the edge's CODEX_CLIENT_READ_TIMEOUT, which slow bodies are judged against (0: the edge has none)")
	flag.StringVar(&ho.key, "hostile-key", "", "hostile: gateway key of the hostile clients, an org whose provider is a fake of its own (default: -edge-key)")
	maxRSS := flag.Int("hostile-max-rss-mib", 200, "hostile: the edge's RSS under attack is judged against this bound")
	chaosEdges := flag.String("chaos-edges", "", "instead of measuring, keep a steady mixed load at -rate on these edges (comma-separated base URLs, key -edge-key) until interrupted, writing each outcome to -chaos-out (scripts/chaos.sh)")
	chaosOut := flag.String("chaos-out", "chaos.jsonl", "chaos: the outcomes file")
	chaosFaults := flag.String("chaos-report", "", "instead of measuring, report the chaos run of -chaos-out against this faults file (NAME START_MS END_MS lines); exits 1 when a target fails")
	chaosGrace := flag.Duration("chaos-grace", 2*time.Second, "chaos report: a request sent this long after a fault's recovery still counts against the fault")
	chaosRows := flag.Int64("chaos-rows", -1, "chaos report: the edges' metadata rows")
	chaosCP := flag.Int64("chaos-cp-requests", -1, "chaos report: the requests in the control plane's totals")
	flag.Parse()
	if *chaosFaults != "" {
		ok, err := chaosReport(os.Stdout, *chaosOut, *chaosFaults, *chaosGrace, *chaosRows, *chaosCP)
		if err != nil {
			fmt.Fprintln(os.Stderr, "codex-loadgen:", err)
			os.Exit(2)
		}
		if !ok {
			os.Exit(1)
		}
		return
	}
	if *chaosEdges != "" {
		var edges []target
		for i, u := range strings.Split(*chaosEdges, ",") {
			edges = append(edges, target{fmt.Sprintf("edge%d", i+1), strings.TrimSpace(u), *edgeK})
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runChaos(ctx, edges, *rate, *chaosOut); err != nil {
			fmt.Fprintln(os.Stderr, "codex-loadgen:", err)
			os.Exit(1)
		}
		return
	}
	if *blListen != "" {
		if err := serveBaseline(*blListen, *blTo); err != nil {
			fmt.Fprintln(os.Stderr, "codex-loadgen:", err)
			os.Exit(1)
		}
		return
	}
	if *edgeK == "" {
		*edgeK = os.Getenv("CODEX_BENCH_KEY")
	}
	if *direct == "" || *via == "" || *edgeK == "" {
		fmt.Fprintln(os.Stderr, "codex-loadgen: -direct, -edge and -edge-key (or CODEX_BENCH_KEY) are required")
		os.Exit(2)
	}
	run := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		run[strings.TrimSpace(p)] = true
	}
	targets := []target{{"direct", *direct, *directK}, {"edge", *via, *edgeK}}
	// The bare proxy is measured beside them in the fixed-rate and
	// saturation phases; the other phases index targets[0] and [1].
	compared := targets
	if *baseline != "" {
		compared = append(compared, target{"go-proxy", *baseline, *directK})
	}
	if *fullKey != "" {
		url := *fullEdge
		if url == "" {
			url = *via
		}
		compared = append(compared, target{"edge-full", url, *fullKey})
	}
	cpuPIDs = map[string]int{"edge": *edgePID, "go-proxy": *blPID}
	var results []result
	var own hist // the edge's own added-latency histogram over the fixed-rate phase
	// One request first: the org's data key is made or unwrapped on its
	// first use, which is warm-up, not steady state.
	if err := do(client(1), targets[1], true); err != nil {
		fmt.Fprintf(os.Stderr, "codex-loadgen: first request to the edge failed: %v\n", err)
		os.Exit(1)
	}
	kmsBefore, _ := scrapeCounter(*metrics, "codex_edge_keyring_master_key_calls_total")
	// The keyring re-unwraps a data key in use in the background before
	// its cache lifetime ends: master-key calls, but not on the request
	// path.
	refreshBefore, _ := scrapeSum(*metrics, "codex_edge_keyring_data_key_refreshes_total")
	if run["fixed"] {
		fmt.Fprintf(os.Stderr, "fixed rate %d req/s, every request distinct (cache misses), %s against each target in %d alternating rounds…\n", *rate, *duration, *rounds)
		for _, t := range compared {
			runFixed(t, *rate, *warmup, true)
		}
		before, _ := scrape(*metrics, addedMetric)
		results = append(results, interleave(compared, *duration, *rounds, func(t target, d time.Duration) result {
			return runFixed(t, *rate, d, true)
		})...)
		if after, ok := scrape(*metrics, addedMetric); ok {
			own = after.since(before)
		}
	}
	if run["fixed-redis"] && *redisURL != "" {
		// The second edge keeps its rate-limit counters, budget ledger and
		// cache in Redis: distinct requests through both, alternating, show
		// what Redis adds per request (the limit and budget stages' round
		// trips; a miss's cache lookup and store happen in both).
		pair := []target{targets[1], {"edge+redis", *redisURL, *redisKey}}
		fmt.Fprintf(os.Stderr, "fixed rate %d req/s, every request distinct, against the edge and the edge with Redis, %s in %d alternating rounds…\n", *rate, *duration, *rounds)
		for _, t := range pair {
			runFixed(t, *rate, *warmup, true)
		}
		results = append(results, interleave(pair, *duration, *rounds, func(t target, d time.Duration) result {
			return runFixed(t, *rate, d, true)
		})...)
	}
	if run["hit"] {
		fmt.Fprintf(os.Stderr, "fixed rate %d req/s of one repeated request against the edge for %s (cache hits)…\n", *rate, *duration)
		runFixed(targets[1], *rate, *warmup, false)
		results = append(results, runFixed(targets[1], *rate, *duration, false))
		if *redisURL != "" {
			t := target{"edge+redis", *redisURL, *redisKey}
			fmt.Fprintf(os.Stderr, "fixed rate %d req/s of one repeated request against the edge with Redis for %s (cache hits)…\n", *rate, *duration)
			runFixed(t, *rate, *warmup, false)
			results = append(results, runFixed(t, *rate, *duration, false))
		}
	}
	if run["saturation"] {
		fmt.Fprintf(os.Stderr, "saturation with %d connections, %s against each target in %d alternating rounds…\n", *conns, *duration, *rounds)
		for _, t := range compared {
			runSaturation(t, *conns, *warmup)
		}
		results = append(results, interleave(compared, *duration, *rounds, func(t target, d time.Duration) result {
			return runSaturation(t, *conns, d)
		})...)
	}
	if len(results) > 0 {
		report(os.Stdout, results, own)
		const kms = "codex_edge_keyring_master_key_calls_total"
		if after, ok := scrapeCounter(*metrics, kms); ok {
			refreshed, _ := scrapeSum(*metrics, "codex_edge_keyring_data_key_refreshes_total")
			refreshed -= refreshBefore
			fmt.Fprintf(os.Stdout, "master-key (KMS/BYOK) calls by the edge on the request path during these phases: %.0f (target 0; %.0f before them, at warm-up; %.0f in the background, refreshing data keys in use)\n",
				after-kmsBefore-refreshed, kmsBefore, refreshed)
		}
	}
	if run["streams"] {
		failed := 0
		for _, f := range strings.Split(*streams, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				fmt.Fprintf(os.Stderr, "codex-loadgen: -streams: %q is not a count\n", f)
				os.Exit(2)
			}
			if n == 0 {
				continue
			}
			fmt.Fprintf(os.Stderr, "streaming: %d concurrent streams against direct, then the edge…\n", n)
			d := runStreams(targets[0], n, 0)
			before, _ := scrape(*metrics, forwardMetric)
			e := runStreams(targets[1], n, *edgePID)
			if after, ok := scrape(*metrics, forwardMetric); ok {
				e.forward = after.since(before)
			}
			reportStreams(os.Stdout, d, e)
			failed += d.errors + e.errors
		}
		if failed > 0 {
			fmt.Fprintf(os.Stderr, "codex-loadgen: %d failed streams; see the edge's log\n", failed)
			os.Exit(1)
		}
	}
	if run["soak"] {
		if *soak <= 0 || *edgePID <= 0 {
			fmt.Fprintln(os.Stderr, "codex-loadgen: the soak phase needs -soak DURATION and -edge-pid")
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "soak: %s against the edge at %d req/s with %d streams open…\n", *soak, *soakRate, *soakStr)
		r := runSoak(targets[1], *soak, *soakRate, *soakStr, *edgePID, 10*time.Second)
		reportSoak(os.Stdout, r)
		if r.errors > 0 {
			fmt.Fprintf(os.Stderr, "codex-loadgen: %d failed requests during the soak; see the edge's log\n", r.errors)
			os.Exit(1)
		}
	}
	if run["hostile"] {
		ho.rate, ho.duration, ho.warmup, ho.pid, ho.maxRSS, ho.metrics = *rate, *duration, *warmup, *edgePID, int64(*maxRSS)<<20, *metrics
		r, err := runHostile(targets[1], ho)
		if err != nil {
			fmt.Fprintln(os.Stderr, "codex-loadgen:", err)
			os.Exit(2)
		}
		reportHostile(os.Stdout, r)
	}
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, results); err != nil {
			fmt.Fprintln(os.Stderr, "codex-loadgen:", err)
			os.Exit(2)
		}
	}
	for _, r := range results {
		if r.errors > 0 {
			fmt.Fprintf(os.Stderr, "codex-loadgen: %d failed requests against %s (%s); see the edge's log\n", r.errors, r.name, r.mode)
			os.Exit(1)
		}
	}
}

// seq numbers the requests: every measured request is distinct, so the
// edge's response cache misses (the DESIGN's added-latency figure is for a
// cache miss); the hit phase repeats one request instead. runID keeps this
// process's requests apart from an earlier run's, which the edge's cache
// may still hold.
var (
	seq   atomic.Int64
	runID = time.Now().UnixNano()
)

func body(unique bool) []byte {
	if !unique {
		return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":32}`)
	}
	return fmt.Appendf(nil, `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark, run %d request %d."}],"max_tokens":32}`, runID, seq.Add(1))
}

func client(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     conns * 2,
	}, Timeout: 30 * time.Second}
}

// chatRequest is a chat completion request with body to t.
func chatRequest(ctx context.Context, t target, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(t.url, "/")+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.key)
	return req, nil
}

func do(c *http.Client, t target, unique bool) error {
	req, err := chatRequest(context.Background(), t, body(unique))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// runFixed offers rate requests per second for d. Sends never wait for
// answers (one goroutine per request), so a slow server cannot slow the
// offered load down. Latency counts from the moment a request is sent: the
// load generator's own lateness (Go timers wake up to a millisecond late,
// then the requests that fell due go out together) is not the server's, and
// is reported apart as the schedule lag.
func runFixed(t target, rate int, d time.Duration, unique bool) result {
	c := client(rate / 10)
	// A finished phase leaves no idle connections open on the edge for
	// the next one to pay for.
	defer c.CloseIdleConnections()
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	lat := make([]time.Duration, total)
	lag := make([]time.Duration, total)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			lag[i] = sent.Sub(due)
			if err := do(c, t, unique); err != nil {
				errs.Add(1)
			}
			lat[i] = time.Since(sent)
		}()
	}
	wg.Wait()
	mode := fmt.Sprintf("fixed %d/s", rate)
	if !unique {
		mode = fmt.Sprintf("cache hit %d/s", rate)
	}
	r := result{name: t.name, mode: mode, n: total, errors: int(errs.Load()), elapsed: time.Since(start), lat: lat, lag: lag}
	slices.Sort(r.lat)
	slices.Sort(r.lag)
	return r
}

// interleave measures every target for d in total, in rounds alternating
// between them, and merges each target's rounds into one result.
func interleave(targets []target, d time.Duration, rounds int, measure func(target, time.Duration) result) []result {
	rounds = max(rounds, 1)
	out := make([]result, len(targets))
	for range rounds {
		for i, t := range targets {
			cpu0 := procCPU(cpuPIDs[t.name])
			r := measure(t, d/time.Duration(rounds))
			o := &out[i]
			o.cpu += procCPU(cpuPIDs[t.name]) - cpu0
			o.name, o.mode = r.name, r.mode
			o.n += r.n
			o.errors += r.errors
			o.elapsed += r.elapsed
			o.lat = append(o.lat, r.lat...)
			o.lag = append(o.lag, r.lag...)
		}
	}
	for i := range out {
		slices.Sort(out[i].lat)
		slices.Sort(out[i].lag)
	}
	return out
}

// runSaturation keeps conns requests in flight for d.
func runSaturation(t target, conns int, d time.Duration) result {
	c := client(conns)
	// A finished phase leaves no idle connections open on the edge for
	// the next one to pay for.
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				s := time.Now()
				if err := do(c, t, true); err != nil {
					errs.Add(1)
				}
				mine = append(mine, time.Since(s))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := result{name: t.name, mode: fmt.Sprintf("saturation %d conns", conns), n: len(all), errors: int(errs.Load()), elapsed: time.Since(start), lat: all}
	slices.Sort(r.lat)
	return r
}

func report(w io.Writer, rs []result, own hist) {
	fmt.Fprintf(w, "\n%-8s %-22s %9s %10s %10s %10s %10s %7s\n", "target", "mode", "requests", "req/s", "p50", "p99", "lag p99", "errors")
	for _, r := range rs {
		lag := "-"
		if len(r.lag) > 0 {
			lag = pct(r.lag, 0.99).Round(time.Microsecond).String()
		}
		fmt.Fprintf(w, "%-8s %-22s %9d %10.0f %10s %10s %10s %7d\n", r.name, r.mode, r.n, r.rps(), r.pct(0.50).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond), lag, r.errors)
	}
	find := func(name, prefix string) result {
		for _, r := range rs {
			if r.name == name && strings.HasPrefix(r.mode, prefix) {
				return r
			}
		}
		return result{}
	}
	fd, fe := find("direct", "fixed"), find("edge", "fixed")
	sd, se, sb := find("direct", "saturation"), find("edge", "saturation"), find("go-proxy", "saturation")
	fmt.Fprintln(w, "\n(latency counts from the moment a request is sent; lag is how late the load generator sent it)")
	if fd.n > 0 && fe.n > 0 {
		fmt.Fprintf(w, "added latency at %s (edge − direct):  p50 %s (target ≤ 100µs)   p99 %s (target ≤ 1ms)\n",
			fd.mode, (fe.pct(0.5) - fd.pct(0.5)).Round(time.Microsecond), (fe.pct(0.99) - fd.pct(0.99)).Round(time.Microsecond))
		fmt.Fprintf(w, "latency ratio edge/direct at fixed rate:  p50 %.2f   p99 %.2f\n",
			ratio(fe.pct(0.5), fd.pct(0.5)), ratio(fe.pct(0.99), fd.pct(0.99)))
	}
	if fb := find("go-proxy", "fixed"); fd.n > 0 && fb.n > 0 {
		fmt.Fprintf(w, "added latency of a bare Go reverse proxy (httputil, same hop, no work), the floor for any proxy here:  p50 %s   p99 %s\n",
			(fb.pct(0.5) - fd.pct(0.5)).Round(time.Microsecond), (fb.pct(0.99) - fd.pct(0.99)).Round(time.Microsecond))
		if fe.n > 0 {
			fmt.Fprintf(w, "edge − bare proxy (what the edge's own work adds):  p50 %s (DESIGN §9 target ≤ 25µs)   p99 %s (target ≤ 250µs)\n",
				(fe.pct(0.5) - fb.pct(0.5)).Round(time.Microsecond), (fe.pct(0.99) - fb.pct(0.99)).Round(time.Microsecond))
		}
		// CPU time per request does not depend on what else the machine
		// runs, as latency and throughput on a shared machine do.
		if fe.cpu > 0 && fb.cpu > 0 {
			fmt.Fprintf(w, "CPU per request at %s: edge %s, bare proxy %s (%.2f×)\n", fd.mode,
				fe.cpuPerRequest().Round(100*time.Nanosecond), fb.cpuPerRequest().Round(100*time.Nanosecond), float64(fe.cpuPerRequest())/float64(fb.cpuPerRequest()))
		}
	}
	if n := own.counts; len(n) > 0 && n[len(n)-1] > 0 {
		fmt.Fprintf(w, "the edge's own measure of what it adds (total − provider time, codex_edge_added_latency_seconds) at %s: p50 %s   p99 %s\n",
			fd.mode, own.quantile(0.5).Round(time.Microsecond), own.quantile(0.99).Round(time.Microsecond))
	}
	// The fixed-redis phase's own edge row comes right before its
	// edge+redis row: compare the two measured together.
	for i := 1; i < len(rs); i++ {
		fr, pe := rs[i], rs[i-1]
		if fr.name == "edge+redis" && pe.name == "edge" && strings.HasPrefix(fr.mode, "fixed") && fr.n > 0 && pe.n > 0 {
			fmt.Fprintf(w, "edge with limits, budget and cache in Redis − edge with them in process, measured together at %s:  p50 %s   p99 %s\n",
				fr.mode, (fr.pct(0.5) - pe.pct(0.5)).Round(time.Microsecond), (fr.pct(0.99) - pe.pct(0.99)).Round(time.Microsecond))
		}
	}
	if h := find("edge", "cache hit"); h.n > 0 {
		fmt.Fprintf(w, "cache hit served by the edge (in-process cache) at %s: p50 %s   p99 %s (target p99 ≤ 1ms)\n",
			h.mode, h.pct(0.5).Round(time.Microsecond), h.pct(0.99).Round(time.Microsecond))
	}
	if h := find("edge+redis", "cache hit"); h.n > 0 {
		fmt.Fprintf(w, "cache hit served by the edge (Redis on loopback) at %s: p50 %s   p99 %s (target p99 ≤ 2ms)\n",
			h.mode, h.pct(0.5).Round(time.Microsecond), h.pct(0.99).Round(time.Microsecond))
	}
	if sd.n > 0 && se.n > 0 {
		fmt.Fprintf(w, "saturation throughput edge/direct: %.0f / %.0f req/s = %.0f%% (target ≥ 33%%)\n",
			se.rps(), sd.rps(), 100*se.rps()/sd.rps())
	}
	if sd.n > 0 && sb.n > 0 {
		fmt.Fprintf(w, "saturation throughput bare proxy/direct: %.0f / %.0f req/s = %.0f%%\n", sb.rps(), sd.rps(), 100*sb.rps()/sd.rps())
	}
	if se.n > 0 && sb.n > 0 {
		fmt.Fprintf(w, "saturation throughput edge/bare proxy: %.0f / %.0f req/s = %.0f%% (DESIGN §9 target ≥ 95%%)\n", se.rps(), sb.rps(), 100*se.rps()/sb.rps())
		if se.cpu > 0 && sb.cpu > 0 {
			fmt.Fprintf(w, "CPU per request at saturation: edge %s, bare proxy %s (%.2f×)\n",
				se.cpuPerRequest().Round(100*time.Nanosecond), sb.cpuPerRequest().Round(100*time.Nanosecond), float64(se.cpuPerRequest())/float64(sb.cpuPerRequest()))
		}
	}
	if ff, sf := find("edge-full", "fixed"), find("edge-full", "saturation"); ff.n > 0 || sf.n > 0 {
		fmt.Fprintf(w, "audit level full (each event stored before its answer): fixed rate p50 %s p99 %s; saturation %.0f req/s (%.0f%% of the edge's), p99 %s\n",
			ff.pct(0.5).Round(time.Microsecond), ff.pct(0.99).Round(time.Microsecond), sf.rps(), 100*sf.rps()/max(se.rps(), 1), sf.pct(0.99).Round(time.Microsecond))
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func writeJSON(path string, rs []result) error {
	type row struct {
		Target, Mode   string
		Requests, Errs int
		RPS            float64
		P50us, P99us   int64
		LagP99us       int64 `json:",omitempty"`
	}
	var rows []row
	for _, r := range rs {
		rows = append(rows, row{r.name, r.mode, r.n, r.errors, r.rps(), r.pct(0.5).Microseconds(), r.pct(0.99).Microseconds(), pct(r.lag, 0.99).Microseconds()})
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
