package natsauth_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane/testenv"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/shared/wire"
)

func openAuthority(t *testing.T) *natsauth.Authority {
	t.Helper()
	key := make([]byte, sealer.KeySize)
	rand.Read(key)
	kp, err := sealer.NewLocalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := natsauth.Open(context.Background(), t.TempDir(), natsauth.Options{Sealer: sealer.New(kp)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// parse reads conf as nats-server reads its configuration file.
func parse(t *testing.T, conf string) *server.Options {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v\n%s", err, conf)
	}
	if opts.AccountResolver != nil {
		t.Cleanup(opts.AccountResolver.Close) // it started a goroutine
	}
	return opts
}

// checkTrust checks what every form of the configuration holds: the
// operator, the system account, a full resolver and the limits.
func checkTrust(t *testing.T, a *natsauth.Authority, opts *server.Options, maxConns int) {
	t.Helper()
	op, err := jwt.DecodeOperatorClaims(a.OperatorJWT())
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.TrustedOperators) != 1 || opts.TrustedOperators[0].Subject != op.Subject {
		t.Errorf("trusted operators %v, want %s", opts.TrustedOperators, op.Subject)
	}
	if opts.SystemAccount != a.SystemAccount() {
		t.Errorf("system account %q, want %q", opts.SystemAccount, a.SystemAccount())
	}
	if _, ok := opts.AccountResolver.(*server.DirAccResolver); !ok {
		t.Errorf("account resolver %T, want a full directory resolver", opts.AccountResolver)
	}
	if !opts.JetStream || opts.MaxConn != maxConns || opts.MaxPayload != wire.MaxBatchBytes {
		t.Errorf("jetstream %v, max connections %d, max payload %d", opts.JetStream, opts.MaxConn, opts.MaxPayload)
	}
}

func TestNodeConfigAlone(t *testing.T) {
	a := openAuthority(t)
	resolver := filepath.Join(t.TempDir(), "jwt")
	conf, err := a.NodeConfig(natsauth.NodeConfig{ResolverDir: resolver, MaxConnections: 100})
	if err != nil {
		t.Fatal(err)
	}
	opts := parse(t, conf)
	checkTrust(t, a, opts, 100)
	if opts.Cluster.Name != "" || len(opts.Routes) != 0 || opts.ServerName != "" {
		t.Errorf("a lone server has cluster %q, routes %v, name %q", opts.Cluster.Name, opts.Routes, opts.ServerName)
	}
	if opts.TLSConfig != nil {
		t.Error("TLS configured though no files were given")
	}
	// It runs, with both accounts preloaded.
	opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = server.RANDOM_PORT, t.TempDir(), true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server did not start")
	}
	for pub, want := range map[string]string{a.SystemAccount(): a.SystemJWT(), a.IngestAccount(): a.IngestJWT()} {
		if got, err := opts.AccountResolver.Fetch(pub); err != nil || got != want {
			t.Errorf("account %s not preloaded (%v)", pub, err)
		}
	}

	// With a name, a store and client TLS.
	dir := t.TempDir()
	cert, key := testenv.SelfSigned(t)
	conf, err = a.NodeConfig(natsauth.NodeConfig{ResolverDir: resolver, MaxConnections: 10, ServerName: "nats-a",
		StoreDir: filepath.Join(dir, "js"), TLS: &natsauth.TLSFiles{Cert: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	opts = parse(t, conf)
	checkTrust(t, a, opts, 10)
	if opts.ServerName != "nats-a" || opts.StoreDir != filepath.Join(dir, "js") {
		t.Errorf("server name %q, store %q", opts.ServerName, opts.StoreDir)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.MinVersion != tls.VersionTLS13 || opts.TLSVerify {
		t.Errorf("client TLS %+v verify %v: want TLS 1.3, no client certificates", opts.TLSConfig, opts.TLSVerify)
	}
}

func TestNodeConfigCluster(t *testing.T) {
	a := openAuthority(t)
	dir := t.TempDir()
	cert, key := testenv.SelfSigned(t)
	routes := []string{"nats://nats-1.internal:6222", "nats://nats-2.internal:6222", "nats://nats-3.internal:6222"}
	for _, routeTLS := range []bool{false, true} {
		c := natsauth.NodeConfig{ResolverDir: filepath.Join(dir, "jwt"), MaxConnections: 4096, ServerName: "nats-2",
			StoreDir: filepath.Join(dir, "js"),
			Cluster:  &natsauth.ClusterNode{Name: "codex", Listen: "0.0.0.0:6222", Routes: routes}}
		if routeTLS {
			c.Cluster.TLS = &natsauth.TLSFiles{Cert: cert, Key: key, CA: cert}
		}
		conf, err := a.NodeConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		opts := parse(t, conf)
		checkTrust(t, a, opts, 4096)
		if opts.ServerName != "nats-2" || opts.StoreDir != filepath.Join(dir, "js") {
			t.Errorf("server name %q, store %q", opts.ServerName, opts.StoreDir)
		}
		if opts.Cluster.Name != "codex" || opts.Cluster.Host != "0.0.0.0" || opts.Cluster.Port != 6222 {
			t.Errorf("cluster %q on %s:%d", opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port)
		}
		var got []string
		for _, u := range opts.Routes {
			got = append(got, u.String())
		}
		if !slices.Equal(got, routes) {
			t.Errorf("routes %v, want %v", got, routes)
		}
		if routeTLS != (opts.Cluster.TLSConfig != nil) || routeTLS && opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Errorf("route TLS %v: config %+v", routeTLS, opts.Cluster.TLSConfig)
		}
	}
}

func TestNodeConfigRefused(t *testing.T) {
	a := openAuthority(t)
	good := func() natsauth.NodeConfig {
		return natsauth.NodeConfig{ResolverDir: "/var/lib/nats/jwt", MaxConnections: 10, ServerName: "n1", StoreDir: "/var/lib/nats/js",
			Cluster: &natsauth.ClusterNode{Name: "codex", Listen: "0.0.0.0:6222", Routes: []string{"nats://h1:6222", "nats://h2:6222"}}}
	}
	if _, err := a.NodeConfig(good()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*natsauth.NodeConfig)
		want   string
	}{
		{"no resolver dir", func(c *natsauth.NodeConfig) { c.ResolverDir = "" }, "resolver"},
		{"no connections", func(c *natsauth.NodeConfig) { c.MaxConnections = 0 }, "connections"},
		{"no server name", func(c *natsauth.NodeConfig) { c.ServerName = "" }, "server name"},
		{"spaced server name", func(c *natsauth.NodeConfig) { c.ServerName = "n 1" }, "server name"},
		{"no store", func(c *natsauth.NodeConfig) { c.StoreDir = "" }, "store"},
		{"no cluster name", func(c *natsauth.NodeConfig) { c.Cluster.Name = "" }, "cluster name"},
		{"quoted cluster name", func(c *natsauth.NodeConfig) { c.Cluster.Name = `a"b` }, "cluster name"},
		{"no routes", func(c *natsauth.NodeConfig) { c.Cluster.Routes = nil }, "routes"},
		{"route without port", func(c *natsauth.NodeConfig) { c.Cluster.Routes = []string{"nats://h1"} }, "route"},
		{"http route", func(c *natsauth.NodeConfig) { c.Cluster.Routes = []string{"http://h1:6222"} }, "route"},
		{"bad listen", func(c *natsauth.NodeConfig) { c.Cluster.Listen = "6222" }, "listen"},
		{"listen port 0", func(c *natsauth.NodeConfig) { c.Cluster.Listen = "0.0.0.0:0" }, "listen"},
		{"half route TLS", func(c *natsauth.NodeConfig) { c.Cluster.TLS = &natsauth.TLSFiles{Cert: "/c.pem"} }, "TLS"},
		{"half client TLS", func(c *natsauth.NodeConfig) { c.TLS = &natsauth.TLSFiles{Key: "/k.pem"} }, "TLS"},
	} {
		c := good()
		tc.change(&c)
		conf, err := a.NodeConfig(c)
		if err == nil || conf != "" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q, %v; want an error about %s", tc.name, conf, err, tc.want)
		}
	}
}
