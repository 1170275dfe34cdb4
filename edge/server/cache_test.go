package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	antformat "github.com/persiv/codex/edge/provider/anthropic"
	oaiformat "github.com/persiv/codex/edge/provider/openai"
	"github.com/persiv/codex/edge/store/storetest"
)

func bearer(key string) map[string]string { return map[string]string{"Authorization": "Bearer " + key} }

func anthropicHdr(key string) map[string]string {
	return map[string]string{"x-api-key": key, "anthropic-version": "2023-06-01"}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestCacheSDKMissThenHit drives every cached endpoint through the official
// SDKs twice: the second answer comes from the cache, decodes to the same
// thing, and does not reach the provider.
func TestCacheSDKMissThenHit(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		h := cacheHarness(t, fakeprovider.Options{}, redis)
		tn := h.addOrg("acme")
		oc, ac, log := h.loggedClients(tn.key)
		n := 0
		for _, c := range sdkCases {
			if !cacheableCase(c) {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				first, err := c.call(ctxT(t), oc, ac)
				if err != nil {
					t.Fatal(err)
				}
				if got := log.last(); got != "miss" {
					t.Fatalf("first call: x-codex-cache %q, want miss", got)
				}
				before := h.fake.Count(c.path)
				second, err := c.call(ctxT(t), oc, ac)
				if err != nil {
					t.Fatal(err)
				}
				if got := log.last(); got != "hit" {
					t.Fatalf("second call: x-codex-cache %q, want hit", got)
				}
				if h.fake.Count(c.path) != before {
					t.Fatal("a cache hit reached the provider")
				}
				if first != second {
					t.Fatalf("hit decodes differently:\nmiss %s\nhit  %s", first, second)
				}
			})
			n += 2
		}
		// Every request is recorded; hits at zero cost, saving the miss's.
		recs := h.records(tn.orgID, n)
		byFP := map[string][]edge.RequestRecord{}
		for _, r := range recs {
			byFP[r.Fingerprint] = append(byFP[r.Fingerprint], r)
		}
		for fp, rs := range byFP {
			if len(rs) != 2 {
				t.Fatalf("fingerprint %s: %d records", fp, len(rs))
			}
			miss, hit := rs[0], rs[1]
			if miss.Cache == edge.CacheHit {
				miss, hit = hit, miss
			}
			if miss.Cache != edge.CacheMiss || hit.Cache != edge.CacheHit {
				t.Fatalf("cache statuses %s, %s", miss.Cache, hit.Cache)
			}
			if hit.CostNanoUSD != 0 || !hit.CostKnown || hit.SavedNanoUSD != miss.CostNanoUSD || hit.Usage != miss.Usage ||
				hit.Status != 200 || hit.UpstreamLatency != 0 || hit.Latency <= 0 || hit.Model != miss.Model {
				t.Fatalf("hit accounting:\nmiss %+v\nhit  %+v", miss, hit)
			}
			if miss.CostKnown && miss.CostNanoUSD > 0 && hit.SavedNanoUSD == 0 {
				t.Fatal("hit saved nothing")
			}
		}
	})
}

func cacheableCase(c sdkCase) bool {
	switch c.endpoint {
	case oaiformat.ChatCompletions, oaiformat.Responses, oaiformat.Embeddings, antformat.Messages:
		return true
	}
	return false
}

