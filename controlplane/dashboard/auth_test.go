package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/persiv/codex/controlplane"
)

func TestLoginAndLogout(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	c := f.client(t)
	wantLoginRedirect(t, "overview before login", c.get("/overview"))

	r := c.login("Owner@Acme.example ", testPassword)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/overview" {
		t.Fatalf("login: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range r.Cookies() {
		if ck.Name == SessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" {
		t.Fatalf("session cookie = %+v; want HttpOnly, Secure, SameSite=Strict, Path=/", sc)
	}
	first := c.sessionToken()
	wantStatus(t, "overview", c.get("/overview"), http.StatusOK)

	// A second login rotates the session.
	r = c.login("owner@acme.example", testPassword)
	wantStatus(t, "second login", r, http.StatusSeeOther)
	if c.sessionToken() == first {
		t.Fatal("login kept the previous session token")
	}
	old := f.client(t)
	old.setSession(first)

	r = c.post("/logout", url.Values{"csrf": {c.csrf("/overview")}})
	wantLoginRedirect(t, "logout", r)
	wantLoginRedirect(t, "overview after logout", c.get("/overview"))
	// Logout ends every session of the user, the older one too.
	wantLoginRedirect(t, "the earlier session after logout", old.get("/overview"))
}

func TestWrongPasswordAndUnknownEmail(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	for _, tc := range []struct{ email, pw string }{
		{"owner@acme.example", "wrong password here"},
		{"nobody@acme.example", testPassword},
		{"not an email", testPassword},
	} {
		c := f.client(t)
		r := c.login(tc.email, tc.pw)
		wantStatus(t, "login "+tc.email, r, http.StatusUnauthorized)
		if !strings.Contains(r.body, "Email or password is incorrect.") {
			t.Errorf("login %s: the page does not say the credentials are wrong", tc.email)
		}
		if c.sessionToken() != "" {
			t.Errorf("login %s: got a session cookie", tc.email)
		}
	}
}

func TestLoginRateLimited(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	f.user(t, org, "admin@acme.example", controlplane.RoleAdmin)

	// Per account: five attempts, then even the right password is refused
	// without being checked, from any address.
	c := f.client(t)
	for i := range 5 {
		wantStatus(t, "wrong password", c.login("owner@acme.example", "wrong password "+string(rune('a'+i))), http.StatusUnauthorized)
	}
	r := c.login("owner@acme.example", testPassword)
	wantStatus(t, "sixth attempt", r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") == "" || c.sessionToken() != "" {
		t.Fatal("rate-limited login: no Retry-After, or a session was issued")
	}
	// The bucket refills with time.
	f.clock.add(time.Minute)
	wantStatus(t, "login a minute later", f.client(t).login("owner@acme.example", testPassword), http.StatusSeeOther)

	// Per address: many accounts tried from one address.
	f.dash.byAddr = newLimiter(time.Minute, 3)
	for i := range 3 {
		wantStatus(t, "attempt from the address", f.client(t).login("u"+string(rune('a'+i))+"@acme.example", "wrong password!!"), http.StatusUnauthorized)
	}
	wantStatus(t, "fourth account from the address", f.client(t).login("admin@acme.example", testPassword), http.StatusTooManyRequests)
}

// TestLoginAddressBurst: one address makes at most LoginAddressBurst
// password checks at once, whatever emails it tries.
func TestLoginAddressBurst(t *testing.T) {
	f := newFixture(t)
	for i := range LoginAddressBurst {
		wantStatus(t, "attempt within the address's burst", f.client(t).login(fmt.Sprintf("u%d@acme.example", i), "wrong password!!"), http.StatusUnauthorized)
	}
	r := f.client(t).login("another@acme.example", "wrong password!!")
	wantStatus(t, "attempt beyond the address's burst", r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") != "60" {
		t.Fatalf("address limit: Retry-After %q", r.Header.Get("Retry-After"))
	}
}

// TestLoginGlobalLimit: beyond the per-email and per-address limits, all
// attempts together are bounded, and the refusal asks for a short wait.
func TestLoginGlobalLimit(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	f.dash.logins = rate.NewLimiter(rate.Every(time.Minute), 2)
	for i := range 2 {
		wantStatus(t, "attempt within the global burst", f.client(t).login("u"+string(rune('a'+i))+"@acme.example", "wrong password!!"), http.StatusUnauthorized)
	}
	r := f.client(t).login("owner@acme.example", testPassword)
	wantStatus(t, "attempt beyond the global burst", r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") != "1" || !strings.Contains(r.body, "Try again in a moment") {
		t.Fatalf("global limit: Retry-After %q, page %.300s", r.Header.Get("Retry-After"), r.body)
	}
	f.clock.add(time.Minute)
	wantStatus(t, "login once the budget refilled", f.client(t).login("owner@acme.example", testPassword), http.StatusSeeOther)
}

