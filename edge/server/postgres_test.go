package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/storetest"
)

// pgFleet is a set of edge instances on one Postgres database, as several
// codex-edge processes behind a load balancer: each has its own connection
// pool, key directory and metadata writer. They share a BYOK master key,
// as production instances share a KMS key.
type pgFleet struct {
	t       *testing.T
	appURL  string
	fakeURL string
	env     map[string]string
	admin   *postgres.DB // what the CLI would use
	edges   []*pgEdge
}

type pgEdge struct {
	srv   *server.Server
	store *postgres.DB
	base  string
}

func newPGFleet(t *testing.T, appURL string) *pgFleet {
	t.Helper()
	return newPGFleetFake(t, appURL, fakeprovider.Options{})
}

// newPGFleetFake is newPGFleet with the fake provider's options.
func newPGFleetFake(t *testing.T, appURL string, fo fakeprovider.Options) *pgFleet {
	t.Helper()
	return newPGFleetProvider(t, appURL, fakeprovider.New(fo))
}

// newPGFleetProvider is newPGFleet with provider as the AI provider: the
// fake provider, wrapped by a test.
func newPGFleetProvider(t *testing.T, appURL string, provider http.Handler) *pgFleet {
	t.Helper()
	ts := httptest.NewServer(provider)
	t.Cleanup(ts.Close)
	kek := make([]byte, 32)
	rand.Read(kek)
	f := &pgFleet{t: t, appURL: appURL, fakeURL: ts.URL,
		env: map[string]string{"CODEX_BYOK_KEY": hex.EncodeToString(kek), "PROVIDER_KEY": "sk-provider-fleet"}}
	f.admin = pgtest.Open(t, appURL)
	return f
}

// start starts one more edge instance.
func (f *pgFleet) start(mutate func(*config.Config)) *pgEdge {
	f.t.Helper()
	return f.startOpts(mutate, nil)
}

// startOpts is start with server options set by opts, given the
// instance's configuration and store.
func (f *pgFleet) startOpts(mutate func(*config.Config), opts func(config.Config, *postgres.DB, *server.Options)) *pgEdge {
	f.t.Helper()
	st, err := postgres.Open(context.Background(), f.appURL, postgres.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := st.CheckServeRole(context.Background(), pgtest.AppRole); err != nil {
		f.t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", f.t.TempDir()
	cfg.DatabaseURL, cfg.KEK = f.appURL, "byok"
	cfg.MetadataFlush = 10 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	so := server.Options{Getenv: func(k string) string { return f.env[k] }}
	if opts != nil {
		opts(cfg, st, &so)
	}
	srv, err := server.New(context.Background(), cfg, st, log, so)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	e := &pgEdge{srv: srv, store: st, base: "http://" + srv.Addr()}
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			f.t.Errorf("shutdown: %v", err)
		}
		st.Close()
	})
	f.edges = append(f.edges, e)
	return e
}

// addOrg creates an org with the fake provider, as the CLI would.
func (f *pgFleet) addOrg(name string) string {
	f.t.Helper()
	ctx := context.Background()
	id := apikey.NewID("org_")
	if err := f.admin.CreateOrg(ctx, edge.Org{ID: id, Name: name}); err != nil {
		f.t.Fatal(err)
	}
	for _, p := range []edge.Provider{edge.OpenAI, edge.Anthropic} {
		if err := f.admin.SetProvider(ctx, edge.ProviderConfig{OrgID: id, Provider: p, BaseURL: f.fakeURL, APIKeyEnv: "PROVIDER_KEY"}); err != nil {
			f.t.Fatal(err)
		}
	}
	return id
}

func (f *pgFleet) addKey(orgID string) (id, key string) {
	f.t.Helper()
	s, err := apikey.Generate()
	if err != nil {
		f.t.Fatal(err)
	}
	k := edge.APIKey{ID: apikey.NewID("key_"), OrgID: orgID, Name: "test", Prefix: apikey.DisplayPrefix(s),
		Hash: apikey.Hash(s), State: edge.KeyActive, CreatedAt: time.Now()}
	if err := f.admin.CreateKey(context.Background(), k); err != nil {
		f.t.Fatal(err)
	}
	return k.ID, s.Reveal()
}