// TestCacheHitIsByteIdentical checks a hit replays the very bytes of the
// first answer, JSON and SSE, with only the edge's headers differing.
func TestCacheHitIsByteIdentical(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		h := cacheHarness(t, fakeprovider.Options{}, redis)
		tn := h.addOrg("acme")
		cases := []struct {
			name, path, body string
			hdr              map[string]string
			ctype            string
		}{
			{"chat json", "/v1/chat/completions", chatBody, bearer(tn.key), "application/json"},
			{"chat sse", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"bytes please"}]}`, bearer(tn.key), "text/event-stream; charset=utf-8"},
			{"chat sse with usage", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"usage bytes"}]}`, bearer(tn.key), "text/event-stream; charset=utf-8"},
			{"responses sse", "/v1/responses", `{"model":"gpt-4.1","stream":true,"input":"stream me"}`, bearer(tn.key), "text/event-stream; charset=utf-8"},
			{"messages sse", "/v1/messages", `{"model":"claude-haiku-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi there"}]}`, anthropicHdr(tn.key), "text/event-stream"},
			{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"embed me"}`, bearer(tn.key), "application/json"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				st1, h1, b1 := raw(t, "POST", h.base+c.path, c.hdr, c.body)
				st2, h2, b2 := raw(t, "POST", h.base+c.path, c.hdr, c.body)
				if st1 != 200 || st2 != 200 || h1.Get("x-codex-cache") != "miss" || h2.Get("x-codex-cache") != "hit" {
					t.Fatalf("statuses %d %d, cache %q %q: %s", st1, st2, h1.Get("x-codex-cache"), h2.Get("x-codex-cache"), b2)
				}
				if !bytes.Equal(b1, b2) {
					t.Fatalf("hit differs from miss:\n%s\n---\n%s", b1, b2)
				}
				if h2.Get("Content-Type") != c.ctype || h2.Get("x-codex-request-id") == h1.Get("x-codex-request-id") {
					t.Fatalf("hit headers %v", h2)
				}
				// Provider request ids and rate-limit state are never replayed.
				for _, k := range []string{"x-request-id", "request-id", "x-ratelimit-remaining-requests"} {
					if h2.Get(k) != "" {
						t.Fatalf("hit replays %s", k)
					}
				}
			})
		}
	})
}

// TestNoCacheLeadsLaterRequests: a request that asked for a fresh answer
// shares no older call, but an identical request arriving while it is in
// flight shares its call, and every request after it is answered with it.
func TestNoCacheLeadsLaterRequests(t *testing.T) {
	h := cacheHarness(t, fakeprovider.Options{Latency: 300 * time.Millisecond}, false)
	tn := h.addOrg("acme")
	url := h.base + "/v1/chat/completions"
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"fresh, then shared"}]}`
	type answer struct {
		cache string
		body  []byte
	}
	send := func(hdr ...string) answer {
		st, rh, b := raw(t, "POST", url, with(bearer(tn.key), hdr...), body)
		if st != 200 {
			t.Errorf("status %d: %s", st, b)
		}
		return answer{rh.Get("x-codex-cache"), b}
	}
	first := send() // an older answer in the cache
	if first.cache != "miss" {
		t.Fatalf("first: %q", first.cache)
	}
	fresh := make(chan answer)
	go func() { fresh <- send("Cache-Control", "no-cache") }()
	testutil.Eventually(t, 10*time.Second, "the no-cache request to reach the provider", func() bool { return h.fake.Count(fakeprovider.PathChatCompletions) == 2 })
	during := send()
	f := <-fresh
	after := send()
	if f.cache != "miss" || during.cache != "hit" || after.cache != "hit" {
		t.Fatalf("no-cache %q, during %q, after %q; want miss, hit, hit", f.cache, during.cache, after.cache)
	}
	if !bytes.Equal(during.body, f.body) || !bytes.Equal(after.body, f.body) {
		t.Fatal("requests after the no-cache one were not answered with its fresh answer")
	}
	if n := h.fake.Count(fakeprovider.PathChatCompletions); n != 2 {
		t.Fatalf("provider called %d times, want 2", n)
	}
}

