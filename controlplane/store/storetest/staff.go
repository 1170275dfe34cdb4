package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
)

// staffTests are the contract tests of controlplane.StaffStore; Run runs
// them too.
var staffTests = []struct {
	name string
	fn   func(t *testing.T, s controlplane.Store)
}{
	{"StaffAccounts", testStaffAccounts},
	{"TOTPStepUsedOnce", testTOTPStep},
	{"OrgPlans", testOrgPlans},
	{"OrgsByName", testOrgsByName},
	{"StaffOrgsHealth", testStaffOrgs},
	{"BreakGlassFlow", testBreakGlassFlow},
	{"BreakGlassSwitchedOff", testBreakGlassOff},
	{"BreakGlassDenyRevoke", testBreakGlassDenyRevoke},
	{"DisableStaffEndsAccess", testDisableStaff},
	{"ExpireAccess", testExpireAccess},
	{"AccessLogConcurrentAppends", testAccessLogConcurrent},
	{"ConcurrentRequests", testConcurrentRequests},
}

// MustStaff creates an enabled staff account.
func MustStaff(t testing.TB, s controlplane.Store, email string) controlplane.Staff {
	t.Helper()
	st := controlplane.Staff{ID: controlplane.NewID("stf"), Email: email, PasswordHash: "$argon2id$x", TOTPSecret: []byte("sealed"), CreatedAt: t0}
	if err := s.CreateStaff(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return st
}

func mustOrgPlan(t testing.TB, s controlplane.Store, name string, plan controlplane.Plan) string {
	t.Helper()
	o := controlplane.Org{ID: controlplane.NewID("org"), Name: name, CreatedAt: t0, Plan: plan}
	if err := s.CreateOrg(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.ID
}

// kinds lists the kinds of an org's access log, checking its chain.
func kinds(t testing.TB, s controlplane.Store, orgID string) []controlplane.AccessKind {
	t.Helper()
	log, err := s.AccessLog(context.Background(), orgID)
	if err != nil {
		t.Fatal(err)
	}
	if err := controlplane.VerifyChain(log); err != nil {
		t.Fatalf("access log of %q: %v", orgID, err)
	}
	var out []controlplane.AccessKind
	for _, e := range log {
		if e.OrgID != orgID {
			t.Fatalf("access log of %q holds an event of %q", orgID, e.OrgID)
		}
		out = append(out, e.Kind)
	}
	return out
}

func wantKinds(t testing.TB, s controlplane.Store, orgID string, want ...controlplane.AccessKind) {
	t.Helper()
	if got := kinds(t, s, orgID); !slices.Equal(got, want) {
		t.Fatalf("access log of %q: %v, want %v", orgID, got, want)
	}
}

func testStaffAccounts(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	st := MustStaff(t, s, "ops@persiv.example")
	if err := s.CreateStaff(ctx, controlplane.Staff{ID: controlplane.NewID("stf"), Email: st.Email, PasswordHash: "h", TOTPSecret: []byte("x"), CreatedAt: t0}); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("second staff account with one email: %v, want ErrConflict", err)
	}
	for name, get := range map[string]func() (controlplane.Staff, error){
		"by email": func() (controlplane.Staff, error) { return s.StaffByEmail(ctx, st.Email) },
		"by id":    func() (controlplane.Staff, error) { return s.StaffMember(ctx, st.ID) },
	} {
		got, err := get()
		if err != nil || got.ID != st.ID || got.Email != st.Email || string(got.TOTPSecret) != "sealed" || !got.CreatedAt.Equal(t0) || got.Disabled() {
			t.Fatalf("staff %s = %+v, %v", name, got, err)
		}
	}
	if _, err := s.StaffByEmail(ctx, "nobody@persiv.example"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("unknown staff: %v", err)
	}
	if err := s.EndStaffSessions(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.StaffMember(ctx, st.ID); got.SessionEpoch != 1 {
		t.Fatalf("epoch after EndStaffSessions = %d, want 1", got.SessionEpoch)
	}
	// Staff accounts are not customer users: no org sees them.
	org := MustOrg(t, s)
	if users, err := s.UsersByEmail(ctx, st.Email); err != nil || len(users) != 0 {
		t.Fatalf("UsersByEmail(staff) = %+v, %v", users, err)
	}
	if users, err := s.Users(ctx, org); err != nil || len(users) != 0 {
		t.Fatalf("Users = %+v, %v", users, err)
	}
}

func testTOTPStep(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	st := MustStaff(t, s, "ops@persiv.example")
	for _, tc := range []struct {
		step int64
		want error
	}{{100, nil}, {100, controlplane.ErrCodeUsed}, {99, controlplane.ErrCodeUsed}, {101, nil}} {
		if err := s.UseTOTPStep(ctx, st.ID, tc.step); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Fatalf("UseTOTPStep(%d) = %v, want %v", tc.step, err, tc.want)
		}
	}
	// Of concurrent sign-ins with one code, one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.UseTOTPStep(ctx, st.ID, 200) == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent uses of one code succeeded, want 1", wins)
	}
}

