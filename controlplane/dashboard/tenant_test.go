package dashboard

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/shared/wire"
)

// TestCrossTenantNotFound: an owner of org B tries every route with org
// A's ids. Routes naming a resource answer 404 and change nothing; the
// others show B's data only. A route missing from the table fails the
// test, so new routes must be added here.
func TestCrossTenantNotFound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.now()
	orgA, orgB := controlplane.NewID("org"), controlplane.NewID("org")
	for id, name := range map[string]string{orgA: "Alpha Secret Corp", orgB: "Beta"} {
		if err := f.env.Store.CreateOrg(ctx, controlplane.Org{ID: id, Name: name, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	ownerA := f.user(t, orgA, "owner@alpha.example", controlplane.RoleOwner)
	viewerA := f.user(t, orgA, "viewer@alpha.example", controlplane.RoleViewer)
	ownerB := f.user(t, orgB, "owner@beta.example", controlplane.RoleOwner)
	tok, err := f.env.Enroll.CreateToken(ctx, orgA, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	edgeA, err := f.env.Enroll.Enroll(ctx, wire.EnrollRequest{Token: tok, PublicKey: pub, Name: "alpha-edge-secret", Version: "9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.Batch(orgA, edgeA.EdgeID, 1, now.Truncate(time.Minute), 3)
	for i := range b.Rows {
		b.Rows[i].Model, b.Rows[i].Workspace, b.Rows[i].KeyRef = "alpha-model", "alpha-ws", "alpha-key"
	}
	if _, err := f.env.Store.IngestBatch(ctx, b, now); err != nil {
		t.Fatal(err)
	}
	inviteA := controlplane.Invite{Hash: sha256.Sum256([]byte("alpha invite")), OrgID: orgA, Email: "invitee@alpha.example", Role: controlplane.RoleViewer,
		CreatedBy: ownerA.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := f.env.Store.CreateInvite(ctx, inviteA); err != nil {
		t.Fatal(err)
	}

	c := f.session(t, ownerB)
	csrf := c.csrf("/overview")
	post := func(path string, extra url.Values) response {
		form := url.Values{"csrf": {csrf}}
		for k, v := range extra {
			form[k] = v
		}
		return c.post(path, form)
	}
	api := map[string]string{CSRFHeader: csrf}
	secrets := []string{orgA, "Alpha Secret Corp", "owner@alpha.example", "viewer@alpha.example", "invitee@alpha.example", inviteID(inviteA.Hash), edgeA.EdgeID, "alpha-edge-secret", "alpha-model", "alpha-ws", "alpha-key"}
	noLeak := func(name string, r response) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(r.body, s) {
				t.Errorf("%s: shows org A's %q", name, s)
			}
		}
	}
	type check func(t *testing.T)
	cases := map[string]check{
		"GET /": func(t *testing.T) { wantStatus(t, "/", c.get("/"), http.StatusSeeOther) },
		"GET /static/style.css": func(t *testing.T) {
			wantStatus(t, "style", c.get("/static/style.css"), http.StatusOK)
		},
		"GET /login": func(t *testing.T) { r := c.get("/login"); wantStatus(t, "login", r, http.StatusOK); noLeak("login", r) },
		"POST /login": func(t *testing.T) {
			// A's credentials typed into B's browser sign in as A: that is
			// what credentials are for. The wrong password for A's email does not.
			x := f.client(t)
			wantStatus(t, "login as A with a wrong password", x.login("owner@alpha.example", "not the password"), http.StatusUnauthorized)
		},
		"GET /invite/:token": func(t *testing.T) {
			wantStatus(t, "invite", c.get("/invite/"+InvitePrefix+strings.Repeat("A", 43)), http.StatusNotFound)
		},
		"POST /invite/:token": func(t *testing.T) {
			wantStatus(t, "accept", c.post("/invite/"+orgA, url.Values{}), http.StatusForbidden)
		},
		"GET /overview": func(t *testing.T) {
			for _, rg := range Ranges {
				r := c.get("/overview?range=" + rg.Key)
				wantStatus(t, "overview", r, http.StatusOK)
				noLeak("overview "+rg.Key, r)
				if !strings.Contains(r.body, `id="total-requests" data-value="0"`) {
					t.Errorf("overview %s: B sees requests", rg.Key)
				}
			}
		},
		"GET /fleet": func(t *testing.T) { r := c.get("/fleet"); wantStatus(t, "fleet", r, http.StatusOK); noLeak("fleet", r) },
		"GET /members": func(t *testing.T) {
			r := c.get("/members")
			wantStatus(t, "members", r, http.StatusOK)
			noLeak("members", r)
		},
		"GET /privacy": func(t *testing.T) {
			r := c.get("/privacy")
			wantStatus(t, "privacy", r, http.StatusOK)
			noLeak("privacy", r)
		},
		"GET /account": func(t *testing.T) {
			r := c.get("/account")
			wantStatus(t, "account", r, http.StatusOK)
			noLeak("account", r)
		},
		"POST /fleet/tokens": func(t *testing.T) {
			r := post("/fleet/tokens", url.Values{"ttl": {"1h"}, "org": {orgA}, "org_id": {orgA}})
			wantStatus(t, "token", r, http.StatusOK)
			noLeak("token", r)
			if toks, _ := f.env.Store.EnrollTokens(ctx, orgA); len(toks) != 1 {
				t.Errorf("org A has %d tokens", len(toks))
			}
		},
		"POST /fleet/edges/:id/revoke": func(t *testing.T) {
			wantStatus(t, "revoke", post("/fleet/edges/"+edgeA.EdgeID+"/revoke", nil), http.StatusNotFound)
		},
		"POST /members/invite": func(t *testing.T) {
			r := post("/members/invite", url.Values{"email": {"newcomer@beta.example"}, "role": {"owner"}, "org": {orgA}})
			wantStatus(t, "invite", r, http.StatusOK)
			noLeak("invite", r)
			if inv, _ := f.env.Store.Invites(ctx, orgA, f.clock.now()); len(inv) != 1 {
				t.Error("an invitation landed in org A")
			}
		},
		"POST /members/:id/remove": func(t *testing.T) {
			for _, u := range []controlplane.User{ownerA, viewerA} {
				wantStatus(t, "remove", post("/members/"+u.ID+"/remove", nil), http.StatusNotFound)
			}
		},
		"POST /members/:id/role": func(t *testing.T) {
			missing := post("/members/usr_missing/role", url.Values{"role": {"viewer"}})
			wantStatus(t, "role of a missing member", missing, http.StatusNotFound)
			for _, u := range []controlplane.User{ownerA, viewerA} {
				for _, role := range []string{"owner", "viewer"} {
					r := post("/members/"+u.ID+"/role", url.Values{"role": {role}, "org": {orgA}})
					wantStatus(t, "role", r, http.StatusNotFound)
					if r.body != missing.body {
						t.Errorf("another org's member answers unlike a missing one")
					}
				}
			}
		},
		"POST /members/invites/:id/revoke": func(t *testing.T) {
			missing := post("/members/invites/"+inviteID(sha256.Sum256([]byte("missing")))+"/revoke", nil)
			wantStatus(t, "revoke a missing invitation", missing, http.StatusNotFound)
			r := post("/members/invites/"+inviteID(inviteA.Hash)+"/revoke", url.Values{"org": {orgA}})
			wantStatus(t, "revoke", r, http.StatusNotFound)
			if r.body != missing.body {
				t.Errorf("another org's invitation answers unlike a missing one")
			}
		},
		"POST /account/password": func(t *testing.T) {
			// Changes the signed-in user only; a user id in the form is ignored.
			r := post("/account/password", url.Values{"current": {"wrong password x"}, "new": {"aaaaaaaaaaaaaaa"}, "confirm": {"aaaaaaaaaaaaaaa"}, "user": {ownerA.ID}})
			wantStatus(t, "password", r, http.StatusUnauthorized)
		},
		"POST /logout": func(t *testing.T) {
			x := f.session(t, ownerB)
			wantLoginRedirect(t, "logout", x.post("/logout", url.Values{"csrf": {x.csrf("/overview")}, "user": {ownerA.ID}}))
			c = f.session(t, ownerB) // logout ended c's session too
			csrf = c.csrf("/overview")
			api[CSRFHeader] = csrf
		},
		"GET /api/v1/dashboard/usage": func(t *testing.T) {
			for _, rg := range Ranges {
				r := c.get("/api/v1/dashboard/usage?range=" + rg.Key)
				wantStatus(t, "api usage", r, http.StatusOK)
				noLeak("api usage", r)
				if !strings.Contains(r.body, `"totals":{"requests":0,`) {
					t.Errorf("api usage %s: B sees requests: %.300s", rg.Key, r.body)
				}
			}
		},
		"GET /api/v1/dashboard/edges": func(t *testing.T) {
			r := c.get("/api/v1/dashboard/edges")
			wantStatus(t, "api edges", r, http.StatusOK)
			noLeak("api edges", r)
		},
		"GET /api/v1/dashboard/members": func(t *testing.T) {
			r := c.get("/api/v1/dashboard/members")
			wantStatus(t, "api members", r, http.StatusOK)
			noLeak("api members", r)
		},
		"POST /api/v1/dashboard/edges/:id/revoke": func(t *testing.T) {
			r := c.postJSON("/api/v1/dashboard/edges/"+edgeA.EdgeID+"/revoke", "{}", api)
			wantStatus(t, "api revoke", r, http.StatusNotFound)
			noLeak("api revoke", r)
		},
	}
	cases["GET /access-log"] = func(t *testing.T) {
		r := c.get("/access-log")
		wantStatus(t, "access log", r, http.StatusOK)
		noLeak("access log", r)
	}
	cases["POST /access-log/break-glass"] = func(t *testing.T) {
		r := post("/access-log/break-glass", url.Values{"break_glass": {"off"}, "org": {orgA}})
		wantStatus(t, "break-glass switch", r, http.StatusSeeOther)
		if a, _ := f.env.Store.Org(ctx, orgA); a.BreakGlass != nil {
			t.Error("org B's owner switched org A's break-glass access")
		}
		if b, _ := f.env.Store.Org(ctx, orgB); b.BreakGlass == nil || *b.BreakGlass {
			t.Error("org B's own switch did not change")
		}
	}
	cases["POST /account/delete-org"] = func(t *testing.T) {
		// Org A's name and id: the route acts on the session's org only,
		// whose name this is not, so nothing is deleted.
		r := post("/account/delete-org", url.Values{"confirm": {"Alpha Secret Corp"}, "org": {orgA}})
		wantStatus(t, "delete org", r, http.StatusBadRequest)
		noLeak("delete org", r)
		for _, id := range []string{orgA, orgB} {
			if _, err := f.env.Store.Org(ctx, id); err != nil {
				t.Errorf("org %s after another org's owner tried to delete org A: %v", id, err)
			}
		}
	}
	// Staff routes: a member's session is no staff session, whatever ids
	// the path or form names.
	for _, rt := range f.echo.Routes() {
		if !strings.HasPrefix(rt.Path, "/staff") || rt.Method == "echo_route_not_found" {
			continue
		}
		method, path := rt.Method, strings.NewReplacer(":org", orgA, ":id", "acr_x").Replace(rt.Path)
		cases[method+" "+rt.Path] = func(t *testing.T) {
			var r response
			if method == http.MethodGet {
				r = c.get(path)
			} else {
				r = post(path, url.Values{"org": {orgA}, "email": {"owner@beta.example"}, "password": {testPassword}, "code": {"000000"}})
			}
			noLeak(method+" "+path, r)
			switch {
			case path == "/staff/login" && method == http.MethodGet:
				wantStatus(t, path, r, http.StatusOK)
			case path == "/staff/login":
				wantStatus(t, path, r, http.StatusForbidden) // the pre-session CSRF token is the staff form's
			case strings.HasPrefix(path, StaffAPIPrefix):
				wantStatus(t, path, r, http.StatusUnauthorized)
			case r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/staff/login":
				t.Errorf("%s %s with a member's session: %d to %q, want 303 to /staff/login", method, path, r.StatusCode, r.Header.Get("Location"))
			}
		}
	}
	// Routes of the API that are not the dashboard's.
	other := map[string]bool{"GET /healthz": true, "GET /readyz": true, "POST /api/v1/enroll": true}
	seen := map[string]bool{}
	for _, r := range f.echo.Routes() {
		key := r.Method + " " + r.Path
		if other[key] || r.Method == "echo_route_not_found" || seen[key] {
			continue
		}
		seen[key] = true
		fn, ok := cases[key]
		if !ok {
			t.Errorf("route %s has no cross-tenant case", key)
			continue
		}
		t.Run(strings.ReplaceAll(key, "/", "_"), fn)
	}
	for k := range cases {
		if !seen[k] {
			t.Errorf("case %s matches no route", k)
		}
	}
	// Nothing of A changed.
	if e, _ := f.env.Store.Edge(ctx, orgA, edgeA.EdgeID); e.Revoked() {
		t.Error("org A's edge was revoked")
	}
	if us, _ := f.env.Store.Users(ctx, orgA); len(us) != 2 {
		t.Errorf("org A has %d members, want 2", len(us))
	}
	if u, _ := f.env.Store.User(ctx, orgA, ownerA.ID); u.SessionEpoch != 0 || u.PasswordHash != ownerA.PasswordHash || u.Role != controlplane.RoleOwner {
		t.Error("org A's owner changed")
	}
	if u, _ := f.env.Store.User(ctx, orgA, viewerA.ID); u.Role != controlplane.RoleViewer {
		t.Error("org A's viewer changed role")
	}
	if inv, _ := f.env.Store.Invites(ctx, orgA, f.clock.now()); len(inv) != 1 || inv[0].Hash != inviteA.Hash {
		t.Error("org A's invitation was revoked")
	}
}