// TestCacheKeying checks what makes two requests the same answer.
func TestCacheKeying(t *testing.T) {
	h := cacheHarness(t, fakeprovider.Options{}, false)
	tn := h.addOrg("acme")
	url := h.base + "/v1/chat/completions"
	send := func(body string, hdr ...string) (string, []byte) {
		t.Helper()
		st, rh, b := raw(t, "POST", url, with(bearer(tn.key), hdr...), body)
		if st != 200 {
			t.Fatalf("status %d: %s", st, b)
		}
		return rh.Get("x-codex-cache"), b
	}
	base := `{"model":"gpt-4o-mini","temperature":0.2,"messages":[{"role":"user","content":"keying"}]}`
	steps := []struct {
		name, body string
		hdr        []string
		want       string
	}{
		{"first", base, nil, "miss"},
		{"same", base, nil, "hit"},
		{"reordered keys and whitespace", "{ \"messages\" : [ {\"content\":\"keying\", \"role\":\"user\"} ],\n \"temperature\":0.2, \"model\":\"gpt-4o-mini\" }", nil, "hit"},
		{"excluded field user", `{"model":"gpt-4o-mini","temperature":0.2,"user":"u-1","messages":[{"role":"user","content":"keying"}]}`, nil, "hit"},
		{"changed temperature", `{"model":"gpt-4o-mini","temperature":0.3,"messages":[{"role":"user","content":"keying"}]}`, nil, "miss"},
		{"changed model", `{"model":"gpt-4o","temperature":0.2,"messages":[{"role":"user","content":"keying"}]}`, nil, "miss"},
		{"changed message", `{"model":"gpt-4o-mini","temperature":0.2,"messages":[{"role":"user","content":"keying!"}]}`, nil, "miss"},
		{"added max_tokens", `{"model":"gpt-4o-mini","temperature":0.2,"max_tokens":5,"messages":[{"role":"user","content":"keying"}]}`, nil, "miss"},
		{"no-cache skips the lookup", base, []string{"Cache-Control", "no-cache"}, "miss"},
		{"no-store", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"never stored"}]}`, []string{"Cache-Control", "no-store"}, "bypass"},
		{"no-store stored nothing", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"never stored"}]}`, nil, "miss"},
	}
	for _, s := range steps {
		before := h.fake.Count(fakeprovider.PathChatCompletions)
		got, _ := send(s.body, s.hdr...)
		if got != s.want {
			t.Fatalf("%s: x-codex-cache %q, want %q", s.name, got, s.want)
		}
		if called := h.fake.Count(fakeprovider.PathChatCompletions) > before; called != (s.want != "hit") {
			t.Fatalf("%s: provider called %v", s.name, called)
		}
	}
	// no-cache stored its fresh answer: the next plain request hits it.
	_, fresh := send(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"fresh one"}]}`, "Cache-Control", "no-cache")
	got, again := send(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"fresh one"}]}`)
	if got != "hit" || !bytes.Equal(fresh, again) {
		t.Fatalf("after no-cache: %q", got)
	}
}