var pgClient = &http.Client{Timeout: 10 * time.Second}

// chat sends one chat completion through base and returns the status.
func chat(base, key, content string) (int, error) {
	body := fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, content)
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	// These tests are about the store; answers must come from the provider.
	req.Header.Set("Cache-Control", "no-store")
	resp, err := pgClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func pgStatus(t *testing.T, base, key string) int {
	t.Helper()
	st, err := chat(base, key, "hi")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// countRecords waits until the org has exactly want metadata records
// (failing on more, or on fewer after 30s) and checks their ids are unique.
func countRecords(t *testing.T, st edge.Store, orgID string, want int) {
	t.Helper()
	var recs []edge.RequestRecord
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d metadata records", want), func() bool {
		var err error
		recs, err = st.Requests(context.Background(), orgID, time.Time{}, want+1000)
		if err == nil && len(recs) > want {
			t.Fatalf("%d metadata records, want exactly %d", len(recs), want)
		}
		return err == nil && len(recs) == want
	})
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != want {
		t.Fatalf("duplicate record ids among %d", want)
	}
}

// TestPostgresTwoInstances: two edges on one database behave as one
// gateway. A key created or revoked through one is honoured by the other
// within one second (the default CODEX_CHANGE_POLL, helped by NOTIFY), and
// metadata from both lands exactly once.
func TestPostgresTwoInstances(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	f := newPGFleet(t, app)
	a, b := f.start(nil), f.start(nil)
	org := f.addOrg("acme")
	_, key := f.addKey(org)
	sent := 0
	for _, e := range []*pgEdge{a, b} {
		if st := pgStatus(t, e.base, key); st != 200 {
			t.Fatalf("known key through %s: %d", e.base, st)
		}
		sent++
	}

	// A key created through instance a (its store, as the CLI does) is
	// accepted by b; b asked for it first, so it must forget the miss.
	s, _ := apikey.Generate()
	if st := pgStatus(t, b.base, s.Reveal()); st != 401 {
		t.Fatalf("unknown key: %d", st)
	}
	k := edge.APIKey{ID: apikey.NewID("key_"), OrgID: org, Name: "new", Prefix: apikey.DisplayPrefix(s), Hash: apikey.Hash(s)}
	if err := a.store.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, time.Second, "key created on a accepted by b", func() bool {
		st := pgStatus(t, b.base, s.Reveal())
		if st == 200 {
			sent++
		}
		return st == 200
	})
	t.Logf("key creation honoured by the other instance after %v", took)

	// Revoked through a's directory: at once on a, within 1s on b.
	if err := a.srv.Directory().Revoke(context.Background(), org, k.ID); err != nil {
		t.Fatal(err)
	}
	if st := pgStatus(t, a.base, s.Reveal()); st != 401 {
		t.Fatalf("revoked key on the revoking instance: %d", st)
	}
	took = testutil.Eventually(t, time.Second, "key revoked on a refused by b", func() bool {
		st := pgStatus(t, b.base, s.Reveal())
		if st == 200 {
			sent++
		}
		return st == 401
	})
	t.Logf("revocation honoured by the other instance after %v", took)

	// Provider settings likewise (another org, so the record count of the
	// first stays exact): point openai at a dead address through a.
	org2 := f.addOrg("globex")
	_, key2 := f.addKey(org2)
	if st := pgStatus(t, b.base, key2); st != 200 {
		t.Fatalf("second org through b: %d", st)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if err := a.store.SetProvider(context.Background(), edge.ProviderConfig{OrgID: org2, Provider: edge.OpenAI, BaseURL: dead.URL, APIKeyEnv: "PROVIDER_KEY"}); err != nil {
		t.Fatal(err)
	}
	took = testutil.Eventually(t, time.Second, "provider change on a honoured by b", func() bool { return pgStatus(t, b.base, key2) != 200 })
	t.Logf("provider change honoured by the other instance after %v", took)

	// Load through both at once: every record lands exactly once.
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 8 {
		e := f.edges[i%2]
		wg.Go(func() {
			for range 25 {
				if st, err := chat(e.base, key, "hello"); err == nil && st == 200 {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 200 {
		t.Fatalf("%d of 200 requests succeeded", ok.Load())
	}
	countRecords(t, f.admin, org, sent+200)
}

func readyz(base string) int {
	resp, err := pgClient.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPostgresOutage stops Postgres during a load of requests: requests for
// a known key keep succeeding, /readyz reports not ready while it is down,
// and once it is back every request's metadata is written, none lost and
// none twice.
func TestPostgresOutage(t *testing.T) {
	c := pgtest.NewCluster(t)
	_, app := c.FreshDB(t)
	f := newPGFleet(t, app)
	e := f.start(func(cfg *config.Config) { cfg.ChangePoll = 100 * time.Millisecond })
	org := f.addOrg("acme")
	_, key := f.addKey(org)
	if st := pgStatus(t, e.base, key); st != 200 {
		t.Fatalf("warm-up request: %d", st)
	}
	if st := readyz(e.base); st != 200 {
		t.Fatalf("readyz before the outage: %d", st)
	}

	var (
		wg       sync.WaitGroup
		ok, bad  atomic.Int64
		firstBad atomic.Value
		stop     = make(chan struct{})
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, err := chat(e.base, key, "during the outage")
				if err != nil || st != 200 {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprintf("status %d, err %v", st, err))
				} else {
					ok.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	c.Stop()
	before := ok.Load()
	testutil.Eventually(t, 5*time.Second, "readyz reports not ready with Postgres down", func() bool { return readyz(e.base) == 503 })
	time.Sleep(time.Second)
	during := ok.Load() - before
	c.Start()
	took := testutil.Eventually(t, 20*time.Second, "readyz ready once Postgres is back", func() bool { return readyz(e.base) == 200 })
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d requests failed during the outage; first: %v", bad.Load(), firstBad.Load())
	}
	if during == 0 {
		t.Fatal("no request was served while Postgres was down")
	}
	t.Logf("%d requests, %d of them with Postgres down; ready %v after restart", ok.Load(), during, took)
	countRecords(t, f.admin, org, 1+int(ok.Load()))
}

// TestPostgresNoContentAtRest sends requests carrying unique canaries and
// finds none in the Postgres data directory, heap files and WAL, after a
// checkpoint has written everything out.
func TestPostgresNoContentAtRest(t *testing.T) {
	c := pgtest.NewCluster(t)
	_, app := c.FreshDB(t)
	f := newPGFleet(t, app)
	e := f.start(nil)
	org := f.addOrg("acme")
	_, key := f.addKey(org)
	var canaries []string
	for i := range 3 {
		b := make([]byte, 8)
		rand.Read(b)
		canaries = append(canaries, fmt.Sprintf("CANARYpg%d%s", i, hex.EncodeToString(b)))
	}
	for _, cn := range canaries {
		if st, err := chat(e.base, key, cn); err != nil || st != 200 {
			t.Fatalf("request: %d %v", st, err)
		}
	}
	countRecords(t, f.admin, org, len(canaries))
	c.Checkpoint()
	storetest.ScanDirForCanaries(t, c.DataDir, append(canaries, key, f.env["PROVIDER_KEY"], f.env["CODEX_BYOK_KEY"])...)
}

// TestPostgresMemoryNoPlaintextAtRest: memory texts set through one
// edge's admin API reach another edge's requests (the change feed), and
// appear nowhere in the Postgres data directory, heap files or WAL after
// a checkpoint.
func TestPostgresMemoryNoPlaintextAtRest(t *testing.T) {
	c := pgtest.NewCluster(t)
	_, app := c.FreshDB(t)
	f := newPGFleet(t, app)
	e1, e2 := f.start(nil), f.start(nil)
	org := f.addOrg("acme")
	keyID, key := f.addKey(org)
	texts, canaries := memoryCanaries(3)
	for i, m := range []struct{ keyID, name string }{{"", "style"}, {"", "style"}, {keyID, "tone"}} {
		body, _ := json.Marshal(map[string]string{"text": texts[i]})
		u := "http://" + e1.srv.AdminAddr() + "/admin/v1/orgs/acme/memories/" + m.name + "?key_id=" + m.keyID
		if st, out := adminReq(t, "PUT", u, "", map[string]string{"Content-Type": "application/json"}, string(body)); st != 200 {
			t.Fatalf("set memory: %d %s", st, out)
		}
	}
	sent := 0
	for _, e := range []*pgEdge{e1, e2} {
		testutil.Eventually(t, 10*time.Second, "the memories on every edge", func() bool {
			sent++
			req, _ := http.NewRequest("POST", e.base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := pgClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body) // only the header matters
			_ = resp.Body.Close()
			return resp.Header.Get("X-Codex-Memory") == "style@2,tone@1"
		})
	}
	countRecords(t, f.admin, org, sent)
	c.Checkpoint()
	if found, err := storetest.FindCanaries(c.DataDir, org); err != nil || len(found) == 0 {
		t.Fatalf("the org's rows are not in the data directory (%v): the scan would prove nothing", err)
	}
	storetest.ScanDirForCanaries(t, c.DataDir, canaries...)
}

// TestPostgresRetentionDropsPartitions: on Postgres, retention drops the
// monthly partitions entirely past CODEX_RETENTION whole, keeps the
// records within it, and keeps partitions made ahead, so a request in a
// new month is stored.
func TestPostgresRetentionDropsPartitions(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	f := newPGFleet(t, app)
	org := f.addOrg("alpha")
	_, key := f.addKey(org)
	ctx := t.Context()
	now := time.Now().UTC()
	old := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, time.UTC).AddDate(0, -4, 0)
	oldPart := fmt.Sprintf("requests_y%04dm%02d", old.Year(), int(old.Month()))
	if _, err := f.admin.EnsureRequestPartitions(ctx, old, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.InsertRequests(ctx, []edge.RequestRecord{
		storetest.SampleRecord(org, "k", "req_old", old),
		storetest.SampleRecord(org, "k", "req_within", now.Add(-time.Hour)),
	}); err != nil {
		t.Fatal(err)
	}
	monthName := func(i int) string {
		m := time.Date(now.Year(), now.Month()+time.Month(i), 1, 0, 0, 0, 0, time.UTC)
		return fmt.Sprintf("requests_y%04dm%02d", m.Year(), int(m.Month()))
	}
	// The furthest month ahead lacks its partition (as after two months
	// without a retention pass): retention makes it.
	conn := pgtest.Open(t, owner)
	if _, err := conn.Pool().Exec(ctx, `DROP TABLE `+monthName(server.RetentionPartitionsAhead)); err != nil {
		t.Fatal(err)
	}
	e := f.start(func(c *config.Config) { c.Retention = 30 * 24 * time.Hour })
	if _, err := e.srv.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	var gone bool
	if err := conn.Pool().QueryRow(ctx, `SELECT to_regclass($1) IS NULL`, oldPart).Scan(&gone); err != nil || !gone {
		t.Fatalf("partition %s still exists after retention (%v)", oldPart, err)
	}
	recs, err := f.admin.Requests(ctx, org, time.Time{}, 10)
	if err != nil || len(recs) != 1 || recs[0].ID != "req_within" {
		t.Fatalf("records after retention: %v, %v; want only req_within", recs, err)
	}
	for i := range server.RetentionPartitionsAhead + 1 {
		name := monthName(i)
		var exists bool
		if err := conn.Pool().QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil || !exists {
			t.Errorf("partition %s ahead missing (%v)", name, err)
		}
	}
	if st := pgStatus(t, e.base, key); st != http.StatusOK {
		t.Fatalf("request after retention: %d", st)
	}
	countRecords(t, f.admin, org, 2)
}
