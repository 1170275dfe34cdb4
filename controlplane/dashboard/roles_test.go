package dashboard

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
)

// TestChangeRole: who may set which role of whom. Each case runs in a
// fresh org of one owner, a second owner, an admin, a second admin and a
// viewer.
func TestChangeRole(t *testing.T) {
	f := newFixture(t)
	const (
		O = controlplane.RoleOwner
		A = controlplane.RoleAdmin
		V = controlplane.RoleViewer
	)
	for _, tc := range []struct {
		name          string
		actor, target string // "owner", "owner2", "admin", "admin2", "viewer", or "self"
		role          string
		status        int
		want          controlplane.Role // the target's role afterwards
		offered       bool              // whether the page then offers the form
	}{
		{"owner promotes a viewer to admin", "owner", "viewer", "admin", http.StatusSeeOther, A, true},
		{"owner makes an admin owner", "owner", "admin", "owner", http.StatusSeeOther, O, true},
		{"owner demotes another owner", "owner", "owner2", "viewer", http.StatusSeeOther, V, true},
		{"owner demotes an admin", "owner", "admin", "viewer", http.StatusSeeOther, V, true},
		{"admin promotes a viewer to admin", "admin", "viewer", "admin", http.StatusSeeOther, A, true},
		{"admin demotes another admin", "admin", "admin2", "viewer", http.StatusSeeOther, V, true},
		{"admin makes a viewer owner", "admin", "viewer", "owner", http.StatusForbidden, V, true},
		{"admin makes an admin owner", "admin", "admin2", "owner", http.StatusForbidden, A, true},
		{"admin demotes an owner", "admin", "owner", "viewer", http.StatusForbidden, O, false},
		{"admin touches an owner, same role", "admin", "owner", "owner", http.StatusForbidden, O, false},
		{"viewer promotes itself", "viewer", "self", "admin", http.StatusForbidden, V, false},
		{"viewer promotes another", "viewer", "admin", "owner", http.StatusForbidden, A, false},
		{"owner demotes itself", "owner", "self", "admin", http.StatusForbidden, O, false},
		{"admin demotes itself", "admin", "self", "viewer", http.StatusForbidden, A, false},
		{"admin promotes itself", "admin", "self", "owner", http.StatusForbidden, A, false},
		{"unknown role", "owner", "viewer", "root", http.StatusBadRequest, V, true},
		{"no role", "owner", "viewer", "", http.StatusBadRequest, V, true},
		{"unknown member", "owner", "usr_nobody", "admin", http.StatusNotFound, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			org := f.env.Org(t)
			m := map[string]controlplane.User{
				"owner":  f.user(t, org, "owner@acme.example", O),
				"owner2": f.user(t, org, "owner2@acme.example", O),
				"admin":  f.user(t, org, "admin@acme.example", A),
				"admin2": f.user(t, org, "admin2@acme.example", A),
				"viewer": f.user(t, org, "viewer@acme.example", V),
			}
			actor := m[tc.actor]
			target, ok := m[tc.target]
			if tc.target == "self" {
				target = actor
			} else if !ok {
				target = controlplane.User{ID: tc.target}
			}
			c := f.session(t, actor)
			r := c.post("/members/"+target.ID+"/role", url.Values{"csrf": {c.csrf("/members")}, "role": {tc.role}})
			wantStatus(t, tc.name, r, tc.status)
			if tc.status == http.StatusSeeOther && r.Header.Get("Location") != "/members?done=role" {
				t.Fatalf("redirect to %q", r.Header.Get("Location"))
			}
			if tc.want == "" {
				return
			}
			if g, err := f.env.Store.User(ctx, org, target.ID); err != nil || g.Role != tc.want {
				t.Fatalf("target is %q (%v), want %q", g.Role, err, tc.want)
			}
			// The form is offered exactly where the change may be made.
			page := c.get("/members").body
			offered := strings.Contains(page, `action="/members/`+target.ID+`/role"`)
			if offered != tc.offered {
				t.Errorf("members page offers the role form for the target: %v, want %v", offered, tc.offered)
			}
		})
	}
}