func TestCacheTTL(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		h := cacheHarness(t, fakeprovider.Options{}, redis, func(c *config.Config) { c.CacheMaxTTL = 24 * time.Hour })
		tn := h.addOrg("acme")
		for _, bad := range []string{"abc", "0", "-5", "1.5", "86401"} {
			st, _, body := raw(t, "POST", h.base+"/v1/chat/completions", with(bearer(tn.key), "x-codex-cache-ttl", bad), chatBody)
			if st != 400 || !strings.Contains(string(body), "invalid_cache_ttl") {
				t.Fatalf("ttl %q: %d %s", bad, st, body)
			}
			shape(t, edge.OpenAI, body, "invalid_request_error")
			st, _, body = raw(t, "POST", h.base+"/v1/messages", with(anthropicHdr(tn.key), "x-codex-cache-ttl", bad), msgBody)
			if st != 400 {
				t.Fatalf("anthropic ttl %q: %d %s", bad, st, body)
			}
			shape(t, edge.Anthropic, body, "invalid_request_error")
		}
		if n := h.fake.Count(fakeprovider.PathChatCompletions) + h.fake.Count(fakeprovider.PathMessages); n != 0 {
			t.Fatal("a request with an invalid TTL reached the provider")
		}
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"short lived"}]}`
		for i, want := range []string{"miss", "hit"} {
			_, hdr, _ := raw(t, "POST", h.base+"/v1/chat/completions", with(bearer(tn.key), "x-codex-cache-ttl", "1"), body)
			if got := hdr.Get("x-codex-cache"); got != want {
				t.Fatalf("request %d: %q, want %q", i, got, want)
			}
		}
		time.Sleep(2100 * time.Millisecond)
		if _, hdr, _ := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), body); hdr.Get("x-codex-cache") != "miss" {
			t.Fatalf("after the TTL: %q", hdr.Get("x-codex-cache"))
		}
	})
}

// TestCacheStoresOnlyCompleteSuccess: errors, broken streams and answers
// over the size limit are not stored.
func TestCacheStoresOnlyCompleteSuccess(t *testing.T) {
	var cut atomic.Bool
	h := cacheHarness(t, fakeprovider.Options{Gate: func(ctx context.Context, chunk int) error {
		if cut.Load() && chunk == 3 {
			return errors.New("cut")
		}
		return nil
	}}, false)
	tn := h.addOrg("acme")
	url := h.base + "/v1/chat/completions"
	twice := func(name, body string, wantStatus int) {
		t.Helper()
		before := h.fake.Count(fakeprovider.PathChatCompletions)
		for range 2 {
			st, hdr, b := raw(t, "POST", url, bearer(tn.key), body)
			if st != wantStatus || hdr.Get("x-codex-cache") != "miss" {
				t.Fatalf("%s: %d %q %s", name, st, hdr.Get("x-codex-cache"), b)
			}
		}
		if n := h.fake.Count(fakeprovider.PathChatCompletions) - before; n != 2 {
			t.Fatalf("%s: %d provider calls, want 2 (nothing stored)", name, n)
		}
	}
	twice("provider error", `{"model":"fake-error-500","messages":[{"role":"user","content":"x"}]}`, 500)
	twice("rate limited", `{"model":"fake-error-429","messages":[{"role":"user","content":"x"}]}`, 429)
	cut.Store(true)
	twice("broken stream", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"cut me"}]}`, 200)
	cut.Store(false)
	if _, hdr, _ := raw(t, "POST", url, bearer(tn.key), `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"cut me"}]}`); hdr.Get("x-codex-cache") != "miss" {
		t.Fatal("a broken stream was stored")
	}

	// Over the size limit: the answer is served, not stored.
	small := cacheHarness(t, fakeprovider.Options{}, false, func(c *config.Config) { c.CacheMaxEntryBytes = 800 })
	tn = small.addOrg("acme")
	long := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("word ", 60) + `"}]}`
	short := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"tiny"}]}`
	for i, want := range []string{"miss", "miss", "miss", "hit"} {
		body := long
		if i >= 2 {
			body = short
		}
		st, hdr, b := raw(t, "POST", small.base+"/v1/chat/completions", bearer(tn.key), body)
		if st != 200 || hdr.Get("x-codex-cache") != want {
			t.Fatalf("request %d (%d bytes answer): %d %q, want %s", i, len(b), st, hdr.Get("x-codex-cache"), want)
		}
	}
}

// answer is what a client makes of an answer, whatever its form.
type answer struct {
	Text, Tool, Args, Finish string
	In, Out                  int64
}

// TestCacheCrossServing: a stream served from a cached JSON answer and a
// JSON answer served from a cached stream carry the same text, tool
// calls, finish reason and usage as the original.
func TestCacheCrossServing(t *testing.T) {
	h := cacheHarness(t, fakeprovider.Options{}, false)
	tn := h.addOrg("acme")
	oc, ac, log := h.loggedClients(tn.key)
	type pair struct {
		name         string
		json, stream func(ctx context.Context, prompt string) (answer, error)
	}
	pairs := []pair{
		{"chat text", chatJSON(oc, false), chatSSE(oc, false, true)},
		{"chat tool call", chatJSON(oc, true), chatSSE(oc, true, true)},
		{"responses text", responsesJSON(oc, false), responsesSSE(oc, false)},
		{"responses function call", responsesJSON(oc, true), responsesSSE(oc, true)},
		{"messages text", messagesJSON(ac, false), messagesSSE(ac, false)},
		{"messages tool use", messagesJSON(ac, true), messagesSSE(ac, true)},
	}
	for _, p := range pairs {
		for _, order := range []string{"stream first", "json first"} {
			t.Run(p.name+"/"+order, func(t *testing.T) {
				first, second := p.stream, p.json
				if order == "json first" {
					first, second = p.json, p.stream
				}
				prompt := p.name + " " + order
				a, err := first(ctxT(t), prompt)
				if err != nil || log.last() != "miss" {
					t.Fatalf("first: %v", err)
				}
				b, err := second(ctxT(t), prompt)
				if err != nil {
					t.Fatal(err)
				}
				if got := log.last(); got != "hit" {
					t.Fatalf("other form: x-codex-cache %q, want hit", got)
				}
				if a != b || a.Text+a.Args == "" || a.In == 0 || a.Out == 0 {
					t.Fatalf("answers differ:\n%s %+v\n%s %+v", order, a, "then", b)
				}
			})
		}
	}
	// A chat stream rendered from JSON shows the usage chunk only to a
	// client that asked for it.
	for _, includeUsage := range []bool{false, true} {
		prompt := fmt.Sprintf("usage chunk %v", includeUsage)
		if _, err := chatJSON(oc, false)(ctxT(t), prompt); err != nil {
			t.Fatal(err)
		}
		a, err := chatSSE(oc, false, includeUsage)(ctxT(t), prompt)
		if err != nil || log.last() != "hit" {
			t.Fatal(err)
		}
		if (a.In != 0) != includeUsage {
			t.Fatalf("include_usage=%v: stream usage %+v", includeUsage, a)
		}
	}
}

// TestCacheTenancy: byte-identical requests of two orgs never share an
// entry, and an org's sealed entry copied under another org's key does not
// open there (a miss, never the other org's answer).
func TestCacheTenancy(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		h := cacheHarness(t, fakeprovider.Options{}, redis)
		a, b := h.addOrg("a"), h.addOrg("b")
		url := h.base + "/v1/chat/completions"
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"the same bytes"}]}`
		for i, s := range []struct {
			tn   tenant
			want string
		}{{a, "miss"}, {a, "hit"}, {b, "miss"}, {b, "hit"}} {
			_, hdr, _ := raw(t, "POST", url, bearer(s.tn.key), body)
			if got := hdr.Get("x-codex-cache"); got != s.want {
				t.Fatalf("step %d: %q, want %q", i, got, s.want)
			}
		}
		if n := h.fake.Count(fakeprovider.PathChatCompletions); n != 2 {
			t.Fatalf("%d provider calls, want one per org", n)
		}
		if !redis {
			return
		}
		// Copy org a's sealed entry over org b's for the same request.
		other := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"copied entry"}]}`
		_, ha, _ := raw(t, "POST", url, bearer(a.key), other)
		_, hb, _ := raw(t, "POST", url, bearer(b.key), other)
		fpA := recordByID(t, h, a.orgID, ha.Get("x-codex-request-id")).Fingerprint
		fpB := recordByID(t, h, b.orgID, hb.Get("x-codex-request-id")).Fingerprint
		rc := redisClient(t)
		ctx := context.Background()
		var sealed []byte
		testutil.Eventually(t, 10*time.Second, "org a's entry in Redis", func() bool {
			var err error
			sealed, err = rc.Get(ctx, cache.Key(a.orgID, fpA)).Bytes()
			return err == nil
		})
		if err := rc.Set(ctx, cache.Key(b.orgID, fpB), sealed, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		before := h.fake.Count(fakeprovider.PathChatCompletions)
		st, hdr, _ := raw(t, "POST", url, bearer(b.key), other)
		if st != 200 || hdr.Get("x-codex-cache") != "miss" || h.fake.Count(fakeprovider.PathChatCompletions) != before+1 {
			t.Fatalf("moved entry: %d %q", st, hdr.Get("x-codex-cache"))
		}
		if !strings.Contains(metrics(t, h), "codex_edge_cache_unreadable_total 1") {
			t.Fatal("the unreadable entry was not counted")
		}
		// Org a still hits its own entry.
		if _, hdr, _ := raw(t, "POST", url, bearer(a.key), other); hdr.Get("x-codex-cache") != "hit" {
			t.Fatalf("org a after the copy: %q", hdr.Get("x-codex-cache"))
		}
	})
}

// TestCacheShred: shredding an org turns its entries into misses; other
// orgs keep hitting theirs.
func TestCacheShred(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		h := cacheHarness(t, fakeprovider.Options{}, redis)
		a, b := h.addOrg("a"), h.addOrg("b")
		url := h.base + "/v1/chat/completions"
		for _, tn := range []tenant{a, b} {
			raw(t, "POST", url, bearer(tn.key), chatBody)
			if _, hdr, _ := raw(t, "POST", url, bearer(tn.key), chatBody); hdr.Get("x-codex-cache") != "hit" {
				t.Fatal("not cached before the shred")
			}
		}
		if _, err := h.srv.Keyring().Shred(context.Background(), a.orgID); err != nil {
			t.Fatal(err)
		}
		if st, hdr, body := raw(t, "POST", url, bearer(a.key), chatBody); st != 200 || hdr.Get("x-codex-cache") != "miss" {
			t.Fatalf("shredded org: %d %q %s", st, hdr.Get("x-codex-cache"), body)
		}
		if _, hdr, _ := raw(t, "POST", url, bearer(b.key), chatBody); hdr.Get("x-codex-cache") != "hit" {
			t.Fatalf("other org after the shred: %q", hdr.Get("x-codex-cache"))
		}
		// New entries of the shredded org work again, under a new data key
		// (and, once the edge reloads the org, a new fingerprint secret).
		testutil.Eventually(t, 10*time.Second, "the shredded org to hit its new entries", func() bool {
			_, hdr, _ := raw(t, "POST", url, bearer(a.key), chatBody)
			return hdr.Get("x-codex-cache") == "hit"
		})
	})
}

// TestCoalescing: identical concurrent requests make one provider call;
// different orgs one each.
func TestCoalescing(t *testing.T) {
	const n = 8
	h := cacheHarness(t, fakeprovider.Options{Latency: 300 * time.Millisecond}, false)
	a, b := h.addOrg("a"), h.addOrg("b")
	url := h.base + "/v1/chat/completions"
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"all at once"}]}`
	var wg sync.WaitGroup
	bodies := make([][]byte, 2*n)
	caches := make([]string, 2*n)
	for i := range 2 * n {
		tn := a
		if i%2 == 1 {
			tn = b
		}
		wg.Go(func() {
			st, hdr, got := raw(t, "POST", url, bearer(tn.key), body)
			if st != 200 {
				t.Errorf("status %d: %s", st, got)
			}
			bodies[i], caches[i] = got, hdr.Get("x-codex-cache")
		})
	}
	wg.Wait()
	if c := h.fake.Count(fakeprovider.PathChatCompletions); c != 2 {
		t.Fatalf("%d provider calls for %d identical requests of 2 orgs, want 2", c, 2*n)
	}
	misses := 0
	for i := range bodies {
		if !bytes.Equal(bodies[i], bodies[i%2]) {
			t.Fatalf("request %d got another answer", i)
		}
		if caches[i] == "miss" {
			misses++
		}
	}
	if misses != 2 || bytes.Equal(bodies[0], bodies[1]) {
		t.Fatalf("%d misses (want one leader per org); org answers equal: %v", misses, bytes.Equal(bodies[0], bodies[1]))
	}
	if !strings.Contains(metrics(t, h), fmt.Sprintf("codex_edge_coalesced_total %d", 2*n-2)) {
		t.Fatal("coalesced requests are not counted")
	}
	recs := append(h.records(a.orgID, n), h.records(b.orgID, n)...)
	for _, r := range recs {
		if r.Status != 200 || (r.Cache == edge.CacheHit && (r.CostNanoUSD != 0 || r.SavedNanoUSD == 0)) {
			t.Fatalf("record %+v", r)
		}
	}
}

