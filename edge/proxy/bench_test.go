package proxy_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/memory"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/openai"
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
	return setupBenchWith(b, "", nil)
}

// setupBenchMemory is setupBench with memText set as the org's memory.
func setupBenchMemory(b *testing.B, memText string) (http.Handler, string, *fakeprovider.Server) {
	return setupBenchWith(b, memText, nil)
}

// setupBenchWith is setupBench with memText, when not empty, set as the
// org's memory, and the proxy's options adjusted by mutate, given the
// store, the org and the key (for limits and budgets).
func setupBenchWith(b testing.TB, memText string, mutate func(o *proxy.Options, db *sqlite.DB, orgID, keyID string)) (http.Handler, string, *fakeprovider.Server) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	orgID, keyID, s := benchOrg(b, db, edge.OpenAI, edge.Anthropic)
	master, _, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: db, Master: master})
	if err != nil {
		b.Fatal(err)
	}
	if memText != "" {
		if _, err := (memory.Service{Store: db, Keys: kr}).Set(ctx, orgID, "", "style", []byte(memText)); err != nil {
			b.Fatal(err)
		}
	}
	dir := directory.New(db, directory.Options{Keys: kr, Getenv: func(string) string { return "sk-fake" }})
	prices, _ := pricing.Load(nil)
	fake := fakeprovider.New(fakeprovider.Options{NoRecord: true})
	opts := proxy.Options{Transport: inProcess{fake}}
	if mutate != nil {
		mutate(&opts, db, orgID, keyID)
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

// benchMemory is a 1 KiB memory.
var benchMemory = strings.Repeat("Answer in British English. ", 38)

// BenchmarkChatThroughEdgeWithMemory is BenchmarkChatThroughEdge with a
// 1 KiB memory set for the org. The edge's share of the difference (the
// injection, and fingerprinting and forwarding a larger body) is this
// less BenchmarkChatDirectWithMemory, less the edge's share without
// memory; the rest is the fake provider reading the longer prompt.
func BenchmarkChatThroughEdgeWithMemory(b *testing.B) {
	h, key, _ := setupBenchMemory(b, benchMemory)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, key, benchChat)
	}
}

// BenchmarkChatDirectWithMemory is the fake provider alone answering the
// request as the edge sends it with the memory injected.
func BenchmarkChatDirectWithMemory(b *testing.B) {
	_, _, fake := setupBench(b)
	body, ok, err := openai.Format{}.InjectSystem(openai.ChatCompletions, benchChat, provider.NewSystem(benchMemory))
	if !ok || err != nil {
		b.Fatal(ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		serve(b, fake, "sk-fake", body)
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

// benchOrg creates an org whose providers (the in-process fake) are ps,
// and a key of it; it returns their ids and the key's secret.
func benchOrg(b testing.TB, db *sqlite.DB, ps ...edge.Provider) (orgID, keyID string, secret apikey.Secret) {
	b.Helper()
	ctx := b.Context()
	org := edge.Org{ID: apikey.NewID("org_"), Name: "bench"}
	if err := db.CreateOrg(ctx, org); err != nil {
		b.Fatal(err)
	}
	for _, p := range ps {
		if err := db.SetProvider(ctx, edge.ProviderConfig{OrgID: org.ID, Provider: p, BaseURL: "http://fake", AllowInsecureHTTP: true, APIKeyEnv: "K"}); err != nil {
			b.Fatal(err)
		}
	}
	s, err := apikey.Generate()
	if err != nil {
		b.Fatal(err)
	}
	keyID = apikey.NewID("key_")
	err = db.CreateKey(ctx, edge.APIKey{ID: keyID, OrgID: org.ID, Name: "b", Prefix: apikey.DisplayPrefix(s), Hash: apikey.Hash(s), State: edge.KeyActive})
	if err != nil {
		b.Fatal(err)
	}
	return org.ID, keyID, s
}
