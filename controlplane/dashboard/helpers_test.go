package dashboard

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/password"
	"github.com/persiv/codex/controlplane/testenv"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a dashboard over a real control plane (SQLite store,
// embedded NATS) served over TLS, so that Secure cookies travel.
type fixture struct {
	env   *testenv.Env
	dash  *Server
	echo  *echo.Echo
	srv   *httptest.Server
	clock *clock
}

const testPassword = "correct horse battery staple"

var testHash = sync.OnceValue(func() string {
	h, err := password.Hash(testPassword)
	if err != nil {
		panic(err)
	}
	return h
})

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, testenv.Options{})
}

// newFixtureWith is newFixture on an Env made with o.
func newFixtureWith(t testing.TB, o testenv.Options) *fixture {
	t.Helper()
	return newInstance(t, testenv.New(t, o), []byte("0123456789abcdef0123456789abcdef"), []byte("staff-key-0123456789abcdef012345"))
}

// newInstance is a dashboard over env with these session keys: one
// instance of a control plane that may run several.
func newInstance(t testing.TB, env *testenv.Env, key, staffKey []byte) *fixture {
	t.Helper()
	ck := &clock{t: time.Now().UTC()}
	env.Enroll.Now = ck.now
	d, err := New(Config{Store: env.Store, Enroll: env.Enroll, Key: key, Now: ck.now,
		StaffKey: staffKey, Sealer: env.Sealer, IngestStats: env.Ingester.Stats})
	if err != nil {
		t.Fatal(err)
	}
	api := &httpapi.API{Enroll: env.Enroll, Dashboard: d}
	e := api.Handler()
	srv := httptest.NewTLSServer(e)
	t.Cleanup(srv.Close)
	return &fixture{env: env, dash: d, echo: e, srv: srv, clock: ck}
}

// user creates a member with testPassword.
func (f *fixture) user(t testing.TB, orgID, email string, role controlplane.Role) controlplane.User {
	t.Helper()
	u := controlplane.User{ID: controlplane.NewID("usr"), OrgID: orgID, Email: email, Role: role, PasswordHash: testHash(), CreatedAt: f.clock.now()}
	if err := f.env.Store.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// client is a browser: a cookie jar, no automatic redirects.
type client struct {
	t   testing.TB
	f   *fixture
	hc  *http.Client
	jar *cookiejar.Jar
}

func (f *fixture) client(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	hc := f.srv.Client()
	c := *hc
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client{t: t, f: f, hc: &c, jar: jar}
}

// session returns a client holding a freshly issued session of u.
func (f *fixture) session(t testing.TB, u controlplane.User) *client {
	t.Helper()
	c := f.client(t)
	cur, err := f.env.Store.User(context.Background(), u.OrgID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.dash.issue(cur)
	if err != nil {
		t.Fatal(err)
	}
	c.setSession(tok)
	return c
}

func (c *client) setSession(tok string) {
	u, _ := url.Parse(c.f.srv.URL)
	c.jar.SetCookies(u, []*http.Cookie{{Name: SessionCookie, Value: tok, Path: "/", Secure: true}})
}

func (c *client) sessionToken() string {
	u, _ := url.Parse(c.f.srv.URL)
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == SessionCookie {
			return ck.Value
		}
	}
	return ""
}

type response struct {
	*http.Response
	body string
}

func (c *client) do(req *http.Request) response {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, string(b)}
}

func (c *client) get(path string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.f.srv.URL+path, nil)
	return c.do(req)
}

func (c *client) post(path string, form url.Values) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

func (c *client) postJSON(path, body string, hdr map[string]string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token a page embeds in its forms.
func (c *client) csrf(path string) string {
	c.t.Helper()
	r := c.get(path)
	m := csrfRE.FindStringSubmatch(r.body)
	if m == nil {
		c.t.Fatalf("GET %s: %d, no csrf field", path, r.StatusCode)
	}
	return html.UnescapeString(m[1])
}

// login signs in through the form.
func (c *client) login(email, pw string) response {
	c.t.Helper()
	tok := c.csrf("/login")
	return c.post("/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}})
}

func wantStatus(t testing.TB, what string, r response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body: %.300s", what, r.StatusCode, status, r.body)
	}
}

// wantLoginRedirect checks that a page sent the browser to sign in.
func wantLoginRedirect(t testing.TB, what string, r response) {
	t.Helper()
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Fatalf("%s: %d to %q, want 303 to /login", what, r.StatusCode, r.Header.Get("Location"))
	}
}
