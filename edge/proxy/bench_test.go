package proxy_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/store/sqlite"
)

// inProcess hands requests straight to the fake provider, so the benchmark
// measures the edge's own work rather than loopback networking.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

type discard struct{}

func (discard) Record(edge.RequestRecord) bool { return true }

func setupBench(b *testing.B) (http.Handler, string, *fakeprovider.Server) {
	return setupBenchWith(b, nil)
}

// setupBenchWith is setupBench with the proxy's options adjusted by
// mutate, given the store, the org and the key (for limits and budgets).
func setupBenchWith(b *testing.B, mutate func(o *proxy.Options, db *sqlite.DB, orgID, keyID string)) (http.Handler, string, *fakeprovider.Server) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	org := edge.Org{ID: apikey.NewID("org_"), Name: "bench"}
	db.CreateOrg(ctx, org)
	db.SetProvider(ctx, edge.ProviderConfig{OrgID: org.ID, Provider: edge.OpenAI, BaseURL: "http://fake", AllowInsecureHTTP: true, APIKeyEnv: "K"})
	db.SetProvider(ctx, edge.ProviderConfig{OrgID: org.ID, Provider: edge.Anthropic, BaseURL: "http://fake", AllowInsecureHTTP: true, APIKeyEnv: "K"})
	s, _ := apikey.Generate()
	keyID := apikey.NewID("key_")
	db.CreateKey(ctx, edge.APIKey{ID: keyID, OrgID: org.ID, Name: "b", Prefix: apikey.DisplayPrefix(s), Hash: apikey.Hash(s), State: edge.KeyActive})
	master, _, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: db, Master: master})
	if err != nil {
		b.Fatal(err)
	}
	dir := directory.New(db, directory.Options{Keys: kr, Getenv: func(string) string { return "sk-fake" }})
	prices, _ := pricing.Load(nil)
	fake := fakeprovider.New(fakeprovider.Options{NoRecord: true})
	opts := proxy.Options{Transport: inProcess{fake}}
	if mutate != nil {
		mutate(&opts, db, org.ID, keyID)
	}
	px := proxy.New(dir, discard{}, prices, opts)
	e := echo.New()
	px.Register(e)
	return e, s.Reveal(), fake
}

var benchChat = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark, please, in a few words."}],"max_tokens":32}`)

func serve(b *testing.B, h http.Handler, key string, body []byte, extra ...string) {
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

// BenchmarkChatThroughEdge is one non-streamed chat completion through the
// edge (auth lookup, fingerprint, forwarding, usage, pricing), provider
// included; compare with BenchmarkChatDirect for the edge's share.
func BenchmarkChatThroughEdge(b *testing.B) {
	h, key, _ := setupBench(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, key, benchChat)
	}
}

// BenchmarkChatDirect is the same request answered by the fake provider
// alone.
func BenchmarkChatDirect(b *testing.B) {
	_, _, fake := setupBench(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, fake, "sk-fake", benchChat)
	}
}

var benchStream = []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Stream a few words to the benchmark."}]}`)

// BenchmarkChatStreamThroughEdge forwards an SSE answer event by event.
func BenchmarkChatStreamThroughEdge(b *testing.B) {
	h, key, _ := setupBench(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, key, benchStream)
	}
}

func BenchmarkChatStreamDirect(b *testing.B) {
	_, _, fake := setupBench(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, fake, "sk-fake", benchStream)
	}
}
