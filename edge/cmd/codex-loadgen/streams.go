package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// streamResult is what the streaming phase measured for one target.
type streamResult struct {
	name    string
	streams int
	errors  int
	// offsets are each chunk's arrival time after the request was sent,
	// by chunk index, over all streams.
	offsets [][]time.Duration
	// delays are, for every event the provider stamped with its send time
	// (codex-fakeprovider -stamp), how long after that the event was read
	// here; sorted.
	delays  []time.Duration
	peakRSS int64 // bytes; 0 when not measured
	// forward is the edge's own measure of each event's forwarding time
	// over the phase, when its metrics were readable.
	forward hist
}

// runStreams holds n streaming chat completions open at once against t and
// records when each chunk arrives. With pid > 0 it samples that process's
// resident memory meanwhile and keeps the peak.
func runStreams(t target, n int, pid int) streamResult {
	c := client(n)
	// A finished phase leaves no idle connections open on the edge for
	// the next one to pay for.
	defer c.CloseIdleConnections()
	res := streamResult{name: t.name, streams: n}
	var mu sync.Mutex
	var errs atomic.Int64
	stop := make(chan struct{})
	var peak atomic.Int64
	if pid > 0 {
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if rss := readRSS(pid); rss > peak.Load() {
						peak.Store(rss)
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := fmt.Appendf(nil, `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream number %d for the benchmark"}]}`, i)
			req, err := chatRequest(context.Background(), t, b)
			if err != nil {
				errs.Add(1)
				return
			}
			req.Header.Set("Cache-Control", "no-store")
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				errs.Add(1)
				return
			}
			defer resp.Body.Close()
			var mine, delays []time.Duration
			rd := bufio.NewReader(resp.Body)
			for {
				line, err := rd.ReadSlice('\n')
				if bytes.HasPrefix(line, []byte("data: ")) {
					mine = append(mine, time.Since(start))
				}
				if sent, ok := stamped(line); ok {
					delays = append(delays, time.Duration(time.Now().UnixNano()-sent))
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					errs.Add(1)
					return
				}
			}
			if resp.StatusCode != 200 {
				errs.Add(1)
				return
			}
			mu.Lock()
			res.delays = append(res.delays, delays...)
			for k, d := range mine {
				for len(res.offsets) <= k {
					res.offsets = append(res.offsets, nil)
				}
				res.offsets[k] = append(res.offsets[k], d)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	res.errors = int(errs.Load())
	res.peakRSS = peak.Load()
	for _, o := range res.offsets {
		slices.Sort(o)
	}
	slices.Sort(res.delays)
	return res
}

// stamped returns the send time of a ": t=<unix ns>" comment line.
func stamped(line []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(": t="))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(bytes.TrimRight(rest, "\r\n")), 10, 64)
	return n, err == nil
}

// readRSS returns the resident set size of pid in bytes, 0 if unknown.
func readRSS(pid int) int64 { return readStatus(pid, "VmRSS:") }

func pctOf(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[int(float64(len(s)-1)*p)]
}

// reportStreams compares chunk timing through the edge with the provider
// read directly. Each stream's chunks leave the provider on its own
// schedule, so the gaps between consecutive chunks show whether the edge
// holds chunks back (a buffering proxy bunches them: small gaps, then a
// big one). With a provider that stamps each event with its send time, the
// delay from send to arrival is measured directly and through the edge; the
// difference is the time the edge took to forward the chunk (DESIGN: ≤ 50µs).
func reportStreams(w io.Writer, direct, edge streamResult) {
	fmt.Fprintf(w, "\nstreaming: %d concurrent streams, %d events each\n", edge.streams, len(edge.offsets))
	if n := edge.forward.counts; len(n) > 0 && n[len(n)-1] > 0 {
		fmt.Fprintf(w, "edge's own forwarding time per event (provider bytes in → flushed to the client), %.0f events: p50 %s p99 %s (target ≤ 50µs)\n",
			n[len(n)-1], edge.forward.quantile(0.5).Round(100*time.Nanosecond), edge.forward.quantile(0.99).Round(100*time.Nanosecond))
	}
	if len(direct.delays) > 0 && len(edge.delays) > 0 {
		d50, d99 := pctOf(direct.delays, 0.5), pctOf(direct.delays, 0.99)
		e50, e99 := pctOf(edge.delays, 0.5), pctOf(edge.delays, 0.99)
		fmt.Fprintf(w, "chunk delivery, provider send → client read: direct p50 %s p99 %s, edge p50 %s p99 %s\n",
			d50.Round(time.Microsecond), d99.Round(time.Microsecond), e50.Round(time.Microsecond), e99.Round(time.Microsecond))
		fmt.Fprintf(w, "added per chunk end to end (edge − direct; includes the extra hop's wake-ups): p50 %s p99 %s\n",
			(e50 - d50).Round(time.Microsecond), (e99 - d99).Round(time.Microsecond))
	}
	gaps := func(r streamResult) []time.Duration {
		var out []time.Duration
		for k := 2; k < len(r.offsets); k++ { // from the second delta on
			for i := range min(len(r.offsets[k]), len(r.offsets[k-1])) {
				out = append(out, r.offsets[k][i]-r.offsets[k-1][i])
			}
		}
		slices.Sort(out)
		return out
	}
	dg, eg := gaps(direct), gaps(edge)
	fmt.Fprintf(w, "gap between consecutive chunks: direct p50 %s p99 %s, edge p50 %s p99 %s\n",
		pctOf(dg, 0.5).Round(time.Microsecond), pctOf(dg, 0.99).Round(time.Microsecond),
		pctOf(eg, 0.5).Round(time.Microsecond), pctOf(eg, 0.99).Round(time.Microsecond))
	if len(edge.offsets) > 0 && len(direct.offsets) > 0 {
		fmt.Fprintf(w, "first chunk after the request: direct p50 %s p99 %s, edge p50 %s p99 %s\n",
			pctOf(direct.offsets[0], 0.5).Round(time.Microsecond), pctOf(direct.offsets[0], 0.99).Round(time.Microsecond),
			pctOf(edge.offsets[0], 0.5).Round(time.Microsecond), pctOf(edge.offsets[0], 0.99).Round(time.Microsecond))
	}
	if edge.peakRSS > 0 {
		fmt.Fprintf(w, "edge peak RSS with %d streams open: %.1f MiB (target ≤ 200 MiB)\n", edge.streams, float64(edge.peakRSS)/(1<<20))
	}
	fmt.Fprintf(w, "stream errors: direct %d, edge %d\n", direct.errors, edge.errors)
}

