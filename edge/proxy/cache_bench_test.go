package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/cache/memory"
	cacheredis "github.com/persiv/codex/edge/cache/redis"
	"github.com/persiv/codex/edge/caching"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/store/sqlite"
)

// setupCacheBench is setupBench with the response cache on backend b.
func setupCacheBench(b *testing.B, backend cache.Backend, fo fakeprovider.Options) (http.Handler, string, *fakeprovider.Server) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	_, _, s := benchOrg(b, db, edge.OpenAI)
	master, _, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: db, Master: master, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	dir := directory.New(db, directory.Options{Keys: kr, Getenv: func(string) string { return "sk-fake" }})
	prices, _ := pricing.Load(nil)
	fo.NoRecord = true
	fake := fakeprovider.New(fo)
	c := cache.New(backend, kr, cache.Options{})
	b.Cleanup(func() { c.Close() })
	px := proxy.New(dir, discard{}, prices, proxy.Options{Transport: inProcess{fake},
		Cache: caching.Options{Cache: c, Enabled: true}})
	e := echo.New()
	px.Register(e)
	return e, s.Reveal(), fake
}

func memoryBackend(b *testing.B) cache.Backend {
	m, err := memory.New(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func redisBackend(b *testing.B) cache.Backend {
	u := testutil.RedisURL(b)
	r, err := cacheredis.Open(u, cacheredis.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// serveHit sends one request and reports whether it was a cache hit (a
// backend slower than its timeout answers "bypass", as it should).
func serveHit(b *testing.B, h http.Handler, key string, body []byte) bool {
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("status %d", rec.Code)
	}
	return rec.Header().Get("x-codex-cache") == "hit"
}

// benchHits measures a hit's latency through the edge's handler
// (authentication, fingerprint, lookup, opening the entry, writing it) and
// reports its p50 and p99.
func benchHits(b *testing.B, backend cache.Backend, body []byte) {
	h, key, _ := setupCacheBench(b, backend, fakeprovider.Options{})
	serve(b, h, key, body) // the miss that fills the cache
	deadline := time.Now().Add(5 * time.Second)
	for {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Header().Get("x-codex-cache") == "hit" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the entry was never stored")
		}
		time.Sleep(time.Millisecond)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	others := 0
	for b.Loop() {
		start := time.Now()
		if !serveHit(b, h, key, body) {
			others++
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(others)/float64(len(lat)), "non-hits/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkCacheHitMemory(b *testing.B)       { benchHits(b, memoryBackend(b), benchChat) }
func BenchmarkCacheHitRedis(b *testing.B)        { benchHits(b, redisBackend(b), benchChat) }
func BenchmarkCacheHitStreamMemory(b *testing.B) { benchHits(b, memoryBackend(b), benchStream) }
func BenchmarkCacheHitStreamRedis(b *testing.B)  { benchHits(b, redisBackend(b), benchStream) }

// BenchmarkCoalescingBurst sends bursts of 64 identical requests at once
// to a provider that takes 5 ms, each burst a new prompt: one provider call
// per burst is the goal.
func BenchmarkCoalescingBurst(b *testing.B) {
	const burst = 64
	h, key, fake := setupCacheBench(b, memoryBackend(b), fakeprovider.Options{Latency: 5 * time.Millisecond})
	i := 0
	lat := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		i++
		body := fmt.Appendf(nil, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"burst %d"}]}`, i)
		var wg sync.WaitGroup
		start := time.Now()
		for range burst {
			wg.Go(func() {
				req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Errorf("status %d", rec.Code)
				}
			})
		}
		wg.Wait()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(fake.Count(fakeprovider.PathChatCompletions))/float64(i), "provider-calls/burst")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "burst-p50-µs")
}

// BenchmarkCacheMissMemory is BenchmarkChatThroughEdge with the cache on
// and every request new: the miss path's cost (lookup, recording the
// answer, sealing and storing it off the request path).
func BenchmarkCacheMissMemory(b *testing.B) {
	h, key, _ := setupCacheBench(b, memoryBackend(b), fakeprovider.Options{})
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		serve(b, h, key, fmt.Appendf(nil, `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark %d."}],"max_tokens":32}`, i))
	}
}

// benchHitsLoopback is benchHits over HTTP on loopback, as a client sees
// it (DESIGN §9: a hit served in ≤ 1 ms p99 in-process, ≤ 2 ms with Redis).
func benchHitsLoopback(b *testing.B, backend cache.Backend) {
	h, key, _ := setupCacheBench(b, backend, fakeprovider.Options{})
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	client := srv.Client()
	send := func() string {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", bytes.NewReader(benchChat))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("x-codex-cache")
	}
	deadline := time.Now().Add(5 * time.Second)
	for send() != "hit" {
		if time.Now().After(deadline) {
			b.Fatal("the entry was never stored")
		}
		time.Sleep(time.Millisecond)
	}
	lat := make([]time.Duration, 0, 1<<16)
	others := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if send() != "hit" {
			others++
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(others)/float64(len(lat)), "non-hits/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkCacheHitLoopbackMemory(b *testing.B) { benchHitsLoopback(b, memoryBackend(b)) }
func BenchmarkCacheHitLoopbackRedis(b *testing.B)  { benchHitsLoopback(b, redisBackend(b)) }
