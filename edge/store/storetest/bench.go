package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/provider/openai"
)

// BenchInsertRequests measures a store on the metadata writer's path: one
// InsertRequests call (one transaction) per batch, of 1 to 1,000 records,
// from one org or mixed across four. open returns an empty store.
func BenchInsertRequests(b *testing.B, open func(b *testing.B) edge.Store) {
	for _, tc := range []struct{ size, orgs int }{{1, 1}, {100, 1}, {1000, 1}, {1000, 4}} {
		b.Run(fmt.Sprintf("batch=%d/orgs=%d", tc.size, tc.orgs), func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			for o := range tc.orgs {
				org := fmt.Sprintf("o%d", o)
				if err := s.CreateOrg(ctx, edge.Org{ID: org, Name: org}); err != nil {
					b.Fatal(err)
				}
				if err := s.CreateKey(ctx, edge.APIKey{ID: "k" + org, OrgID: org, Hash: sha256.Sum256([]byte(org))}); err != nil {
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
					batch[i] = SampleRecord(org, "k"+org, fmt.Sprintf("req_%d", n), now.Add(time.Duration(n)))
					n++
				}
				if err := s.InsertRequests(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// SampleRecord is a typical request record, every counter known, for
// benchmarks and load tests of the stores.
func SampleRecord(orgID, keyID, id string, at time.Time) edge.RequestRecord {
	return edge.RequestRecord{
		ID: id, Time: at, OrgID: orgID, KeyID: keyID,
		Provider: edge.OpenAI, Endpoint: string(openai.ChatCompletions), Model: "gpt-4o-mini",
		Usage:       edge.Usage{Input: edge.Known(812), CachedInput: edge.Known(256), Output: edge.Known(97), Reasoning: edge.Known(0)},
		CostNanoUSD: 183_450, CostKnown: true,
		Latency: 412 * time.Millisecond, UpstreamLatency: 411 * time.Millisecond,
		Status: 200, Cache: edge.CacheMiss,
		Fingerprint: "9f2c4e1a7b3d5f60812a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d",
	}
}
