package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/config"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/password"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func runCmd(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(stdin), &out, &errb, envOf(env))
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	env := map[string]string{"CODEX_DATA_DIR": t.TempDir()}
	code, out, errs := runCmd(t, env, "", "orgs", "create", "Acme Corp")
	if code != 0 || !regexp.MustCompile(`^org_[a-z2-7]{26}\n$`).MatchString(out) {
		t.Fatalf("orgs create = %d %q %q", code, out, errs)
	}
	org := strings.TrimSpace(out)

	code, out, errs = runCmd(t, env, "a long enough passphrase\n", "users", "create", "--org", org, "--email", "Ada@Example.com", "--role", "owner")
	if code != 0 || !strings.HasPrefix(out, "usr_") {
		t.Fatalf("users create = %d %q %q", code, out, errs)
	}
	code, out, errs = runCmd(t, env, "", "enroll-token", "create", "--org", org, "--ttl", "2h")
	if code != 0 || !regexp.MustCompile(`^`+enroll.TokenPrefix+`[a-z2-7]{52}\n$`).MatchString(out) {
		t.Fatalf("enroll-token create = %d %q %q", code, out, errs)
	}

	s, err := sqlite.Open(context.Background(), filepath.Join(env["CODEX_DATA_DIR"], "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	users, err := s.Users(context.Background(), org)
	if err != nil || len(users) != 1 || users[0].Email != "ada@example.com" || users[0].Role != controlplane.RoleOwner {
		t.Fatalf("users = %+v, %v", users, err)
	}
	if err := password.Verify("a long enough passphrase", users[0].PasswordHash); err != nil {
		t.Fatalf("stored hash does not verify: %v", err)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"no command", "", nil, 2},
		{"unknown command", "", []string{"frobnicate"}, 2},
		{"orgs without name", "", []string{"orgs", "create"}, 2},
		{"bad role", "a long enough passphrase\n", []string{"users", "create", "--org", org, "--email", "b@example.com", "--role", "root"}, 2},
		{"bad email", "a long enough passphrase\n", []string{"users", "create", "--org", org, "--email", "nobody", "--role", "viewer"}, 2},
		{"no password", "", []string{"users", "create", "--org", org, "--email", "c@example.com", "--role", "viewer"}, 1},
		{"short password", "short\n", []string{"users", "create", "--org", org, "--email", "c@example.com", "--role", "viewer"}, 1},
		{"unknown org", "a long enough passphrase\n", []string{"users", "create", "--org", "org_nope", "--email", "d@example.com", "--role", "viewer"}, 1},
		{"token for unknown org", "", []string{"enroll-token", "create", "--org", "org_nope"}, 1},
		{"token ttl too long", "", []string{"enroll-token", "create", "--org", org, "--ttl", "9000h"}, 1},
		{"password flag", "", []string{"users", "create", "--org", org, "--email", "e@example.com", "--role", "viewer", "--password", "x"}, 2},
	} {
		if code, out, errs := runCmd(t, env, tc.stdin, tc.args...); code != tc.want {
			t.Errorf("%s: exit %d, want %d (%q %q)", tc.name, code, tc.want, out, errs)
		}
	}

	code, out, _ = runCmd(t, env, "", "nats-config")
	if code != 0 || !strings.Contains(out, "operator: ") || !strings.Contains(out, "resolver_preload") || !strings.Contains(out, "max_connections: 4096\n") {
		t.Fatalf("nats-config = %d %q", code, out)
	}
	if seedRE.MatchString(out) {
		t.Fatal("nats-config prints a seed")
	}
	if fi, err := os.Stat(filepath.Join(env["CODEX_DATA_DIR"], "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.key: %v, want mode 0600", err)
	}
	// The NATS seeds are in the store that every instance shares, sealed.
	if got := storedSeeds(t, env["CODEX_DATA_DIR"]); got != 3 {
		t.Fatalf("%d sealed NATS seeds stored, want 3 (operator, system, ingest)", got)
	}
	if _, err := os.Stat(filepath.Join(env["CODEX_DATA_DIR"], "nats", "keys")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("nats/keys: %v, want no seed files", err)
	}
	scanForSeeds(t, env["CODEX_DATA_DIR"])
}

