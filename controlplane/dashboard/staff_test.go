package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/totp"
)

// TestStaffLoginTOTP: a staff sign-in needs the password and a TOTP code
// of the current step or one either side; a wrong code, a code outside
// the window and a code already used (also the previous step's, once a
// later one was used) are refused, and each refusal and sign-in is
// logged in the staff chain of the access log.
func TestStaffLoginTOTP(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := f.staff(t, "ops@persiv.example")
	step := func(off int64) string { return m.code(t, f, off) }

	refused := func(what string, r response) {
		t.Helper()
		wantStatus(t, what, r, http.StatusUnauthorized)
		if !strings.Contains(r.body, msgStaffLogin) {
			t.Fatalf("%s: body lacks the refusal", what)
		}
	}
	refused("wrong password", f.client(t).staffLogin(m.Email, "not the password at all", step(0)))
	wrong := step(0)
	for wrong == step(0) || wrong == step(-1) || wrong == step(1) {
		wrong = string(rune('0'+(wrong[0]-'0'+1)%10)) + wrong[1:]
	}
	refused("wrong code", f.client(t).staffLogin(m.Email, testPassword, wrong))
	refused("code two steps old", f.client(t).staffLogin(m.Email, testPassword, step(-2)))
	refused("code two steps ahead", f.client(t).staffLogin(m.Email, testPassword, step(2)))
	refused("unknown staff", f.client(t).staffLogin("nobody@persiv.example", testPassword, step(0)))
	// Customers' accounts are not staff accounts.
	org := f.org(t, "Acme", controlplane.PlanFree)
	f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	refused("a customer", f.client(t).staffLogin("ada@acme.example", testPassword, step(0)))

	// The per-email limit (5 a minute) would refuse the rest: a fresh
	// minute's limits, without moving the clock.
	f.dash.byEmail = newLimiter(time.Minute/LoginsPerEmail, LoginsPerEmail)

	used := step(0)
	if r := f.client(t).staffLogin(m.Email, testPassword, used); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/staff" {
		t.Fatalf("sign-in: %d to %q (%.200s)", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	refused("the same code again", f.client(t).staffLogin(m.Email, testPassword, used))
	// Half a step later the previous step's code is still in the window,
	// and the next step's too: the previous is refused as not later than
	// the one used, the next accepted once.
	f.clock.add(totp.Period / 2)
	prev, next := m.code(t, f, -1), m.code(t, f, 1)
	refused("the previous step's code", f.client(t).staffLogin(m.Email, testPassword, prev))
	if r := f.client(t).staffLogin(m.Email, testPassword, next); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("next step's code: %d", r.StatusCode)
	}
	refused("the next step's code again", f.client(t).staffLogin(m.Email, testPassword, next))

	log, err := f.env.Store.AccessLog(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := controlplane.VerifyChain(log); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range log {
		if e.StaffID != m.ID {
			t.Errorf("event of another account: %+v", e)
		}
		got = append(got, string(e.Kind)+":"+e.Detail)
	}
	want := []string{"sign_in_refused:wrong password", "sign_in_refused:wrong code", "sign_in_refused:wrong code", "sign_in_refused:wrong code",
		"sign_in:", "sign_in_refused:code used before"}
	if !slices.Equal(got[:len(want)], want) || got[len(got)-2] != "sign_in:" || got[len(got)-1] != "sign_in_refused:code used before" {
		t.Fatalf("staff access log %q", got)
	}
}

// TestStaffLoginLimits: the customers' login limits apply to staff
// sign-ins, charged before any password is checked.
func TestStaffLoginLimits(t *testing.T) {
	f := newFixture(t)
	m := f.staff(t, "ops@persiv.example")
	c := f.client(t)
	for i := range LoginsPerEmail {
		if r := c.staffLogin(m.Email, "wrong password, long enough", "000000"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, r.StatusCode)
		}
	}
	r := c.staffLogin(m.Email, testPassword, m.code(t, f, 0))
	wantStatus(t, "attempt past the per-email limit", r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") != "60" {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
}

// TestStaffSessionIsItsOwn: the staff cookie is scoped to /staff and
// signed with the staff key: a staff session is no customer session and
// a customer session no staff session.
func TestStaffSessionIsItsOwn(t *testing.T) {
	f := newFixture(t)
	m := f.staff(t, "ops@persiv.example")
	c := f.staffSession(t, m)
	u, _ := url.Parse(f.srv.URL + "/staff")
	var staffTok string
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == StaffCookie {
			staffTok = ck.Value
		}
	}
	if staffTok == "" {
		t.Fatal("no staff cookie")
	}
	if root, _ := url.Parse(f.srv.URL + "/overview"); slices.ContainsFunc(c.jar.Cookies(root), func(ck *http.Cookie) bool { return ck.Name == StaffCookie }) {
		t.Fatal("the staff cookie is sent outside /staff")
	}
	wantLoginRedirect(t, "customer page with a staff session", c.get("/overview"))
	c.setSession(staffTok) // the staff token as a customer session
	wantLoginRedirect(t, "staff token as a customer session", c.get("/overview"))

	org := f.org(t, "Acme", controlplane.PlanFree)
	ada := f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	cust := f.session(t, ada)
	r := cust.get("/staff")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/staff/login" {
		t.Fatalf("staff page with a customer session: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	tok := cust.sessionToken()
	other := f.client(t)
	staffURL, _ := url.Parse(f.srv.URL + "/staff")
	other.jar.SetCookies(staffURL, []*http.Cookie{{Name: StaffCookie, Value: tok, Path: "/staff", Secure: true}})
	if r := other.get("/staff"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("customer token as a staff session: %d", r.StatusCode)
	}
}

// TestStaffHomeShowsNoOrgData: staff see org names, plans, creation and
// fleet health, never an org's usage, members or invitations.
func TestStaffHomeShowsNoOrgData(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	org := f.org(t, "Acme Robotics", controlplane.PlanPro)
	ada := f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	if err := f.env.Store.CreateInvite(ctx, controlplane.Invite{Hash: [32]byte{1}, OrgID: org, Email: "linus@acme.example", Role: controlplane.RoleViewer,
		CreatedBy: ada.ID, CreatedAt: f.clock.now(), ExpiresAt: f.clock.now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e := enrollEdge(t, f.env, org, "edge-secret-name", "0.4.2")
	if _, err := f.env.Store.IngestBatch(ctx, variedBatch(org, e.EdgeID, 1, f.clock.now().Truncate(time.Minute)), f.clock.now()); err != nil {
		t.Fatal(err)
	}
	c := f.staffSession(t, f.staff(t, "ops@persiv.example"))
	r := c.get("/staff")
	wantStatus(t, "staff home", r, http.StatusOK)
	for _, want := range []string{"Acme Robotics", `value="pro" selected`, `data-org="` + org + `"`, `id="ingest"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("staff home lacks %q", want)
		}
	}
	for _, never := range []string{"ada@acme.example", "linus@acme.example", "edge-secret-name", "gpt-4o", "claude-", "ws-support", "key-0"} {
		if strings.Contains(r.body, never) {
			t.Errorf("staff home shows %q", never)
		}
	}
}

// TestStaffPlanAndOwnerSwitch: staff set an org's plan; its owners see
// it and switch break-glass access; admins read the access log but not
// the settings; viewers do not read it; a request to an org that has
// switched break-glass off is refused and logged.
func TestStaffPlanAndOwnerSwitch(t *testing.T) {
	f := newFixture(t)
	org := f.org(t, "Acme", controlplane.PlanFree)
	owner := f.session(t, f.user(t, org, "ada@acme.example", controlplane.RoleOwner))
	admin := f.session(t, f.user(t, org, "bob@acme.example", controlplane.RoleAdmin))
	viewer := f.session(t, f.user(t, org, "cy@acme.example", controlplane.RoleViewer))
	staff := f.staffSession(t, f.staff(t, "ops@persiv.example"))

	r := staff.post("/staff/plan", url.Values{"csrf": {staff.csrf("/staff")}, "org": {org}, "plan": {"enterprise"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("set plan: %d %.300s", r.StatusCode, r.body)
	}
	if r := staff.post("/staff/plan", url.Values{"org": {org}, "plan": {"pro"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("set plan without CSRF: %d", r.StatusCode)
	}
	page := owner.get("/access-log")
	wantStatus(t, "owner's access log", page, http.StatusOK)
	if !strings.Contains(page.body, `id="plan">enterprise`) || !strings.Contains(page.body, `id="break-glass">off`) {
		t.Fatalf("owner does not see the enterprise plan with break-glass off by default: %.2000s", page.body)
	}
	if !strings.Contains(page.body, "plan set to enterprise") {
		t.Error("the plan change is not in the access log")
	}
	if r := admin.get("/access-log"); r.StatusCode != http.StatusOK || strings.Contains(r.body, `id="org-settings"`) {
		t.Errorf("admin's access log: %d, settings shown: %v", r.StatusCode, strings.Contains(r.body, `id="org-settings"`))
	}
	wantStatus(t, "viewer's access log", viewer.get("/access-log"), http.StatusForbidden)
	wantStatus(t, "admin switching break-glass", admin.post("/access-log/break-glass", url.Values{"csrf": {admin.csrf("/access-log")}, "break_glass": {"on"}}), http.StatusForbidden)

	req := func() response {
		return staff.post("/staff/requests", url.Values{"csrf": {staff.csrf("/staff")}, "org": {org}, "reason": {"ticket 1"}, "duration": {"1h"}})
	}
	r = req()
	wantStatus(t, "request to an enterprise org", r, http.StatusConflict)
	if !strings.Contains(r.body, "switched break-glass access off") {
		t.Fatalf("refusal: %.500s", r.body)
	}
	if r := owner.post("/access-log/break-glass", url.Values{"csrf": {owner.csrf("/access-log")}, "break_glass": {"on"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("owner switching on: %d", r.StatusCode)
	}
	if r := req(); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("request after the owner switched on: %d %.300s", r.StatusCode, r.body)
	}
	if r := owner.post("/access-log/break-glass", url.Values{"csrf": {owner.csrf("/access-log")}, "break_glass": {"off"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("owner switching off: %d", r.StatusCode)
	}
	wantKinds := []controlplane.AccessKind{controlplane.EventPlan, controlplane.EventDeny, controlplane.EventRequest, controlplane.EventDeny}
	log, _ := f.env.Store.AccessLog(context.Background(), org)
	var got []controlplane.AccessKind
	for _, e := range log {
		got = append(got, e.Kind)
	}
	if !slices.Equal(got, wantKinds) {
		t.Fatalf("access log %v, want %v", got, wantKinds)
	}
	if page := owner.get("/access-log"); !strings.Contains(page.body, `id="chain-ok"`) || strings.Count(page.body, `class="access-row"`) != 4 {
		t.Fatalf("owner's access log: chain shown verified, 4 rows: %.3000s", page.body)
	}
}

// grantFor runs a break-glass request of req to org through two
// approvals by a1 and a2, in the store.
func (f *fixture) grantFor(t testing.TB, org string, req, a1, a2 staffMember, d time.Duration) controlplane.AccessRequest {
	t.Helper()
	ctx := context.Background()
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: org, StaffID: req.ID, Reason: "ticket 9", Duration: d, RequestedAt: f.clock.now()}
	if err := f.env.Store.RequestAccess(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, a := range []staffMember{a1, a2} {
		if a.ID == "" {
			continue
		}
		if _, err := f.env.Store.ApproveAccess(ctx, r.ID, a.ID, f.clock.now()); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := f.env.Store.AccessRequests(ctx)
	for _, x := range out {
		if x.ID == r.ID {
			return x
		}
	}
	return r
}

// staffOrgRoutes lists every org page and API route staff can reach
// under a grant, from the router itself, so that a route added later is
// covered too.
func staffOrgRoutes(t *testing.T, f *fixture) []string {
	var out []string
	for _, r := range f.echo.Routes() {
		if r.Method != http.MethodGet {
			continue
		}
		if strings.HasPrefix(r.Path, StaffOrgPrefix+":org") || strings.HasPrefix(r.Path, StaffAPIPrefix+":org") {
			out = append(out, r.Path)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	for _, want := range []string{StaffOrgPrefix + ":org/overview", StaffOrgPrefix + ":org/members", StaffAPIPrefix + ":org/usage", StaffAPIPrefix + ":org/members"} {
		if !slices.Contains(out, want) {
			t.Fatalf("routes %v lack %s", out, want)
		}
	}
	return out
}

// TestStaffWithoutGrantGets404: on every org page and API route, a staff
// member without an active grant to that org gets 404 (as for an org that
// does not exist): with no request, a pending one with a single
// approval, a grant to another org, another staff member's grant, an
// expired grant and a revoked one. With the grant each answers.
func TestStaffWithoutGrantGets404(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	org, other := f.org(t, "Acme", controlplane.PlanFree), f.org(t, "Other", controlplane.PlanFree)
	f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	ann, bob, cat, dan := f.staff(t, "ann@persiv.example"), f.staff(t, "bob@persiv.example"), f.staff(t, "cat@persiv.example"), f.staff(t, "dan@persiv.example")
	annC, danC := f.staffSession(t, ann), f.staffSession(t, dan)
	routes := staffOrgRoutes(t, f)

	check := func(situation string, c *client, orgID string, want int) {
		t.Helper()
		for _, route := range routes {
			path := strings.Replace(route, ":org", orgID, 1)
			r := c.get(path)
			if r.StatusCode != want {
				t.Errorf("%s: GET %s = %d, want %d", situation, path, r.StatusCode, want)
			}
			if want == http.StatusNotFound && strings.HasPrefix(route, StaffAPIPrefix) && !strings.Contains(r.body, `"code":"not_found"`) {
				t.Errorf("%s: GET %s body %q", situation, path, r.body)
			}
			if strings.Contains(r.body, "ada@acme.example") && want == http.StatusNotFound {
				t.Errorf("%s: GET %s shows a member", situation, path)
			}
		}
	}
	check("no request", annC, org, http.StatusNotFound)
	check("unknown org", annC, "org_doesnotexist", http.StatusNotFound)
	pending := f.grantFor(t, org, ann, bob, staffMember{}, time.Hour)
	check("one approval", annC, org, http.StatusNotFound)
	if _, err := f.env.Store.ApproveAccess(ctx, pending.ID, cat.ID, f.clock.now()); err != nil {
		t.Fatal(err)
	}
	check("grant to another org", annC, other, http.StatusNotFound)
	check("another staff member's grant", danC, org, http.StatusNotFound)

	// With the grant every route answers (a redirect for the bare org
	// path), and each read is logged.
	before, _ := f.env.Store.AccessLog(ctx, org)
	for _, route := range routes {
		path := strings.Replace(route, ":org", org, 1)
		r := annC.get(path)
		if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusSeeOther {
			t.Errorf("under the grant: GET %s = %d", path, r.StatusCode)
		}
	}
	after, _ := f.env.Store.AccessLog(ctx, org)
	if len(after)-len(before) != len(routes) {
		t.Errorf("%d reads logged for %d routes", len(after)-len(before), len(routes))
	}
	if r := annC.get(StaffOrgPrefix + org + "/members"); !strings.Contains(r.body, "ada@acme.example") || strings.Contains(r.body, `action="/members`) {
		t.Errorf("members under the grant: member shown %v, forms shown %v", strings.Contains(r.body, "ada@acme.example"), strings.Contains(r.body, `action="/members`))
	}

	f.clock.add(time.Hour)
	check("expired grant", annC, org, http.StatusNotFound)
	g := f.grantFor(t, org, ann, bob, cat, time.Hour)
	if err := f.env.Store.RevokeAccess(ctx, g.ID, bob.ID, f.clock.now()); err != nil {
		t.Fatal(err)
	}
	check("revoked grant", annC, org, http.StatusNotFound)
}

// TestStaffDisableEndsSessionAndGrant: disabling a staff account ends its
// live session and its grant at once.
func TestStaffDisableEndsSessionAndGrant(t *testing.T) {
	f := newFixture(t)
	org := f.org(t, "Acme", controlplane.PlanFree)
	ann, bob, cat := f.staff(t, "ann@persiv.example"), f.staff(t, "bob@persiv.example"), f.staff(t, "cat@persiv.example")
	c := f.staffSession(t, ann)
	f.grantFor(t, org, ann, bob, cat, time.Hour)
	wantStatus(t, "read under the grant", c.get(StaffOrgPrefix+org+"/overview"), http.StatusOK)
	if err := f.env.Store.DisableStaff(context.Background(), ann.ID, f.clock.now()); err != nil {
		t.Fatal(err)
	}
	r := c.get(StaffOrgPrefix + org + "/overview")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/staff/login" {
		t.Fatalf("after disable: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := c.get("/staff"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("staff home after disable: %d", r.StatusCode)
	}
	if open, _ := f.env.Store.AccessRequests(context.Background()); len(open) != 0 {
		t.Fatalf("open requests after disable: %+v", open)
	}
	if r := f.client(t).staffLogin(ann.Email, testPassword, ann.code(t, f, 0)); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in of a disabled account: %d", r.StatusCode)
	}
}
