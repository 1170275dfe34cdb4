package dashboard

import (
	"context"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

// instancesOf reads the instances cell of an edge's row on the fleet page;
// ok is false when the page has no row for the edge.
func instancesOf(page, edgeID string) (cell string, ok bool) {
	re := regexp.MustCompile(`(?s)<tr class="edge-row" data-edge="` + regexp.QuoteMeta(edgeID) + `">.*?<td class="num instances">([^<]*)</td>`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return "", false
	}
	return html.UnescapeString(m[1]), true
}

// TestFleetCountsInstances: two processes of one edge (replicas sharing
// its edge id) send batches over NATS with their own instance ids, and the
// fleet page counts 2, not a process whose last batch arrived before
// InstanceWindow; an edge too old to send instance ids shows "—", one
// whose batches only partly carry them "N+". The other org's fleet page
// counts only its own edge and never shows the first org's; once the
// window has passed, the edge counts 0. On PostgreSQL, under row-level
// security.
func TestFleetCountsInstances(t *testing.T) {
	f := newFixtureWith(t, testenv.Options{Base: pgtest.Open(t)})
	ctx := context.Background()
	now := f.clock.now()
	orgA, orgB := f.org(t, "Alpha", controlplane.PlanPro), f.org(t, "Beta", controlplane.PlanPro)
	ownerA := f.user(t, orgA, "owner@alpha.example", controlplane.RoleOwner)
	ownerB := f.user(t, orgB, "owner@beta.example", controlplane.RoleOwner)
	replicated := enrollEdge(t, f.env, orgA, "alpha-replicated", "1.0.0")
	old := enrollEdge(t, f.env, orgA, "alpha-old", "0.4.0")
	upgrading := enrollEdge(t, f.env, orgA, "alpha-upgrading", "1.0.0")
	beta := enrollEdge(t, f.env, orgB, "beta-edge", "1.0.0")

	p1, p2, gone := wire.NewInstance(), wire.NewInstance(), wire.NewInstance()
	at := now.Truncate(time.Minute).Add(-2 * time.Minute)
	batch := func(orgID, edgeID string, seq int64, instance string) *wire.UsageBatch {
		b := storetest.Batch(orgID, edgeID, seq, at, 1)
		b.Instance = instance
		return b
	}
	// As the edges send them: through NATS and the ingest consumer.
	js := replicated.JetStream(t)
	publishBatch(t, js, replicated, batch(orgA, replicated.EdgeID, 1, p1))
	publishBatch(t, js, replicated, batch(orgA, replicated.EdgeID, 2, p2))
	publishBatch(t, js, replicated, batch(orgA, replicated.EdgeID, 3, p1))
	publishBatch(t, beta.JetStream(t), beta, batch(orgB, beta.EdgeID, 1, wire.NewInstance()))
	testenv.Eventually(t, 30*time.Second, "four batches stored", func() bool { return f.env.Ingester.Stats().Stored == 4 })
	// Received long ago, or from edges before the field: into the store.
	for _, b := range []struct {
		batch    *wire.UsageBatch
		received time.Time
	}{
		{batch(orgA, replicated.EdgeID, 4, gone), now.Add(-controlplane.InstanceWindow - time.Minute)},
		{batch(orgA, old.EdgeID, 1, ""), now},
		{batch(orgA, upgrading.EdgeID, 1, ""), now},
		{batch(orgA, upgrading.EdgeID, 2, p1), now},
	} {
		if _, err := f.env.Store.IngestBatch(ctx, b.batch, b.received); err != nil {
			t.Fatal(err)
		}
	}

	a, b := f.session(t, ownerA), f.session(t, ownerB)
	pageA, pageB := a.get("/fleet").body, b.get("/fleet").body
	for edgeID, want := range map[string]string{replicated.EdgeID: "2", old.EdgeID: "—", upgrading.EdgeID: "1+"} {
		if got, ok := instancesOf(pageA, edgeID); !ok || got != want {
			t.Errorf("org A's fleet: edge %s shows %q instances (row %v), want %q", edgeID, got, ok, want)
		}
	}
	if !strings.Contains(pageA, "in the last 30 minutes") {
		t.Error("the fleet page does not say its window")
	}
	if got, ok := instancesOf(pageB, beta.EdgeID); !ok || got != "1" {
		t.Errorf("org B's fleet: its edge shows %q instances (row %v), want 1", got, ok)
	}
	for _, leak := range []string{replicated.EdgeID, old.EdgeID, upgrading.EdgeID, p1, p2, "alpha-"} {
		if strings.Contains(pageB, leak) {
			t.Errorf("org B's fleet shows org A's %q", leak)
		}
	}

	f.clock.add(controlplane.InstanceWindow + time.Minute)
	if got, _ := instancesOf(a.get("/fleet").body, replicated.EdgeID); got != "0" {
		t.Errorf("after the window, the edge shows %q instances, want 0", got)
	}
}