// storedSeeds counts the sealed NATS seeds (the accounts' and orgs') in
// the SQLite store of the data directory dir.
func storedSeeds(t *testing.T, dir string) int {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	n := 0
	for _, name := range []string{"nats/operator", "nats/system", "nats/ingest"} {
		b, err := st.DeploymentSecret(t.Context(), name)
		if err == nil && sealer.IsSealed(b) {
			n++
		}
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	rows, err := db.QueryContext(t.Context(), `SELECT sealed FROM nats_org_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		if sealer.IsSealed(b) {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// seedRE matches an operator, account or user seed in the clear.
var seedRE = regexp.MustCompile(`S[OAU][A-Z2-7]{56}`)

// scanForSeeds fails the test for any file under dir holding a seed in
// the clear.
func scanForSeeds(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		if b, err := os.ReadFile(path); err != nil || seedRE.Match(b) {
			t.Errorf("%s: holds a NATS seed in the clear (%v)", path, err)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("scan %s: %d files, %v", dir, n, err)
	}
}

// TestSecretsKey: CODEX_SECRETS_KEK or CODEX_SECRETS_KEK_FILE seal the
// seeds instead of a key file in the data directory, and another key is
// refused.
func TestSecretsKey(t *testing.T) {
	dir := t.TempDir()
	keyHex := strings.Repeat("5a", 32)
	keyFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(keyFile, []byte(keyHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"CODEX_SECRETS_KEK", map[string]string{"CODEX_SECRETS_KEK": keyHex}, true},
		{"the same key from a file", map[string]string{"CODEX_SECRETS_KEK_FILE": keyFile}, true},
		{"another key", map[string]string{"CODEX_SECRETS_KEK": strings.Repeat("a5", 32)}, false},
		{"the development key file", map[string]string{}, false},
		{"a malformed key", map[string]string{"CODEX_SECRETS_KEK": "secret"}, false},
	} {
		tc.env["CODEX_DATA_DIR"] = dir
		code, out, errs := runCmd(t, tc.env, "", "nats-config")
		if (code == 0) != tc.ok || (code == 0 && !strings.Contains(out, "operator: ")) {
			t.Errorf("%s: exit %d, %q", tc.name, code, errs)
		}
		if !tc.ok && strings.Contains(errs, keyHex) {
			t.Errorf("%s: the error shows the key", tc.name)
		}
	}
	if got := storedSeeds(t, dir); got != 3 {
		t.Fatalf("%d sealed NATS seeds stored, want 3", got)
	}
	scanForSeeds(t, dir)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServe runs the binary's serve end to end: an edge enrolls over HTTP,
// publishes a batch over the embedded NATS, and the batch is stored.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	listen := freePort(t)
	logs := serveAndIngest(t, map[string]string{"CODEX_DATA_DIR": dir, "CODEX_CONTROLPLANE_LISTEN": listen, "CODEX_NATS_LISTEN": freePort(t), "CODEX_LOG_LEVEL": "info"})
	if want := `"dashboard":"http://` + listen + `/"`; !strings.Contains(logs, want) {
		t.Errorf("serve did not log the dashboard URL (%s)", want)
	}
	if !strings.Contains(logs, "DEVELOPMENT ONLY") {
		t.Error("serve did not warn of the development secrets key file")
	}
	// Operator, accounts and the org's signing key, sealed at rest.
	if got := storedSeeds(t, dir); got != 4 {
		t.Errorf("%d sealed NATS seeds stored, want 4 (3 accounts and the org's)", got)
	}
	scanForSeeds(t, dir)
}

// TestServeTLS: with a certificate, the API and the embedded NATS speak
// TLS 1.3 only.
func TestServeTLS(t *testing.T) {
	cert, key := testenv.SelfSigned(t)
	logs := serveAndIngest(t, map[string]string{"CODEX_DATA_DIR": t.TempDir(), "CODEX_CONTROLPLANE_LISTEN": freePort(t), "CODEX_NATS_LISTEN": freePort(t),
		"CODEX_LOG_LEVEL": "info", "CODEX_TLS_CERT": cert, "CODEX_TLS_KEY": key})
	// serve prints its certificate's key pin, for CODEX_CONTROLPLANE_PINS.
	pemData, _ := os.ReadFile(cert)
	block, _ := pem.Decode(pemData)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	if want := `"pin":"` + base64.StdEncoding.EncodeToString(sum[:]) + `"`; !strings.Contains(logs, want) {
		t.Errorf("serve did not log its key pin %s", want)
	}
}

// TestServeWithExternalNATS runs a nats-server configured only from what
// nats-config prints, and serve against it through CODEX_NATS_URL.
func TestServeWithExternalNATS(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"CODEX_DATA_DIR": dir, "CODEX_CONTROLPLANE_LISTEN": freePort(t), "CODEX_LOG_LEVEL": "warn"}
	code, conf, errs := runCmd(t, env, "", "nats-config", "--resolver-dir", filepath.Join(t.TempDir(), "resolver"))
	if code != 0 {
		t.Fatalf("nats-config: %d %s", code, errs)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the printed config: %v", err)
	}
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, t.TempDir(), true, true
	// The account may use 16 GiB: a server that sized its store from the
	// free disk (less than 16 GiB free here) would refuse it JetStream.
	if opts.JetStreamMaxStore != natsauth.DefaultMaxStorage {
		t.Fatalf("nats-config's store bound %d, want the account's %d", opts.JetStreamMaxStore, int64(natsauth.DefaultMaxStorage))
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("external nats-server not ready")
	}
	env["CODEX_NATS_URL"] = srv.ClientURL()
	serveAndIngest(t, env)
}

func serveAndIngest(t *testing.T, env map[string]string) string {
	listen := env["CODEX_CONTROLPLANE_LISTEN"]
	_, out, _ := runCmd(t, env, "", "orgs", "create", "Acme")
	org := strings.TrimSpace(out)
	_, out, _ = runCmd(t, env, "", "enroll-token", "create", "--org", org)
	token := strings.TrimSpace(out)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var logs syncBuffer
	go func() { done <- Run(ctx, []string{"serve"}, strings.NewReader(""), &bytes.Buffer{}, &logs, envOf(env)) }()
	base, client, natsOpts := "http://"+listen, http.DefaultClient, []nats.Option(nil)
	checkOldTLS := func() {}
	if cert := env["CODEX_TLS_CERT"]; cert != "" {
		pemData, _ := os.ReadFile(cert)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemData)
		base = "https://" + listen
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS13}}}
		natsOpts = append(natsOpts, nats.RootCAs(cert))
		// TLS 1.2 is refused by the API and by NATS.
		checkOldTLS = func() {
			old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}}}
			if resp, err := old.Get(base + "/healthz"); err == nil {
				resp.Body.Close()
				t.Error("API accepted TLS 1.2")
			}
			nc, err := nats.Connect("tls://"+env["CODEX_NATS_LISTEN"], nats.Secure(&tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}), nats.NoReconnect())
			if err == nil {
				nc.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "version") {
				t.Errorf("NATS with TLS 1.2: %v, want a handshake failure", err)
			}
		}
	}
	testenv.Eventually(t, 20*time.Second, "readyz", func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	checkOldTLS()

	// The dashboard is served beside the API, its session key kept private.
	resp, err := client.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET /login: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	// The session keys are in the store, sealed (every instance shares
	// them), not in files.
	if dir := env["CODEX_DATA_DIR"]; dir != "" && env["CODEX_DATABASE_URL"] == "" {
		if _, err := os.Stat(filepath.Join(dir, "dashboard", "session.key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dashboard session key file: %v, want none", err)
		}
		st, err := sqlite.Open(t.Context(), filepath.Join(dir, "controlplane.db"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"dashboard-session", "staff-session"} {
			if b, err := st.DeploymentSecret(t.Context(), name); err != nil || !sealer.IsSealed(b) {
				t.Errorf("deployment secret %s: %v; want it stored, sealed", name, err)
			}
		}
		_ = st.Close()
	}

	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	body, _ := json.Marshal(wire.EnrollRequest{Token: token, PublicKey: pub, Name: "edge-a", Version: "0.1.0"})
	resp, err = client.Post(base+"/api/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var er wire.EnrollResponse
	err = json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("enroll: %d %v", resp.StatusCode, err)
	}
	if env["CODEX_TLS_CERT"] != "" && resp.TLS == nil {
		t.Fatal("enrolled over plain HTTP")
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS header")
	}
	nc, err := testenv.Edge{EnrollResponse: er, Key: kp}.Connect(natsOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if env["CODEX_TLS_CERT"] != "" {
		if st, err := nc.TLSConnectionState(); err != nil || st.Version != tls.VersionTLS13 {
			t.Fatalf("edge NATS connection: TLS %x, %v", st.Version, err)
		}
	}
	js, _ := jetstream.New(nc)
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	data, err := wire.Encode(storetest.Batch(org, er.EdgeID, 1, start, 5))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := js.Publish(pctx, er.Subject, data, jetstream.WithMsgID(wire.MsgID(er.EdgeID, 1))); err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Load("", envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testenv.Eventually(t, 20*time.Second, "batch stored", func() bool {
		rows, err := s.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: start, To: start.Add(time.Hour), Step: controlplane.Minute})
		return err == nil && len(rows) == 1 && rows[0].Requests == 10
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	return logs.String()
}

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServePostgres runs the production store path: migrate as the owner,
// then the CLI and serve as the application role.
func TestServePostgres(t *testing.T) {
	owner, app := pgtest.EmptyDB(t, "cp_cmd_")
	env := map[string]string{"CODEX_DATA_DIR": t.TempDir(), "CODEX_DATABASE_URL": app, "CODEX_CONTROLPLANE_LISTEN": freePort(t), "CODEX_NATS_LISTEN": freePort(t), "CODEX_LOG_LEVEL": "warn"}
	if code, _, _ := runCmd(t, env, "", "orgs", "create", "Acme"); code == 0 {
		t.Fatal("orgs create worked before migrate")
	}
	ownerEnv := map[string]string{"CODEX_DATA_DIR": env["CODEX_DATA_DIR"], "CODEX_DATABASE_URL": owner}
	if code, _, errs := runCmd(t, ownerEnv, "", "migrate"); code != 0 {
		t.Fatalf("migrate: %s", errs)
	}
	if code, _, errs := runCmd(t, ownerEnv, "", "serve"); code != 1 || !strings.Contains(errs, "application role") {
		t.Fatalf("serve as the owner: exit %d, %q", code, errs)
	}
	serveAndIngest(t, env)
}

func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	env := map[string]string{"CODEX_DATA_DIR": t.TempDir(), "CODEX_CONTROLPLANE_LISTEN": "0.0.0.0:0"}
	code, _, errs := runCmd(t, env, "", "serve")
	if code != 1 || !strings.Contains(errs, "plain HTTP") {
		t.Fatalf("serve on 0.0.0.0 without TLS: exit %d, %q", code, errs)
	}
}
