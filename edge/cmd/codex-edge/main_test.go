package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/apikey"
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
	if code, _, errs := c.run("sk-secret", "providers", "set", "--org", "acme", "openai", "--api-key-stdin"); code != 1 || !strings.Contains(errs, "keyring") {
		t.Fatalf("--api-key-stdin: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("", "providers", "list", "--org", "nope"); code != 1 || !strings.Contains(errs, "no org") {
		t.Fatalf("unknown org: exit %d %q", code, errs)
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
