// Package storetest is the contract test suite every controlplane.Store
// implementation passes: the SQLite and Postgres stores run the same tests.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// Open returns a fresh, empty store for one test.
type Open func(tb testing.TB) controlplane.Store

// Run runs the contract suite.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s controlplane.Store)
	}{
		{"Orgs", testOrgs},
		{"Users", testUsers},
		{"Sessions", testSessions},
		{"LastOwner", testLastOwner},
		{"Invites", testInvites},
		{"SetRole", testSetRole},
		{"SetRoleLastOwnerRace", testSetRoleRace},
		{"RemoveRacesPromotion", testRemoveRacesPromotion},
		{"RevokeInvite", testRevokeInvite},
		{"RevokeInviteRace", testRevokeInviteRace},
		{"EnrollTokensListed", testEnrollTokensListed},
		{"EnrollSingleUse", testEnrollSingleUse},
		{"EnrollConcurrent", testEnrollConcurrent},
		{"EdgesScopedByOrg", testEdgesScoped},
		{"EdgeInstances", testEdgeInstances},
		{"IngestExactlyOnce", testIngestOnce},
		{"IngestLargeBatch", testIngestLarge},
		{"IngestLimitsAndBudgets", testIngestLimitsAndBudgets},
		{"IngestMemoriesAndAudit", testIngestMemoriesAndAudit},
		{"UsageQuery", testUsageQuery},
		{"Prune", testPrune},
		{"DeleteOrg", testDeleteOrg},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	for _, tc := range staffTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	t.Run("DeploymentSecrets", func(t *testing.T) { testDeploymentSecrets(t, open(t)) })
	t.Run("NATSOrgKeys", func(t *testing.T) { testNATSOrgKeys(t, open(t)) })
	t.Run("NATSAccounts", func(t *testing.T) { testNATSAccounts(t, open(t)) })
}

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// MustOrg creates an org and returns its id.
func MustOrg(t testing.TB, s controlplane.Store) string {
	t.Helper()
	o := controlplane.Org{ID: controlplane.NewID("org"), Name: "Acme", CreatedAt: t0}
	if err := s.CreateOrg(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.ID
}

// MustEdge enrolls an edge into org through a fresh token.
func MustEdge(t testing.TB, s controlplane.Store, orgID string) controlplane.Edge {
	t.Helper()
	ctx := context.Background()
	hash := sha256.Sum256([]byte(controlplane.NewID("tok")))
	if err := s.CreateEnrollToken(ctx, controlplane.EnrollToken{Hash: hash, OrgID: orgID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e, err := s.RedeemEnrollToken(ctx, hash, t0.Add(time.Minute), controlplane.Edge{
		ID: controlplane.NewID("edge"), Name: "edge-1", Version: "1.0.0", PublicKey: controlplane.NewID("U"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testOrgs(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	id := MustOrg(t, s)
	o, err := s.Org(ctx, id)
	if err != nil || o.Name != "Acme" || !o.CreatedAt.Equal(t0) {
		t.Fatalf("Org = %+v, %v", o, err)
	}
	if err := s.CreateOrg(ctx, controlplane.Org{ID: id, Name: "again", CreatedAt: t0}); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("duplicate org: %v, want ErrConflict", err)
	}
	if _, err := s.Org(ctx, "org_missing"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("missing org: %v, want ErrNotFound", err)
	}
}

func testUsers(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	u := controlplane.User{ID: controlplane.NewID("usr"), OrgID: org, Email: "a@example.com", Role: controlplane.RoleOwner, PasswordHash: "$argon2id$x", CreatedAt: t0}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	dup := u
	dup.ID = controlplane.NewID("usr")
	if err := s.CreateUser(ctx, dup); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("duplicate email: %v, want ErrConflict", err)
	}
	dup.OrgID = "org_missing"
	if err := s.CreateUser(ctx, dup); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("user of a missing org: %v, want ErrNotFound", err)
	}
	got, err := s.Users(ctx, org)
	if err != nil || len(got) != 1 || got[0] != u {
		t.Fatalf("Users = %+v, %v", got, err)
	}
	if got, err := s.Users(ctx, other); err != nil || len(got) != 0 {
		t.Fatalf("another org's Users = %+v, %v", got, err)
	}
}

func testEnrollSingleUse(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	hash := sha256.Sum256([]byte("token-1"))
	expired := sha256.Sum256([]byte("token-2"))
	for _, tok := range []controlplane.EnrollToken{
		{Hash: hash, OrgID: org, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{Hash: expired, OrgID: org, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)},
	} {
		if err := s.CreateEnrollToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	edge := func() controlplane.Edge {
		return controlplane.Edge{ID: controlplane.NewID("edge"), Name: "e", Version: "1", PublicKey: controlplane.NewID("U")}
	}
	now := t0.Add(10 * time.Minute)
	e, err := s.RedeemEnrollToken(ctx, hash, now, edge())
	if err != nil {
		t.Fatal(err)
	}
	if e.OrgID != org || !e.CreatedAt.Equal(now) {
		t.Fatalf("redeemed edge = %+v", e)
	}
	got, err := s.Edge(ctx, org, e.ID)
	if err != nil || got.PublicKey != e.PublicKey || got.Revoked() || !got.LastSeen.IsZero() {
		t.Fatalf("Edge = %+v, %v", got, err)
	}
	for name, h := range map[string][32]byte{"replay": hash, "expired": expired, "unknown": sha256.Sum256([]byte("nope"))} {
		if _, err := s.RedeemEnrollToken(ctx, h, now, edge()); !errors.Is(err, controlplane.ErrUnauthorized) {
			t.Errorf("%s token: %v, want ErrUnauthorized", name, err)
		}
	}
}

func testEnrollConcurrent(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	hash := sha256.Sum256([]byte("race"))
	if err := s.CreateEnrollToken(ctx, controlplane.EnrollToken{Hash: hash, OrgID: org, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RedeemEnrollToken(ctx, hash, t0.Add(time.Minute), controlplane.Edge{
				ID: controlplane.NewID("edge"), Name: "e", Version: "1", PublicKey: controlplane.NewID("U")})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, controlplane.ErrUnauthorized):
			t.Errorf("concurrent redeem: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent redemptions succeeded, want 1", ok)
	}
}

func testEdgesScoped(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	e := MustEdge(t, s, org)
	if _, err := s.Edge(ctx, other, e.ID); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("edge seen from another org: %v", err)
	}
	if err := s.RevokeEdge(ctx, other, e.ID, t0); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("edge revoked from another org: %v", err)
	}
	if got, err := s.Edges(ctx, other); err != nil || len(got) != 0 {
		t.Fatalf("another org's Edges = %+v, %v", got, err)
	}
	at := t0.Add(time.Hour)
	if err := s.RevokeEdge(ctx, org, e.ID, at); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEdge(ctx, org, e.ID, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Edges(ctx, org)
	if err != nil || len(got) != 1 || !got[0].RevokedAt.Equal(at) {
		t.Fatalf("Edges after revoke = %+v, %v", got, err)
	}
}

// testEdgeInstances: the instances of an edge are the distinct instance
// ids of the batches received since the given time, counted once each; an
// earlier batch does not count; a batch without one (an older edge) makes
// the count unknown; another org never sees them.
func testEdgeInstances(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	e, old, theirs := MustEdge(t, s, org), MustEdge(t, s, org), MustEdge(t, s, other)
	a, b, gone := wire.NewInstance(), wire.NewInstance(), wire.NewInstance()
	now := t0.Add(time.Hour)
	since := now.Add(-controlplane.InstanceWindow)
	seq := int64(0)
	ingest := func(orgID, edgeID, instance string, received time.Time) {
		t.Helper()
		seq++
		bt := Batch(orgID, edgeID, seq, received.Add(-time.Minute).Truncate(time.Minute), 1)
		bt.Instance = instance
		if stored, err := s.IngestBatch(ctx, bt, received); err != nil || !stored {
			t.Fatalf("ingest: %v, %v", stored, err)
		}
	}
	ingest(org, e.ID, a, now.Add(-time.Minute))
	ingest(org, e.ID, a, now.Add(-2*time.Minute))
	ingest(org, e.ID, b, since)                      // at the window's start: counts
	ingest(org, e.ID, gone, since.Add(-time.Second)) // before it: does not
	ingest(org, e.ID, "", since.Add(-time.Minute))   // an older edge's, before it
	ingest(org, old.ID, "", now.Add(-time.Minute))   // an older edge's, within it
	ingest(other, theirs.ID, wire.NewInstance(), now.Add(-time.Minute))
	got, err := s.EdgeInstances(ctx, org, since)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]controlplane.Instances{e.ID: {Known: 2}, old.ID: {Unknown: true}}
	if len(got) != len(want) || got[e.ID] != want[e.ID] || got[old.ID] != want[old.ID] {
		t.Fatalf("EdgeInstances = %+v, want %+v", got, want)
	}
	got, err = s.EdgeInstances(ctx, other, since)
	if err != nil || len(got) != 1 || got[theirs.ID] != (controlplane.Instances{Known: 1}) {
		t.Fatalf("another org's EdgeInstances = %+v, %v", got, err)
	}
	if got, err := s.EdgeInstances(ctx, org, now.Add(time.Second)); err != nil || len(got) != 0 {
		t.Fatalf("EdgeInstances after every batch = %+v, %v", got, err)
	}
}

// Batch returns a valid batch of n rows for an edge.
func Batch(orgID, edgeID string, seq int64, start time.Time, n int) *wire.UsageBatch {
	b := &wire.UsageBatch{SchemaVersion: wire.SchemaVersion, WindowStart: start, WindowEnd: start.Add(time.Minute),
		OrgID: orgID, EdgeID: edgeID, Seq: seq, Rows: make([]wire.UsageRow, n)}
	models := []string{"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"}
	for i := range b.Rows {
		r := &b.Rows[i]
		r.Workspace, r.Provider, r.KeyRef = "ws1", "openai", "k"+strconv.Itoa(i)
		r.Model = models[i%len(models)]
		r.CacheStatus, r.StatusClass = wire.CacheMiss, wire.Status2xx
		if i%2 == 1 {
			r.CacheStatus = wire.CacheHit
		}
		r.Requests = 2
		r.Input = wire.Tokens{Sum: 100}
		r.Output = wire.Tokens{Sum: 10}
		r.CacheWrite = wire.Tokens{Unknown: 2}
		r.CostNanoUSD, r.CostUnknown, r.SavedNanoUSD = 1000, 0, 10
		r.LatencyMS[2] = 2
	}
	return b
}

func testIngestOnce(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	e := MustEdge(t, s, org)
	b := Batch(org, e.ID, 1, t0, 4)
	for i, want := range []bool{true, false, false} {
		stored, err := s.IngestBatch(ctx, b, t0.Add(2*time.Minute))
		if err != nil || stored != want {
			t.Fatalf("ingest #%d = %v, %v; want %v", i, stored, err, want)
		}
	}
	rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0, To: t0.Add(time.Hour), Step: controlplane.Minute})
	if err != nil || len(rows) != 1 || rows[0].Requests != 8 || rows[0].Input.Sum != 400 || rows[0].CacheWrite.Unknown != 8 {
		t.Fatalf("usage after duplicate ingest = %+v, %v", rows, err)
	}
	got, err := s.Edge(ctx, org, e.ID)
	if err != nil || !got.LastSeen.Equal(t0.Add(2*time.Minute)) || !got.Sharing || got.Settings != nil {
		t.Fatalf("edge after ingest = %+v, %v", got, err)
	}
	// The edge's minimization settings are kept from the latest batch
	// that carried them; a batch without (an earlier edge) keeps them.
	want := &wire.Settings{Dimensions: []string{wire.DimWorkspace, wire.DimModel}, MinCount: 5, HeartbeatS: 900}
	b2 := Batch(org, e.ID, 2, t0.Add(time.Minute), 1)
	b2.Settings = want
	for seq, b := range []*wire.UsageBatch{b2, Batch(org, e.ID, 3, t0.Add(2*time.Minute), 1)} {
		if _, err := s.IngestBatch(ctx, b, t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Edge(ctx, org, e.ID)
		if err != nil || got.Settings == nil || !slices.Equal(got.Settings.Dimensions, want.Dimensions) || got.Settings.MinCount != 5 || got.Settings.HeartbeatS != 900 {
			t.Fatalf("edge settings after batch %d = %+v, %v", seq+2, got.Settings, err)
		}
		if edges, err := s.Edges(ctx, org); err != nil || len(edges) != 1 || edges[0].Settings == nil {
			t.Fatalf("edges = %+v, %v", edges, err)
		}
	}
}

// testIngestLimitsAndBudgets: version 2 batches' refusal counts add up
// like every counter; budgets keep the latest report (a late batch of an
// earlier window does not undo it) and stay within their org; version 1
// batches still ingest.
func testIngestLimitsAndBudgets(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	e := MustEdge(t, s, org)
	b := Batch(org, e.ID, 1, t0, 2)
	b.Rows[0].Limited, b.Rows[1].BudgetRefused = 2, 1
	b.Budgets = []wire.BudgetUse{{Workspace: "ws1", KeyRef: "k0", Period: "day", CapNanoUSD: 5e9, SpentNanoUSD: 1e9}}
	if _, err := s.IngestBatch(ctx, b, t0); err != nil {
		t.Fatal(err)
	}
	later := Batch(org, e.ID, 2, t0.Add(time.Minute), 1)
	later.Budgets = []wire.BudgetUse{{Workspace: "ws1", KeyRef: "k0", Period: "day", CapNanoUSD: 5e9, SpentNanoUSD: 2e9}}
	late := Batch(org, e.ID, 3, t0.Add(-time.Minute), 1).AsVersion(1)
	for _, x := range []*wire.UsageBatch{later, late} {
		if _, err := s.IngestBatch(ctx, x, t0); err != nil {
			t.Fatal(err)
		}
	}
	late2 := Batch(org, e.ID, 4, t0.Add(-2*time.Minute), 1)
	late2.Budgets = []wire.BudgetUse{{Workspace: "ws1", KeyRef: "k0", Period: "day", CapNanoUSD: 5e9, SpentNanoUSD: 1}}
	if _, err := s.IngestBatch(ctx, late2, t0); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0.Add(-time.Hour), To: t0.Add(time.Hour), Step: controlplane.Hour, Whole: true})
	if err != nil || len(rows) != 1 || rows[0].Limited != 2 || rows[0].BudgetRefused != 1 || rows[0].Requests != 10 {
		t.Fatalf("usage = %+v, %v; want limited 2, budget refused 1 of 10", rows, err)
	}
	us, err := s.BudgetUses(ctx, org)
	if err != nil || len(us) != 1 || us[0].SpentNanoUSD != 2e9 || us[0].CapNanoUSD != 5e9 || us[0].EdgeID != e.ID || !us[0].AsOf.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("budget uses = %+v, %v", us, err)
	}
	if us, err := s.BudgetUses(ctx, other); err != nil || len(us) != 0 {
		t.Fatalf("another org sees %+v, %v", us, err)
	}
}

