package natsbus_test

import (
	"path/filepath"
	"testing"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
)

func TestEmbeddedRefusesPlainOffLoopback(t *testing.T) {
	auth, err := natsauth.Open(filepath.Join(t.TempDir(), "keys"))
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
	a, err := natsauth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := a.EnsureOrg("org_a"); err != nil || !changed {
		t.Fatalf("EnsureOrg = %v, %v", changed, err)
	}
	if changed, err := a.EnsureOrg("org_a"); err != nil || changed {
		t.Fatalf("second EnsureOrg = %v, %v", changed, err)
	}
	if _, err := a.EnsureOrg("org.a"); err == nil {
		t.Fatal("org id with a dot accepted")
	}
	b, err := natsauth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.IngestAccount() != b.IngestAccount() || a.SystemAccount() != b.SystemAccount() || a.IngestJWT() != b.IngestJWT() {
		t.Fatal("reopened authority differs")
	}
	if changed, err := b.EnsureOrg("org_a"); err != nil || changed {
		t.Fatalf("EnsureOrg after reopen = %v, %v", changed, err)
	}
}
