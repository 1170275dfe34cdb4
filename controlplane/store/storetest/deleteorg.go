package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/persiv/codex/controlplane"
)

// testDeleteOrg: DeleteOrg removes the org with its members, edges,
// usage and access log, records the deletion, and leaves another org and
// its append-only access log as they were.
func testDeleteOrg(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	st := MustStaff(t, s, "ops@persiv.test")
	orgs := []string{MustOrg(t, s), MustOrg(t, s)}
	for _, org := range orgs {
		if err := s.CreateUser(ctx, controlplane.User{ID: controlplane.NewID("usr"), OrgID: org, Email: "o@" + org, Role: controlplane.RoleOwner, PasswordHash: "h", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		e := MustEdge(t, s, org)
		if _, err := s.IngestBatch(ctx, Batch(org, e.ID, 1, t0, 2), t0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPlan(ctx, org, controlplane.PlanPro, st, t0); err != nil { // an access-log event
			t.Fatal(err)
		}
	}
	logB, err := s.AccessLog(ctx, orgs[1])
	if err != nil || len(logB) == 0 {
		t.Fatalf("access log of the other org: %v, %v", logB, err)
	}
	d, err := s.DeleteOrg(ctx, controlplane.OrgDeletion{OrgID: orgs[0], Time: t0, UserID: "usr_owner"})
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"orgs", "users", "edges", "enroll_tokens", "usage_batches", "usage_minute", "access_log"} {
		if d.Rows[table] == 0 {
			t.Errorf("DeleteOrg removed no row of %s: %v", table, d.Rows)
		}
	}
	if _, err := s.Org(ctx, orgs[0]); !errors.Is(err, controlplane.ErrNotFound) {
		t.Errorf("Org after DeleteOrg = %v, want ErrNotFound", err)
	}
	if us, err := s.Users(ctx, orgs[0]); err != nil || len(us) != 0 {
		t.Errorf("users after DeleteOrg: %v, %v", us, err)
	}
	if ev, err := s.AccessLog(ctx, orgs[0]); err != nil || len(ev) != 0 {
		t.Errorf("access log after DeleteOrg: %d events, %v", len(ev), err)
	}
	if _, err := s.Org(ctx, orgs[1]); err != nil {
		t.Errorf("the other org: %v", err)
	}
	if us, err := s.Users(ctx, orgs[1]); err != nil || len(us) != 1 {
		t.Errorf("the other org's users: %v, %v", us, err)
	}
	if again, err := s.AccessLog(ctx, orgs[1]); err != nil || len(again) != len(logB) {
		t.Errorf("the other org's access log: %d events, %v; want %d", len(again), err, len(logB))
	}
	if _, err := s.DeleteOrg(ctx, controlplane.OrgDeletion{OrgID: orgs[0], Time: t0}); !errors.Is(err, controlplane.ErrNotFound) {
		t.Errorf("deleting a deleted org = %v, want ErrNotFound", err)
	}
	dels, err := s.OrgDeletions(ctx)
	if err != nil || len(dels) != 1 || dels[0].OrgID != orgs[0] || dels[0].UserID != "usr_owner" || !dels[0].Time.Equal(t0) || dels[0].Rows["users"] != 1 {
		t.Errorf("org deletions: %+v, %v", dels, err)
	}
}
