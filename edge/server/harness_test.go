package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/sqlite"
)

// harness is a running edge on an embedded store in a temporary directory,
// in front of a fake provider, as `codex-edge serve` would run it.
type harness struct {
	t       *testing.T
	fake    *fakeprovider.Server
	fakeURL string
	store   *sqlite.DB
	srv     *server.Server
	cfg     config.Config
	base    string // http://127.0.0.1:port

	mu  sync.Mutex
	env map[string]string
}

func newHarness(t *testing.T, fo fakeprovider.Options, mutate func(*config.Config)) *harness {
	t.Helper()
	return newHarnessEnv(t, fo, mutate, nil)
}

// newHarnessEnv is newHarness with environment variables set before the
// edge starts (the master key settings are read at start-up).
func newHarnessEnv(t *testing.T, fo fakeprovider.Options, mutate func(*config.Config), env map[string]string) *harness {
	t.Helper()
	fake := fakeprovider.New(fo)
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)

	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	cfg.MetadataFlush = 10 * time.Millisecond
	cfg.ChangePoll = 50 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	h := &harness{t: t, fake: fake, fakeURL: ts.URL, store: st, cfg: cfg, env: map[string]string{}}
	for k, v := range env {
		h.env[k] = v
	}
	h.start()
	t.Cleanup(func() {
		h.stop()
		st.Close()
	})
	return h
}

func (h *harness) start() {
	h.t.Helper()
	log := slog.New(slog.DiscardHandler)
	srv, err := server.New(context.Background(), h.cfg, h.store, log, server.Options{Getenv: h.getenv})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.base = srv, "http://"+srv.Addr()
}

func (h *harness) stop() {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	h.srv = nil
}

// restart stops the edge and starts a new one on the same store with env
// changed: as an operator restarting it with other settings would.
func (h *harness) restart(env map[string]string) {
	h.t.Helper()
	h.stop()
	h.mu.Lock()
	for k, v := range env {
		h.env[k] = v
	}
	h.mu.Unlock()
	h.start()
}

func (h *harness) getenv(k string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.env[k]
}

// tenant is an org with both providers configured and one gateway key.
type tenant struct {
	orgID, keyID, key string
	providerKey       string // what the provider must receive
}

func (h *harness) addOrg(name string) tenant {
	h.t.Helper()
	ctx := context.Background()
	org := edge.Org{ID: apikey.NewID("org_"), Name: name, CreatedAt: time.Now()}
	if err := h.store.CreateOrg(ctx, org); err != nil {
		h.t.Fatal(err)
	}
	tn := tenant{orgID: org.ID, providerKey: "sk-provider-" + name}
	envName := "PROVIDER_KEY_" + name
	h.mu.Lock()
	h.env[envName] = tn.providerKey
	h.mu.Unlock()
	for _, p := range []edge.Provider{edge.OpenAI, edge.Anthropic} {
		if err := h.store.SetProvider(ctx, edge.ProviderConfig{OrgID: org.ID, Provider: p, BaseURL: h.fakeURL, APIKeyEnv: envName}); err != nil {
			h.t.Fatal(err)
		}
	}
	tn.keyID, tn.key = h.addKey(org.ID)
	return tn
}

func (h *harness) addKey(orgID string) (id, key string) {
	h.t.Helper()
	s, err := apikey.Generate()
	if err != nil {
		h.t.Fatal(err)
	}
	k := edge.APIKey{ID: apikey.NewID("key_"), OrgID: orgID, Name: "test", Prefix: apikey.DisplayPrefix(s),
		Hash: apikey.Hash(s), State: edge.KeyActive, CreatedAt: time.Now()}
	if err := h.store.CreateKey(context.Background(), k); err != nil {
		h.t.Fatal(err)
	}
	return k.ID, s.Reveal()
}

func (h *harness) openai(key string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(h.base + "/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0),
	}, opts...)...)
}

func (h *harness) anthropic(key string, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(h.base), aoption.WithAPIKey(key), aoption.WithMaxRetries(0),
	}, opts...)...)
}

// direct clients talk to the fake provider without the edge.
func (h *harness) directOpenAI(tn tenant) openai.Client {
	return openai.NewClient(option.WithBaseURL(h.fakeURL+"/v1/"), option.WithAPIKey(tn.providerKey), option.WithMaxRetries(0))
}

func (h *harness) directAnthropic(tn tenant) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(h.fakeURL), aoption.WithAPIKey(tn.providerKey), aoption.WithMaxRetries(0))
}

// records waits until the org has n metadata records and returns them.
func (h *harness) records(orgID string, n int) []edge.RequestRecord {
	h.t.Helper()
	var recs []edge.RequestRecord
	testutil.Eventually(h.t, 10*time.Second, fmt.Sprintf("%d metadata records", n), func() bool {
		var err error
		if recs, err = h.store.Requests(context.Background(), orgID, time.Time{}, 10000); err != nil {
			h.t.Fatal(err)
		}
		if len(recs) > n {
			h.t.Fatalf("%d metadata records, want %d", len(recs), n)
		}
		return len(recs) == n
	})
	return recs
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}