// hist is one of the edge's Prometheus histograms: cumulative counts by
// upper bound, in seconds.
type hist struct {
	bounds []float64
	counts []float64
}

// The histograms read, as the bucket lines' prefix up to the le value.
const (
	forwardMetric = `codex_edge_stream_chunk_forward_seconds_bucket{le="`
	addedMetric   = `codex_edge_added_latency_seconds_bucket{endpoint="chat.completions",provider="openai",le="`
	// upstreamMetric is the provider's time as the edge saw it (coarse
	// buckets, from 5ms).
	upstreamMetric = `codex_edge_upstream_latency_seconds_bucket{provider="openai",le="`
)

// adminToken is sent with every read of the edge's /metrics: an edge with
// an admin token answers 401 without it. It comes from the variables the
// edge reads, CODEX_ADMIN_TOKEN or the file CODEX_ADMIN_TOKEN_FILE, so that
// a bench run whose environment sets one for the edge passes it on.
var adminToken = sync.OnceValue(func() string {
	if f := strings.TrimSpace(os.Getenv("CODEX_ADMIN_TOKEN_FILE")); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "codex-loadgen: CODEX_ADMIN_TOKEN_FILE: %v\n", err)
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	return strings.TrimSpace(os.Getenv("CODEX_ADMIN_TOKEN"))
})

// warnUnauthorized says once that the edge refused the /metrics read.
var warnUnauthorized sync.Once

// metricLines fetches the edge's /metrics; ok is false when it cannot be
// read.
func metricLines(url string) ([]string, bool) {
	if url == "" {
		return nil, false
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, false
	}
	if tok := adminToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		warnUnauthorized.Do(func() {
			fmt.Fprintln(os.Stderr, "codex-loadgen: the edge's /metrics wants its admin token: set CODEX_ADMIN_TOKEN or CODEX_ADMIN_TOKEN_FILE as for the edge")
		})
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return nil, false
	}
	return strings.Split(string(b), "\n"), true
}

// scrape reads the histogram whose bucket lines start with metric from the
// edge's /metrics; ok is false when it cannot be read.
func scrape(url, metric string) (hist, bool) {
	var h hist
	lines, ok := metricLines(url)
	if !ok {
		return h, false
	}
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, metric)
		if !ok {
			continue
		}
		le, val, ok := strings.Cut(rest, "\"} ")
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses too
		n, err2 := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		h.bounds = append(h.bounds, bound)
		h.counts = append(h.counts, n)
	}
	return h, len(h.bounds) > 0
}

// scrapeCounter reads one sample's value (the line starting with name and
// a space) from the edge's /metrics; ok is false when it is not there.
func scrapeCounter(url, name string) (float64, bool) {
	lines, _ := metricLines(url)
	for _, line := range lines {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n, err == nil
		}
	}
	return 0, false
}

// scrapeSum sums the counter name over all its label sets.
func scrapeSum(url, name string) (float64, bool) {
	lines, _ := metricLines(url)
	sum, found := 0.0, false
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		n, err := strconv.ParseFloat(strings.TrimSpace(rest[i+1:]), 64)
		if err != nil {
			continue
		}
		sum, found = sum+n, true
	}
	return sum, found
}

// total is the number of observations.
func (h hist) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// since returns the observations made after before.
func (h hist) since(before hist) hist {
	out := hist{bounds: h.bounds, counts: slices.Clone(h.counts)}
	if len(before.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] -= before.counts[i]
		}
	}
	return out
}

// quantile estimates the q-quantile by linear interpolation inside its
// bucket, as Prometheus' histogram_quantile does.
func (h hist) quantile(q float64) time.Duration {
	if len(h.counts) == 0 || h.counts[len(h.counts)-1] == 0 {
		return 0
	}
	rank := q * h.counts[len(h.counts)-1]
	lower, below := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			upper := h.bounds[i]
			if math.IsInf(upper, 1) {
				upper = lower // past the last bound: report the bound
			}
			frac := 0.0
			if c > below {
				frac = (rank - below) / (c - below)
			}
			return time.Duration((lower + (upper-lower)*frac) * float64(time.Second))
		}
		lower, below = h.bounds[i], c
	}
	return 0
}
