package main

import (
	"context"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane/testenv"
)

// TestLoginFloodKeepsMemoryBounded runs codex-controlplane as a process
// and floods its login form with wrong passwords for distinct emails (each
// one an argon2id check of 64 MiB): first from one address, then from as
// many addresses as requests. The process's peak resident memory, read
// from /proc, must stay bounded, the excess must get 429, and a member
// must still be able to sign in afterwards.
func TestLoginFloodKeepsMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const (
		requests = 60
		maxRSS   = 400 << 20
	)
	bin := buildControlplane(t)
	// Two hashers, the default on two cores, whatever this machine has:
	// the bound below is for them.
	env := map[string]string{"CODEX_DATA_DIR": t.TempDir(), "CODEX_CONTROLPLANE_LISTEN": freePort(t), "CODEX_NATS_LISTEN": freePort(t),
		"CODEX_LOG_LEVEL": "warn", "CODEX_PASSWORD_HASHERS": "2"}
	code, out, errs := runCmd(t, env, "", "orgs", "create", "Flood Inc")
	if code != 0 {
		t.Fatalf("orgs create: %d %s", code, errs)
	}
	const member, pw = "member@example.com", "a long enough passphrase"
	if code, _, errs := runCmd(t, env, pw+"\n", "users", "create", "--org", strings.TrimSpace(out), "--email", member, "--role", "owner"); code != 0 {
		t.Fatalf("users create: %d %s", code, errs)
	}
	cmd := exec.Command(bin, "serve")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"), "HOME="+os.TempDir())
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	base := "http://" + env["CODEX_CONTROLPLANE_LISTEN"]
	testenv.Eventually(t, 30*time.Second, "codex-controlplane ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	idle := procStatus(t, cmd.Process.Pid, "VmRSS")
	t.Logf("idle: VmRSS %d MiB", idle>>20)

	for _, wave := range []struct {
		name string
		from func(i int) string
	}{
		{"one address", func(int) string { return "127.0.0.1" }},
		{"an address each", func(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) }},
	} {
		// Every client has its form (CSRF token and cookie) before any
		// posts, so that the posts arrive together.
		forms := make([]*loginForm, requests)
		for i := range forms {
			forms[i] = openLogin(t, base, wave.from(i))
		}
		statuses := make([]int, requests)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, f := range forms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i] = f.post(fmt.Sprintf("nobody%d@example.com", i), "wrong password "+strconv.Itoa(i))
			}()
		}
		close(start)
		wg.Wait()
		count := map[int]int{}
		for _, s := range statuses {
			count[s]++
		}
		peak := procStatus(t, cmd.Process.Pid, "VmHWM")
		t.Logf("%s: %d concurrent wrong logins answered %v; peak VmHWM %d MiB", wave.name, requests, count, peak>>20)
		if peak > maxRSS {
			t.Fatalf("%s: peak resident memory %d MiB, want under %d MiB", wave.name, peak>>20, maxRSS>>20)
		}
		if count[http.StatusTooManyRequests] == 0 || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != requests {
			t.Errorf("%s: statuses %v, want only 401 and 429, some 429", wave.name, count)
		}
	}

	// A member signs in from elsewhere, retrying as asked while the flood's
	// global budget refills.
	f := openLogin(t, base, "127.0.2.1")
	for try := 0; ; try++ {
		status := f.post(member, pw)
		if status == http.StatusSeeOther {
			break
		}
		if status != http.StatusTooManyRequests || try == 10 {
			t.Fatalf("member's login after the flood: status %d (try %d)", status, try+1)
		}
		wait, _ := strconv.Atoi(f.retryAfter)
		time.Sleep(time.Duration(max(wait, 1)) * time.Second)
		f = openLogin(t, base, "127.0.2.1")
	}
	if out := stderr.String(); strings.Contains(out, "panic") {
		t.Fatalf("codex-controlplane panicked:\n%s", out)
	}
}

// buildControlplane builds the binary without the race detector even when
// the test runs with it: the detector's shadow memory would multiply the
// resident size the test measures. The race-enabled tests of the packages
// cover the same code.
func buildControlplane(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "codex-controlplane")
}

// procStatus reads one of /proc/PID/status's memory lines, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// loginForm is a browser with the login page open, connecting from one
// loopback address.
type loginForm struct {
	t          *testing.T
	base       string
	client     *http.Client
	token      string
	retryAfter string
}

func openLogin(t *testing.T, base, from string) *loginForm {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Jar: jar, Timeout: time.Minute,
		Transport:     &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) }},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
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
	return &loginForm{t: t, base: base, client: c, token: string(m[1])}
}

// post submits the form; it returns the status (303 for a session).
func (f *loginForm) post(email, password string) int {
	resp, err := f.client.PostForm(f.base+"/login", url.Values{"csrf": {f.token}, "email": {email}, "password": {password}})
	if err != nil {
		f.t.Errorf("login: %v", err)
		return 0
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		f.t.Errorf("login: read body: %v", err)
	}
	resp.Body.Close()
	f.retryAfter = resp.Header.Get("Retry-After")
	if resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/login" {
		return http.StatusUnauthorized
	}
	return resp.StatusCode
}
