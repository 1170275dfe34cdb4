package audit

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/sqlite"
)

// fixture is an org in a real embedded store, with a real keyring and the
// org's fingerprint secret.
type fixture struct {
	st   fixtureStore
	keys *keyring.Keyring
	org  string
	fp   *fingerprint.Fingerprinter
	// tamper runs SQL (in the store's dialect, $1 or ? the event id) on
	// the store's rows directly, as someone with access to the data
	// directory or the database's owner role could.
	tamper func(t *testing.T, query, id string)
}

// fixtureStore is what both stores implement.
type fixtureStore interface {
	edge.Store
	edge.AuditStore
	keyring.Store
}

// newFixture is a fixture on the embedded store.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := newFixtureOn(t, st)
	f.tamper = func(t *testing.T, query, id string) {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(query, id); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// newPostgresFixture is a fixture on a fresh database of the dev
// Postgres; it tampers as the owner role, in the org's row-level scope.
func newPostgresFixture(t testing.TB) *fixture {
	t.Helper()
	owner, app := pgtest.FreshDB(t)
	f := newFixtureOn(t, pgtest.Open(t, app))
	f.tamper = func(t *testing.T, query, id string) {
		t.Helper()
		ctx := context.Background()
		c, err := pgx.Connect(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // after Commit, a no-op
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, f.org); err != nil {
			t.Fatal(err)
		}
		tag, err := tx.Exec(ctx, query, id)
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() != 1 {
			t.Fatalf("tampering changed %d rows, want 1", tag.RowsAffected())
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func newFixtureOn(t testing.TB, st fixtureStore) *fixture {
	t.Helper()
	ctx := context.Background()
	master, _, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: st, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	org := edge.Org{ID: apikey.NewID("org_"), Name: "acme-" + apikey.NewID("")}
	if err := st.CreateOrg(ctx, org); err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	sealed, err := kr.Seal(ctx, org.ID, keyring.PurposeSecret, edge.FingerprintRecord, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SwapFingerprintSecret(ctx, org.ID, nil, sealed); err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, keys: kr, org: org.ID, fp: fingerprint.New(secret)}
}

// request returns a request event of the fixture's org at level, with
// content when level asks for it.
func (f *fixture) request(t testing.TB, level edge.AuditLevel, req, resp string) edge.AuditEvent {
	t.Helper()
	rec := edge.RequestRecord{ID: apikey.NewTimeID("req_", time.Now()), Time: time.Now(), OrgID: f.org, KeyID: "key_1",
		Provider: edge.OpenAI, Endpoint: "chat.completions", Model: "gpt-4o-mini", Status: 200, Cache: edge.CacheMiss}
	var (
		d1, d2, content []byte
		err             error
	)
	if level != edge.AuditNone {
		d1, d2 = Digests(f.fp, []byte(req), []byte(resp))
	}
	if level == edge.AuditFull {
		if content, err = sealContent(context.Background(), f.keys, f.org, rec.ID, []byte(req), []byte(resp)); err != nil {
			t.Fatal(err)
		}
	}
	e, err := event(requestMeta(&rec, level), d1, d2, content)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) verify(t *testing.T) Report {
	t.Helper()
	r, err := Verify(context.Background(), f.st, f.org, f.keys, StoredSecrets(f.st, f.keys))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

// TestVerify: tampering with one stored event (its metadata, a digest,
// its link, its id, its sealed content, or deleting it) makes Verify name
// that event, on both stores; an intact chain verifies.
func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name             string
		sqlite, postgres string // run on the fourth event (seq 4), the parameter its id
		wantSeq          int64
		reason           string
	}{
		{name: "intact"},
		{name: "metadata changed",
			sqlite:   `UPDATE audit_events SET meta = replace(meta, '"status":200', '"status":201') WHERE id = ?`,
			postgres: `UPDATE audit_events SET meta = replace(meta, '"status":200', '"status":201') WHERE id = $1`,
			wantSeq:  4, reason: "metadata or digests"},
		{name: "digest changed",
			sqlite:   `UPDATE audit_events SET request_digest = zeroblob(32) WHERE id = ?`,
			postgres: `UPDATE audit_events SET request_digest = decode(repeat('00', 32), 'hex') WHERE id = $1`,
			wantSeq:  4, reason: "metadata or digests"},
		{name: "event deleted",
			sqlite:   `DELETE FROM audit_events WHERE id = ?`,
			postgres: `DELETE FROM audit_events WHERE id = $1`,
			wantSeq:  5, reason: "missing"},
		{name: "link rewritten",
			sqlite:   `UPDATE audit_events SET prev_hash = zeroblob(32) WHERE id = ?`,
			postgres: `UPDATE audit_events SET prev_hash = decode(repeat('00', 32), 'hex') WHERE id = $1`,
			wantSeq:  4, reason: "does not link"},
		{name: "hash recomputed over changed metadata",
			sqlite:   `UPDATE audit_events SET meta = replace(meta, '"status":200', '"status":201'), hash = zeroblob(32) WHERE id = ?`,
			postgres: `UPDATE audit_events SET meta = replace(meta, '"status":200', '"status":201'), hash = decode(repeat('00', 32), 'hex') WHERE id = $1`,
			wantSeq:  4, reason: "metadata or digests"},
		{name: "row moved to another id",
			sqlite:   `UPDATE audit_events SET id = 'req_other' WHERE id = ?`,
			postgres: `UPDATE audit_events SET id = 'req_other' WHERE id = $1`,
			wantSeq:  4, reason: "differ from its metadata"},
		{name: "ciphertext changed",
			sqlite:   `UPDATE audit_events SET content = zeroblob(length(content)) WHERE id = ?`,
			postgres: `UPDATE audit_events SET content = decode(repeat('00', octet_length(content)), 'hex') WHERE id = $1`,
			wantSeq:  4, reason: "does not open"},
	} {
		for _, store := range []struct {
			name   string
			open   func(testing.TB) *fixture
			tamper string
		}{
			{"sqlite", newFixture, tc.sqlite},
			{"postgres", newPostgresFixture, tc.postgres},
		} {
			t.Run(tc.name+"/"+store.name, func(t *testing.T) {
				f := store.open(t)
				var evs []edge.AuditEvent
				for i, l := range []edge.AuditLevel{edge.AuditNone, edge.AuditHash, edge.AuditFull, edge.AuditFull, edge.AuditHash, edge.AuditNone} {
					evs = append(evs, f.request(t, l, "prompt "+string(rune('a'+i)), "answer"))
				}
				if err := f.st.AppendAudit(context.Background(), evs); err != nil {
					t.Fatal(err)
				}
				if store.tamper != "" {
					f.tamper(t, store.tamper, evs[3].ID)
				}
				r := f.verify(t)
				if tc.wantSeq == 0 {
					if r.Break != nil || r.Events != 6 || r.ContentChecked != 2 || r.HeadSeq != 6 {
						t.Fatalf("intact chain: %+v", r)
					}
					return
				}
				if r.Break == nil {
					t.Fatalf("tampered chain verified: %+v", r)
				}
				if r.Break.Seq != tc.wantSeq || !strings.Contains(r.Break.Reason, tc.reason) {
					t.Fatalf("break at seq %d (%s), want seq %d (%s)", r.Break.Seq, r.Break.Reason, tc.wantSeq, tc.reason)
				}
			})
		}
	}
}

// TestVerifyAfterContentRemoved: removing content (retention, shred)
// leaves the chain verifiable, and the content unopenable.
func TestVerifyAfterContentRemoved(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	full := f.request(t, edge.AuditFull, "secret prompt", "secret answer")
	if err := f.st.AppendAudit(ctx, []edge.AuditEvent{f.request(t, edge.AuditHash, "p", "a"), full}); err != nil {
		t.Fatal(err)
	}
	stored, err := f.st.AuditEventByID(ctx, full.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenContent(ctx, f.keys, stored)
	if err != nil || string(c.Request) != "secret prompt" || string(c.Response) != "secret answer" {
		t.Fatalf("OpenContent = %q, %q, %v", c.Request, c.Response, err)
	}
	if n, err := f.keys.Shred(ctx, f.org); err != nil || n == 0 {
		t.Fatalf("Shred = %d, %v", n, err)
	}
	if _, err := f.st.RemoveAuditContent(ctx, f.org, time.Time{}, edge.ContentRemovedShred); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(ctx, f.st, f.org, f.keys, StoredSecrets(f.st, f.keys))
	if err != nil || r.Break != nil || r.Events != 2 || r.ContentRemoved != 1 {
		t.Fatalf("Verify after shred = %+v, %v", r, err)
	}
	stored, err = f.st.AuditEventByID(ctx, full.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenContent(ctx, f.keys, stored); !errors.Is(err, ErrNoContent) {
		t.Fatalf("OpenContent after shred: %v", err)
	}
}

func TestContentRoundTrip(t *testing.T) {
	for _, c := range []struct{ req, resp string }{{"", ""}, {"a", ""}, {"", "b"}, {strings.Repeat("x", 300), "yy"}} {
		r1, r2, err := decodeContent(encodeContent([]byte(c.req), []byte(c.resp)))
		if err != nil || string(r1) != c.req || string(r2) != c.resp {
			t.Errorf("round trip of %q, %q = %q, %q, %v", c.req, c.resp, r1, r2, err)
		}
	}
	for _, bad := range [][]byte{nil, {2, 0}, {1}, {1, 5, 'a'}} {
		if _, _, err := decodeContent(bad); err == nil {
			t.Errorf("decodeContent(%v) accepted", bad)
		}
	}
}

// TestSweep: retention removes old content only, and the chain still
// verifies, on both stores.
func TestSweep(t *testing.T) {
	for _, store := range []struct {
		name string
		open func(testing.TB) *fixture
	}{{"sqlite", newFixture}, {"postgres", newPostgresFixture}} {
		t.Run(store.name, func(t *testing.T) { testSweep(t, store.open(t)) })
	}
}

func testSweep(t *testing.T, f *fixture) {
	ctx := context.Background()
	old := f.request(t, edge.AuditFull, "old prompt", "old answer")
	old.Time = time.Now().Add(-400 * 24 * time.Hour)
	recent := f.request(t, edge.AuditFull, "new prompt", "new answer")
	if err := f.st.AppendAudit(ctx, []edge.AuditEvent{old, recent}); err != nil {
		t.Fatal(err)
	}
	n, err := Sweep(ctx, f.st, 365*24*time.Hour, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	r := f.verify(t)
	if r.Break != nil || r.ContentRemoved != 1 || r.ContentChecked != 1 {
		t.Fatalf("Verify after the sweep: %+v", r)
	}
	e, err := f.st.AuditEventByID(ctx, old.ID)
	if err != nil || e.ContentRemoved != edge.ContentRemovedRetention {
		t.Fatalf("old event %+v, %v", e, err)
	}
	if _, err := OpenContent(ctx, f.keys, e); !errors.Is(err, ErrNoContent) {
		t.Fatalf("old content opened: %v", err)
	}
}
