package natsbus_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/testenv"
)

func mustSealer(t *testing.T, dir string) *sealer.Sealer {
	t.Helper()
	s, err := testenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSysCreds(t *testing.T, env *testenv.Env) (string, nkeys.KeyPair) {
	t.Helper()
	creds, err := env.Auth.SystemCreds()
	if err != nil {
		t.Fatal(err)
	}
	j, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		t.Fatal(err)
	}
	return j, kp
}

func TestEmbeddedRefusesPlainOffLoopback(t *testing.T) {
	auth, err := natsauth.Open(context.Background(), filepath.Join(t.TempDir(), "keys"), natsauth.Options{Sealer: mustSealer(t, t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "example.com:4222"} {
		if e, err := natsbus.StartEmbedded(auth, natsbus.EmbeddedConfig{Dir: t.TempDir(), Listen: addr}); err == nil {
			e.Shutdown()
			t.Errorf("%s: plain NATS started off loopback", addr)
		}
	}
	for host, want := range map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true, "127.1.2.3": true, "0.0.0.0": false, "10.0.0.1": false, "localhost.evil": false} {
		if got := natsbus.IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v", host, got)
		}
	}
}

// TestAuthorityPersists: reopening the directory yields the same operator
// and accounts, and org signing keys survive.
func TestAuthorityPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := natsauth.Open(ctx, dir, natsauth.Options{Sealer: mustSealer(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := a.EnsureOrg(ctx, "org_a"); err != nil || !changed {
		t.Fatalf("EnsureOrg = %v, %v", changed, err)
	}
	if changed, err := a.EnsureOrg(ctx, "org_a"); err != nil || changed {
		t.Fatalf("second EnsureOrg = %v, %v", changed, err)
	}
	if _, err := a.EnsureOrg(ctx, "org.a"); err == nil {
		t.Fatal("org id with a dot accepted")
	}
	b, err := natsauth.Open(ctx, dir, natsauth.Options{Sealer: mustSealer(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if a.IngestAccount() != b.IngestAccount() || a.SystemAccount() != b.SystemAccount() || a.IngestJWT() != b.IngestJWT() {
		t.Fatal("reopened authority differs")
	}
	if changed, err := b.EnsureOrg(ctx, "org_a"); err != nil || changed {
		t.Fatalf("EnsureOrg after reopen = %v, %v", changed, err)
	}
}

// TestFailedPushIsRetried: a change saved while the servers were
// unreachable is pushed with the next call, even one that changes nothing.
func TestFailedPushIsRetried(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	org := env.Org(t)
	sys := env.Accounts.Sys
	dead, err := nats.Connect(env.NATS.ClientURL(), natsbus.JWTAndKey(mustSysCreds(t, env)))
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	env.Accounts.Sys = dead
	if err := env.Accounts.EnsureOrg(context.Background(), org); err == nil {
		t.Fatal("push over a dead connection succeeded")
	}
	env.Accounts.Sys = sys
	if err := env.Accounts.EnsureOrg(context.Background(), org); err != nil {
		t.Fatal(err)
	}
	ed := env.EnrollEdge(t, org)
	nc, err := ed.Connect()
	if err != nil {
		t.Fatalf("edge of an org whose key push was retried: %v", err)
	}
	nc.Close()
}

// TestPortZeroIsRandom: port 0 picks a free port (nats-server alone would
// read it as 4222), so tests and a second instance do not collide.
func TestPortZeroIsRandom(t *testing.T) {
	var urls []string
	for i := 0; i < 2; i++ {
		auth, err := natsauth.Open(context.Background(), filepath.Join(t.TempDir(), "keys"), natsauth.Options{Sealer: mustSealer(t, t.TempDir())})
		if err != nil {
			t.Fatal(err)
		}
		e, err := natsbus.StartEmbedded(auth, natsbus.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown()
		urls = append(urls, e.ClientURL())
	}
	if urls[0] == urls[1] || strings.HasSuffix(urls[0], ":4222") {
		t.Fatalf("servers on %v", urls)
	}
}

// TestEdgeConnectionLimit: past its limit an edge's oldest connection is
// closed; its newer ones, another edge's and the control plane's own stay.
func TestEdgeConnectionLimit(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true, EdgeMaxConns: 2})
	ed := env.EnrollEdge(t, env.Org(t))
	other := env.EnrollEdge(t, env.Org(t))
	open := func(e testenv.Edge) (*nats.Conn, chan struct{}) {
		t.Helper()
		closed := make(chan struct{})
		nc, err := e.Connect(nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc, closed
	}
	o1, _ := open(other)
	o2, _ := open(other)
	var conns []*nats.Conn
	var closed []chan struct{}
	for range 4 {
		nc, c := open(ed)
		conns, closed = append(conns, nc), append(closed, c)
		// One at a time, so that age is well defined.
		if err := env.Sys.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		select {
		case <-closed[i]:
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d of an edge over its limit of 2 stayed open", i+1)
		}
	}
	// A round trip on each survivor: they are still served.
	for name, nc := range map[string]*nats.Conn{"newest": conns[3], "second newest": conns[2], "other edge": o1, "other edge 2": o2, "service": env.Service} {
		if err := nc.FlushTimeout(5 * time.Second); err != nil || !nc.IsConnected() {
			t.Errorf("%s connection: %v", name, err)
		}
	}
}
