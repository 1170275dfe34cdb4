package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/dashboard"
	"github.com/persiv/codex/controlplane/password"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/totp"
)

func openDataStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCLIOrgByName: every command taking --org accepts an org id or an
// org name; a name several orgs share is refused, naming their ids.
func TestCLIOrgByName(t *testing.T) {
	env := map[string]string{"CODEX_DATA_DIR": t.TempDir()}
	_, out, _ := runCmd(t, env, "", "orgs", "create", "Solo Ltd")
	solo := strings.TrimSpace(out)
	_, out, _ = runCmd(t, env, "", "orgs", "create", "Twin")
	twin1 := strings.TrimSpace(out)
	_, out, _ = runCmd(t, env, "", "orgs", "create", "Twin")
	twin2 := strings.TrimSpace(out)
	const pw = "a long enough passphrase\n"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		err   []string
	}{
		{"user by name", pw, []string{"users", "create", "--org", "Solo Ltd", "--email", "a@solo.example", "--role", "owner"}, 0, nil},
		{"user by id", pw, []string{"users", "create", "--org", solo, "--email", "b@solo.example", "--role", "viewer"}, 0, nil},
		{"token by name", "", []string{"enroll-token", "create", "--org", "Solo Ltd"}, 0, nil},
		{"ambiguous name", pw, []string{"users", "create", "--org", "Twin", "--email", "c@twin.example", "--role", "owner"}, 1, []string{twin1, twin2}},
		{"ambiguous name, token", "", []string{"enroll-token", "create", "--org", "Twin"}, 1, []string{"2 orgs are named"}},
		{"unknown", "", []string{"enroll-token", "create", "--org", "Nobody"}, 1, []string{`"Nobody"`}},
	} {
		code, out, errs := runCmd(t, env, tc.stdin, tc.args...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d (%q %q)", tc.name, code, tc.code, out, errs)
		}
		for _, w := range tc.err {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errs, w)
			}
		}
	}
	s := openDataStore(t, env["CODEX_DATA_DIR"])
	users, err := s.Users(context.Background(), solo)
	if err != nil || len(users) != 2 {
		t.Fatalf("Solo's users = %+v, %v", users, err)
	}
	if toks, _ := s.EnrollTokens(context.Background(), solo); len(toks) != 1 {
		t.Fatalf("Solo's tokens: %d, want 1", len(toks))
	}
}

var otpauthRE = regexp.MustCompile(`^otpauth://totp/[^\s]+\n$`)

// TestCLIStaff: staff create reads the password from stdin, stores its
// argon2id hash and a sealed TOTP secret, and prints the otpauth:// URI
// once; staff disable disables the account.
func TestCLIStaff(t *testing.T) {
	env := map[string]string{"CODEX_DATA_DIR": t.TempDir()}
	code, out, errs := runCmd(t, env, "a long enough passphrase\n", "staff", "create", "--email", "Ops@Persiv.example")
	if code != 0 || !otpauthRE.MatchString(out) {
		t.Fatalf("staff create = %d %q %q", code, out, errs)
	}
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	secret := u.Query().Get("secret")
	if secret == "" || !strings.Contains(u.Path, "ops@persiv.example") || strings.Contains(errs, secret) {
		t.Fatalf("otpauth URI %q", out)
	}
	s := openDataStore(t, env["CODEX_DATA_DIR"])
	st, err := s.StaffByEmail(context.Background(), "ops@persiv.example")
	if err != nil || st.Disabled() || password.Verify("a long enough passphrase", st.PasswordHash) != nil {
		t.Fatalf("stored staff = %+v, %v", st, err)
	}
	if bytes.Contains(st.TOTPSecret, []byte(secret)) {
		t.Fatal("the TOTP secret is stored in the clear")
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"twice", "another long passphrase\n", []string{"staff", "create", "--email", "ops@persiv.example"}, 1},
		{"no password", "", []string{"staff", "create", "--email", "x@persiv.example"}, 1},
		{"bad email", "a long enough passphrase\n", []string{"staff", "create", "--email", "ops"}, 2},
		{"no subcommand", "", []string{"staff"}, 2},
		{"disable unknown", "", []string{"staff", "disable", "--email", "nobody@persiv.example"}, 1},
	} {
		if code, out, errs := runCmd(t, env, tc.stdin, tc.args...); code != tc.want {
			t.Errorf("%s: exit %d, want %d (%q %q)", tc.name, code, tc.want, out, errs)
		}
	}
	if code, out, errs := runCmd(t, env, "", "staff", "disable", "--email", "ops@persiv.example"); code != 0 {
		t.Fatalf("staff disable = %d %q %q", code, out, errs)
	}
	if st, err := s.StaffMember(context.Background(), st.ID); err != nil || !st.Disabled() {
		t.Fatalf("after disable: %+v, %v", st, err)
	}
}

