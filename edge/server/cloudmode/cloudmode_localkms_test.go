//go:build localkms

package cloudmode_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/awskms/kmstest"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/sqlite"
)

// tenant is an org on its own KMS key with a sealed provider credential,
// a memory and one gateway key.
type tenant struct {
	id, arn, key, credential string
}

// TestCloudMode runs two edges on one store whose two orgs have their own
// KMS keys (two local KMS keys, as keys in two customers' accounts) and
// whose own master key (CODEX_KEK, the operator's) is the local key file.
// It proves: each org's sealed credential, memory and cache entries work;
// the operator's key opens neither org's data keys nor its sealed rows;
// disabling A's key makes A unreadable on both edges within 10 s while B
// keeps working, and enabling it restores A; and after a shred that schedules the
// deletion of A's key, a copy of the database taken before the shred no
// longer opens A's rows, while B's still open.
func TestCloudMode(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { cloudMode(t, false) })
	// Two edges sharing Postgres, as a cloud deployment runs: the dev
	// server is reached through its Unix socket (scripts/local-kms.sh
	// passes its URLs), which the private network namespace does not cut
	// off. The backup part is the SQLite run's: a file copy.
	t.Run("postgres", func(t *testing.T) { cloudMode(t, true) })
}

// cloudMode is TestCloudMode on SQLite (both edges on one embedded store)
// or on Postgres (each edge with its own connection pool to one database).
func cloudMode(t *testing.T, pg bool) {
	admin := kmstest.Local(t)
	ctx := context.Background()
	fp := fakeprovider.New(fakeprovider.Options{})
	fake := httptest.NewServer(fp)
	t.Cleanup(fake.Close)

	dir := t.TempDir()
	var (
		st, st2 server.Store
		lite    *sqlite.DB
	)
	if pg {
		_, app := pgtest.FreshDB(t)
		st, st2 = pgtest.Open(t, app), pgtest.Open(t, app)
	} else {
		var err error
		if lite, err = sqlite.Open(ctx, dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lite.Close() })
		st, st2 = lite, lite
	}
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	cfg.ChangePoll = 50 * time.Millisecond
	cfg.CacheEnabled = true
	// Two edges on one store, as two instances of one deployment: each
	// its own keyring, key directory, cache and probes.
	start := func(st server.Store) *server.Server {
		srv, err := server.New(ctx, cfg, st, slog.New(slog.DiscardHandler), server.Options{Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
		return srv
	}
	srv, srv2 := start(st), start(st2)
	edges := []*server.Server{srv, srv2}

	var tenants []*tenant
	for _, name := range []string{"a", "b"} {
		tn := &tenant{id: apikey.NewID("org_"), arn: kmstest.CreateKey(t, admin), credential: "sk-sealed-" + name}
		if err := st.CreateOrg(ctx, edge.Org{ID: tn.id, Name: name, CreatedAt: time.Now(), MasterKey: "awskms:" + tn.arn}); err != nil {
			t.Fatal(err)
		}
		sealed, err := srv.Keyring().Seal(ctx, tn.id, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), []byte(tn.credential))
		if err != nil {
			t.Fatalf("seal under the org's KMS key: %v", err)
		}
		if err := st.SetProvider(ctx, edge.ProviderConfig{OrgID: tn.id, Provider: edge.OpenAI, BaseURL: fake.URL, SealedKey: sealed}); err != nil {
			t.Fatal(err)
		}
		s, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateKey(ctx, edge.APIKey{ID: apikey.NewID("key_"), OrgID: tn.id, Name: "test", Prefix: apikey.DisplayPrefix(s),
			Hash: apikey.Hash(s), State: edge.KeyActive, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		tn.key = s.Reveal()
		req, _ := http.NewRequest("PUT", "http://"+srv.AdminAddr()+"/admin/v1/orgs/"+tn.id+"/memories/style", strings.NewReader(`{"text":"Answer as org `+name+`."}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("set memory: %d %s", resp.StatusCode, b)
		}
		tenants = append(tenants, tn)
	}
	a, b := tenants[0], tenants[1]

	// chatOn sends one chat completion through an edge with the official
	// SDK and returns the HTTP status and the cache and memory headers of
	// the answer.
	chatOn := func(e *server.Server, tn *tenant) (status int, cache, memory string) {
		var resp *http.Response
		c := openai.NewClient(option.WithBaseURL("http://"+e.Addr()+"/v1"), option.WithAPIKey(tn.key), option.WithMaxRetries(0))
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("the same question")},
		}, option.WithResponseInto(&resp))
		var apiErr *openai.Error
		switch {
		case errors.As(err, &apiErr):
			return apiErr.StatusCode, "", ""
		case err != nil:
			t.Fatalf("chat: %v", err)
		}
		return resp.StatusCode, resp.Header.Get("X-Codex-Cache"), resp.Header.Get("X-Codex-Memory")
	}
	servedOn := func(e *server.Server, tn *tenant) bool {
		st, cache, mem := chatOn(e, tn)
		return st == 200 && cache == "hit" && mem == "style@1"
	}
	for _, e := range edges {
		for _, tn := range tenants {
			testutil.Eventually(t, 10*time.Second, "the org served from its cache, with its memory, under its own key", func() bool { return servedOn(e, tn) })
		}
	}
	reqs := fp.Requests()
	if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+b.credential {
		t.Fatalf("provider got %q, want org b's sealed credential", got)
	}

	// The operator's own master key (CODEX_KEK, the key file in the data
	// directory) opens neither org's data keys nor its sealed rows.
	def, _, err := kek.Open(ctx, kek.Spec{Kind: kek.Local}, func(string) string { return "" }, dir)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := keyring.New(keyring.Options{Store: st, Master: def, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		deks, err := st.DEKs(ctx, tn.id)
		if err != nil || len(deks) == 0 {
			t.Fatalf("data keys of %s: %d, %v", tn.id, len(deks), err)
		}
		for _, d := range deks {
			if d.MasterRef != awskms.Ref || d.MasterVersion != tn.arn {
				t.Errorf("data key of %s wrapped by %s:%s, want its own KMS key", tn.id, d.MasterRef, d.MasterVersion)
			}
			if dek, err := def.Unwrap(ctx, keyring.Binding{OrgID: tn.id, DEKID: d.ID}, keyring.Wrap{Ref: d.MasterRef, Version: d.MasterVersion, Blob: d.Wrapped}); err == nil {
				clear(dek)
				t.Errorf("the operator's master key unwrapped a data key of %s", tn.id)
			}
		}
		pcs, err := st.Providers(ctx, tn.id)
		if err != nil || len(pcs) != 1 {
			t.Fatalf("providers of %s: %v", tn.id, err)
		}
		if pt, err := operator.Open(ctx, tn.id, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), pcs[0].SealedKey); err == nil {
			t.Errorf("the operator's master key opened the sealed credential of %s: %q", tn.id, pt)
		}
		ms, err := st.Memories(ctx, tn.id)
		if err != nil || len(ms) != 1 {
			t.Fatalf("memories of %s: %v", tn.id, err)
		}
		if pt, err := operator.Open(ctx, tn.id, keyring.PurposeMemory, edge.MemoryRecord(ms[0].KeyID, ms[0].Name, ms[0].Version), ms[0].Sealed); err == nil {
			t.Errorf("the operator's master key opened a memory of %s: %q", tn.id, pt)
		}
	}

	// A's customer disables the key: A is unreadable within 10 s, B not.
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(a.arn)}); err != nil {
		t.Fatal(err)
	}
	// Both edges count from the disabling; each keeps asking.
	disabled := time.Now()
	for _, e := range edges {
		testutil.Eventually(t, 10*time.Second-time.Since(disabled), "org a unreadable on every edge within 10 s of its key being disabled", func() bool {
			st, _, _ := chatOn(e, a)
			return st == http.StatusServiceUnavailable
		})
		if !servedOn(e, b) {
			t.Fatal("org b not served while a's key is disabled")
		}
	}
	t.Logf("org a unreadable on both edges %s after its key was disabled", time.Since(disabled).Round(time.Millisecond))
	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(a.arn)}); err != nil {
		t.Fatal(err)
	}
	for _, e := range edges {
		testutil.Eventually(t, 10*time.Second, "org a readable again after its key was enabled", func() bool {
			st, _, mem := chatOn(e, a)
			return st == 200 && mem == "style@1"
		})
	}

	if pg {
		// What a copy of the Postgres data taken before the shred holds of
		// each org's keys: its wrapped data keys. With A's key scheduled
		// for deletion A's no longer unwrap; B's still do. (Under the
		// shared CODEX_KEK they would: crypto status says "shared".)
		saved := map[string][]keyring.WrappedDEK{}
		for _, tn := range tenants {
			deks, err := st.DEKs(ctx, tn.id)
			if err != nil || len(deks) == 0 {
				t.Fatalf("data keys of %s: %d, %v", tn.id, len(deks), err)
			}
			saved[tn.id] = deks
		}
		kr, orgs, err := server.OpenKeyringOrgs(ctx, cfg, st, func(string) string { return "" }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := server.Shred(ctx, cfg, st, kr, a.id); err != nil {
			t.Fatal(err)
		}
		if deks, err := st.DEKs(ctx, a.id); err != nil || len(deks) != 0 {
			t.Fatalf("after the shred the store holds %d data keys of a (%v)", len(deks), err)
		}
		own, ok := orgs.Master(a.id).(*awskms.MasterKey)
		if !ok {
			t.Fatalf("org a's master key is %T, want its KMS key", orgs.Master(a.id))
		}
		if _, err := own.ScheduleDeletion(ctx, 7); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			tn   *tenant
			open bool
		}{{a, false}, {b, true}} {
			m := orgs.Master(c.tn.id)
			for _, d := range saved[c.tn.id] {
				dek, err := m.Unwrap(ctx, keyring.Binding{OrgID: c.tn.id, DEKID: d.ID}, keyring.Wrap{Ref: d.MasterRef, Version: d.MasterVersion, Blob: d.Wrapped})
				clear(dek)
				if c.open && err != nil {
					t.Errorf("org %s's saved data key no longer unwraps: %v", c.tn.id, err)
				}
				if !c.open && err == nil {
					t.Errorf("the shredded org's saved data key unwraps after its key was scheduled for deletion")
				}
			}
		}
		return
	}
	// A copy of the database taken before the shred: with A's key
	// scheduled for deletion it no longer opens A's rows; B's still open.
	// (Under the shared CODEX_KEK such a copy would still open: crypto
	// status reports that as "shared".)
	copyDir := t.TempDir()
	if err := lite.Compact(ctx); err != nil { // a consistent file to copy
		t.Fatal(err)
	}
	backup(t, dir, copyDir)
	kr, orgs, err := server.OpenKeyringOrgs(ctx, cfg, st, func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Shred(ctx, cfg, st, kr, a.id); err != nil {
		t.Fatal(err)
	}
	own, ok := orgs.Master(a.id).(*awskms.MasterKey)
	if !ok {
		t.Fatalf("org a's master key is %T, want its KMS key", orgs.Master(a.id))
	}
	if _, err := own.ScheduleDeletion(ctx, 7); err != nil {
		t.Fatal(err)
	}
	old, err := sqlite.Open(ctx, copyDir)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	restored, _, err := server.OpenKeyringOrgs(ctx, cfg, old, func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tn   *tenant
		open bool
	}{{a, false}, {b, true}} {
		pcs, err := old.Providers(ctx, c.tn.id)
		if err != nil || len(pcs) != 1 {
			t.Fatalf("providers of %s in the copy: %v", c.tn.id, err)
		}
		pt, err := restored.Open(ctx, c.tn.id, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), pcs[0].SealedKey)
		if c.open && (err != nil || string(pt) != c.tn.credential) {
			t.Errorf("the copy does not open org %s's credential: %v", c.tn.id, err)
		}
		if !c.open && err == nil {
			t.Errorf("the copy opens the shredded org's credential after its key was scheduled for deletion")
		}
	}
}

// backup copies the embedded store's files (database and WAL) from dir to
// into, as a file-level backup taken while the edge runs.
func backup(t *testing.T, dir, into string) {
	t.Helper()
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(into, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
