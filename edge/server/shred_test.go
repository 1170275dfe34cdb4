package server_test

import (
	"context"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/sqlite"
	"github.com/persiv/codex/edge/store/storetest"
)

// sealedOf returns every value the store holds sealed for the org (its
// wrapped data keys, sealed credentials, fingerprint secret, memories'
// text, audit content), as strings for storetest.FindCanaries.
func sealedOf(t *testing.T, st server.Store, orgID string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	add := func(b []byte) {
		if len(b) >= storetest.MinCanaryLen {
			out = append(out, string(b))
		}
	}
	deks, err := st.DEKs(ctx, orgID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deks {
		add(d.Wrapped)
	}
	pcs, err := st.Providers(ctx, orgID)
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		add(pc.SealedKey)
	}
	fs, err := st.FingerprintSecret(ctx, orgID)
	if err != nil {
		t.Fatal(err)
	}
	add(fs)
	ms, err := st.Memories(ctx, orgID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		add(m.Sealed)
	}
	evs, err := st.AuditEvents(ctx, orgID, edge.AuditQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		add(e.Content)
	}
	return out
}

// scanKeys lists the Redis keys matching pattern.
func scanKeys(t *testing.T, rc *redisConn, pattern string) []string {
	t.Helper()
	var keys []string
	it := rc.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for it.Next(context.Background()) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestShredIsComplete runs `crypto shred`'s work (server.Shred) from
// another process's handles on the store of a running edge: afterwards
// none of the org's earlier ciphertext (data keys, credential,
// fingerprint secret, memory, audit content) remains in the SQLite file or
// its WAL, the running edge has dropped the org's cache entries (in
// process) or Redis holds no key of the org, the org's requests get 503,
// and the other org keeps its values and its cache hits.
func TestShredIsComplete(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		ctx := context.Background()
		h := cacheHarness(t, fakeprovider.Options{}, redis)
		a, b := h.addOrg("a"), h.addOrg("b")
		url := h.base + "/v1/chat/completions"
		for _, tn := range []tenant{a, b} {
			if err := h.store.SetAuditLevel(ctx, edge.AuditSetting{OrgID: tn.orgID, Level: edge.AuditFull}); err != nil {
				t.Fatal(err)
			}
			sealProvider(t, h, h.srv.Keyring(), tn, "sk-sealed-"+tn.orgID)
			h.setMemory(tn.orgID, "", "style", "Answer as "+tn.orgID)
		}
		for _, tn := range []tenant{a, b} {
			testutil.Eventually(t, 10*time.Second, "a cache hit under the sealed credential", func() bool {
				st, hdr, _ := raw(t, "POST", url, bearer(tn.key), chatBody)
				return st == 200 && hdr.Get("x-codex-cache") == "hit"
			})
			testutil.Eventually(t, 10*time.Second, "audit content stored", func() bool {
				evs, err := h.store.AuditEvents(ctx, tn.orgID, edge.AuditQuery{Limit: 100})
				return err == nil && len(evs) >= 2 && evs[len(evs)-1].Content != nil
			})
		}
		aSealed, bSealed := sealedOf(t, h.store, a.orgID), sealedOf(t, h.store, b.orgID)
		if len(aSealed) < 5 {
			t.Fatalf("org a has %d sealed values; want data key, credentials, secret, memory, audit content", len(aSealed))
		}
		var rc *redisConn
		if redis {
			rc = redisClient(t)
			if keys := scanKeys(t, rc, "*"+a.orgID+"*"); len(keys) == 0 {
				t.Fatal("no Redis key of org a before the shred: the check after it would prove nothing")
			}
		}

		// The CLI's handles: another connection to the store and its own
		// keyring, as `codex-edge crypto shred` opens them.
		cli, err := sqlite.Open(ctx, h.cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		kr, err := server.OpenKeyring(ctx, h.cfg, cli, h.getenv, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		r, err := server.Shred(ctx, h.cfg, cli, kr, a.orgID)
		if err != nil {
			t.Fatal(err)
		}
		if r.DataKeys == 0 || r.Sealed.Credentials != 2 || !r.Sealed.FingerprintSecret || r.Sealed.Memories != 1 || r.AuditContents == 0 || !r.Compacted {
			t.Errorf("shred result %+v", r)
		}
		// r.CacheEntries may be 0 with Redis: the running edge, told of
		// the shred by the change feed, may have removed them first.

		testutil.Eventually(t, 10*time.Second, "503 for the shredded org", func() bool {
			st, body := status(t, h, a.key)
			return st == 503 && strings.Contains(string(body), "provider_credential_unavailable")
		})
		if redis {
			// Removed by the shred itself, not left to expire.
			if keys := scanKeys(t, rc, "*"+a.orgID+"*"); len(keys) != 0 {
				t.Errorf("Redis keys of the shredded org: %q", keys)
			}
		} else {
			// The running edge removes the org's entries from its own
			// memory when its change feed reports the shred.
			testutil.Eventually(t, 10*time.Second, "the running edge to remove the org's cache entries", func() bool {
				return !strings.Contains(metrics(t, h), "codex_edge_cache_shred_deleted_total 0")
			})
			if n, err := h.srv.Cache().DeleteOrg(ctx, a.orgID); err != nil || n != 0 {
				t.Errorf("cache entries of the shredded org left in the running edge: %d, %v", n, err)
			}
		}
		if st, hdr, body := raw(t, "POST", url, bearer(b.key), chatBody); st != 200 || hdr.Get("x-codex-cache") != "hit" {
			t.Errorf("other org after the shred: %d %q %s", st, hdr.Get("x-codex-cache"), body)
		}

		// Scanned while the edge and the CLI still have the store open.
		for c := range storetest.FindRaw(t, h.cfg.DataDir, aSealed...) {
			t.Errorf("ciphertext of the shredded org remains in the data directory: %x", c)
		}
		if got := storetest.FindRaw(t, h.cfg.DataDir, bSealed...); len(got) != len(bSealed) {
			t.Errorf("%d of the other org's %d sealed values found in the data directory: the scan would miss a leftover", len(got), len(bSealed))
		}
	})
}

// pgDump returns every row of every table of the database as Postgres
// prints it (bytea as \x and lowercase hex), as seen by each of the orgs
// (row-level security applies to the owner too): what a logical backup
// taken now would hold of them.
func pgDump(t *testing.T, ownerURL string, orgIDs ...string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		t.Fatalf("tables: %v, %v", tables, err)
	}
	var b strings.Builder
	for _, org := range orgIDs {
		if _, err := conn.Exec(ctx, `SELECT set_config('app.org_id', $1, false)`, org); err != nil {
			t.Fatal(err)
		}
		for _, tbl := range tables {
			rows, err := conn.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{tbl}.Sanitize()+` t`)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lines {
				b.WriteString(l)
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// TestShredIsCompletePostgres: two edges share Postgres and Redis; after
// the shred (run through the CLI's own handles) every edge answers the
// shredded org 503, Redis holds no key of it, and no row of the database
// holds any of its earlier sealed values (data keys, credential,
// fingerprint secret, memory, audit content), while the other org keeps
// its values and its cache hits on both edges. Postgres keeps old row
// versions in its files until a vacuum reuses them (README, "Shred"): this
// scans what any query or logical backup sees.
func TestShredIsCompletePostgres(t *testing.T) {
	ctx := context.Background()
	owner, app := pgtest.FreshDB(t)
	f := newPGFleet(t, app)
	redisURL := testRedisURL(t)
	withCache := func(c *config.Config) { c.CacheEnabled, c.RedisURL, c.ChangePoll = true, redisURL, 50*time.Millisecond }
	e1, e2 := f.start(withCache), f.start(withCache)
	type org struct{ id, key string }
	var orgs []org
	for _, name := range []string{"a", "b"} {
		id := f.addOrg(name)
		_, key := f.addKey(id)
		sealed, err := e1.srv.Keyring().Seal(ctx, id, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), []byte("sk-sealed-"+name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.admin.SetProvider(ctx, edge.ProviderConfig{OrgID: id, Provider: edge.OpenAI, BaseURL: f.fakeURL, SealedKey: sealed}); err != nil {
			t.Fatal(err)
		}
		if err := f.admin.SetAuditLevel(ctx, edge.AuditSetting{OrgID: id, Level: edge.AuditFull}); err != nil {
			t.Fatal(err)
		}
		u := "http://" + e1.srv.AdminAddr() + "/admin/v1/orgs/" + id + "/memories/style"
		if st, out := adminReq(t, "PUT", u, "", map[string]string{"Content-Type": "application/json"}, `{"text":"Answer as `+name+`."}`); st != 200 {
			t.Fatalf("set memory: %d %s", st, out)
		}
		orgs = append(orgs, org{id, key})
	}
	a, b := orgs[0], orgs[1]
	hit := func(e *pgEdge, o org) bool {
		st, hdr, _ := raw(t, "POST", e.base+"/v1/chat/completions", bearer(o.key), chatBody)
		return st == 200 && hdr.Get("x-codex-cache") == "hit"
	}
	for _, o := range orgs {
		for _, e := range []*pgEdge{e1, e2} {
			testutil.Eventually(t, 10*time.Second, "a cache hit", func() bool { return hit(e, o) })
		}
		testutil.Eventually(t, 10*time.Second, "audit content stored", func() bool {
			evs, err := f.admin.AuditEvents(ctx, o.id, edge.AuditQuery{Limit: 100})
			return err == nil && len(evs) >= 2 && evs[len(evs)-1].Content != nil
		})
	}
	aSealed, bSealed := sealedOf(t, f.admin, a.id), sealedOf(t, f.admin, b.id)
	if len(aSealed) < 5 {
		t.Fatalf("org a has %d sealed values; want data key, credential, secret, memory, audit content", len(aSealed))
	}
	rc := redisClient(t)
	if len(scanKeys(t, rc, "*"+a.id+"*")) == 0 {
		t.Fatal("no Redis key of org a before the shred: the check after it would prove nothing")
	}

	cfg := config.Default()
	cfg.DatabaseURL, cfg.KEK, cfg.RedisURL = app, "byok", redisURL
	getenv := func(k string) string { return f.env[k] }
	kr, err := server.OpenKeyring(ctx, cfg, f.admin, getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := server.Shred(ctx, cfg, f.admin, kr, a.id); err != nil || r.Compacted {
		t.Fatalf("shred: %+v, %v", r, err)
	}
	for _, e := range []*pgEdge{e1, e2} {
		testutil.Eventually(t, 10*time.Second, "503 for the shredded org on every edge", func() bool {
			st, _, body := raw(t, "POST", e.base+"/v1/chat/completions", bearer(a.key), chatBody)
			return st == 503 && strings.Contains(string(body), "provider_credential_unavailable")
		})
		if !hit(e, b) {
			t.Errorf("other org after the shred: no cache hit on %s", e.base)
		}
	}
	if keys := scanKeys(t, rc, "*"+a.id+"*"); len(keys) != 0 {
		t.Errorf("Redis keys of the shredded org: %q", keys)
	}
	dump := pgDump(t, owner, a.id, b.id)
	for _, v := range aSealed {
		if strings.Contains(dump, hex.EncodeToString([]byte(v))) {
			t.Errorf("a sealed value of the shredded org is still in the database: %x", v)
		}
	}
	for _, v := range bSealed {
		if !strings.Contains(dump, hex.EncodeToString([]byte(v))) {
			t.Errorf("the other org's sealed value %x is not in the dump: the scan would miss a leftover", v)
		}
	}
}
