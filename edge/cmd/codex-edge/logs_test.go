package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/edge/apikey"
)

// TestLogsCarryNoSecrets runs the whole product as real processes (control
// plane with embedded NATS, enrolled edge sharing metrics, fake provider) at
// debug level, drives every route, error path and admin surface with
// canaries in the content and in every secret, then scans everything both
// binaries wrote (structured logs, and whatever else reaches stdout or
// stderr: a panic's trace included) for the canaries. Processes, not
// in-process servers, so that output written outside log/slog is scanned
// too.
func TestLogsCarryNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin := buildBinaries(t)
	canary := func(kind string) string { return "canary" + kind + randHex(t, 8) }
	var (
		prompt        = canary("prompt")
		system        = canary("system")
		providerKey   = "sk-" + canary("providerkey")
		wrongProvider = "sk-" + canary("wrongprovider")
		stdinProvider = "sk-ant-" + canary("stdinprovider")
		adminToken    = canary("admintoken")
		wrongAdmin    = canary("wrongadmin")
		password      = canary("password")
		wrongPassword = canary("wrongpassword")
		byok          = make([]byte, 32)
	)
	rand.Read(byok)
	byokB64 := base64.StdEncoding.EncodeToString(byok)
	secrets := map[string]string{
		"prompt": prompt, "system prompt": system, "provider key": providerKey, "rejected provider key": wrongProvider,
		"provider key from stdin": stdinProvider, "admin token": adminToken, "wrong admin token": wrongAdmin,
		"dashboard password": password, "wrong dashboard password": wrongPassword,
		"BYOK key (base64)": byokB64, "BYOK key (hex)": hex.EncodeToString(byok),
	}
	var outputs []*proc // everything the binaries wrote, to scan at the end

	// The control plane: an org, an owner, an enrollment token.
	cpEnv := map[string]string{
		"CODEX_DATA_DIR": t.TempDir(), "CODEX_CONTROLPLANE_LISTEN": freeAddr(t), "CODEX_NATS_LISTEN": freeAddr(t),
		"CODEX_LOG_LEVEL": "debug",
	}
	cp := func(stdin string, args ...string) string {
		p := runProc(t, bin, "codex-controlplane", cpEnv, stdin, args...)
		outputs = append(outputs, p)
		return strings.TrimSpace(p.stdout.String())
	}
	cpOrg := cp("", "orgs", "create", "Canary Inc")
	cp(password+"\n", "users", "create", "--org", cpOrg, "--email", "owner@example.com", "--role", "owner")
	token := cp("", "enroll-token", "create", "--org", cpOrg)
	secrets["enrollment token"] = token
	cpServe := startProc(t, bin, "codex-controlplane", cpEnv, "serve")
	outputs = append(outputs, cpServe)
	cpURL := "http://" + cpEnv["CODEX_CONTROLPLANE_LISTEN"]
	waitReady(t, cpURL+"/readyz")

	// The fake provider accepts only providerKey (the one org whose
	// credential is wrong gets the provider's own 401).
	fake := startProc(t, bin, "codex-fakeprovider", map[string]string{
		"CODEX_FAKE_OPENAI_KEY": providerKey, "CODEX_FAKE_ANTHROPIC_KEY": stdinProvider,
	}, "-listen", "127.0.0.1:0")
	fakeURL := fake.firstLine(t)

	// The edge: BYOK master key and an admin token from the environment,
	// provider keys from the environment and from stdin.
	edgeEnv := map[string]string{
		"CODEX_DATA_DIR": t.TempDir(), "CODEX_LISTEN": freeAddr(t), "CODEX_ADMIN_LISTEN": freeAddr(t),
		"CODEX_KEK": "byok", "CODEX_BYOK_KEY": byokB64, "CODEX_ADMIN_TOKEN": adminToken,
		"CODEX_LOG_LEVEL": "debug", "CODEX_TELEMETRY_WINDOW": "1s",
		"PROVIDER_KEY": providerKey, "WRONG_PROVIDER_KEY": wrongProvider,
	}
	edgeCmd := func(stdin string, args ...string) string {
		p := runProc(t, bin, "codex-edge", edgeEnv, stdin, args...)
		outputs = append(outputs, p)
		return strings.TrimSpace(p.stdout.String())
	}
	edgeCmd("", "orgs", "create", "acme")
	edgeCmd("", "providers", "set", "--org", "acme", "openai", "--api-key-env", "PROVIDER_KEY", "--base-url", fakeURL)
	edgeCmd(stdinProvider+"\n", "providers", "set", "--org", "acme", "anthropic", "--api-key-stdin", "--base-url", fakeURL)
	gatewayKey := edgeCmd("", "keys", "create", "--org", "acme", "--name", "alice")
	revokedKey := edgeCmd("", "keys", "create", "--org", "acme", "--name", "bob")
	edgeCmd("", "orgs", "create", "wrongcred")
	edgeCmd("", "providers", "set", "--org", "wrongcred", "openai", "--api-key-env", "WRONG_PROVIDER_KEY", "--base-url", fakeURL)
	wrongCredKey := edgeCmd("", "keys", "create", "--org", "wrongcred", "--name", "carol")
	unknownKey, err := apikey.Generate() // a well-formed key the edge never issued
	if err != nil {
		t.Fatal(err)
	}
	secrets["gateway key"], secrets["revoked gateway key"], secrets["gateway key of the wrong-credential org"] = gatewayKey, revokedKey, wrongCredKey
	secrets["unknown gateway key"] = unknownKey.Reveal()
	secrets["malformed gateway key"] = "pk_live_" + canary("typo")
	edgeCmd("", "telemetry", "enroll", "--url", cpURL, "--token", token, "--name", "canary-edge")
	edgeCmd("", "telemetry", "on")
	edgeServe := startProc(t, bin, "codex-edge", edgeEnv, "serve")
	outputs = append(outputs, edgeServe)
	edgeURL, adminURL := "http://"+edgeEnv["CODEX_LISTEN"], "http://"+edgeEnv["CODEX_ADMIN_LISTEN"]
	waitReady(t, edgeURL+"/readyz")

	// Traffic: every route, JSON and streams, with the canaries in the
	// content (the fake echoes the prompt, so answers carry it too).
	chat := fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"%s"},{"role":"user","content":"%s"}]}`, system, prompt)
	chatStream := fmt.Sprintf(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"%s"}]}`, prompt)
	responses := fmt.Sprintf(`{"model":"gpt-4o","instructions":"%s","input":"%s"}`, system, prompt)
	responsesStream := fmt.Sprintf(`{"model":"gpt-4o","stream":true,"input":"%s"}`, prompt)
	embed := fmt.Sprintf(`{"model":"text-embedding-3-small","input":"%s"}`, prompt)
	msgs := fmt.Sprintf(`{"model":"claude-sonnet-4-5","max_tokens":64,"system":"%s","messages":[{"role":"user","content":"%s"}]}`, system, prompt)
	msgsStream := fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"%s"}]}`, prompt)
	count := fmt.Sprintf(`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"%s"}]}`, prompt)
	for _, tc := range []struct {
		name, method, path, key, body string
		want                          int
	}{
		{"chat", "POST", "/v1/chat/completions", gatewayKey, chat, 200},
		{"chat again (cache hit)", "POST", "/v1/chat/completions", gatewayKey, chat, 200},
		{"chat stream", "POST", "/v1/chat/completions", gatewayKey, chatStream, 200},
		{"responses", "POST", "/v1/responses", gatewayKey, responses, 200},
		{"responses stream", "POST", "/v1/responses", gatewayKey, responsesStream, 200},
		{"embeddings", "POST", "/v1/embeddings", gatewayKey, embed, 200},
		{"models", "GET", "/v1/models", gatewayKey, "", 200},
		{"messages", "POST", "/v1/messages", gatewayKey, msgs, 200},
		{"messages stream", "POST", "/v1/messages", gatewayKey, msgsStream, 200},
		{"count tokens", "POST", "/v1/messages/count_tokens", gatewayKey, count, 200},
		{"provider error", "POST", "/v1/chat/completions", gatewayKey, strings.Replace(chat, "gpt-4o-mini", "fake-error-500", 1), 500},
		{"provider refuses the credential", "POST", "/v1/chat/completions", wrongCredKey, chat, 401},
		{"malformed JSON", "POST", "/v1/chat/completions", gatewayKey, `{"model":"gpt-4o","messages":"` + prompt, 400},
		{"unknown key", "POST", "/v1/chat/completions", unknownKey.Reveal(), chat, 401},
		{"malformed key", "POST", "/v1/messages", secrets["malformed gateway key"], msgs, 401},
		{"unknown route", "POST", "/v1/" + prompt, gatewayKey, chat, 404},
	} {
		if got := send(t, tc.method, edgeURL+tc.path, tc.key, tc.body); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	// The admin API: a wrong token, then a revocation with the right one.
	if got := sendAdmin(t, adminURL+"/admin/v1/telemetry", wrongAdmin, "GET"); got != http.StatusUnauthorized {
		t.Errorf("admin API with a wrong token: %d, want 401", got)
	}
	var revokedID string
	for _, line := range strings.Split(edgeCmd("", "keys", "list", "--org", "acme", "--json"), "\n") {
		if strings.Contains(line, `"bob"`) {
			revokedID = regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(line)[1]
		}
	}
	if got := sendAdmin(t, adminURL+"/admin/v1/keys/"+revokedID+"/revoke", adminToken, "POST"); got != http.StatusOK {
		t.Errorf("revoke through the admin API: %d, want 200", got)
	}
	if got := send(t, "POST", edgeURL+"/v1/chat/completions", revokedKey, chat); got != http.StatusUnauthorized {
		t.Errorf("revoked key: status %d, want 401", got)
	}
	// The dashboard: a failed login, then a good one.
	if ok := login(t, cpURL, "owner@example.com", wrongPassword); ok {
		t.Error("login with a wrong password succeeded")
	}
	if ok := login(t, cpURL, "owner@example.com", password); !ok {
		t.Error("login with the right password failed")
	}
	// A batch reaches the control plane, so the link's logging ran too.
	testenv.Eventually(t, 30*time.Second, "a usage batch acknowledged by the control plane", func() bool {
		p := runProc(t, bin, "codex-edge", edgeEnv, "", "telemetry", "status", "--json")
		return regexp.MustCompile(`"last_sent_seq":[1-9]`).MatchString(p.stdout.String())
	})

	edgeServe.stop(t)
	cpServe.stop(t)
	fake.stop(t)
	// The scan means something only if the processes logged what we did.
	for _, want := range []struct {
		p    *proc
		line string
	}{{edgeServe, "codex-edge serving"}, {edgeServe, "gateway key revoked"}, {cpServe, "edge enrolled"}, {cpServe, "dashboard login failed"}} {
		if !strings.Contains(want.p.all(), want.line) {
			t.Fatalf("%s did not log %q; it wrote:\n%s", want.p.name, want.line, want.p.all())
		}
	}
	seed := regexp.MustCompile(`S[OAU][A-Z2-7]{56}`) // an nkey seed: operator, account or user
	lines := 0
	for _, p := range outputs {
		for _, stream := range []struct{ name, text string }{{"stderr", p.stderr.String()}, {"stdout", p.stdout.String()}} {
			if stream.name == "stdout" && !p.serve {
				continue // a CLI's stdout is its answer (keys create prints the key by design)
			}
			for i, line := range strings.Split(stream.text, "\n") {
				lines++
				for what, s := range secrets {
					if strings.Contains(line, s) {
						t.Errorf("%s %s line %d carries the %s: %.300s", p.name, stream.name, i+1, what, line)
					}
				}
				if m := seed.FindString(line); m != "" {
					t.Errorf("%s %s line %d carries an nkey seed: %.300s", p.name, stream.name, i+1, line)
				}
			}
		}
	}
	t.Logf("scanned %d lines from %d processes for %d canaries", lines, len(outputs), len(secrets))
}

