package dashboard

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/shared/wire"
)

// The "What we can see" page shows each edge's minimization settings as its
// latest batch carried them.
func TestPrivacyShowsEdgeSettings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	org := f.org(t, "Acme Robotics", controlplane.PlanPro)
	ada := f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	old := enrollEdge(t, f.env, org, "old-edge", "0.4.2")
	minimal := enrollEdge(t, f.env, org, "minimal-edge", "0.5.0")
	now := f.clock.now()
	if _, err := f.env.Store.IngestBatch(ctx, storetest.Batch(org, old.EdgeID, 1, now.Truncate(wire.MaxWindow), 1), now); err != nil {
		t.Fatal(err)
	}
	b := storetest.Batch(org, minimal.EdgeID, 1, now.Truncate(wire.MaxWindow), 1)
	b.Settings = &wire.Settings{Dimensions: []string{wire.DimWorkspace, wire.DimProvider}, MinCount: 5, HeartbeatS: 900}
	if _, err := f.env.Store.IngestBatch(ctx, b, now); err != nil {
		t.Fatal(err)
	}
	r := f.session(t, ada).get("/privacy")
	wantStatus(t, "privacy", r, http.StatusOK)
	for _, want := range []string{
		`<td class="name">minimal-edge</td><td>workspace, provider</td><td>model, key ref, memory</td><td>below 5</td><td>every 15m0s at most</td>`,
		`<td class="name">old-edge</td><td colspan="4" class="muted">not reported yet`,
		`<td class="name">Instance id</td><td>per batch: a random id each edge process draws when it starts, derived from nothing about its host`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("privacy page lacks %q:\n%s", want, r.body)
		}
	}
}