// TestCoalescingStream: followers of a streamed answer receive its events
// as the leader receives them; a follower leaving and the leader's own
// client leaving do not cancel the shared call.
func TestCoalescingStream(t *testing.T) {
	release := make(chan struct{})
	h := cacheHarness(t, fakeprovider.Options{Chunks: 6, Gate: func(ctx context.Context, chunk int) error {
		if chunk == 2 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}, false)
	tn := h.addOrg("acme")
	oc, _, _ := h.loggedClients(tn.key)
	params := streamParams("coalesced stream", false)
	leaderCtx, leaderCancel := context.WithCancel(ctxT(t))
	leader := oc.Chat.Completions.NewStreaming(leaderCtx, params)
	if !leader.Next() { // the first chunk: the leader's call is in flight
		t.Fatal(leader.Err())
	}
	const n = 6
	type result struct {
		a   answer
		err error
	}
	results := make(chan result, n)
	joined := make(chan struct{}, n+1)
	for range n {
		go func() {
			a, err := collectChat(oc.Chat.Completions.NewStreaming(ctxT(t), params), joined)
			results <- result{a, err}
		}()
	}
	// One more follower that leaves after its first event.
	quitCtx, quit := context.WithCancel(ctxT(t))
	quitter := oc.Chat.Completions.NewStreaming(quitCtx, params)
	if !quitter.Next() {
		t.Fatal(quitter.Err())
	}
	for range n {
		<-joined
	}
	quit()
	quitter.Close()
	leaderCancel() // the leader's client leaves too
	leader.Close()
	if c := h.fake.Count(fakeprovider.PathChatCompletions); c != 1 {
		t.Fatalf("%d provider calls before release", c)
	}
	close(release)
	var first answer
	for i := range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if i == 0 {
			first = r.a
		}
		if r.a != first || r.a.Text == "" || r.a.Finish != "stop" {
			t.Fatalf("follower answer %+v, want %+v", r.a, first)
		}
	}
	if c := h.fake.Count(fakeprovider.PathChatCompletions); c != 1 {
		t.Fatalf("%d provider calls for %d identical streams, want 1", c, n+2)
	}
	if c := h.fake.Canceled(); c != 0 {
		t.Fatalf("the shared call was cancelled (%d)", c)
	}
	// Completed and stored: the next identical stream is a hit.
	a, err := chatSSE(oc, false, false)(ctxT(t), "coalesced stream")
	if err != nil || a != first {
		t.Fatalf("after the flight: %+v %v", a, err)
	}
}

