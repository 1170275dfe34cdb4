package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNATSConfigCluster: nats-config prints, for each node of a JetStream
// cluster, a configuration nats-server reads as asked: the node's name
// and store, the cluster's name, listener and routes, JetStream, and the
// operator with its full resolver.
func TestNATSConfigCluster(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"CODEX_DATA_DIR": filepath.Join(dir, "data")}
	routes := "nats://nats-1:6222, nats://nats-2:6222,nats://nats-3:6222"
	var operator string
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		store := filepath.Join(dir, name, "jetstream")
		code, out, errs := runCmd(t, env, "", "nats-config", "--resolver-dir", filepath.Join(dir, name, "jwt"), "--server-name", name,
			"--store-dir", store, "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222", "--routes", routes)
		if code != 0 {
			t.Fatalf("nats-config for %s: exit %d: %s", name, code, errs)
		}
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server refuses %s's configuration: %v", name, err)
		}
		if opts.AccountResolver != nil {
			t.Cleanup(opts.AccountResolver.Close) // it started a goroutine
		}
		if opts.ServerName != name || opts.StoreDir != store || !opts.JetStream {
			t.Errorf("%s: server name %q, store %q, jetstream %v", name, opts.ServerName, opts.StoreDir, opts.JetStream)
		}
		if opts.Cluster.Name != "codex" || opts.Cluster.Host != "0.0.0.0" || opts.Cluster.Port != 6222 {
			t.Errorf("%s: cluster %q on %s:%d", name, opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port)
		}
		var got []string
		for _, u := range opts.Routes {
			got = append(got, u.String())
		}
		if want := []string{"nats://nats-1:6222", "nats://nats-2:6222", "nats://nats-3:6222"}; !slices.Equal(got, want) {
			t.Errorf("%s: routes %v, want %v", name, got, want)
		}
		if len(opts.TrustedOperators) != 1 || opts.SystemAccount == "" {
			t.Fatalf("%s: operators %d, system account %q", name, len(opts.TrustedOperators), opts.SystemAccount)
		}
		if _, ok := opts.AccountResolver.(*server.DirAccResolver); !ok {
			t.Errorf("%s: resolver %T, want a full one", name, opts.AccountResolver)
		}
		// Every node trusts the one operator.
		if operator == "" {
			operator = opts.TrustedOperators[0].Subject
		} else if opts.TrustedOperators[0].Subject != operator {
			t.Errorf("%s trusts operator %s, another node %s", name, opts.TrustedOperators[0].Subject, operator)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no routes", []string{"--server-name", "n1", "--store-dir", dir, "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222"}, "--routes"},
		{"no server name", []string{"--store-dir", dir, "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222", "--routes", routes}, "server name"},
		{"no store", []string{"--server-name", "n1", "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222", "--routes", routes}, "store"},
		{"empty route", []string{"--server-name", "n1", "--store-dir", dir, "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222", "--routes", "nats://a:6222,,nats://b:6222"}, "empty route"},
		{"bad route", []string{"--server-name", "n1", "--store-dir", dir, "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222", "--routes", "a:6222"}, "route"},
		{"route TLS without key", []string{"--server-name", "n1", "--store-dir", dir, "--cluster-name", "codex", "--cluster-listen", "0.0.0.0:6222", "--routes", routes, "--cluster-tls-cert", "/c.pem"}, "TLS"},
		{"client TLS without key", []string{"--tls-cert", "/c.pem"}, "TLS"},
	} {
		code, out, errs := runCmd(t, env, "", append([]string{"nats-config"}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, %q; want 2 and an error about %s", tc.name, code, errs, tc.want)
		}
	}
}