// buildBinaries builds the three programs once, with the race detector when
// the test runs with it (reusing its compiled packages).
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/persiv/codex/edge/cmd/codex-edge", "github.com/persiv/codex/edge/cmd/codex-fakeprovider",
		"github.com/persiv/codex/controlplane/cmd/codex-controlplane")
	cmd := exec.Command("go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// proc is one run of a binary and what it wrote.
type proc struct {
	name           string
	serve          bool
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan error
}

func (p *proc) all() string { return p.stdout.String() + p.stderr.String() }

func newProc(bin, name string, env map[string]string, stdin string, args ...string) *proc {
	p := &proc{name: name + " " + strings.Join(args, " "), cmd: exec.Command(filepath.Join(bin, name), args...), done: make(chan error, 1)}
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	return p
}

// runProc runs a CLI command to its end; it must succeed.
func runProc(t *testing.T, bin, name string, env map[string]string, stdin string, args ...string) *proc {
	t.Helper()
	p := newProc(bin, name, env, stdin, args...)
	if err := p.cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", p.name, err, p.stderr.String())
	}
	return p
}

// startProc starts a server; it is stopped (SIGTERM) at the end of the test
// if stop was not called.
func startProc(t *testing.T, bin, name string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := newProc(bin, name, env, "", args...)
	p.serve = true
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited: %v", p.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// firstLine waits for the process's first line of output (the fake
// provider prints its URL).
func (p *proc) firstLine(t *testing.T) string {
	t.Helper()
	var line string
	testenv.Eventually(t, 20*time.Second, p.name+" to print its address", func() bool {
		line, _ = bufio.NewReader(strings.NewReader(p.stdout.String())).ReadString('\n')
		return strings.HasSuffix(line, "\n")
	})
	return strings.TrimSpace(line)
}

func waitReady(t *testing.T, u string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, u, func() bool {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// send makes one request with the gateway key in both header forms and
// reads the whole answer; it returns the status.
func send(t *testing.T, method, u, key, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("x-api-key", key)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode
}

func sendAdmin(t *testing.T, u, token, method string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// login signs in through the dashboard's form as a browser would; it
// reports whether a session was set up.
func login(t *testing.T, base, email, password string) bool {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the login page: %.300s", page)
	}
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") != "/login"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// raceEnabled is set by race_test.go when the tests run with -race.
var raceEnabled bool
