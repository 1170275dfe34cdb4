package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/store/storetest"
)

// cli runs codex-edge subcommands against one data directory.
type cli struct {
	t   *testing.T
	env map[string]string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, env: map[string]string{"CODEX_DATA_DIR": t.TempDir()}}
}

func (c *cli) run(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb, func(k string) string { return c.env[k] })
	return code, out.String(), errb.String()
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("codex-edge %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

var idRE = regexp.MustCompile(`^org_[0-9A-Za-z]+\n$`)

func TestOrgsAndKeys(t *testing.T) {
	c := newCLI(t)
	id := c.ok("orgs", "create", "acme")
	if !idRE.MatchString(id) {
		t.Fatalf("orgs create printed %q, want the id alone on one line", id)
	}
	if code, _, errs := c.run("", "orgs", "create", "acme"); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("duplicate org: exit %d %q", code, errs)
	}

	key := strings.TrimSuffix(c.ok("keys", "create", "--org", "acme", "--name", "alice"), "\n")
	if _, err := apikey.Parse(key); err != nil || strings.Contains(key, "\n") {
		t.Fatalf("keys create printed %q, want a valid key alone: %v", key, err)
	}
	var js struct{ ID, Key, Prefix string }
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "--org", strings.TrimSpace(id), "--name", "bob", "--json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.ID == "" || !strings.HasPrefix(js.Key, js.Prefix) || len(js.Prefix) >= len(js.Key) {
		t.Fatalf("keys create --json: %+v", js)
	}

	list := c.ok("keys", "list", "--org", "acme", "--json")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 {
		t.Fatalf("keys list --json: want 2 lines, got %q", list)
	}
	if strings.Contains(list, key) || strings.Contains(list, js.Key) {
		t.Fatal("keys list shows a secret key")
	}

	// Revoke one by the key itself and one by its id.
	if out := c.ok("keys", "revoke", key); !strings.HasPrefix(out, "revoked key_") {
		t.Fatalf("revoke by key: %q", out)
	}
	c.ok("keys", "revoke", js.ID)
	list = c.ok("keys", "list", "--org", "acme", "--json")
	if strings.Count(list, `"state":"revoked"`) != 2 {
		t.Fatalf("after revoking both: %s", list)
	}
	if code, _, _ := c.run("", "keys", "revoke", "key_doesnotexist"); code != 1 {
		t.Fatalf("revoking an unknown key: exit %d", code)
	}
}

