package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// memoryAuditSetup gives an org a memory of its own and one of its first
// key, each with a canary in its text, audit level hash for the org and
// full for a second key, and sends three requests with the first key and
// two with the second. It returns the canaries.
func memoryAuditSetup(t *testing.T, h *harness, tn tenant) (canaries []string, secondKey string) {
	t.Helper()
	ctx := context.Background()
	canaries = []string{newCanary("orgmemory"), newCanary("keymemory")}
	h.setMemory(tn.orgID, "", "style", "Answer briefly. "+canaries[0])
	h.setMemory(tn.orgID, tn.keyID, "tone", "Be kind. "+canaries[1])
	secondKey, secondSecret := h.addKey(tn.orgID)
	if err := h.store.SetAuditLevel(ctx, edge.AuditSetting{OrgID: tn.orgID, Level: edge.AuditHash}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SetAuditLevel(ctx, edge.AuditSetting{OrgID: tn.orgID, KeyID: secondKey, Level: edge.AuditFull}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the levels to apply", func() bool {
		o, err := h.srv.Directory().Org(ctx, tn.orgID)
		return err == nil && o.AuditLevel(tn.keyID) == edge.AuditHash && o.AuditLevel(secondKey) == edge.AuditFull
	})
	for i := range 5 {
		key := tn.key
		if i >= 3 {
			key = secondSecret
		}
		resp, err := chatOnce(ctxT(t), h.openai(key), fmt.Sprintf("question %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("x-codex-memory"); got == "" {
			t.Fatalf("request %d carried no memory", i)
		}
	}
	return canaries, secondKey
}

// sentBatches decodes every batch of the egress ledger.
func sentBatches(t *testing.T, h *harness) []*wire.UsageBatch {
	t.Helper()
	var out []*wire.UsageBatch
	for _, e := range getLedger(t, h) {
		if e.Kind != "" {
			continue // the enrollment exchange
		}
		b, err := wire.Decode(e.Batch)
		if err != nil {
			t.Fatalf("batch %d: %v", e.Seq, err)
		}
		out = append(out, b)
	}
	return out
}

// TestTelemetryCarriesMemoriesAndAuditCounts: batches (version 3) carry
// which memories the requests carried (name, version, scope, requests,
// estimated tokens) and how many audit records of each level the edge
// wrote, and never a memory's text: its canary is in no batch, in no file
// of the telemetry directory and nowhere in the control plane's store.
func TestTelemetryCarriesMemoriesAndAuditCounts(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tn := h.addOrg("alpha")
	enr := enrollEdge(t, h, cp, org)
	if wire.Negotiate(enr.SchemaVersions) != 3 {
		t.Fatalf("the control plane offered versions %v", enr.SchemaVersions)
	}
	setSharing(t, h, true)
	canaries, _ := memoryAuditSetup(t, h, tn)

	ws := h.srv.Telemetry().Workspace(tn.orgID)
	keyRef := h.srv.Telemetry().KeyRef(tn.orgID, tn.keyID)
	// The sums of what was sent: a request is recorded as its answer
	// ends, which the client may see first, so flush until all of them
	// are in a batch.
	sums := func() (map[[3]string]wire.MemoryUse, map[string]int64) {
		sum := map[[3]string]wire.MemoryUse{}
		audit := map[string]int64{}
		for _, b := range sentBatches(t, h) {
			if b.SchemaVersion != 3 {
				t.Fatalf("batch %d: version %d, want 3", b.Seq, b.SchemaVersion)
			}
			for _, m := range b.Memories {
				k := [3]string{m.Workspace, m.KeyRef, fmt.Sprintf("%s@%d", m.Name, m.Version)}
				s := sum[k]
				s.Requests += m.Requests
				s.Tokens += m.Tokens
				s.Estimated += m.Estimated
				sum[k] = s
			}
			for _, a := range b.Audit {
				if a.Workspace != ws {
					t.Fatalf("audit count %+v: workspace is not the pseudonym %s", a, ws)
				}
				audit[a.Level] += a.Records
			}
		}
		return sum, audit
	}
	var (
		sum   map[[3]string]wire.MemoryUse
		audit map[string]int64
	)
	testutil.Eventually(t, 10*time.Second, "every request's memory use and audit record in a sent batch", func() bool {
		h.srv.Telemetry().Flush(ctxT(t))
		sum, audit = sums()
		return sum[[3]string{ws, "none", "style@1"}].Requests >= 5 && sum[[3]string{ws, keyRef, "tone@1"}].Requests >= 3 &&
			audit["hash"] >= 3 && audit["full"] >= 2
	})
	style, tone := sum[[3]string{ws, "none", "style@1"}], sum[[3]string{ws, keyRef, "tone@1"}]
	if len(sum) != 2 || style.Requests != 5 || tone.Requests != 3 || style.Tokens <= 0 || tone.Tokens <= 0 ||
		style.Estimated != 5 || tone.Estimated != 3 {
		t.Fatalf("memory uses %+v: want style@1 (workspace's) in 5 requests and tone@1 (the key's) in 3, tokens estimated", sum)
	}
	if audit["hash"] != 3 || audit["full"] != 2 || audit["none"] != 0 {
		t.Fatalf("audit counts %v, want 3 hash and 2 full", audit)
	}
	testutil.Eventually(t, 10*time.Second, "memory uses and audit counts at the control plane", func() bool {
		now := time.Now().UTC()
		ms, err := cp.store.MemoryUses(context.Background(), org, now.Add(-2*time.Hour), now.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		as, err := cp.store.AuditCounts(context.Background(), org, now.Add(-2*time.Hour), now.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return len(ms) == 2 && len(as) == 2
	})
	for _, c := range canaries {
		scanFiles(t, string(telemetry.DirIn(h.cfg.DataDir)), c)
		for _, e := range getLedger(t, h) {
			if bytes.Contains(e.Batch, []byte(c)) {
				t.Fatal("a batch carries a memory's text")
			}
		}
	}
}

// setEnrolledVersions rewrites the enrollment as a control plane that
// takes versions (nil: said nothing of versions) would have left it.
func setEnrolledVersions(t *testing.T, h *harness, versions []int) {
	t.Helper()
	path := filepath.Join(string(telemetry.DirIn(h.cfg.DataDir)), "enrollment.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if versions == nil {
		delete(m, "schema_versions")
	} else {
		m["schema_versions"] = versions
	}
	raw, _ = json.Marshal(m)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTelemetryVersion2ControlPlaneGetsNoMemories: an edge enrolled with
// a control plane that takes versions 1 and 2 sends version 2: usage,
// limits and budgets, but no memories, no audit counts, and settings
// without the memory dimension, which that control plane would refuse.
func TestTelemetryVersion2ControlPlaneGetsNoMemories(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tn := h.addOrg("alpha")
	enrollEdge(t, h, cp, org)
	setEnrolledVersions(t, h, []int{1, 2})
	h.stop()
	startTelemetryEdge(h)
	setSharing(t, h, true)
	canaries, _ := memoryAuditSetup(t, h, tn)
	flushTelemetry(t, ctxT(t), h.srv)
	testutil.Eventually(t, 10*time.Second, "batches to reach the control plane", func() bool { return cp.totals(org).Requests == 5 })
	bs := sentBatches(t, h)
	if len(bs) == 0 {
		t.Fatal("no batch sent")
	}
	for _, b := range bs {
		if b.SchemaVersion != 2 || b.Memories != nil || b.Audit != nil || b.Settings == nil || slices.Contains(b.Settings.Dimensions, wire.DimMemory) {
			t.Fatalf("batch %d: version %d, memories %v, audit %v, settings %+v; want version 2 without them",
				b.Seq, b.SchemaVersion, b.Memories, b.Audit, b.Settings)
		}
	}
	for _, e := range getLedger(t, h) {
		for _, needle := range append(canaries, `"memories"`, `"style"`) {
			if bytes.Contains(e.Batch, []byte(needle)) {
				t.Fatalf("a version 2 batch carries %s", needle)
			}
		}
	}
	now := time.Now().UTC()
	ms, err := cp.store.MemoryUses(context.Background(), org, now.Add(-2*time.Hour), now.Add(2*time.Hour))
	if err != nil || len(ms) != 0 {
		t.Fatalf("the control plane holds memory uses %+v, %v", ms, err)
	}
}