func testOrgPlans(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	ent := mustOrgPlan(t, s, "Bigco", controlplane.PlanEnterprise)
	o, err := s.Org(ctx, org)
	if err != nil || o.Plan != controlplane.PlanFree || o.BreakGlass != nil || !o.BreakGlassAllowed() {
		t.Fatalf("new org = %+v, %v; want the free plan, break-glass allowed by default", o, err)
	}
	if e, _ := s.Org(ctx, ent); e.Plan != controlplane.PlanEnterprise || e.BreakGlassAllowed() {
		t.Fatalf("enterprise org = %+v; break-glass must be off by default", e)
	}
	st := MustStaff(t, s, "ops@persiv.example")
	if err := s.SetPlan(ctx, org, controlplane.PlanPro, st, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPlan(ctx, org, "gold", st, t0); !errors.Is(err, controlplane.ErrInvalid) {
		t.Fatalf("SetPlan(gold) = %v, want ErrInvalid", err)
	}
	if err := s.SetPlan(ctx, "org_nonexistent", controlplane.PlanPro, st, t0); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("SetPlan(unknown org) = %v, want ErrNotFound", err)
	}
	if o, _ := s.Org(ctx, org); o.Plan != controlplane.PlanPro {
		t.Fatalf("plan = %q, want pro", o.Plan)
	}
	wantKinds(t, s, org, controlplane.EventPlan)
	// The owner's choice wins over the plan's default, both ways.
	if err := s.SetBreakGlass(ctx, ent, true, t0); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Org(ctx, ent); e.BreakGlass == nil || !*e.BreakGlass || !e.BreakGlassAllowed() {
		t.Fatalf("enterprise org switched on = %+v", e)
	}
	if err := s.SetBreakGlass(ctx, org, false, t0); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Org(ctx, org); o.BreakGlassAllowed() {
		t.Fatalf("org switched off = %+v", o)
	}
}

func testOrgsByName(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	a := mustOrgPlan(t, s, "Twin", controlplane.PlanFree)
	b := mustOrgPlan(t, s, "Twin", controlplane.PlanPro)
	mustOrgPlan(t, s, "Other", controlplane.PlanFree)
	got, err := s.OrgsByName(ctx, "Twin")
	if err != nil || len(got) != 2 || !slices.Contains([]string{got[0].ID, got[1].ID}, a) || !slices.Contains([]string{got[0].ID, got[1].ID}, b) {
		t.Fatalf("OrgsByName(Twin) = %+v, %v", got, err)
	}
	if got, err := s.OrgsByName(ctx, "Nobody"); err != nil || len(got) != 0 {
		t.Fatalf("OrgsByName(Nobody) = %+v, %v", got, err)
	}
}

