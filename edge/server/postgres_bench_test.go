package server_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/sqlite"
)

// BenchmarkRequestPathStore compares the request path with SQLite and with
// Postgres as the store: the fake provider answers at once, so the time
// per request is the edge's own plus loopback HTTP. It reports the p50 and
// p99 of the client-observed latency. The store is off the request path
// once a key is known (the directory caches it; metadata is written in
// batches in the background), so both should match.
func BenchmarkRequestPathStore(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			ts := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
			defer ts.Close()
			ctx := context.Background()
			cfg := config.Default()
			cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", b.TempDir()
			var st server.Store
			switch name {
			case "sqlite":
				db, err := sqlite.Open(ctx, cfg.DataDir)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				st = db
			case "postgres":
				_, app := pgtest.FreshDB(b)
				st = pgtest.Open(b, app)
			}
			org := edge.Org{ID: "org_bench", Name: "bench"}
			if err := st.CreateOrg(ctx, org); err != nil {
				b.Fatal(err)
			}
			if err := st.SetProvider(ctx, edge.ProviderConfig{OrgID: org.ID, Provider: edge.OpenAI, BaseURL: ts.URL, APIKeyEnv: "PK"}); err != nil {
				b.Fatal(err)
			}
			s, _ := apikey.Generate()
			if err := st.CreateKey(ctx, edge.APIKey{ID: "key_bench", OrgID: org.ID, Prefix: apikey.DisplayPrefix(s), Hash: apikey.Hash(s)}); err != nil {
				b.Fatal(err)
			}
			srv, err := server.New(ctx, cfg, st, slog.New(slog.DiscardHandler),
				server.Options{Getenv: func(k string) string { return map[string]string{"PK": "sk-bench"}[k] }})
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown(context.Background())
			base, key := "http://"+srv.Addr(), s.Reveal()
			if st, err := chat(base, key, "warm up"); err != nil || st != 200 {
				b.Fatalf("warm-up: %d %v", st, err)
			}
			var lat []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if st, err := chat(base, key, "hello"); err != nil || st != 200 {
					b.Fatalf("request: %d %v", st, err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
