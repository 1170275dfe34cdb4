package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/shared/wire"
)

// TestTelemetryCarriesLimitsAndBudgets: with sharing on, the requests the
// edge refused because of a rate limit or a budget reach the control plane
// per key reference (batches of schema version 2, which this control
// plane said at enrollment it takes), and so does each budget's use, under
// pseudonyms.
func TestTelemetryCarriesLimitsAndBudgets(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tn := h.addOrg("alpha")
	enr := enrollEdge(t, h, cp, org)
	if wire.Negotiate(enr.SchemaVersions) != wire.SchemaVersion {
		t.Fatalf("the control plane offered versions %v", enr.SchemaVersions)
	}
	setSharing(t, h, true)
	h.setLimit(edge.Limit{OrgID: tn.orgID, KeyID: tn.keyID, RPM: 1})
	if err := h.store.SetBudget(context.Background(), edge.Budget{OrgID: tn.orgID, KeyID: tn.keyID, Period: edge.Month, CapNanoUSD: 9e9}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	oc := h.openai(tn.key)
	testutil.Eventually(t, 10*time.Second, "the limit to apply", func() bool {
		resp, _ := chatOnce(ctx, oc, "hello")
		return resp != nil && resp.StatusCode == 429
	})
	_, _ = chatOnce(ctx, oc, "hello again") // refused: counted, which is the point
	testutil.Eventually(t, 10*time.Second, "refusals to reach the control plane", func() bool { return cp.totals(org).Limited >= 2 })
	testutil.Eventually(t, 10*time.Second, "the budget to reach the control plane", func() bool {
		us, err := cp.store.BudgetUses(context.Background(), org)
		return err == nil && len(us) == 1 && us[0].Period == "month" && us[0].CapNanoUSD == 9e9 && us[0].SpentNanoUSD > 0 &&
			us[0].KeyRef != tn.keyID && us[0].KeyRef != "none"
	})
}

// TestTelemetryOlderControlPlaneGetsVersion1: an edge enrolled with a
// control plane that said nothing of batch versions (one older than
// version 2) sends version 1, which such a control plane takes, without
// the limit counts and budgets.
func TestTelemetryOlderControlPlaneGetsVersion1(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tn := h.addOrg("alpha")
	enrollEdge(t, h, cp, org)
	setEnrolledVersions(t, h, nil) // what an older control plane's answer would have left
	h.stop()
	startTelemetryEdge(h)
	setSharing(t, h, true)
	h.setLimit(edge.Limit{OrgID: tn.orgID, KeyID: tn.keyID, RPM: 1})
	ctx := ctxT(t)
	testutil.Eventually(t, 10*time.Second, "the limit to apply", func() bool {
		resp, _ := chatOnce(ctx, h.openai(tn.key), "hello")
		return resp != nil && resp.StatusCode == 429
	})
	testutil.Eventually(t, 10*time.Second, "batches to reach the control plane", func() bool { return cp.totals(org).Requests >= 2 })
	ledger := getLedger(t, h)
	for _, e := range ledger {
		if e.Kind != "" {
			continue // the enrollment exchange, not a batch
		}
		b, err := wire.Decode(e.Batch)
		if err != nil {
			t.Fatalf("batch %d: %v", e.Seq, err)
		}
		if b.SchemaVersion != 1 || b.Settings != nil {
			t.Fatalf("batch %d: version %d, settings %v; want version 1 without settings", e.Seq, b.SchemaVersion, b.Settings)
		}
	}
	if got := cp.totals(org).Limited; got != 0 {
		t.Fatalf("version 1 carried %d limited requests", got)
	}
}
