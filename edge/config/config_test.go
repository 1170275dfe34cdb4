package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.AdminListen != "127.0.0.1:8081" || c.MaxBodyBytes != 33554432 ||
		c.UpstreamConnectTimeout != 10*time.Second || c.UpstreamHeaderTimeout != 10*time.Minute ||
		c.UpstreamIdleTimeout != 5*time.Minute || c.DataDir != "./data" || c.KEK != "local" ||
		c.DatabaseAppRole != "codex_app" || c.TelemetryWindow != time.Minute ||
		c.DEKMaxSeals != 1<<30 || c.DEKMaxAge != 90*24*time.Hour ||
		c.ClientHeaderTimeout != 10*time.Second || c.ClientReadTimeout != time.Minute ||
		c.BodyTimeout != 30*time.Second || c.MaxInflightBodyBytes != 256<<20 ||
		c.AuthFailureLimit != 20 || c.AuthFailureWindow != time.Minute || c.AuthFailureClients != 65536 || c.TrustedProxies != "" {
		t.Fatalf("defaults differ from DESIGN §8: %+v", c)
	}
}

func TestFileThenEnv(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:9000\nmax_body_bytes: 1024\nupstream_idle_timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(map[string]string{"CODEX_MAX_BODY_BYTES": "2048", "CODEX_PPROF": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.MaxBodyBytes != 2048 || c.UpstreamIdleTimeout != 3*time.Second || !c.Pprof {
		t.Fatalf("got %+v", c)
	}
}

func TestEmptyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, env(nil)); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"unknown key", "lisen: x\n", nil, "lisen"},
		{"bad duration", "", map[string]string{"CODEX_UPSTREAM_IDLE_TIMEOUT": "5"}, "CODEX_UPSTREAM_IDLE_TIMEOUT"},
		{"bad int", "", map[string]string{"CODEX_MAX_BODY_BYTES": "lots"}, "CODEX_MAX_BODY_BYTES"},
		{"zero limit", "", map[string]string{"CODEX_MAX_BODY_BYTES": "0"}, "CODEX_MAX_BODY_BYTES"},
		{"zero header timeout", "", map[string]string{"CODEX_CLIENT_HEADER_TIMEOUT": "0s"}, "CODEX_CLIENT_HEADER_TIMEOUT"},
		{"read timeout under header timeout", "", map[string]string{"CODEX_CLIENT_READ_TIMEOUT": "5s"}, "CODEX_CLIENT_READ_TIMEOUT"},
		{"zero body timeout", "", map[string]string{"CODEX_BODY_TIMEOUT": "0s"}, "CODEX_BODY_TIMEOUT"},
		{"in-flight budget below one body", "", map[string]string{"CODEX_MAX_INFLIGHT_BODY_BYTES": "1024"}, "CODEX_MAX_INFLIGHT_BODY_BYTES"},
		{"zero auth failure limit", "", map[string]string{"CODEX_AUTH_FAILURE_LIMIT": "0"}, "CODEX_AUTH_FAILURE_LIMIT"},
		{"zero auth failure window", "", map[string]string{"CODEX_AUTH_FAILURE_WINDOW": "0s"}, "CODEX_AUTH_FAILURE_WINDOW"},
		{"zero auth failure clients", "", map[string]string{"CODEX_AUTH_FAILURE_CLIENTS": "0"}, "CODEX_AUTH_FAILURE_CLIENTS"},
		{"bad trusted proxy", "", map[string]string{"CODEX_TRUSTED_PROXIES": "10.0.0.0/8, lb.internal"}, "CODEX_TRUSTED_PROXIES"},
		{"bad listen", "", map[string]string{"CODEX_LISTEN": "8080"}, "CODEX_LISTEN"},
		{"cert without key", "", map[string]string{"CODEX_TLS_CERT": "/x.pem"}, "CODEX_TLS_KEY"},
		{"log level", "", map[string]string{"CODEX_LOG_LEVEL": "loud"}, "CODEX_LOG_LEVEL"},
		{"dek seals above 2^30", "", map[string]string{"CODEX_DEK_MAX_SEALS": "1073741825"}, "CODEX_DEK_MAX_SEALS"},
		{"dek seals zero", "", map[string]string{"CODEX_DEK_MAX_SEALS": "0"}, "CODEX_DEK_MAX_SEALS"},
		{"dek age zero", "", map[string]string{"CODEX_DEK_MAX_AGE": "0s"}, "CODEX_DEK_MAX_AGE"},
		{"deny list entry", "", map[string]string{"CODEX_API_KEY_ENV_DENY": "GITHUB_TOKEN, VAULT-*"}, "CODEX_API_KEY_ENV_DENY"},
		{"deny list star inside", "", map[string]string{"CODEX_API_KEY_ENV_DENY": "A*B"}, "CODEX_API_KEY_ENV_DENY"},
		{"deny list star alone", "", map[string]string{"CODEX_API_KEY_ENV_DENY": "*"}, "CODEX_API_KEY_ENV_DENY"},
		{"migrate not a boolean", "", map[string]string{"CODEX_DATABASE_MIGRATE": "maybe"}, "CODEX_DATABASE_MIGRATE"},
		{"spool lease within a publish attempt", "", map[string]string{"CODEX_TELEMETRY_SPOOL_LEASE": "10s"}, "CODEX_TELEMETRY_SPOOL_LEASE"},
		{"bad cache override", "", map[string]string{"CODEX_CACHE_OVERRIDES": "org_a=maybe"}, "CODEX_CACHE_OVERRIDES"},
		{"bad cache override in the file", "listen: 127.0.0.1:1\ncache_overrides: org_a=maybe\n", nil, "line 2: cache_overrides"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = filepath.Join(t.TempDir(), "edge.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to name %q", err, tc.want)
			}
		})
	}
}

func TestEveryKeyHasEnv(t *testing.T) {
	t.Parallel()
	for _, k := range Keys() {
		if k == "" || strings.ToLower(k) != k {
			t.Errorf("field without a lower-case yaml key: %q", k)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:1": true, "127.1.2.3:80": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "example.com:80": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestAPIKeyEnvDenyList(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"CODEX_API_KEY_ENV_DENY": " GITHUB_TOKEN, ,VAULT_* "}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.APIKeyEnvDenyList(); len(got) != 2 || got[0] != "GITHUB_TOKEN" || got[1] != "VAULT_*" {
		t.Fatalf("APIKeyEnvDenyList = %q", got)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := ParseTrustedProxies(" 10.0.1.7/16, 192.0.2.7 ,2001:db8::/48,")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/16", "192.0.2.7/32", "2001:db8::/48"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestDatabaseSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, []byte("database_owner_url: postgres://owner@db/codex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		env        map[string]string
		owner      string
		migrate    bool
	}{
		{"unset", "", nil, "", false},
		{"environment", "", map[string]string{"CODEX_DATABASE_OWNER_URL": "postgres://o@h/d", "CODEX_DATABASE_MIGRATE": "true"}, "postgres://o@h/d", true},
		{"file", path, nil, "postgres://owner@db/codex", false},
		{"environment over file", path, map[string]string{"CODEX_DATABASE_OWNER_URL": "postgres://o@h/d", "CODEX_DATABASE_MIGRATE": "false"}, "postgres://o@h/d", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.path, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.DatabaseOwnerURL != tc.owner || c.DatabaseMigrate != tc.migrate {
				t.Fatalf("owner URL %q, migrate %v; want %q, %v", c.DatabaseOwnerURL, c.DatabaseMigrate, tc.owner, tc.migrate)
			}
		})
	}
}