func TestProviders(t *testing.T) {
	c := newCLI(t)
	c.ok("orgs", "create", "acme")
	c.ok("providers", "set", "--org", "acme", "openai", "--api-key-env", "OPENAI_API_KEY", "--base-url", "http://127.0.0.1:9/")
	out := c.ok("providers", "list", "--org", "acme", "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if m["provider"] != "openai" || m["api_key_env"] != "OPENAI_API_KEY" || m["base_url"] != "http://127.0.0.1:9" {
		t.Fatalf("providers list: %s", out)
	}
	for _, args := range [][]string{
		{"providers", "set", "--org", "acme", "mistral", "--api-key-env", "X"},
		{"providers", "set", "--org", "acme", "openai"},
	} {
		if code, _, _ := c.run("", args...); code != 2 {
			t.Errorf("%v: exit %d, want usage error 2", args, code)
		}
	}
	if code, _, errs := c.run("", "providers", "set", "--org", "acme", "openai", "--api-key-env", "X", "--api-key-stdin"); code != 2 {
		t.Fatalf("both credential sources: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("  \n", "providers", "set", "--org", "acme", "openai", "--api-key-stdin"); code != 1 || !strings.Contains(errs, "no key on standard input") {
		t.Fatalf("empty stdin: exit %d %q", code, errs)
	}
	const providerKey = "sk-canary-provider-key-0123456789abcdef"
	if code, out, errs := c.run(providerKey+"\n", "providers", "set", "--org", "acme", "anthropic", "--api-key-stdin"); code != 0 || !strings.Contains(out, "stored encrypted") {
		t.Fatalf("--api-key-stdin: exit %d %q %q", code, out, errs)
	}
	if out := c.ok("providers", "list", "--org", "acme"); !strings.Contains(out, "sealed") {
		t.Fatalf("providers list: %s", out)
	}
	storetest.ScanDirForCanaries(t, c.env["CODEX_DATA_DIR"], providerKey)
	if code, _, errs := c.run("", "providers", "list", "--org", "nope"); code != 1 || !strings.Contains(errs, "no org") {
		t.Fatalf("unknown org: exit %d %q", code, errs)
	}
}

// Issue 13, finding 7: `providers set --api-key-env CODEX_BYOK_KEY` made the
// edge send its BYOK master key to the provider as a bearer token.
func TestProvidersSetRefusesSecretsAndPlainHTTP(t *testing.T) {
	c := newCLI(t)
	c.env["CODEX_API_KEY_ENV_DENY"] = "GITHUB_TOKEN, VAULT_*"
	c.ok("orgs", "create", "acme")
	for _, tc := range []struct {
		stdin  string
		args   []string
		errHas string
	}{
		{"", []string{"--api-key-env", "CODEX_BYOK_KEY"}, "CODEX_"},
		{"", []string{"--api-key-env", "Codex_Admin_Token"}, "CODEX_"},
		{"", []string{"--api-key-env", "AWS_SECRET_ACCESS_KEY"}, "AWS_"},
		{"", []string{"--api-key-env", "GITHUB_TOKEN"}, "CODEX_API_KEY_ENV_DENY"},
		{"", []string{"--api-key-env", "VAULT_TOKEN"}, "CODEX_API_KEY_ENV_DENY"},
		{"", []string{"--api-key-env", "OPENAI KEY"}, "not an environment variable name"},
		{"", []string{"--api-key-env", "OPENAI_API_KEY", "--base-url", "http://api.openai.com"}, "--allow-insecure-http"},
		{"", []string{"--api-key-env", "OPENAI_API_KEY", "--base-url", "http://10.1.2.3:8080/v1"}, "--allow-insecure-http"},
		{"sk-never-stored", []string{"--api-key-stdin", "--base-url", "http://api.openai.com"}, "--allow-insecure-http"},
		{"", []string{"--api-key-env", "OPENAI_API_KEY", "--base-url", "file:///etc/passwd"}, "not an absolute URL"},
		{"", []string{"--api-key-env", "OPENAI_API_KEY", "--base-url", "ftp://api.openai.com"}, "not http or https"},
	} {
		args := append([]string{"providers", "set", "--org", "acme", "openai"}, tc.args...)
		if code, _, errs := c.run(tc.stdin, args...); code != 1 || !strings.Contains(errs, tc.errHas) {
			t.Errorf("%v: exit %d %q, want 1 and %q", tc.args, code, errs, tc.errHas)
		}
	}
	if out := c.ok("providers", "list", "--org", "acme", "--json"); out != "" {
		t.Fatalf("refused settings were stored: %s", out)
	}
	// What is allowed: a loopback or https URL, or plain http when asked.
	c.ok("providers", "set", "--org", "acme", "openai", "--api-key-env", "OPENAI_API_KEY", "--base-url", "http://localhost:9")
	c.ok("providers", "set", "--org", "acme", "anthropic", "--api-key-env", "ANTHROPIC_API_KEY", "--base-url", "http://llm-gw.internal:8080", "--allow-insecure-http")
	out := c.ok("providers", "list", "--org", "acme", "--json")
	if !strings.Contains(out, `"allow_insecure_http":true,"api_key_env":"ANTHROPIC_API_KEY"`) || !strings.Contains(out, `"allow_insecure_http":false,"api_key_env":"OPENAI_API_KEY"`) {
		t.Fatalf("providers list: %s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{{"frobnicate"}, {"keys", "create", "--org", "x"}, {"orgs", "create"}, {"serve", "extra"}} {
		if code, _, _ := c.run("", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := c.run("", "--help"); code != 0 || !strings.Contains(out, "codex-edge serve") {
		t.Errorf("--help: %d %q", code, out)
	}
}

func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	c := newCLI(t)
	c.env["CODEX_LISTEN"] = "0.0.0.0:0"
	code, _, errs := c.run("", "serve")
	if code != 1 || !strings.Contains(errs, "CODEX_TLS_CERT") {
		t.Fatalf("serve on 0.0.0.0 without TLS: exit %d %q", code, errs)
	}
}

func TestCrypto(t *testing.T) {
	c := newCLI(t)
	c.ok("orgs", "create", "acme")
	c.ok("orgs", "create", "other")
	for _, org := range []string{"acme", "other"} {
		code, _, errs := c.run("sk-key-of-"+org, "providers", "set", "--org", org, "openai", "--api-key-stdin")
		if code != 0 {
			t.Fatalf("providers set: %s", errs)
		}
	}
	status := func(org string) []map[string]any {
		t.Helper()
		var st struct {
			DataKeys []map[string]any `json:"data_keys"`
		}
		if err := json.Unmarshal([]byte(c.ok("crypto", "status", "--org", org, "--json")), &st); err != nil {
			t.Fatalf("status of %s: %v", org, err)
		}
		return st.DataKeys
	}
	if s := status("acme"); len(s) != 1 || s[0]["generation"] != float64(1) || s[0]["state"] != "active" || s[0]["master_ref"] != "local" {
		t.Fatalf("status after first seal: %v", s)
	}
	if out := c.ok("crypto", "rotate", "--org", "acme"); !strings.Contains(out, "generation 2") {
		t.Fatalf("rotate: %q", out)
	}
	s := status("acme")
	if len(s) != 2 || s[0]["generation"] != float64(2) || s[0]["state"] != "active" || s[1]["state"] != "retired" {
		t.Fatalf("status after rotate: %v", s)
	}
	if out := c.ok("crypto", "rewrap"); !strings.Contains(out, "3 data keys") || !strings.Contains(out, "[3/3]") {
		t.Fatalf("rewrap: %q", out)
	}
	if code, _, _ := c.run("", "crypto", "shred", "--org", "acme"); code != 2 {
		t.Fatal("shred without --yes ran")
	}
	if out := c.ok("crypto", "shred", "--org", "acme", "--yes"); !strings.Contains(out, "2 data keys destroyed") {
		t.Fatalf("shred: %q", out)
	}
	if s := status("acme"); len(s) != 0 {
		t.Fatalf("keys left after shred: %v", s)
	}
	if s := status("other"); len(s) != 1 {
		t.Fatalf("shred touched another org: %v", s)
	}
	out := c.ok("crypto", "status")
	if strings.Contains(out, "sk-key-of") {
		t.Fatal("status shows key material")
	}
}

// orgs create --kek and orgs kek set take an AWS KMS key or "default" only,
// and kek set re-wraps the org's data keys with progress (here from and to
// the default key, so nothing moves); crypto status says an org on the
// shared key has earlier backups that still open; shred refuses to
// schedule the deletion of a key the org does not own.
func TestOrgsKEK(t *testing.T) {
	c := newCLI(t)
	if code, _, errs := c.run("", "orgs", "create", "acme", "--kek", "local"); code != 2 || !strings.Contains(errs, "awskms") {
		t.Fatalf("orgs create --kek local: exit %d: %s", code, errs)
	}
	c.ok("orgs", "create", "acme")
	if code, _, errs := c.run("sk-key", "providers", "set", "--org", "acme", "openai", "--api-key-stdin"); code != 0 {
		t.Fatalf("providers set: %s", errs)
	}
	c.ok("crypto", "rotate", "--org", "acme")
	out := c.ok("orgs", "kek", "set", "--org", "acme", "default")
	if !strings.Contains(out, "[2/2]") || !strings.Contains(out, "2 data keys: 0 rewrapped, 2 already under it, 0 failed") {
		t.Fatalf("orgs kek set default: %q", out)
	}
	if code, _, errs := c.run("", "orgs", "kek", "set", "--org", "acme", "byok"); code != 2 {
		t.Fatalf("orgs kek set byok: exit %d: %s", code, errs)
	}
	if out := c.ok("crypto", "status", "--org", "acme", "--json"); !strings.Contains(out, `"backup":"shared"`) || !strings.Contains(out, `"backup_openable":true`) {
		t.Fatalf("crypto status: %q", out)
	}
	if code, _, errs := c.run("", "crypto", "shred", "--org", "acme", "--yes", "--schedule-key-deletion", "7"); code != 2 || !strings.Contains(errs, "no own master key") {
		t.Fatalf("shred --schedule-key-deletion on the shared key: exit %d: %s", code, errs)
	}
	// An org with data keys moves to byok-ephemeral: the CLI cannot hold
	// the org's key, so it says where to send it instead of failing.
	out = c.ok("orgs", "kek", "set", "--org", "acme", "byok-ephemeral")
	if !strings.Contains(out, "2 data keys") || !strings.Contains(out, "PUT /admin/v1/orgs/acme/byok") {
		t.Fatalf("orgs kek set byok-ephemeral: %q", out)
	}
	if s := c.ok("crypto", "status", "--org", "acme", "--json"); strings.Count(s, `"master_ref":"local"`) != 2 {
		t.Fatalf("data keys moved without the org's key: %q", s)
	}
}