// TestRoleChangeAppliesOnNextRequest: the role is read from the store on
// every request, so a demoted admin's very next request is a viewer's,
// and a promoted viewer's an admin's, without signing in again.
func TestRoleChangeAppliesOnNextRequest(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	admin := f.user(t, org, "admin@acme.example", controlplane.RoleAdmin)
	viewer := f.user(t, org, "viewer@acme.example", controlplane.RoleViewer)
	oc, ac, vc := f.session(t, owner), f.session(t, admin), f.session(t, viewer)
	// Forms loaded before the change, as an open tab would hold them.
	aTok, vTok := ac.csrf("/members"), vc.csrf("/members")
	api := map[string]string{CSRFHeader: aTok}
	edge := f.env.EnrollEdge(t, org)

	ot := oc.csrf("/members")
	wantStatus(t, "demote the admin", oc.post("/members/"+admin.ID+"/role", url.Values{"csrf": {ot}, "role": {"viewer"}}), http.StatusSeeOther)
	wantStatus(t, "promote the viewer", oc.post("/members/"+viewer.ID+"/role", url.Values{"csrf": {ot}, "role": {"admin"}}), http.StatusSeeOther)

	wantStatus(t, "demoted admin invites", ac.post("/members/invite", url.Values{"csrf": {aTok}, "email": {"x@acme.example"}, "role": {"viewer"}}), http.StatusForbidden)
	wantStatus(t, "demoted admin creates a token", ac.post("/fleet/tokens", url.Values{"csrf": {aTok}, "ttl": {"1h"}}), http.StatusForbidden)
	wantStatus(t, "demoted admin revokes through the API", ac.postJSON("/api/v1/dashboard/edges/"+edge.EdgeID+"/revoke", "{}", api), http.StatusForbidden)
	page := ac.get("/members")
	wantStatus(t, "demoted admin's members page", page, http.StatusOK) // still signed in
	if m := topbarRoleRE.FindStringSubmatch(page.body); m == nil || m[1] != "viewer" || strings.Contains(page.body, `action="/members/invite"`) {
		t.Fatal("the demoted admin's page still shows an admin")
	}
	if e, _ := f.env.Store.Edge(context.Background(), org, edge.EdgeID); e.Revoked() {
		t.Fatal("the demoted admin revoked an edge")
	}

	r := vc.post("/members/invite", url.Values{"csrf": {vTok}, "email": {"y@acme.example"}, "role": {"viewer"}})
	wantStatus(t, "promoted viewer invites", r, http.StatusOK)
	if !inviteLinkRE.MatchString(r.body) {
		t.Fatal("the promoted viewer got no invitation link")
	}
	// Sessions went on: the role change is not a sign-out.
	for _, u := range []controlplane.User{admin, viewer} {
		if g, _ := f.env.Store.User(context.Background(), org, u.ID); g.SessionEpoch != 0 {
			t.Errorf("%s: session epoch %d, want 0", u.Email, g.SessionEpoch)
		}
	}
}

// TestOwnersDemoteEachOther: two owners demote each other at the same
// moment. At most one succeeds; the org keeps an owner.
func TestOwnersDemoteEachOther(t *testing.T) {
	f := newFixture(t)
	for round := range 6 {
		org := f.env.Org(t)
		a := f.user(t, org, "a@acme.example", controlplane.RoleOwner)
		b := f.user(t, org, "b@acme.example", controlplane.RoleOwner)
		ca, cb := f.session(t, a), f.session(t, b)
		ta, tb := ca.csrf("/members"), cb.csrf("/members")
		var wg sync.WaitGroup
		var ra, rb response
		wg.Go(func() { ra = ca.post("/members/"+b.ID+"/role", url.Values{"csrf": {ta}, "role": {"admin"}}) })
		wg.Go(func() { rb = cb.post("/members/"+a.ID+"/role", url.Values{"csrf": {tb}, "role": {"admin"}}) })
		wg.Wait()
		ok := 0
		for _, r := range []response{ra, rb} {
			switch r.StatusCode {
			case http.StatusSeeOther:
				ok++
			case http.StatusConflict, http.StatusForbidden:
				// 409: the store's last-owner check; 403: the loser's
				// request began after it was demoted.
			default:
				t.Fatalf("round %d: status %d: %.300s", round, r.StatusCode, r.body)
			}
		}
		us, _ := f.env.Store.Users(context.Background(), org)
		owners := 0
		for _, u := range us {
			if u.Role == controlplane.RoleOwner {
				owners++
			}
		}
		if ok != 1 || owners != 1 {
			t.Fatalf("round %d: %d changes succeeded, %d owners left; want 1 and 1", round, ok, owners)
		}
	}
}

var topbarRoleRE = regexp.MustCompile(`(?s)<div class="user">.*?badge role-(\w+)`)

var inviteRowRE = regexp.MustCompile(`action="/members/invites/([0-9a-f]{64})/revoke"`)

