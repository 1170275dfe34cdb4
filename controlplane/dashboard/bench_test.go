package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
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
	st := pgtest.Open(b)
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
