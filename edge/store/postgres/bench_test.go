package postgres_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
)

func benchRecord(orgID, keyID, id string, at time.Time) edge.RequestRecord {
	return edge.RequestRecord{
		ID:              id,
		Time:            at,
		OrgID:           orgID,
		KeyID:           keyID,
		Provider:        edge.OpenAI,
		Endpoint:        "chat.completions",
		Model:           "gpt-4o-mini",
		Usage:           edge.Usage{Input: edge.Known(812), CachedInput: edge.Known(256), Output: edge.Known(97), Reasoning: edge.Known(0)},
		CostNanoUSD:     183_450,
		CostKnown:       true,
		Latency:         412 * time.Millisecond,
		UpstreamLatency: 411 * time.Millisecond,
		Status:          200,
		Cache:           edge.CacheMiss,
		Fingerprint:     "9f2c4e1a7b3d5f60812a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d",
	}
}

// BenchmarkInsertRequests measures the metadata writer's path on Postgres:
// one transaction per batch, one unnest insert per org in it, as the
// application role under row-level security. orgs=4 mixes four orgs in
// every batch (one set_config and insert each).
func BenchmarkInsertRequests(b *testing.B) {
	for _, tc := range []struct{ size, orgs int }{{1, 1}, {100, 1}, {1000, 1}, {1000, 4}} {
		b.Run(fmt.Sprintf("batch=%d/orgs=%d", tc.size, tc.orgs), func(b *testing.B) {
			_, app := pgtest.FreshDB(b)
			db := pgtest.Open(b, app)
			ctx := context.Background()
			for o := range tc.orgs {
				org := fmt.Sprintf("o%d", o)
				if err := db.CreateOrg(ctx, edge.Org{ID: org, Name: org}); err != nil {
					b.Fatal(err)
				}
				if err := db.CreateKey(ctx, edge.APIKey{ID: "k" + org, OrgID: org, Hash: sha256.Sum256([]byte(org))}); err != nil {
					b.Fatal(err)
				}
			}
			batch := make([]edge.RequestRecord, tc.size)
			now := time.Now()
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range batch {
					org := fmt.Sprintf("o%d", i%tc.orgs)
					batch[i] = benchRecord(org, "k"+org, fmt.Sprintf("req_%d", n), now.Add(time.Duration(n)))
					n++
				}
				if err := db.InsertRequests(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
