package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/store/storetest"
)

func TestMemoryCommands(t *testing.T) {
	c := newCLI(t)
	c.ok("orgs", "create", "acme")
	c.ok("orgs", "create", "other")
	var key struct{ ID string }
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "--org", "acme", "--name", "alice", "--json")), &key); err != nil {
		t.Fatal(err)
	}
	var otherKey struct{ ID string }
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "--org", "other", "--name", "bob", "--json")), &otherKey); err != nil {
		t.Fatal(err)
	}

	const canary1 = "CANARYmemory1-4f2a9c Always answer in haiku."
	const canary2 = "CANARYmemory2-77e1d0 Always answer in limericks.\n"
	if code, out, errs := c.run(canary1, "memory", "set", "--org", "acme", "--name", "style", "--stdin"); code != 0 || !strings.HasPrefix(out, "style@1 set for org acme") {
		t.Fatalf("memory set: exit %d %q %q", code, out, errs)
	}
	file := filepath.Join(t.TempDir(), "style.txt")
	if err := os.WriteFile(file, []byte(canary2), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("memory", "set", "--org", "acme", "--name", "style", "--file", file); !strings.HasPrefix(out, "style@2 set") {
		t.Fatalf("second set: %q", out)
	}
	if code, out, errs := c.run("key memory CANARYmemory3-aa01", "memory", "set", "--org", "acme", "--key", key.ID, "--name", "tone", "--stdin"); code != 0 || !strings.Contains(out, "key "+key.ID) {
		t.Fatalf("key memory set: exit %d %q %q", code, out, errs)
	}

	// show prints the latest text verbatim.
	if out := c.ok("memory", "show", "--org", "acme", "style"); out != canary2 {
		t.Fatalf("memory show = %q, want %q", out, canary2)
	}
	if out := c.ok("memory", "show", "--org", "acme", "--key", key.ID, "tone"); out != "key memory CANARYmemory3-aa01" {
		t.Fatalf("memory show --key = %q", out)
	}

	// list: name, key, version, bytes, tokens; never the text.
	list := c.ok("memory", "list", "--org", "acme", "--json")
	if strings.Contains(list, "CANARY") || strings.Contains(list, "haiku") {
		t.Fatalf("memory list shows text: %s", list)
	}
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 {
		t.Fatalf("memory list --json: %q", list)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"name": "style", "key_id": "", "version": 2.0, "bytes": float64(len(canary2)), "tokens": float64((len(canary2) + 3) / 4)}
	if len(first) != len(want) {
		t.Fatalf("memory list --json fields %v, want %v", first, want)
	}
	for k, v := range want {
		if first[k] != v {
			t.Fatalf("memory list --json %s = %v, want %v (%s)", k, first[k], v, lines[0])
		}
	}
	if !strings.Contains(lines[1], `"key_id":"`+key.ID+`"`) {
		t.Fatalf("the key's memory: %s", lines[1])
	}
	if out := c.ok("memory", "list", "--org", "acme"); !strings.Contains(out, "style") || !strings.Contains(out, "(org)") || strings.Contains(out, "haiku") {
		t.Fatalf("memory list: %s", out)
	}

	// Refusals: a key of another org, a bad name, empty text, no source.
	for _, c2 := range []struct {
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"x", []string{"memory", "set", "--org", "acme", "--key", otherKey.ID, "--name", "a", "--stdin"}, 1, "not found"},
		{"x", []string{"memory", "set", "--org", "acme", "--name", "a b", "--stdin"}, 1, "letters, digits"},
		{" \n", []string{"memory", "set", "--org", "acme", "--name", "a", "--stdin"}, 1, "empty"},
		{"x", []string{"memory", "set", "--org", "acme", "--name", "a"}, 2, "--file"},
		{"", []string{"memory", "show", "--org", "other", "style"}, 1, "no memory"},
		{"", []string{"memory", "show", "--org", "acme"}, 2, "name"},
	} {
		if code, _, errs := c.run(c2.stdin, c2.args...); code != c2.code || !strings.Contains(errs, c2.msg) {
			t.Errorf("%v: exit %d %q, want %d with %q", c2.args, code, errs, c2.code, c2.msg)
		}
	}

	// rm: gone from list and show; the next set follows on from version 2.
	if out := c.ok("memory", "rm", "--org", "acme", "style"); !strings.Contains(out, "removed style") {
		t.Fatalf("memory rm: %q", out)
	}
	if code, _, _ := c.run("", "memory", "rm", "--org", "acme", "style"); code != 1 {
		t.Fatal("removing twice succeeded")
	}
	if code, _, errs := c.run("", "memory", "show", "--org", "acme", "style"); code != 1 || !strings.Contains(errs, "no memory") {
		t.Fatalf("show after rm: %d %q", code, errs)
	}
	if out := c.ok("memory", "set", "--org", "acme", "--name", "style", "--file", file); !strings.HasPrefix(out, "style@3 set") {
		t.Fatalf("set after rm: %q", out)
	}

	storetest.ScanDirForCanaries(t, c.env["CODEX_DATA_DIR"], "CANARYmemory1-4f2a9c", "CANARYmemory2-77e1d0", "CANARYmemory3-aa01", "answer in haiku", "answer in limericks")
}
