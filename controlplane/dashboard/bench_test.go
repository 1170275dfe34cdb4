package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/store/storetest"
)

// BenchmarkOverview30Days measures the overview's server time for one org
// holding 30 days of minute data (one 6-row batch a minute from one edge:
// 43,200 batches, 259,200 minute rows), beside a second org as large.
// Each range reads its roll-up; "page" is the whole HTTP response.
func BenchmarkOverview30Days(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "cp.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchOverview(b, st)
}

// BenchmarkOverview30DaysPostgres is the same on PostgreSQL under RLS, as
// the application role: eval "$(scripts/dev-postgres.sh start)" first.
func BenchmarkOverview30DaysPostgres(b *testing.B) {
	ctx := context.Background()
	ownerURL, appURL := os.Getenv("CODEX_TEST_POSTGRES_URL"), os.Getenv("CODEX_TEST_POSTGRES_APP_URL")
	if ownerURL == "" || appURL == "" {
		b.Fatal(`set CODEX_TEST_POSTGRES_URL and CODEX_TEST_POSTGRES_APP_URL: eval "$(scripts/dev-postgres.sh start)"`)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "cp_bench_" + hex.EncodeToString(rnd[:])
	admin, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			b.Logf("drop test database %s: %v", name, err)
		}
	}()
	withDB := func(raw string) string {
		u, _ := url.Parse(raw)
		u.Path = "/" + name
		return u.String()
	}
	appUser, _ := url.Parse(appURL)
	if err := postgres.Migrate(ctx, withDB(ownerURL), appUser.User.Username()); err != nil {
		b.Fatal(err)
	}
	st, err := postgres.Open(ctx, withDB(appURL))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchOverview(b, st)
}

func benchOverview(b *testing.B, st controlplane.Store) {
	ctx := context.Background()
	now := time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)
	org, other := storetest.MustOrg(b, st), storetest.MustOrg(b, st)
	e, oe := storetest.MustEdge(b, st, org), storetest.MustEdge(b, st, other)
	start := now.Add(-30 * controlplane.Day)
	for m := 0; m < 30*24*60; m++ {
		at := start.Add(time.Duration(m) * time.Minute)
		for _, x := range []struct{ org, edge string }{{org, e.ID}, {other, oe.ID}} {
			if _, err := st.IngestBatch(ctx, storetest.Batch(x.org, x.edge, int64(m+1), at, 6), at); err != nil {
				b.Fatal(err)
			}
		}
	}
	u := controlplane.User{ID: controlplane.NewID("usr"), OrgID: org, Email: "o@acme.example", Role: controlplane.RoleOwner, PasswordHash: "x", CreatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	d, err := New(Config{Store: st, Enroll: &enroll.Service{Store: st}, Key: make([]byte, KeyLen), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	for _, key := range []string{"1h", "24h", "30d", "90d"} {
		b.Run("query/"+key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				u, err := Overview(ctx, st, org, rangeByKey(key), now)
				if err != nil || u.Total.Requests == 0 {
					b.Fatalf("overview: %v", err)
				}
			}
		})
	}
	h := (&httpapi.API{Enroll: d.enroll, Dashboard: d}).Handler()
	tok, _, err := d.issue(u)
	if err != nil {
		b.Fatal(err)
	}
	for _, key := range []string{"24h", "30d"} {
		b.Run("page/"+key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/overview?range="+key, nil)
				req.AddCookie(&http.Cookie{Name: SessionCookie, Value: tok})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