func testStaffOrgs(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	a := mustOrgPlan(t, s, "Alpha", controlplane.PlanEnterprise)
	b := mustOrgPlan(t, s, "Beta", controlplane.PlanFree)
	e1 := MustEdge(t, s, a)
	MustEdge(t, s, a)
	e3 := MustEdge(t, s, a)
	if _, err := s.IngestBatch(ctx, Batch(a, e1.ID, 1, t0, 1), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEdge(ctx, a, e3.ID, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.StaffOrgs(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("StaffOrgs = %+v, %v", got, err)
	}
	if h := got[0]; h.ID != a || h.Name != "Alpha" || h.Plan != controlplane.PlanEnterprise || h.Edges != 2 || h.Sharing != 1 || h.Revoked != 1 || !h.LastSeen.Equal(t0.Add(time.Hour)) || !h.CreatedAt.Equal(t0) {
		t.Errorf("Alpha = %+v", h)
	}
	if h := got[1]; h.ID != b || h.Edges != 0 || h.Sharing != 0 || !h.LastSeen.IsZero() {
		t.Errorf("Beta = %+v", h)
	}
}

// grant runs a request through two approvals.
func grant(t testing.TB, s controlplane.Store, org string, req, a1, a2 controlplane.Staff, at time.Time, d time.Duration) controlplane.AccessRequest {
	t.Helper()
	ctx := context.Background()
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: req.ID, Reason: "ticket 42", Duration: d, RequestedAt: at}
	if err := s.RequestAccess(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApproveAccess(ctx, r.ID, a1.ID, at); err != nil {
		t.Fatal(err)
	}
	g, err := s.ApproveAccess(ctx, r.ID, a2.ID, at)
	if err != nil || g.State != controlplane.AccessActive {
		t.Fatalf("second approval = %+v, %v", g, err)
	}
	return g
}

func testBreakGlassFlow(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	ann, bob, cat := MustStaff(t, s, "ann@persiv.example"), MustStaff(t, s, "bob@persiv.example"), MustStaff(t, s, "cat@persiv.example")

	for _, bad := range []controlplane.AccessRequest{
		{Reason: "", Duration: time.Hour},
		{Reason: "x", Duration: controlplane.MaxGrantDuration + time.Second},
		{Reason: string(make([]byte, controlplane.MaxReasonBytes+1)), Duration: time.Hour},
	} {
		bad.ID, bad.OrgID, bad.StaffID, bad.RequestedAt = controlplane.NewID("acr"), org, ann.ID, t0
		if err := s.RequestAccess(ctx, bad); !errors.Is(err, controlplane.ErrInvalid) {
			t.Fatalf("RequestAccess(%q, %s) = %v, want ErrInvalid", bad.Reason, bad.Duration, err)
		}
	}
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: ann.ID, Reason: "ticket 42", RequestedAt: t0}
	if err := s.RequestAccess(ctx, r); err != nil {
		t.Fatal(err)
	}
	dup := r
	dup.ID = controlplane.NewID("acr")
	if err := s.RequestAccess(ctx, dup); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("second open request: %v, want ErrConflict", err)
	}
	open, err := s.AccessRequests(ctx)
	if err != nil || len(open) != 1 || open[0].Duration != controlplane.DefaultGrantDuration || open[0].State != controlplane.AccessPending || open[0].StaffEmail != ann.Email {
		t.Fatalf("AccessRequests = %+v, %v; want one pending request of 1h (the default)", open, err)
	}
	// A self-approval and a single approval do not grant.
	if _, err := s.ApproveAccess(ctx, r.ID, ann.ID, t0); !errors.Is(err, controlplane.ErrSelfApproval) {
		t.Fatalf("self-approval: %v, want ErrSelfApproval", err)
	}
	got, err := s.ApproveAccess(ctx, r.ID, bob.ID, t0.Add(time.Minute))
	if err != nil || got.State != controlplane.AccessPending || len(got.Approvals) != 1 || got.Approvals[0].StaffEmail != bob.Email {
		t.Fatalf("one approval = %+v, %v; want still pending", got, err)
	}
	if _, err := s.ApproveAccess(ctx, r.ID, bob.ID, t0.Add(time.Minute)); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("approving twice: %v, want ErrConflict", err)
	}
	if _, err := s.UseGrant(ctx, ann.ID, org, "/overview", t0.Add(time.Minute)); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use before the grant: %v, want ErrNotFound", err)
	}
	grantedAt := t0.Add(2 * time.Minute)
	got, err = s.ApproveAccess(ctx, r.ID, cat.ID, grantedAt)
	if err != nil || got.State != controlplane.AccessActive || !got.GrantedAt.Equal(grantedAt) || !got.ExpiresAt.Equal(grantedAt.Add(time.Hour)) || len(got.Approvals) != 2 {
		t.Fatalf("second approval = %+v, %v; want active for 1h from now", got, err)
	}
	if _, err := s.ApproveAccess(ctx, r.ID, bob.ID, grantedAt); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("approving a granted request: %v, want ErrConflict", err)
	}
	g, err := s.UseGrant(ctx, ann.ID, org, "/overview", grantedAt.Add(time.Minute))
	if err != nil || g.ID != r.ID {
		t.Fatalf("UseGrant = %+v, %v", g, err)
	}
	// The grant is for one staff member and one org.
	if _, err := s.UseGrant(ctx, ann.ID, other, "/overview", grantedAt); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use of another org: %v, want ErrNotFound", err)
	}
	if _, err := s.UseGrant(ctx, bob.ID, org, "/overview", grantedAt); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use by an approver: %v, want ErrNotFound", err)
	}
	// At its expiry it ends, and says so once.
	if _, err := s.UseGrant(ctx, ann.ID, org, "/fleet", grantedAt.Add(time.Hour)); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use at expiry: %v, want ErrNotFound", err)
	}
	if _, err := s.UseGrant(ctx, ann.ID, org, "/fleet", grantedAt.Add(2*time.Hour)); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use after expiry: %v, want ErrNotFound", err)
	}
	wantKinds(t, s, org, controlplane.EventRequest, controlplane.EventApprovalRefused, controlplane.EventApprove,
		controlplane.EventApprove, controlplane.EventGrant, controlplane.EventUse, controlplane.EventExpire)
	wantKinds(t, s, other)
	log, _ := s.AccessLog(ctx, org)
	if use := log[5]; use.StaffID != ann.ID || use.StaffEmail != ann.Email || use.RequestID != r.ID || use.Detail != "/overview" {
		t.Errorf("use event = %+v", use)
	}
	if exp := log[6]; !exp.At.Equal(grantedAt.Add(time.Hour)) {
		t.Errorf("expiry logged at %v, want the grant's expiry %v", exp.At, grantedAt.Add(time.Hour))
	}
	if open, _ := s.AccessRequests(ctx); len(open) != 0 {
		t.Errorf("open requests after expiry: %+v", open)
	}
	// The staff chain holds events about no org.
	if err := s.AppendAccessEvent(ctx, controlplane.AccessEvent{At: t0, Kind: controlplane.EventSignIn, StaffID: ann.ID, StaffEmail: ann.Email}); err != nil {
		t.Fatal(err)
	}
	wantKinds(t, s, "", controlplane.EventSignIn)
}

