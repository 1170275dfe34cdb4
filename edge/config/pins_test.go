package config

import (
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlplanePins: CODEX_CONTROLPLANE_PINS and controlplane_pins
// take comma-separated base64 SHA-256 digests; anything else is refused
// at load, naming the setting.
func TestControlplanePins(t *testing.T) {
	a, b := sha256.Sum256([]byte("current key")), sha256.Sum256([]byte("backup key"))
	pa, pb := base64.StdEncoding.EncodeToString(a[:]), base64.StdEncoding.EncodeToString(b[:])
	c, err := Load("", env(map[string]string{"CODEX_CONTROLPLANE_PINS": pa + ", " + pb}))
	if err != nil || len(c.ControlplanePins) != 2 || c.ControlplanePins[0] != a || c.ControlplanePins[1] != b {
		t.Fatalf("from the environment: %v, %v", c.ControlplanePins, err)
	}
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, []byte("controlplane_pins: \""+pb+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(path, env(nil)); err != nil || len(c.ControlplanePins) != 1 || c.ControlplanePins[0] != b {
		t.Fatalf("from the file: %v, %v", c.ControlplanePins, err)
	}
	if c, err := Load("", env(nil)); err != nil || len(c.ControlplanePins) != 0 {
		t.Fatalf("default: %v, %v", c.ControlplanePins, err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short")), pa + ",sha256/" + pb} {
		if _, err := Load("", env(map[string]string{"CODEX_CONTROLPLANE_PINS": bad})); err == nil || !strings.Contains(err.Error(), "CODEX_CONTROLPLANE_PINS") {
			t.Errorf("%q: %v, want an error naming CODEX_CONTROLPLANE_PINS", bad, err)
		}
	}
}
