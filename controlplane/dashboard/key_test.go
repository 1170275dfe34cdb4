package dashboard

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/testenv"
)

func secretStore(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, dir
}

// TestSharedKey: the session key is made once, kept sealed in the store,
// and every later call (another instance, a restart) gets the same one.
func TestSharedKey(t *testing.T) {
	st, dir := secretStore(t)
	seal, err := testenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	k1, err := SharedKey(ctx, st, seal, "dashboard-session", filepath.Join(dir, "none.key"))
	if err != nil || len(k1) != KeyLen {
		t.Fatalf("first: %d bytes, %v", len(k1), err)
	}
	k2, err := SharedKey(ctx, st, seal, "dashboard-session", "")
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second call: %v; a restart or another instance got another key: every session would end on it", err)
	}
	sealed, err := st.DeploymentSecret(ctx, "dashboard-session")
	if err != nil || bytes.Contains(sealed, k1) {
		t.Fatalf("stored secret (%v) holds the key in plaintext", err)
	}
	k3, err := SharedKey(ctx, st, seal, "staff-session", "")
	if err != nil || bytes.Equal(k1, k3) {
		t.Fatalf("staff key %v: want one of its own", err)
	}
	// A sealed key is bound to its name: the staff key's sealed bytes
	// stored under another name do not open as that key.
	staffSealed, err := st.DeploymentSecret(ctx, "staff-session")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddDeploymentSecret(ctx, "moved", staffSealed); err != nil {
		t.Fatal(err)
	}
	if _, err := SharedKey(ctx, st, seal, "moved", ""); err == nil {
		t.Error("a sealed key moved to another name opened")
	}
}

// TestSharedKeyConcurrent: instances starting at once all end up with one
// key.
func TestSharedKeyConcurrent(t *testing.T) {
	st, dir := secretStore(t)
	seal, err := testenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := SharedKey(context.Background(), st, seal, "dashboard-session", "")
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i, k := range keys {
		if !bytes.Equal(k, keys[0]) {
			t.Fatalf("instance %d got another key", i)
		}
	}
}

// TestSharedKeyTakesOverFile: the key file of an earlier version becomes
// the stored key, so sessions begun before the upgrade stay valid; a
// damaged one is refused, not replaced.
func TestSharedKeyTakesOverFile(t *testing.T) {
	st, dir := secretStore(t)
	seal, err := testenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte{7}, KeyLen)
	path := filepath.Join(dir, "session.key")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := SharedKey(t.Context(), st, seal, "dashboard-session", path)
	if err != nil || !bytes.Equal(k, old) {
		t.Fatalf("got %x, %v; want the file's key", k, err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := SharedKey(t.Context(), st, seal, "staff-session", path); err == nil {
		t.Fatal("a truncated key file was accepted")
	}
	if _, err := New(Config{Key: []byte("short")}); err == nil {
		t.Fatal("New accepted a short key")
	}
}

// TestSessionValidOnAnyInstance: two dashboards over one store, each
// taking its keys from it as a control plane instance does: a session
// begun on one is valid on the other, and signing out on one ends it on
// both.
func TestSessionValidOnAnyInstance(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	keys := func() (key, staff []byte) {
		var err error
		if key, err = SharedKey(t.Context(), env.Store, env.Sealer, "dashboard-session", ""); err != nil {
			t.Fatal(err)
		}
		if staff, err = SharedKey(t.Context(), env.Store, env.Sealer, "staff-session", ""); err != nil {
			t.Fatal(err)
		}
		return key, staff
	}
	ka, sa := keys()
	kb, sb := keys()
	a, b := newInstance(t, env, ka, sa), newInstance(t, env, kb, sb)
	org := env.Org(t)
	u := a.user(t, org, "ada@example.com", controlplane.RoleOwner)
	ca := a.client(t)
	wantStatus(t, "login on instance a", ca.login(u.Email, testPassword), 303)
	cb := b.client(t)
	cb.setSession(ca.sessionToken())
	wantStatus(t, "overview on instance b with a's session", cb.get("/overview"), 200)
	wantStatus(t, "logout on instance a", ca.post("/logout", url.Values{"csrf": {ca.csrf("/overview")}}), 303)
	wantLoginRedirect(t, "overview on instance b after logout on a", cb.get("/overview"))
}