func testBreakGlassOff(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	ent := mustOrgPlan(t, s, "Bigco", controlplane.PlanEnterprise)
	ann, bob, cat := MustStaff(t, s, "ann@persiv.example"), MustStaff(t, s, "bob@persiv.example"), MustStaff(t, s, "cat@persiv.example")
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: ent, StaffID: ann.ID, Reason: "ticket 7", RequestedAt: t0}
	if err := s.RequestAccess(ctx, r); !errors.Is(err, controlplane.ErrBreakGlassOff) {
		t.Fatalf("request to an enterprise org: %v, want ErrBreakGlassOff", err)
	}
	wantKinds(t, s, ent, controlplane.EventDeny)
	if open, _ := s.AccessRequests(ctx); len(open) != 0 {
		t.Fatalf("a refused request is stored: %+v", open)
	}
	// Switched on by the owner, then off again: the grant ends at once.
	if err := s.SetBreakGlass(ctx, ent, true, t0); err != nil {
		t.Fatal(err)
	}
	g := grant(t, s, ent, ann, bob, cat, t0, time.Hour)
	r2 := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: ent, StaffID: bob.ID, Reason: "ticket 8", RequestedAt: t0}
	if err := s.RequestAccess(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBreakGlass(ctx, ent, false, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseGrant(ctx, ann.ID, ent, "/overview", t0.Add(2*time.Minute)); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use after the org switched off: %v, want ErrNotFound", err)
	}
	if _, err := s.ApproveAccess(ctx, r2.ID, cat.ID, t0.Add(2*time.Minute)); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("approval after the org switched off: %v, want ErrConflict", err)
	}
	if open, _ := s.AccessRequests(ctx); len(open) != 0 {
		t.Fatalf("open requests after the org switched off: %+v (grant %s)", open, g.ID)
	}
	k := kinds(t, s, ent)
	if k[len(k)-2] != controlplane.EventRevoke && k[len(k)-1] != controlplane.EventRevoke {
		t.Fatalf("access log %v: the grant's revocation is missing", k)
	}
}