// staffBrowser signs in at /staff/login over plain HTTP on loopback,
// carrying the Secure cookies itself (Go's cookie jar would not send them
// over http; browsers do on loopback).
type staffBrowser struct {
	t       *testing.T
	base    string
	cookies map[string]string
}

func (b *staffBrowser) do(method, path string, form url.Values) *http.Response {
	b.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(b.cookies, ck.Name)
		} else {
			b.cookies[ck.Name] = ck.Value
		}
	}
	return resp
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestStaffDisableEndsLiveSession: a staff member signed in to a running
// serve (password and TOTP code) loses the session at its next request
// once `staff disable` has run in another process's CLI.
func TestStaffDisableEndsLiveSession(t *testing.T) {
	dir := t.TempDir()
	listen := freePort(t)
	env := map[string]string{"CODEX_DATA_DIR": dir, "CODEX_CONTROLPLANE_LISTEN": listen, "CODEX_NATS_LISTEN": freePort(t), "CODEX_LOG_LEVEL": "warn"}
	code, out, errs := runCmd(t, env, "a long enough passphrase\n", "staff", "create", "--email", "ops@persiv.example")
	if code != 0 {
		t.Fatalf("staff create: %d %q", code, errs)
	}
	u, _ := url.Parse(strings.TrimSpace(out))
	secret := u.Query().Get("secret")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var logs syncBuffer
	go func() { done <- Run(ctx, []string{"serve"}, strings.NewReader(""), &bytes.Buffer{}, &logs, envOf(env)) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, logs.String())
		}
	}()
	b := &staffBrowser{t: t, base: "http://" + listen, cookies: map[string]string{}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(b.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp := b.do(http.MethodGet, "/staff/login", nil)
	page := new(bytes.Buffer)
	_, err := page.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := csrfField.FindStringSubmatch(page.String())
	if m == nil {
		t.Fatalf("staff login page: %d", resp.StatusCode)
	}
	code6, err := totp.Code(secret, totp.Step(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	resp = b.do(http.MethodPost, "/staff/login", url.Values{"csrf": {m[1]}, "email": {"ops@persiv.example"}, "password": {"a long enough passphrase"}, "code": {code6}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/staff" || b.cookies[dashboard.StaffCookie] == "" {
		t.Fatalf("staff login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = b.do(http.MethodGet, "/staff", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("staff home while signed in: %d", resp.StatusCode)
	}
	if code, out, errs := runCmd(t, env, "", "staff", "disable", "--email", "ops@persiv.example"); code != 0 {
		t.Fatalf("staff disable = %d %q %q", code, out, errs)
	}
	resp = b.do(http.MethodGet, "/staff", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/staff/login" {
		t.Fatalf("staff home after staff disable: %d to %q, want 303 to /staff/login", resp.StatusCode, resp.Header.Get("Location"))
	}
	s := openDataStore(t, dir)
	log, err := s.AccessLog(context.Background(), "")
	if err != nil || len(log) != 2 || log[0].Kind != controlplane.EventSignIn || log[1].Kind != controlplane.EventStaffDisabled {
		t.Fatalf("staff access log = %+v, %v; want the sign-in and the disabling", log, err)
	}
}