// TestPasswordHashersBusy: with every password hasher taken, a request
// that would hash waits at most the gate's wait, then gets 429; once one
// is free it goes through. Sign-in, password change and invitation alike.
func TestPasswordHashersBusy(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	oc := f.session(t, owner)
	r := oc.post("/members/invite", url.Values{"csrf": {oc.csrf("/members")}, "email": {"new@acme.example"}, "role": {"viewer"}})
	link, _ := url.Parse(inviteLinkRE.FindStringSubmatch(r.body)[1])
	newcomer := f.client(t)
	page := newcomer.get(link.Path)
	inviteCSRF := csrfRE.FindStringSubmatch(page.body)[1]
	accept := func() response {
		return newcomer.post(link.Path, url.Values{"csrf": {inviteCSRF}, "password": {"a long enough password"}, "confirm": {"a long enough password"}})
	}
	change := func() response {
		return oc.post("/account/password", url.Values{"csrf": {oc.csrf("/account")}, "current": {testPassword}, "new": {"a new long passphrase"}, "confirm": {"a new long passphrase"}})
	}

	f.dash.hashing = newGate(1, time.Millisecond)
	if !f.dash.hashing.enter(context.Background()) {
		t.Fatal("the only hasher is taken")
	}
	for _, tc := range []struct {
		name string
		r    response
	}{
		{"login", f.client(t).login("owner@acme.example", testPassword)},
		{"password change", change()},
		{"invitation", accept()},
	} {
		wantStatus(t, tc.name+" with every hasher busy", tc.r, http.StatusTooManyRequests)
		if tc.r.Header.Get("Retry-After") != "1" || !strings.Contains(tc.r.body, "Try again in a moment") {
			t.Errorf("%s: Retry-After %q, page %.300s", tc.name, tc.r.Header.Get("Retry-After"), tc.r.body)
		}
	}
	f.dash.hashing.leave()
	wantStatus(t, "login with a hasher free", f.client(t).login("owner@acme.example", testPassword), http.StatusSeeOther)
	wantStatus(t, "password change with a hasher free", change(), http.StatusSeeOther)
	wantStatus(t, "invitation with a hasher free", accept(), http.StatusSeeOther)
	if !f.dash.hashing.enter(context.Background()) {
		t.Fatal("a request kept its hasher")
	}
}

func TestSessionExpires(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	c := f.session(t, u)
	wantStatus(t, "fresh session", c.get("/overview"), http.StatusOK)
	f.clock.add(f.dash.ttl - time.Second)
	wantStatus(t, "session about to expire", c.get("/overview"), http.StatusOK)
	f.clock.add(2 * time.Second)
	wantLoginRedirect(t, "expired session", c.get("/overview"))
}

