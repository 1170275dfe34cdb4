package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
)

func TestViewerCannotChangeAnything(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	v := f.user(t, org, "viewer@acme.example", controlplane.RoleViewer)
	edge := f.env.EnrollEdge(t, org)
	c := f.session(t, v)
	tok := c.csrf("/overview")
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/members/invite", url.Values{"email": {"x@acme.example"}, "role": {"viewer"}}},
		{"/fleet/tokens", url.Values{"ttl": {"24h"}}},
		{"/fleet/edges/" + edge.EdgeID + "/revoke", nil},
		{"/members/" + owner.ID + "/remove", nil},
	} {
		form := url.Values{"csrf": {tok}}
		for k, vs := range tc.form {
			form[k] = vs
		}
		wantStatus(t, "viewer POST "+tc.path, c.post(tc.path, form), http.StatusForbidden)
	}
	wantStatus(t, "viewer API revoke", c.postJSON("/api/v1/dashboard/edges/"+edge.EdgeID+"/revoke", "{}", map[string]string{CSRFHeader: tok}), http.StatusForbidden)
	ctx := context.Background()
	if e, _ := f.env.Store.Edge(ctx, org, edge.EdgeID); e.Revoked() {
		t.Fatal("a viewer revoked an edge")
	}
	if toks, _ := f.env.Store.EnrollTokens(ctx, org); len(toks) != 1 {
		t.Fatalf("%d enrollment tokens; the viewer created one", len(toks))
	}
	if inv, _ := f.env.Store.Invites(ctx, org, f.clock.now()); len(inv) != 0 {
		t.Fatal("a viewer invited someone")
	}
	// Nor do the pages offer it.
	for _, p := range []string{"/fleet", "/members"} {
		if r := c.get(p); strings.Contains(r.body, "Revoke</button>") || strings.Contains(r.body, `action="/members/invite"`) || strings.Contains(r.body, `id="create-token"`) {
			t.Errorf("%s offers a viewer an admin action", p)
		}
	}
	// Everything readable is.
	for _, p := range []string{"/overview", "/fleet", "/members", "/privacy", "/account", "/api/v1/dashboard/usage", "/api/v1/dashboard/edges", "/api/v1/dashboard/members"} {
		wantStatus(t, "viewer GET "+p, c.get(p), http.StatusOK)
	}
}

func TestAdminLimitsAndLastOwner(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	admin := f.user(t, org, "admin@acme.example", controlplane.RoleAdmin)
	ac, oc := f.session(t, admin), f.session(t, owner)
	wantStatus(t, "admin removes the owner", ac.post("/members/"+owner.ID+"/remove", url.Values{"csrf": {ac.csrf("/members")}}), http.StatusForbidden)
	wantStatus(t, "admin invites an owner", ac.post("/members/invite", url.Values{"csrf": {ac.csrf("/members")}, "email": {"o2@acme.example"}, "role": {"owner"}}), http.StatusForbidden)
	r := oc.post("/members/"+owner.ID+"/remove", url.Values{"csrf": {oc.csrf("/members")}})
	wantStatus(t, "the last owner removes themself", r, http.StatusConflict)
	if !strings.Contains(r.body, "at least one owner") {
		t.Errorf("last-owner refusal does not say why: %.300s", r.body)
	}
	if _, err := f.env.Store.User(context.Background(), org, owner.ID); err != nil {
		t.Fatalf("the last owner is gone: %v", err)
	}
	wantStatus(t, "owner removes the admin", oc.post("/members/"+admin.ID+"/remove", url.Values{"csrf": {oc.csrf("/members")}}), http.StatusSeeOther)
}

var inviteLinkRE = regexp.MustCompile(`id="invite-link">([^<]+)<`)

func TestInviteByOneTimeLink(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	admin := f.user(t, org, "admin@acme.example", controlplane.RoleAdmin)
	ac := f.session(t, admin)
	r := ac.post("/members/invite", url.Values{"csrf": {ac.csrf("/members")}, "email": {"New@Acme.example"}, "role": {"viewer"}})
	wantStatus(t, "invite", r, http.StatusOK)
	m := inviteLinkRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no invitation link on the page: %.500s", r.body)
	}
	link, _ := url.Parse(m[1])
	if !strings.HasPrefix(link.Path, "/invite/"+InvitePrefix) {
		t.Fatalf("invitation link %q", m[1])
	}
	// The link is not shown again, and only its hash is stored.
	if strings.Contains(ac.get("/members").body, link.Path) {
		t.Fatal("the members page shows the link again")
	}
	newcomer := f.client(t)
	page := newcomer.get(link.Path)
	wantStatus(t, "invitation page", page, http.StatusOK)
	if !strings.Contains(page.body, "new@acme.example") || !strings.Contains(page.body, "Acme") {
		t.Fatalf("invitation page does not name the email and org: %.400s", page.body)
	}
	tok := csrfRE.FindStringSubmatch(page.body)[1]
	wantStatus(t, "short password", newcomer.post(link.Path, url.Values{"csrf": {tok}, "password": {"short"}, "confirm": {"short"}}), http.StatusBadRequest)
	r = newcomer.post(link.Path, url.Values{"csrf": {tok}, "password": {"a long enough password"}, "confirm": {"a long enough password"}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/overview" {
		t.Fatalf("accept: %d to %q: %.300s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	me := newcomer.get("/members")
	wantStatus(t, "newcomer's members page", me, http.StatusOK)
	if !strings.Contains(me.body, `role-viewer">viewer`) {
		t.Fatal("the newcomer is not a viewer")
	}
	// One time only.
	again := f.client(t)
	wantStatus(t, "used link", again.get(link.Path), http.StatusNotFound)
	wantStatus(t, "used link, POST", again.post(link.Path, url.Values{"csrf": {again.csrf("/login")}, "password": {"another long password"}, "confirm": {"another long password"}}), http.StatusNotFound)

	// Links expire.
	r = ac.post("/members/invite", url.Values{"csrf": {ac.csrf("/members")}, "email": {"late@acme.example"}, "role": {"viewer"}})
	late, _ := url.Parse(inviteLinkRE.FindStringSubmatch(r.body)[1])
	f.clock.add(f.dash.invTTL + time.Second)
	wantStatus(t, "expired link", f.client(t).get(late.Path), http.StatusNotFound)
	wantStatus(t, "malformed link", f.client(t).get("/invite/cpinvite_short"), http.StatusNotFound)
}