// testIngestLarge stores a batch larger than one multi-row statement.
func testIngestLarge(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	e := MustEdge(t, s, org)
	const n = 1234
	if stored, err := s.IngestBatch(ctx, Batch(org, e.ID, 1, t0, n), t0); err != nil || !stored {
		t.Fatalf("ingest = %v, %v", stored, err)
	}
	for _, step := range []time.Duration{controlplane.Minute, controlplane.Hour, controlplane.Day} {
		rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0.Add(-controlplane.Day), To: t0.Add(controlplane.Day), Step: step, GroupBy: []controlplane.Dimension{controlplane.DimKeyRef}})
		if err != nil || len(rows) != n {
			t.Fatalf("step %v: %d rows, %v; want %d", step, len(rows), err, n)
		}
	}
}

func testUsageQuery(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	e := MustEdge(t, s, org)
	// Three hours of one batch a minute, 3 rows each (3 models).
	for m := 0; m < 180; m++ {
		if _, err := s.IngestBatch(ctx, Batch(org, e.ID, int64(m+1), t0.Add(time.Duration(m)*time.Minute), 3), t0); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(rows []controlplane.UsageRow) (n int64) {
		for _, r := range rows {
			n += r.Requests
		}
		return n
	}
	for _, step := range []time.Duration{controlplane.Minute, controlplane.Hour, controlplane.Day} {
		rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0.Add(-24 * time.Hour), To: t0.Add(24 * time.Hour), Step: step})
		if err != nil {
			t.Fatal(err)
		}
		if got := sum(rows); got != 180*3*2 {
			t.Errorf("step %v: %d requests, want %d", step, got, 180*3*2)
		}
	}
	rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0, To: t0.Add(3 * time.Hour), Step: controlplane.Hour,
		GroupBy: []controlplane.Dimension{controlplane.DimModel, controlplane.DimCacheStatus}})
	if err != nil || len(rows) != 3*3 {
		t.Fatalf("by hour and model: %d rows, %v; want 9", len(rows), err)
	}
	if r := rows[0]; r.Key[controlplane.DimModel] == "" || r.Key[controlplane.DimCacheStatus] == "" || r.Requests != 60*2 || r.LatencyMS[2] != 120 {
		t.Fatalf("first row = %+v", r)
	}
	rows, err = s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0, To: t0.Add(30 * time.Minute), Step: controlplane.Minute,
		Where: map[controlplane.Dimension]string{controlplane.DimModel: "gpt-4o", controlplane.DimEdge: e.ID}})
	if err != nil || len(rows) != 30 || sum(rows) != 30*2 {
		t.Fatalf("filtered minutes: %d rows, %d requests, %v", len(rows), sum(rows), err)
	}
	// Whole: one row per group over the range, its time the first bucket.
	rows, err = s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0.Add(30 * time.Minute), To: t0.Add(3 * time.Hour), Step: controlplane.Minute,
		GroupBy: []controlplane.Dimension{controlplane.DimModel}, Whole: true})
	if err != nil || len(rows) != 3 || sum(rows) != 150*3*2 || !rows[0].Time.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("whole range by model: %d rows, %d requests, %v; first %+v", len(rows), sum(rows), err, rows)
	}
	rows, err = s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0, To: t0.Add(3 * time.Hour), Step: controlplane.Hour, Whole: true})
	if err != nil || len(rows) != 1 || sum(rows) != 180*3*2 {
		t.Fatalf("whole range: %d rows, %d requests, %v", len(rows), sum(rows), err)
	}
	if rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: other, From: t0, To: t0.Add(3 * time.Hour), Whole: true}); err != nil || len(rows) != 0 {
		t.Fatalf("whole range of an empty org: %d rows, %v", len(rows), err)
	}
	if rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: other, From: t0, To: t0.Add(3 * time.Hour)}); err != nil || len(rows) != 0 {
		t.Fatalf("another org sees %d rows, %v", len(rows), err)
	}
	if _, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0, To: t0.Add(time.Hour), GroupBy: []controlplane.Dimension{"content; DROP TABLE orgs"}}); !errors.Is(err, controlplane.ErrInvalid) {
		t.Fatalf("unknown dimension: %v, want ErrInvalid", err)
	}
	if _, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: t0, To: t0.Add(time.Hour), Step: 5 * time.Minute}); !errors.Is(err, controlplane.ErrInvalid) {
		t.Fatalf("odd step: %v, want ErrInvalid", err)
	}
}

