package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// soakResult is what a soak measured: the edge's resident memory sampled
// through a long run of mixed load.
type soakResult struct {
	duration time.Duration
	requests int64
	streams  int64
	errors   int64
	samples  []rssSample
}

type rssSample struct {
	at  time.Duration
	rss int64
}

// runSoak keeps a mixed load on t for d: rate requests per second (one in
// four repeats an earlier request, so the cache both misses and hits) and
// streams streaming requests open at all times. It samples pid's resident
// memory every interval and prints progress as it goes.
func runSoak(t target, d time.Duration, rate, streams, pid int, interval time.Duration) soakResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var res soakResult
	var requests, streamsDone, errs atomic.Int64
	var wg sync.WaitGroup

	c := client(rate/10 + streams)
	// A finished phase leaves no idle connections open on the edge for
	// the next one to pay for.
	defer c.CloseIdleConnections()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var n int
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n++
			unique := n%4 != 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := do(c, t, unique); err != nil && ctx.Err() == nil {
					errs.Add(1)
				}
				requests.Add(1)
			}()
		}
	}()
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := stream(ctx, c, t); err != nil && ctx.Err() == nil {
					errs.Add(1)
				}
				streamsDone.Add(1)
			}
		}()
	}

	start := time.Now()
	sample := func() {
		s := rssSample{at: time.Since(start).Round(time.Second), rss: readRSS(pid)}
		res.samples = append(res.samples, s)
		fmt.Fprintf(os.Stderr, "soak %8s: edge RSS %6.1f MiB, %d requests, %d streams, %d errors\n",
			s.at, mib(s.rss), requests.Load(), streamsDone.Load(), errs.Load())
	}
	tick := time.NewTicker(interval)
	sample()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			sample()
		}
	}
	tick.Stop()
	wg.Wait()
	sample()
	res.duration = time.Since(start)
	res.requests, res.streams, res.errors = requests.Load(), streamsDone.Load(), errs.Load()
	return res
}

// stream runs one streaming chat completion to its end.
func stream(ctx context.Context, c *http.Client, t target) error {
	b := fmt.Appendf(nil, `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"soak stream %d-%d"}]}`, runID, seq.Add(1))
	req, err := chatRequest(ctx, t, b)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	_, err = io.Copy(io.Discard, bufio.NewReader(resp.Body))
	return err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// reportSoak prints the memory over the soak: after the first minute (once
// pools, caches and the heap have grown to their working size) and at the
// end, with the least-squares growth rate in between.
func reportSoak(w io.Writer, r soakResult) {
	fmt.Fprintf(w, "\nsoak: %s of mixed load through the edge: %d requests, %d streams, %d errors\n",
		r.duration.Round(time.Second), r.requests, r.streams, r.errors)
	var warm []rssSample
	for _, s := range r.samples {
		if s.at >= time.Minute && s.rss > 0 {
			warm = append(warm, s)
		}
	}
	if len(warm) < 2 {
		fmt.Fprintln(w, "soak: too short to judge memory (needs samples after the first minute)")
		return
	}
	first, last, peak := warm[0], warm[len(warm)-1], warm[0]
	for _, s := range warm {
		if s.rss > peak.rss {
			peak = s
		}
	}
	fmt.Fprintf(w, "edge RSS: %.1f MiB at %s, %.1f MiB at %s, peak %.1f MiB; trend %+.2f MiB/min (target: flat)\n",
		mib(first.rss), first.at, mib(last.rss), last.at, mib(peak.rss), slope(warm))
}

// slope is the least-squares growth of RSS in MiB per minute.
func slope(s []rssSample) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range s {
		x, y := p.at.Minutes(), mib(p.rss)
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
