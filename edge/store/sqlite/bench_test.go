package sqlite

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/store/storetest"
)

// BenchmarkInsertRequests measures the metadata writer's path on SQLite
// (synchronous=FULL, on the test's file system).
func BenchmarkInsertRequests(b *testing.B) {
	storetest.BenchInsertRequests(b, func(b *testing.B) edge.Store { return mustOpen(b, b.TempDir()) })
}

// BenchmarkInsertRequestsLive is BenchmarkInsertRequests as the edge
// calls it: random request ids (apikey.NewID, as the proxy makes them),
// so index inserts land all over the id index, and a context with a
// deadline (the metadata writer's), which the driver watches on every
// statement. The records are made before the timer starts. ids=ordered
// gives ids that sort by time instead, for comparison.
func BenchmarkInsertRequestsLive(b *testing.B) {
	for _, tc := range []struct {
		size    int
		ordered bool
	}{{1, false}, {100, false}, {500, false}, {1000, false}, {500, true}, {1000, true}} {
		ids := "random"
		if tc.ordered {
			ids = "ordered"
		}
		size := tc.size
		b.Run(fmt.Sprintf("batch=%d/ids=%s", size, ids), func(b *testing.B) {
			db := mustOpen(b, b.TempDir())
			ctx := context.Background()
			if err := db.CreateOrg(ctx, edge.Org{ID: "o", Name: "o"}); err != nil {
				b.Fatal(err)
			}
			if err := db.CreateKey(ctx, edge.APIKey{ID: "k", OrgID: "o", Hash: sha256.Sum256([]byte("k"))}); err != nil {
				b.Fatal(err)
			}
			// Enough distinct batches that the id index outgrows the page
			// cache's hot set, reused round-robin with fresh ids.
			batches := make([][]edge.RequestRecord, 16)
			now := time.Now()
			for i := range batches {
				batches[i] = make([]edge.RequestRecord, size)
				for j := range batches[i] {
					batches[i][j] = storetest.SampleRecord("o", "k", "", now.Add(time.Duration(i*size+j)))
				}
			}
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				batch := batches[n%len(batches)]
				for j := range batch {
					if tc.ordered {
						batch[j].ID = fmt.Sprintf("req_%012d%s", n*size+j, apikey.NewID("")[:8])
					} else {
						batch[j].ID = apikey.NewID("req_")
					}
				}
				n++
				b.StartTimer()
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := db.InsertRequests(ctx, batch)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*size)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*size), "ns/row")
		})
	}
}
