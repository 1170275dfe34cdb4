package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.yaml")
	if err := os.WriteFile(path, []byte("data_dir: /var/lib/codex\nnats_listen: 127.0.0.1:4300\nretain_minutes: 48h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(map[string]string{"CODEX_NATS_LISTEN": "127.0.0.1:4400", "CODEX_CONTROLPLANE_LISTEN": "127.0.0.1:9000", "CODEX_NATS_EDGE_MAX_PENDING": "32"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/codex" || c.NATSListen != "127.0.0.1:4400" || c.ControlplaneListen != "127.0.0.1:9000" ||
		c.RetainMinutes != 48*time.Hour || c.DatabaseAppRole != "codex_app" || c.NATSEdgeMaxPending != 32 || c.NATSOrgMaxBytes != 16<<20 {
		t.Fatalf("config = %+v", c)
	}
	if c.LoginRate != 300 || c.LoginBurst != 30 || c.PasswordHashWait != 2*time.Second ||
		c.PasswordHashers != min(runtime.GOMAXPROCS(0), MaxDefaultPasswordHashers) || c.PasswordHashers < 1 {
		t.Fatalf("login defaults = %+v", c)
	}
}

func TestLoadLoginLimits(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"CODEX_LOGIN_RATE": "60", "CODEX_LOGIN_BURST": "5",
		"CODEX_PASSWORD_HASHERS": "1", "CODEX_PASSWORD_HASH_WAIT": "500ms"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginRate != 60 || c.LoginBurst != 5 || c.PasswordHashers != 1 || c.PasswordHashWait != 500*time.Millisecond {
		t.Fatalf("config = %+v", c)
	}
}

func TestLoadStreamReplicas(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSStreamReplicas != 1 {
		t.Fatalf("default replicas = %d, want 1", c.NATSStreamReplicas)
	}
	c, err = Load("", env(map[string]string{"CODEX_NATS_STREAM_REPLICAS": "3", "CODEX_NATS_URL": "nats://a:4222,nats://b:4222,nats://c:4222"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSStreamReplicas != 3 {
		t.Fatalf("replicas = %d, want 3", c.NATSStreamReplicas)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("listen_adress: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		path string
		env  map[string]string
	}{
		"unknown key":      {unknown, nil},
		"bad duration":     {"", map[string]string{"CODEX_RETAIN_DAYS": "forever"}},
		"half TLS":         {"", map[string]string{"CODEX_TLS_CERT": "/c.pem"}},
		"bad log level":    {"", map[string]string{"CODEX_LOG_LEVEL": "loud"}},
		"missing file":     {filepath.Join(dir, "none.yaml"), nil},
		"short hours":      {"", map[string]string{"CODEX_RETAIN_HOURS": "1h"}},
		"empty data dir":   {"", map[string]string{"CODEX_DATA_DIR": ""}},
		"bad integer":      {"", map[string]string{"CODEX_NATS_EDGE_MAX_PENDING": "many"}},
		"zero conns":       {"", map[string]string{"CODEX_NATS_EDGE_MAX_CONNECTIONS": "0"}},
		"tiny org":         {"", map[string]string{"CODEX_NATS_ORG_MAX_BYTES": "1024"}},
		"small account":    {"", map[string]string{"CODEX_NATS_ACCOUNT_MAX_STORAGE": "1048576"}},
		"two secrets keys": {"", map[string]string{"CODEX_SECRETS_KEK": "k", "CODEX_SECRETS_KMS_KEY": "alias/x"}},
		"bad number":       {"", map[string]string{"CODEX_LOGIN_RATE": "lots"}},
		"no login rate":    {"", map[string]string{"CODEX_LOGIN_RATE": "0"}},
		"no hashers":       {"", map[string]string{"CODEX_PASSWORD_HASHERS": "0"}},
		"no hash wait":     {"", map[string]string{"CODEX_PASSWORD_HASH_WAIT": "0s"}},
		"no replicas":      {"", map[string]string{"CODEX_NATS_STREAM_REPLICAS": "0", "CODEX_NATS_URL": "nats://a:4222"}},
		"six replicas":     {"", map[string]string{"CODEX_NATS_STREAM_REPLICAS": "6", "CODEX_NATS_URL": "nats://a:4222"}},
		"embedded R3":      {"", map[string]string{"CODEX_NATS_STREAM_REPLICAS": "3"}},
		"R3 small account": {"", map[string]string{"CODEX_NATS_STREAM_REPLICAS": "3", "CODEX_NATS_URL": "nats://a:4222", "CODEX_NATS_ACCOUNT_MAX_STORAGE": "33554432"}},
	} {
		if _, err := Load(tc.path, env(tc.env)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecretNotShown(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"CODEX_SECRETS_KEK": "0123456789abcdef-the-key"}))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.SecretsKEK) != "0123456789abcdef-the-key" {
		t.Fatalf("key not loaded: %d bytes", len(c.SecretsKEK))
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.SecretsKEK)} {
		if strings.Contains(s, "the-key") {
			t.Fatalf("the key shows: %s", s)
		}
	}
}