// TestCoalescingNeverHangs: followers of a leader whose call fails get an
// answer, and a leader alone whose client leaves cancels its call.
func TestCoalescingNeverHangs(t *testing.T) {
	h := cacheHarness(t, fakeprovider.Options{Latency: 200 * time.Millisecond}, false)
	tn := h.addOrg("acme")
	url := h.base + "/v1/chat/completions"
	body := `{"model":"fake-error-500","messages":[{"role":"user","content":"fails"}]}`
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if st, _, b := raw(t, "POST", url, bearer(tn.key), body); st != 500 {
				t.Errorf("status %d: %s", st, b)
			}
		})
	}
	wg.Wait()
	if c := h.fake.Count(fakeprovider.PathChatCompletions); c != 1 {
		t.Fatalf("%d provider calls, want 1 shared failure", c)
	}
	// Unreachable provider: the leader's 502 is every follower's answer.
	if err := h.store.SetProvider(context.Background(), edge.ProviderConfig{OrgID: tn.orgID, Provider: edge.OpenAI, BaseURL: "http://127.0.0.1:1", APIKeyEnv: "PROVIDER_KEY_acme"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the provider change", func() bool {
		st, _, _ := raw(t, "POST", url, with(bearer(tn.key), "Cache-Control", "no-store"), chatBody)
		return st == 502
	})
	for range 4 {
		wg.Go(func() {
			if st, _, b := raw(t, "POST", url, bearer(tn.key), chatBody); st != 502 {
				t.Errorf("status %d: %s", st, b)
			}
		})
	}
	wg.Wait()
}

