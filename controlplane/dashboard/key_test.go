package dashboard

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSessionKeyPersistedPrivately(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dashboard", "session.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil || len(k1) != KeyLen {
		t.Fatalf("create: %d bytes, %v", len(k1), err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %v; want 0700", di.Mode())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatal("a restart made a new key: every session would end")
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a truncated key was accepted")
	}
	if _, err := New(Config{Key: []byte("short")}); err == nil {
		t.Fatal("New accepted a short key")
	}
}
