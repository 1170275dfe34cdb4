package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/internal/testutil"
)

// Request metadata older than CODEX_RETENTION is deleted by serve's
// background job (at start-up, then hourly), in batches; newer records stay.
func TestRetentionDeletesOldMetadata(t *testing.T) {
	h := newTelemetryHarness(t)
	a, b := h.addOrg("alpha"), h.addOrg("beta")
	h.stop()
	h.cfg.Retention = 30 * 24 * time.Hour
	now := time.Now().UTC()
	rec := func(tn tenant, at time.Time, i int) edge.RequestRecord {
		fp := make([]byte, 32)
		rand.Read(fp)
		return edge.RequestRecord{ID: fmt.Sprintf("req_retention_%s_%d", tn.orgID, i), Time: at, OrgID: tn.orgID, KeyID: tn.keyID, Provider: edge.OpenAI,
			Endpoint: "/v1/chat/completions", Model: "gpt-4o-mini", Usage: edge.Usage{Input: edge.Known(1), Output: edge.Known(1)},
			CostKnown: true, Latency: time.Millisecond, Status: 200, Cache: edge.CacheMiss, Fingerprint: hex.EncodeToString(fp), MemoryID: "mem"}
	}
	var recs []edge.RequestRecord
	for i := range 20 {
		at := now.Add(-31 * 24 * time.Hour).Add(-time.Duration(i) * time.Hour) // past retention
		if i%2 == 0 {
			at = now.Add(-29 * 24 * time.Hour) // within
		}
		recs = append(recs, rec(a, at, i), rec(b, at, i))
	}
	if err := h.store.InsertRequests(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	startTelemetryEdge(h)
	count := func(tn tenant) int {
		got, err := h.store.Requests(context.Background(), tn.orgID, time.Time{}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if r.Time.Before(now.Add(-30 * 24 * time.Hour)) {
				return -1
			}
		}
		return len(got)
	}
	testutil.Eventually(t, 10*time.Second, "the start-up pass to delete the old records", func() bool { return count(a) == 10 && count(b) == 10 })
	// A further pass finds nothing more.
	if n, err := h.srv.Prune(context.Background()); err != nil || n != 0 {
		t.Fatalf("second pass deleted %d, %v", n, err)
	}
}