// TestCacheRedisPersistenceAndOutage runs the edge on a private Redis with
// persistence on: no canary reaches its files, and with Redis down the
// edge answers as "bypass" and recovers by itself when it returns.
func TestCacheRedisPersistenceAndOutage(t *testing.T) {
	rp := startRedis(t)
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = true; c.RedisURL = rp.url() })
	tn := h.addOrg("acme")
	var canaries []string
	canary := func() string {
		b := make([]byte, 8)
		rand.Read(b)
		c := "canary" + hex.EncodeToString(b)
		canaries = append(canaries, c)
		return c
	}
	reqs := []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + canary() + ` ` + canary() + `"}]}`},
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"` + canary() + `"}]}`},
		{"/v1/responses", `{"model":"gpt-4.1","input":"` + canary() + `"}`},
		{"/v1/messages", `{"model":"claude-haiku-4-5","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"` + canary() + `"}]}`},
	}
	hdrFor := func(path string) map[string]string {
		if path == "/v1/messages" {
			return anthropicHdr(tn.key)
		}
		return bearer(tn.key)
	}
	for _, r := range reqs {
		for _, want := range []string{"miss", "hit"} {
			st, hdr, body := raw(t, "POST", h.base+r.path, hdrFor(r.path), r.body)
			if st != 200 || hdr.Get("x-codex-cache") != want {
				t.Fatalf("%s: %d %q, want %s", r.path, st, hdr.Get("x-codex-cache"), want)
			}
			if want == "miss" && !strings.Contains(r.body, `"stream"`) && !strings.Contains(string(body), "canary") {
				t.Fatalf("the answer does not echo the canary: %s", body)
			}
		}
	}
	ctx := context.Background()
	rp.persist(ctx)
	// The files hold the entries (the org id is in every key name), just
	// never their content.
	found, err := storetest.FindCanaries(rp.dir, tn.orgID)
	if err != nil || len(found) == 0 {
		t.Fatalf("the Redis files do not hold the entries (%v): the scan would prove nothing", err)
	}
	storetest.ScanDirForCanaries(t, rp.dir, canaries...)

	// Redis full (out of memory, no eviction): answers are served, not
	// stored, and the failed stores are counted.
	rc := rp.client()
	if err := rc.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	full := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"redis is full"}]}`
	st, hdr, body := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), full)
	if st != 200 || hdr.Get("x-codex-cache") != "miss" {
		t.Fatalf("with Redis full: %d %q %s", st, hdr.Get("x-codex-cache"), body)
	}
	testutil.Eventually(t, 10*time.Second, "the failed store to be counted", func() bool {
		return strings.Contains(metrics(t, h), `codex_edge_cache_backend_errors_total{op="set"} 1`)
	})
	before := h.fake.Count(fakeprovider.PathChatCompletions)
	if st, hdr, _ := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), full); st != 200 || hdr.Get("x-codex-cache") != "miss" ||
		h.fake.Count(fakeprovider.PathChatCompletions) != before+1 {
		t.Fatalf("after a failed store: %d %q", st, hdr.Get("x-codex-cache"))
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}

	// Redis goes away: requests still succeed, as bypass, and are counted.
	rp.stop()
	url := h.base + "/v1/chat/completions"
	during := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"during the outage"}]}`
	for range 3 {
		start := time.Now()
		st, hdr, body := raw(t, "POST", url, bearer(tn.key), during)
		if st != 200 || hdr.Get("x-codex-cache") != "bypass" {
			t.Fatalf("with Redis down: %d %q %s", st, hdr.Get("x-codex-cache"), body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a request waited %s for Redis", d)
		}
	}
	if !strings.Contains(metrics(t, h), `codex_edge_cache_backend_errors_total{op="get"}`) {
		t.Fatal("Redis failures are not counted")
	}
	// Redis returns (with its data): hits resume without restarting the edge.
	rp.start()
	testutil.Eventually(t, 10*time.Second, "hits after Redis returned", func() bool {
		_, hdr, _ := raw(t, "POST", h.base+reqs[0].path, bearer(tn.key), reqs[0].body)
		return hdr.Get("x-codex-cache") == "hit"
	})
	testutil.Eventually(t, 10*time.Second, "new entries after Redis returned", func() bool {
		_, hdr, _ := raw(t, "POST", url, bearer(tn.key), during)
		return hdr.Get("x-codex-cache") == "hit"
	})
}