// TestRevokeInvite: a pending invitation is listed with its inviter, role,
// creation and expiry but never its token; revoking it makes its link
// answer exactly like an unknown one, even to a page opened before.
func TestRevokeInvite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	admin := f.user(t, org, "admin@acme.example", controlplane.RoleAdmin)
	viewer := f.user(t, org, "viewer@acme.example", controlplane.RoleViewer)
	ac, oc, vc := f.session(t, admin), f.session(t, owner), f.session(t, viewer)

	r := ac.post("/members/invite", url.Values{"csrf": {ac.csrf("/members")}, "email": {"new@acme.example"}, "role": {"admin"}})
	wantStatus(t, "invite", r, http.StatusOK)
	link, _ := url.Parse(inviteLinkRE.FindStringSubmatch(r.body)[1])
	token := strings.TrimPrefix(link.Path, "/invite/")

	page := ac.get("/members").body
	if strings.Contains(page, token) {
		t.Fatal("the members page shows the invitation's token")
	}
	rows := regexp.MustCompile(`(?s)<table class="table" id="invites">.*?</table>`).FindString(page)
	for _, want := range []string{"new@acme.example", `role-admin">admin`, "admin@acme.example", ts(f.clock.now()), ts(f.clock.now().Add(f.dash.invTTL))} {
		if !strings.Contains(rows, want) {
			t.Errorf("pending invitations do not show %q: %s", want, rows)
		}
	}
	m := inviteRowRE.FindStringSubmatch(rows)
	if m == nil {
		t.Fatalf("no revoke form: %s", rows)
	}
	id := m[1]

	// A newcomer opens the invitation, then it is revoked.
	newcomer := f.client(t)
	open := newcomer.get(link.Path)
	wantStatus(t, "invitation page", open, http.StatusOK)
	preTok := csrfRE.FindStringSubmatch(open.body)[1]

	wantStatus(t, "viewer revokes", vc.post("/members/invites/"+id+"/revoke", url.Values{"csrf": {vc.csrf("/members")}}), http.StatusForbidden)
	r = ac.post("/members/invites/"+id+"/revoke", url.Values{"csrf": {ac.csrf("/members")}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/members?done=invite-revoked" {
		t.Fatalf("revoke: %d to %q: %.300s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	if got := ac.get("/members?done=invite-revoked").body; strings.Contains(got, "new@acme.example") || !strings.Contains(got, "no longer works") {
		t.Fatal("the revoked invitation is still listed, or the page does not say it was revoked")
	}
	wantStatus(t, "revoke again", ac.post("/members/invites/"+id+"/revoke", url.Values{"csrf": {ac.csrf("/members")}}), http.StatusNotFound)

	accepted := newcomer.post(link.Path, url.Values{"csrf": {preTok}, "password": {"a long enough password"}, "confirm": {"a long enough password"}})
	wantStatus(t, "accept after revocation", accepted, http.StatusNotFound)
	if us, _ := f.env.Store.UsersByEmail(ctx, "new@acme.example"); len(us) != 0 {
		t.Fatal("a revoked invitation made a member")
	}

	// The revoked link says what an unknown, a used or an expired one says.
	unknown := f.client(t).get("/invite/" + InvitePrefix + strings.Repeat("A", 43))
	wantStatus(t, "unknown link", unknown, http.StatusNotFound)
	revoked := f.client(t).get(link.Path)
	wantStatus(t, "revoked link", revoked, http.StatusNotFound)
	if revoked.body != unknown.body || accepted.body != unknown.body {
		t.Fatal("a revoked link answers unlike an unknown one")
	}
	r = oc.post("/members/invite", url.Values{"csrf": {oc.csrf("/members")}, "email": {"late@acme.example"}, "role": {"viewer"}})
	late, _ := url.Parse(inviteLinkRE.FindStringSubmatch(r.body)[1])
	f.clock.add(f.dash.invTTL + time.Second)
	if expired := f.client(t).get(late.Path); expired.StatusCode != http.StatusNotFound || expired.body != unknown.body {
		t.Fatal("an expired link answers unlike a revoked one")
	}
}

// TestRevokeOwnerInvite: only an owner revokes an owner's invitation, as
// only an owner creates one; malformed and unknown ids are not found.
func TestRevokeOwnerInvite(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	admin := f.user(t, org, "admin@acme.example", controlplane.RoleAdmin)
	ac, oc := f.session(t, admin), f.session(t, owner)
	r := oc.post("/members/invite", url.Values{"csrf": {oc.csrf("/members")}, "email": {"boss@acme.example"}, "role": {"owner"}})
	wantStatus(t, "invite an owner", r, http.StatusOK)
	id := inviteRowRE.FindStringSubmatch(r.body)[1]
	if strings.Contains(ac.get("/members").body, "/members/invites/"+id+"/revoke") {
		t.Error("an admin is offered to revoke an owner's invitation")
	}
	tok := ac.csrf("/members")
	wantStatus(t, "admin revokes an owner invitation", ac.post("/members/invites/"+id+"/revoke", url.Values{"csrf": {tok}}), http.StatusForbidden)
	unknown := sha256.Sum256([]byte("unknown"))
	for _, bad := range []string{inviteID(unknown), "zz", id[:62], id + "00", strings.ToUpper(id)[:10]} {
		wantStatus(t, "revoke "+bad, ac.post("/members/invites/"+bad+"/revoke", url.Values{"csrf": {tok}}), http.StatusNotFound)
	}
	wantStatus(t, "revoke without csrf", oc.post("/members/invites/"+id+"/revoke", nil), http.StatusForbidden)
	if inv, _ := f.env.Store.Invites(context.Background(), org, f.clock.now()); len(inv) != 1 {
		t.Fatalf("%d pending invitations, want the owner's still there", len(inv))
	}
	wantStatus(t, "owner revokes", oc.post("/members/invites/"+id+"/revoke", url.Values{"csrf": {oc.csrf("/members")}}), http.StatusSeeOther)
	if inv, _ := f.env.Store.Invites(context.Background(), org, f.clock.now()); len(inv) != 0 {
		t.Fatalf("%d pending invitations after revoking", len(inv))
	}
}
