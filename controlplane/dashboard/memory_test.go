package dashboard

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

// publishBatch sends b as its edge does.
func publishBatch(t *testing.T, js jetstream.JetStream, ed testenv.Edge, b *wire.UsageBatch) {
	t.Helper()
	data, err := wire.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, ed.Subject, data, jetstream.WithMsgID(wire.MsgID(b.EdgeID, b.Seq))); err != nil {
		t.Fatalf("publish batch %d: %v", b.Seq, err)
	}
}

// TestOverviewShowsMemoriesAndAuditCounts: memory uses and audit counts
// that edges of two orgs send (version 3 batches, over NATS, into
// PostgreSQL under row-level security) show on each org's overview per
// workspace, name@version, requests and tokens; neither org sees the
// other's; the "What we can see" page lists them and says their text and
// content never leave the edge.
func TestOverviewShowsMemoriesAndAuditCounts(t *testing.T) {
	f := newFixtureWith(t, testenv.Options{Base: pgtest.Open(t)})
	ctx := context.Background()
	now := f.clock.now()
	orgA, orgB := f.env.Org(t), f.env.Org(t)
	ownerA := f.user(t, orgA, "owner@alpha.example", controlplane.RoleOwner)
	ownerB := f.user(t, orgB, "owner@beta.example", controlplane.RoleOwner)
	edA, edB := f.env.EnrollEdge(t, orgA), f.env.EnrollEdge(t, orgB)

	at := now.Truncate(time.Minute).Add(-2 * time.Minute)
	a := storetest.Batch(orgA, edA.EdgeID, 1, at, 2)
	a.Memories = []wire.MemoryUse{
		{Workspace: "ws1", KeyRef: "none", Name: "alpha-style", Version: 3, Requests: 4, Tokens: 4812, Estimated: 4},
		{Workspace: "ws1", KeyRef: "k0", Name: "alpha-tone", Version: 1, Requests: 2, Tokens: 66, Estimated: 2},
	}
	a.Audit = []wire.AuditCount{{Workspace: "ws1", Level: "hash", Records: 3}, {Workspace: "ws1", Level: "full", Records: 1}}
	// A second window of the same hour adds up.
	a2 := storetest.Batch(orgA, edA.EdgeID, 2, at.Add(time.Minute), 1)
	a2.Memories = []wire.MemoryUse{{Workspace: "ws1", KeyRef: "none", Name: "alpha-style", Version: 3, Requests: 1, Tokens: 1203, Estimated: 1}}
	a2.Audit = []wire.AuditCount{{Workspace: "ws1", Level: "hash", Records: 2}}
	b := storetest.Batch(orgB, edB.EdgeID, 1, at, 1)
	b.Memories = []wire.MemoryUse{{Workspace: "ws1", KeyRef: "none", Name: "beta-style", Version: 1, Requests: 2, Tokens: 20, Estimated: 2}}
	b.Audit = []wire.AuditCount{{Workspace: "ws1", Level: "none", Records: 2}}
	jsA := edA.JetStream(t)
	publishBatch(t, jsA, edA, a)
	publishBatch(t, jsA, edA, a2)
	publishBatch(t, edB.JetStream(t), edB, b)
	testenv.Eventually(t, 30*time.Second, "three batches stored", func() bool { return f.env.Ingester.Stats().Stored == 3 })

	pageA := f.session(t, ownerA).get("/overview?range=1h").body
	for _, want := range []string{
		`<td class="name"><code>alpha-style@3</code></td><td class="name"><code>none</code></td><td class="num requests">5</td><td class="num tokens">6,015`,
		`<td class="name"><code>alpha-tone@1</code></td><td class="name"><code>k0</code></td><td class="num requests">2</td><td class="num tokens">66`,
		`<td class="num audit-none">0</td><td class="num audit-hash">5</td><td class="num audit-full">1</td>`,
		"their cost is not shown",
	} {
		if !strings.Contains(pageA, want) {
			t.Errorf("org A's overview lacks %s", want)
		}
	}
	var api struct {
		Memories []wire.MemoryUse  `json:"memories"`
		Audit    []wire.AuditCount `json:"audit"`
	}
	if err := json.Unmarshal([]byte(f.session(t, ownerA).get("/api/v1/dashboard/usage?range=1h").body), &api); err != nil {
		t.Fatal(err)
	}
	if len(api.Memories) != 2 || api.Memories[0] != (wire.MemoryUse{Workspace: "ws1", KeyRef: "none", Name: "alpha-style", Version: 3, Requests: 5, Tokens: 6015, Estimated: 5}) ||
		len(api.Audit) != 2 {
		t.Errorf("API: memories %+v, audit %+v", api.Memories, api.Audit)
	}
	pageB := f.session(t, ownerB).get("/overview?range=24h").body
	if !strings.Contains(pageB, `<code>beta-style@1</code>`) || !strings.Contains(pageB, `<td class="num audit-none">2</td><td class="num audit-hash">0</td>`) {
		t.Error("org B's overview lacks its memory or audit count")
	}
	if strings.Contains(pageB, "alpha-") || strings.Contains(pageA, "beta-") {
		t.Error("an overview shows another org's memory")
	}
	for org, other := range map[string]string{orgA: "beta-", orgB: "alpha-"} {
		ms, err := f.env.Store.MemoryUses(ctx, org, now.Add(-48*time.Hour), now.Add(time.Hour))
		if err != nil || len(ms) == 0 {
			t.Fatalf("MemoryUses(%s) = %v, %v", org, ms, err)
		}
		for _, m := range ms {
			if strings.HasPrefix(m.Name, other) {
				t.Fatalf("org %s's memory uses hold another org's %+v", org, m)
			}
		}
	}

	privacy := f.session(t, ownerA).get("/privacy").body
	for _, want := range []string{"Memories in use", "Memory name and version", "Audit record counts",
		"Memory text, or any digest of it", "Audit log records and their content"} {
		if !strings.Contains(privacy, want) {
			t.Errorf("the privacy page lacks %q", want)
		}
	}
}