func recordByID(t *testing.T, h *harness, orgID, id string) edge.RequestRecord {
	t.Helper()
	var rec edge.RequestRecord
	testutil.Eventually(t, 10*time.Second, "record "+id, func() bool {
		recs, err := h.store.Requests(context.Background(), orgID, time.Time{}, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.ID == id {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

func metrics(t *testing.T, h *harness) string {
	t.Helper()
	_, _, body := raw(t, "GET", "http://"+h.srv.AdminAddr()+"/metrics", nil, "")
	return string(body)
}

func redisClient(t *testing.T) *redisConn {
	t.Helper()
	return newRedisConn(t, testRedisURL(t))
}

// TestCacheOverrides: the cache is switched per org and per key, a key's
// setting winning over its org's.
func TestCacheOverrides(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = true })
	on, off := h.addOrg("on"), h.addOrg("off")
	offKeyID, offKey := h.addKey(on.orgID) // a key of an org with the cache on, turned off
	onKeyID, onKey := h.addKey(off.orgID)  // a key of an org with the cache off, turned on
	// Overrides are read at start-up.
	h.cfg.CacheOverrides = config.CacheOverrides{
		off.orgID: {Enabled: false}, offKeyID: {Enabled: false}, onKeyID: {Enabled: true, TTL: time.Second},
	}
	h.restart(nil)
	url := h.base + "/v1/chat/completions"
	for _, c := range []struct {
		name, key string
		want      []string
	}{
		{"org on", on.key, []string{"miss", "hit"}},
		{"org off", off.key, []string{"bypass", "bypass"}},
		{"key off in an org on", offKey, []string{"bypass", "bypass"}},
		{"key on in an org off", onKey, []string{"miss", "hit"}},
	} {
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + c.name + `"}]}`
		for i, want := range c.want {
			if _, hdr, _ := raw(t, "POST", url, bearer(c.key), body); hdr.Get("x-codex-cache") != want {
				t.Fatalf("%s, request %d: %q, want %q", c.name, i, hdr.Get("x-codex-cache"), want)
			}
		}
	}
	// The key's TTL override applies: after it, a miss again.
	time.Sleep(2100 * time.Millisecond)
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"key on in an org off"}]}`
	if _, hdr, _ := raw(t, "POST", url, bearer(onKey), body); hdr.Get("x-codex-cache") != "miss" {
		t.Fatalf("after the key's TTL: %q", hdr.Get("x-codex-cache"))
	}
}