func testBreakGlassDenyRevoke(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	ann, bob, cat := MustStaff(t, s, "ann@persiv.example"), MustStaff(t, s, "bob@persiv.example"), MustStaff(t, s, "cat@persiv.example")
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: ann.ID, Reason: "why", RequestedAt: t0}
	if err := s.RequestAccess(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.DenyAccess(ctx, r.ID, ann.ID, t0); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("denying one's own request: %v, want ErrConflict", err)
	}
	if err := s.DenyAccess(ctx, r.ID, bob.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApproveAccess(ctx, r.ID, cat.ID, t0); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("approving a denied request: %v, want ErrConflict", err)
	}
	g := grant(t, s, org, ann, bob, cat, t0, 8*time.Hour)
	if err := s.RevokeAccess(ctx, g.ID, cat.ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseGrant(ctx, ann.ID, org, "/overview", t0.Add(2*time.Minute)); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("use after revocation: %v, want ErrNotFound", err)
	}
	if err := s.RevokeAccess(ctx, g.ID, cat.ID, t0.Add(time.Minute)); !errors.Is(err, controlplane.ErrConflict) {
		t.Fatalf("revoking twice: %v, want ErrConflict", err)
	}
	wantKinds(t, s, org, controlplane.EventRequest, controlplane.EventDeny,
		controlplane.EventRequest, controlplane.EventApprove, controlplane.EventApprove, controlplane.EventGrant, controlplane.EventRevoke)
}