func testPrune(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	e := MustEdge(t, s, org)
	old, recent := t0.Add(-40*24*time.Hour), t0.Add(-time.Hour)
	for i, start := range []time.Time{old, recent} {
		if _, err := s.IngestBatch(ctx, Batch(org, e.ID, int64(i+1), start, 1), start); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prune(ctx, controlplane.DefaultRetention, t0); err != nil {
		t.Fatal(err)
	}
	count := func(step time.Duration) int64 {
		rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: old.Add(-48 * time.Hour), To: t0, Step: step})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range rows {
			n += r.Requests
		}
		return n
	}
	if got := count(controlplane.Minute); got != 2 {
		t.Errorf("minute rows after prune hold %d requests, want 2 (the old batch pruned)", got)
	}
	if got := count(controlplane.Hour); got != 4 {
		t.Errorf("hour rows after prune hold %d requests, want 4 (both kept)", got)
	}
	got, err := s.Edge(ctx, org, e.ID)
	if err != nil || got.Sharing {
		t.Fatalf("edge silent for an hour still sharing: %+v, %v", got, err)
	}
}

// testIngestMemoriesAndAudit: memory uses and audit counts add up per
// hour, once per batch however often it is ingested, stay in their org,
// and are pruned with hourly usage.
func testIngestMemoriesAndAudit(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	e, oe := MustEdge(t, s, org), MustEdge(t, s, other)
	withUses := func(b *wire.UsageBatch, name string, n int64) *wire.UsageBatch {
		b.Memories = []wire.MemoryUse{{Workspace: "ws1", KeyRef: "none", Name: name, Version: 2, Requests: n, Tokens: 10 * n, Estimated: n}}
		b.Audit = []wire.AuditCount{{Workspace: "ws1", Level: "hash", Records: n}}
		return b
	}
	old := t0.Add(-500 * 24 * time.Hour)
	for _, b := range []*wire.UsageBatch{
		withUses(Batch(org, e.ID, 1, t0, 1), "style", 3),
		withUses(Batch(org, e.ID, 1, t0, 1), "style", 3), // the same batch again
		withUses(Batch(org, e.ID, 2, t0.Add(time.Minute), 1), "style", 2),
		withUses(Batch(org, e.ID, 3, old, 1), "style", 7),
		withUses(Batch(other, oe.ID, 1, t0, 1), "secret-plan", 1),
	} {
		if _, err := s.IngestBatch(ctx, b, t0); err != nil {
			t.Fatal(err)
		}
	}
	uses := func(org string) ([]wire.MemoryUse, []wire.AuditCount) {
		ms, err := s.MemoryUses(ctx, org, old.Add(-time.Hour), t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		as, err := s.AuditCounts(ctx, org, old.Add(-time.Hour), t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return ms, as
	}
	ms, as := uses(org)
	want := wire.MemoryUse{Workspace: "ws1", KeyRef: "none", Name: "style", Version: 2, Requests: 12, Tokens: 120, Estimated: 12}
	if len(ms) != 1 || ms[0] != want || len(as) != 1 || as[0] != (wire.AuditCount{Workspace: "ws1", Level: "hash", Records: 12}) {
		t.Fatalf("memory uses %+v, audit %+v; want %+v and 12 hash records", ms, as, want)
	}
	if ms, _ := uses(other); len(ms) != 1 || ms[0].Name != "secret-plan" {
		t.Fatalf("the other org's memory uses: %+v", ms)
	}
	if err := s.Prune(ctx, controlplane.DefaultRetention, t0); err != nil {
		t.Fatal(err)
	}
	if ms, as := uses(org); len(ms) != 1 || ms[0].Requests != 5 || len(as) != 1 || as[0].Records != 5 {
		t.Fatalf("after prune: memory uses %+v, audit %+v; want the old hour gone", ms, as)
	}
}

// BenchIngest measures storing batches of 50 rows (one edge, one minute
// apart), reporting batches/s and rows/s.
func BenchIngest(b *testing.B, open Open) {
	s := open(b)
	ctx := context.Background()
	org := MustOrg(b, s)
	e := MustEdge(b, s, org)
	const rows = 50
	b.ReportAllocs()
	seq := int64(0)
	for b.Loop() {
		seq++
		if _, err := s.IngestBatch(ctx, Batch(org, e.ID, seq, t0.Add(time.Duration(seq)*time.Minute), rows), t0); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(seq)/sec, "batches/s")
	b.ReportMetric(float64(seq*rows)/sec, "rows/s")
}

// BenchUsage30Days measures the dashboard's 30-day overview (hourly
// buckets grouped by model) for one org holding 30 days of minute data:
// one batch of 6 rows a minute, 43,200 batches, beside a second org.
func BenchUsage30Days(b *testing.B, open Open) {
	s := open(b)
	ctx := context.Background()
	org, other := MustOrg(b, s), MustOrg(b, s)
	e, oe := MustEdge(b, s, org), MustEdge(b, s, other)
	start := t0.Add(-30 * 24 * time.Hour)
	for m := 0; m < 30*24*60; m++ {
		at := start.Add(time.Duration(m) * time.Minute)
		for _, x := range []struct{ org, edge string }{{org, e.ID}, {other, oe.ID}} {
			if _, err := s.IngestBatch(ctx, Batch(x.org, x.edge, int64(m+1), at, 6), at); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The dashboard's query (auto step: hours) and, for comparison, the
	// same 30 days summed from the minute rows.
	for _, bc := range []struct {
		name string
		step time.Duration
		rows int
	}{{"hourly", 0, 30 * 24 * 3}, {"minutes", controlplane.Minute, 30 * 24 * 60 * 3}} {
		b.Run(bc.name, func(b *testing.B) {
			q := controlplane.UsageQuery{OrgID: org, From: start, To: t0, Step: bc.step, GroupBy: []controlplane.Dimension{controlplane.DimModel}}
			b.ReportAllocs()
			for b.Loop() {
				rows, err := s.Usage(ctx, q)
				if err != nil || len(rows) != bc.rows {
					b.Fatalf("30-day overview: %d rows, %v", len(rows), err)
				}
			}
		})
	}
}
