package sqlite

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
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

// BenchmarkInsertRequests measures the metadata writer's path: one
// transaction per batch, synchronous=FULL, on the test's file system.
func BenchmarkInsertRequests(b *testing.B) {
	for _, size := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := mustOpen(b, b.TempDir())
			ctx := context.Background()
			if err := db.CreateOrg(ctx, edge.Org{ID: "o1", Name: "acme"}); err != nil {
				b.Fatal(err)
			}
			if err := db.CreateKey(ctx, edge.APIKey{ID: "k1", OrgID: "o1", Hash: sha256.Sum256([]byte("k1"))}); err != nil {
				b.Fatal(err)
			}
			batch := make([]edge.RequestRecord, size)
			now := time.Now()
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range batch {
					batch[i] = benchRecord("o1", "k1", fmt.Sprintf("req_%d", n), now.Add(time.Duration(n)))
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