func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	c, other := f.session(t, u), f.session(t, u)
	before := c.sessionToken()
	r := c.post("/account/password", url.Values{"csrf": {c.csrf("/account")}, "current": {testPassword}, "new": {"a new long passphrase"}, "confirm": {"a new long passphrase"}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/account?done=password" {
		t.Fatalf("change password: %d to %q: %.200s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	if c.sessionToken() == before {
		t.Fatal("the changing browser kept its old session token")
	}
	wantStatus(t, "the changing browser", c.get("/overview"), http.StatusOK)
	wantLoginRedirect(t, "another session after the change", other.get("/overview"))
	wantStatus(t, "login with the new password", f.client(t).login("owner@acme.example", "a new long passphrase"), http.StatusSeeOther)
	wantStatus(t, "login with the old password", f.client(t).login("owner@acme.example", testPassword), http.StatusUnauthorized)
}

func TestRemovedMemberLosesSessions(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	owner := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	v := f.user(t, org, "viewer@acme.example", controlplane.RoleViewer)
	oc, vc := f.session(t, owner), f.session(t, v)
	wantStatus(t, "viewer before removal", vc.get("/overview"), http.StatusOK)
	r := oc.post("/members/"+v.ID+"/remove", url.Values{"csrf": {oc.csrf("/members")}})
	wantStatus(t, "remove", r, http.StatusSeeOther)
	wantLoginRedirect(t, "removed viewer", vc.get("/overview"))
	wantStatus(t, "removed viewer's API call", vc.get("/api/v1/dashboard/usage"), http.StatusUnauthorized)
}

func TestCSRFRejected(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	c := f.session(t, u)
	other := f.session(t, u) // same user, another session: another token
	otherTok := other.csrf("/fleet")
	for name, form := range map[string]url.Values{
		"missing":             {"ttl": {"24h"}},
		"empty":               {"ttl": {"24h"}, "csrf": {""}},
		"forged":              {"ttl": {"24h"}, "csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
		"another session's":   {"ttl": {"24h"}, "csrf": {otherTok}},
		"in the query string": nil,
	} {
		path := "/fleet/tokens"
		if form == nil {
			path += "?csrf=" + url.QueryEscape(c.csrf("/fleet"))
			form = url.Values{"ttl": {"24h"}}
		}
		r := c.post(path, form)
		wantStatus(t, name+" CSRF token", r, http.StatusForbidden)
	}
	if toks, _ := f.env.Store.EnrollTokens(t.Context(), org); len(toks) != 0 {
		t.Fatalf("%d tokens created by rejected requests", len(toks))
	}
	wantStatus(t, "valid CSRF token", c.post("/fleet/tokens", url.Values{"ttl": {"24h"}, "csrf": {c.csrf("/fleet")}}), http.StatusOK)
	wantStatus(t, "logout without token", c.post("/logout", nil), http.StatusForbidden)

	// The login form's token is bound to its pre-session cookie.
	fresh := f.client(t)
	wantStatus(t, "login without token", fresh.post("/login", url.Values{"email": {"owner@acme.example"}, "password": {testPassword}}), http.StatusForbidden)
	stranger := f.client(t)
	tok := stranger.csrf("/login")
	fresh.csrf("/login")
	wantStatus(t, "login with another browser's token", fresh.post("/login", url.Values{"csrf": {tok}, "email": {"owner@acme.example"}, "password": {testPassword}}), http.StatusForbidden)

	// The JSON API: the header, and JSON only.
	edge := f.env.EnrollEdge(t, org)
	path := "/api/v1/dashboard/edges/" + edge.EdgeID + "/revoke"
	wantStatus(t, "API without CSRF header", c.postJSON(path, "{}", nil), http.StatusForbidden)
	wantStatus(t, "API with a form body", c.post(path, url.Values{"csrf": {c.csrf("/fleet")}}), http.StatusUnsupportedMediaType)
	wantStatus(t, "API with CSRF header", c.postJSON(path, "{}", map[string]string{CSRFHeader: c.csrf("/fleet")}), http.StatusOK)
}

// TestJWTTampering: every forged or stale token is refused like none.
func TestJWTTampering(t *testing.T) {
	f := newFixture(t)
	org, otherOrg := f.env.Org(t), f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	now := f.clock.now()
	good := func() claims {
		return claims{OrgID: org, Epoch: 0, RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Audience: jwt.ClaimStrings{Audience}, Subject: u.ID, ID: "sess-1",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}}
	}
	sign := func(m jwt.SigningMethod, key any, c claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	key := f.dash.jwtKey
	// The control check: a well-formed token works.
	ok := f.client(t)
	ok.setSession(sign(jwt.SigningMethodHS256, key, good()))
	wantStatus(t, "well-formed token", ok.get("/overview"), http.StatusOK)

	mut := func(fn func(*claims)) claims { c := good(); fn(&c); return c }
	valid := sign(jwt.SigningMethodHS256, key, good())
	parts := strings.Split(valid, ".")
	for name, tok := range map[string]string{
		"alg none":            sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good()),
		"alg none, no sig":    strings.Join([]string{"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", parts[1], ""}, "."),
		"alg HS512, same key": sign(jwt.SigningMethodHS512, key, good()),
		"alg HS384, same key": sign(jwt.SigningMethodHS384, key, good()),
		"signed with the root key, not the session subkey": sign(jwt.SigningMethodHS256, f.dash.key, good()),
		"bad signature":  parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"payload edited": parts[0] + "." + sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.OrgID = otherOrg }))[len(parts[0])+1:][:len(parts[1])] + "." + parts[2],
		"expired":        sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second)) })),
		"missing exp":    sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.ExpiresAt = nil })),
		"issued in the future": sign(jwt.SigningMethodHS256, key, mut(func(c *claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour))
		})),
		"wrong issuer":   sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.Issuer = "someone-else" })),
		"no issuer":      sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.Issuer = "" })),
		"wrong audience": sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.Audience = jwt.ClaimStrings{"codex-edge"} })),
		"no audience":    sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.Audience = nil })),
		"stale epoch":    sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.Epoch = -1 })),
		"another org":    sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.OrgID = otherOrg })),
		"unknown user":   sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.Subject = "usr_nobody" })),
		"no session id":  sign(jwt.SigningMethodHS256, key, mut(func(c *claims) { c.ID = "" })),
		"garbage":        "not.a.jwt",
	} {
		c := f.client(t)
		c.setSession(tok)
		wantLoginRedirect(t, name, c.get("/overview"))
		wantStatus(t, name+" (API)", c.get("/api/v1/dashboard/edges"), http.StatusUnauthorized)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	c := f.session(t, u)
	for _, path := range []string{"/login", "/overview", "/fleet", "/members", "/privacy", "/account", "/static/style.css", "/invite/cpinvite_x"} {
		r := c.get(path)
		h := r.Header
		if h.Get("Content-Security-Policy") != CSP || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			h.Get("Referrer-Policy") != "no-referrer" || !strings.HasPrefix(h.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("%s: headers %v", path, h)
		}
		if strings.Contains(r.body, "<script") || strings.Contains(r.body, " style=") || strings.Contains(r.body, "<style") {
			t.Errorf("%s: inline script or style in the page", path)
		}
	}
	if r := c.get("/no/such/page"); r.StatusCode != http.StatusNotFound || r.Header.Get("Content-Security-Policy") != CSP || !strings.Contains(r.body, "Not found") {
		t.Errorf("unknown page: %d, CSP %q", r.StatusCode, r.Header.Get("Content-Security-Policy"))
	}
	if !strings.Contains(CSP, "default-src 'self'") || !strings.Contains(CSP, "frame-ancestors 'none'") || strings.Contains(CSP, "unsafe-inline") {
		t.Fatalf("CSP %q", CSP)
	}
}