func testDisableStaff(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	ann, bob, cat, dan := MustStaff(t, s, "ann@persiv.example"), MustStaff(t, s, "bob@persiv.example"), MustStaff(t, s, "cat@persiv.example"), MustStaff(t, s, "dan@persiv.example")
	grant(t, s, org, ann, bob, cat, t0, time.Hour)
	if err := s.DisableStaff(ctx, ann.ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.StaffMember(ctx, ann.ID)
	if err != nil || !got.Disabled() || got.SessionEpoch != 1 {
		t.Fatalf("disabled staff = %+v, %v; want disabled with a new session epoch", got, err)
	}
	if _, err := s.UseGrant(ctx, ann.ID, org, "/overview", t0.Add(2*time.Minute)); err == nil {
		t.Fatal("a disabled account's grant still works")
	}
	if err := s.UseTOTPStep(ctx, ann.ID, 1000); !errors.Is(err, controlplane.ErrStaffDisabled) {
		t.Fatalf("code of a disabled account: %v, want ErrStaffDisabled", err)
	}
	if err := s.RequestAccess(ctx, controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: ann.ID, Reason: "again", RequestedAt: t0}); !errors.Is(err, controlplane.ErrStaffDisabled) {
		t.Fatalf("request by a disabled account: %v, want ErrStaffDisabled", err)
	}
	// A disabled approver's approval no longer counts.
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: bob.ID, Reason: "x", RequestedAt: t0}
	if err := s.RequestAccess(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApproveAccess(ctx, r.ID, cat.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableStaff(ctx, cat.ID, t0); err != nil {
		t.Fatal(err)
	}
	if g, err := s.ApproveAccess(ctx, r.ID, dan.ID, t0); err != nil || g.State != controlplane.AccessPending {
		t.Fatalf("approval beside a disabled approver's = %+v, %v; want still pending", g, err)
	}
	k := kinds(t, s, org)
	if !slices.Contains(k, controlplane.EventRevoke) {
		t.Fatalf("access log %v: the grant's revocation is missing", k)
	}
	wantKinds(t, s, "", controlplane.EventStaffDisabled, controlplane.EventStaffDisabled)
}

func testExpireAccess(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	ann, bob, cat := MustStaff(t, s, "ann@persiv.example"), MustStaff(t, s, "bob@persiv.example"), MustStaff(t, s, "cat@persiv.example")
	grant(t, s, org, ann, bob, cat, t0, 30*time.Minute)
	if err := s.RequestAccess(ctx, controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: bob.ID, Reason: "x", RequestedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ExpireAccess(ctx, t0.Add(29*time.Minute)); err != nil || n != 0 {
		t.Fatalf("ExpireAccess before any expiry = %d, %v", n, err)
	}
	if n, err := s.ExpireAccess(ctx, t0.Add(30*time.Minute)); err != nil || n != 1 {
		t.Fatalf("ExpireAccess at the grant's expiry = %d, %v; want 1", n, err)
	}
	if n, err := s.ExpireAccess(ctx, t0.Add(controlplane.RequestTTL)); err != nil || n != 1 {
		t.Fatalf("ExpireAccess after RequestTTL = %d, %v; want the unapproved request", n, err)
	}
	if open, _ := s.AccessRequests(ctx); len(open) != 0 {
		t.Fatalf("open after expiry: %+v", open)
	}
	k := kinds(t, s, org)
	if k[len(k)-1] != controlplane.EventExpire || k[len(k)-2] != controlplane.EventExpire {
		t.Fatalf("access log %v: want two expiries last", k)
	}
}

func testAccessLogConcurrent(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	st := MustStaff(t, s, "ann@persiv.example")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			orgID := org
			if i%4 == 0 {
				orgID = ""
			}
			errs <- s.AppendAccessEvent(ctx, controlplane.AccessEvent{OrgID: orgID, At: t0, Kind: controlplane.EventUse, StaffID: st.ID, StaffEmail: st.Email, Detail: fmt.Sprint(i)})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(kinds(t, s, org)); n != 30 {
		t.Fatalf("org chain has %d events, want 30", n)
	}
	if n := len(kinds(t, s, "")); n != 10 {
		t.Fatalf("staff chain has %d events, want 10", n)
	}
}

// testConcurrentRequests: of requests one staff member makes for one org
// at once, one is stored; the others are conflicts.
func testConcurrentRequests(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	ann := MustStaff(t, s, "ann@persiv.example")
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.RequestAccess(ctx, controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: ann.ID, Reason: "x", RequestedAt: t0})
			switch {
			case err == nil:
				mu.Lock()
				stored++
				mu.Unlock()
			case !errors.Is(err, controlplane.ErrConflict):
				t.Errorf("concurrent request: %v, want ErrConflict", err)
			}
		}()
	}
	wg.Wait()
	if open, _ := s.AccessRequests(ctx); stored != 1 || len(open) != 1 {
		t.Fatalf("%d of 8 concurrent requests stored, %d open; want 1", stored, len(open))
	}
}
