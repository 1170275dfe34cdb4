package sqlite

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/store/storetest"
)

// TestShredLeavesNoCiphertext: after a shred's store steps (data keys,
// sealed values, audit content) and Compact, none of the org's earlier
// ciphertext bytes remain in the database file or its WAL, while another
// process (a running edge) has the store open; the other org's values stay.
func TestShredLeavesNoCiphertext(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	cli, edgeProc := mustOpen(t, dir), mustOpen(t, dir)
	plant := func(orgID string) []string {
		if err := cli.CreateOrg(ctx, edge.Org{ID: orgID, Name: orgID, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		sealed := storetest.PlantSealed(t, cli, orgID)
		wrapped := make([]byte, 40)
		rand.Read(wrapped)
		id, err := keyring.NewDEKID()
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.CreateDEK(ctx, keyring.WrappedDEK{OrgID: orgID, ID: id, Generation: 1,
			MasterRef: "local", MasterVersion: "v1", Wrapped: wrapped, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		ev := storetest.AuditSample(orgID, "req_"+orgID, time.Now(), edge.AuditFull)
		ev.Content = make([]byte, 64)
		rand.Read(ev.Content)
		if err := cli.AppendAudit(ctx, []edge.AuditEvent{ev}); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range append(sealed, wrapped, ev.Content) {
			out = append(out, string(b)) // found raw: the stores keep bytes as they are
		}
		return out
	}
	a, b := plant("org_a"), plant("org_b")
	// The running edge reads the org, as it does on a request.
	if _, err := edgeProc.Providers(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}

	if _, err := cli.DeleteDEKs(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ShredSealed(ctx, "org_a", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.RemoveAuditContent(ctx, "org_a", time.Time{}, edge.ContentRemovedShred); err != nil {
		t.Fatal(err)
	}
	if err := cli.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// Scanned while both stay open: the bytes must be gone now, not at
	// the next close.
	for c := range storetest.FindRaw(t, dir, a...) {
		t.Errorf("shredded org's ciphertext remains: %x", c)
	}
	raw := storetest.FindRaw(t, dir, b...)
	if len(raw) != len(b) {
		t.Errorf("the other org's values in the files: %d of %d; the scan would miss a leftover", len(raw), len(b))
	}
	if pcs, err := edgeProc.Providers(ctx, "org_b"); err != nil || len(pcs) != 2 {
		t.Errorf("other org through the running process: %+v, %v", pcs, err)
	}
}
