package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/store/sqlite"
	"github.com/persiv/codex/edge/store/storetest"
)

// serveBG runs codex-edge serve with c's environment until the test ends
// or stop is called; it returns the client-facing base URL.
func (c *cli) serveBG(t *testing.T) (base string, stop func()) {
	t.Helper()
	c.env["CODEX_LISTEN"], c.env["CODEX_ADMIN_LISTEN"] = freeAddr(t), freeAddr(t)
	base = "http://" + c.env["CODEX_LISTEN"]
	return base, c.serveUntil(t, http.DefaultClient, base+"/readyz")
}

// serveUntil runs codex-edge serve with c's environment as it is now until
// the test ends or stop is called (once or more), and waits until client
// gets 200 from readyURL.
func (c *cli) serveUntil(t *testing.T, client *http.Client, readyURL string) (stop func()) {
	t.Helper()
	env := maps.Clone(c.env)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return env[k] })
	}()
	testutil.Eventually(t, 30*time.Second, readyURL, func() bool {
		resp, err := client.Get(readyURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	stop = sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(stop)
	return stop
}

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var all []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		all = append(all, m)
	}
	return all
}

// TestAuditCommands walks the audit commands through an org at level
// full: the admin changes and the requests are listed, show prints the
// prompt and answer verbatim, export can be verified elsewhere, a shred
// leaves verify passing and show failing, and tampering with one stored
// event makes verify name it.
func TestAuditCommands(t *testing.T) {
	c := newCLI(t)
	fp := fakeprovider.New(fakeprovider.Options{})
	fake := httptest.NewServer(fp)
	t.Cleanup(fake.Close)
	c.env["FAKE_OPENAI_KEY"] = "sk-fake"
	c.ok("orgs", "create", "acme")
	key := strings.TrimSpace(c.ok("keys", "create", "--org", "acme", "--name", "app"))
	c.ok("providers", "set", "--org", "acme", "openai", "--api-key-env", "FAKE_OPENAI_KEY", "--base-url", fake.URL)
	if code, _, errs := c.run("sk-secret-provider-key-0123456789", "providers", "set", "--org", "acme", "anthropic", "--api-key-stdin", "--base-url", fake.URL); code != 0 {
		t.Fatal(errs)
	}
	if out := c.ok("audit", "level", "--org", "acme", "full"); !strings.Contains(out, "full") {
		t.Fatalf("audit level: %q", out)
	}
	if out := c.ok("audit", "level", "--org", "acme"); !strings.Contains(out, "full") {
		t.Fatalf("audit level (show): %q", out)
	}
	if code, _, _ := c.run("", "audit", "level", "--org", "acme", "most"); code != 2 {
		t.Fatal("an unknown level was accepted")
	}
	if code, _, errs := c.run("", "audit", "level", "--org", "acme", "--key", "key_nope", "none"); code != 1 || !strings.Contains(errs, "no key") {
		t.Fatalf("level of an unknown key: %d %s", code, errs)
	}

	base, stop := c.serveBG(t)
	canaries := []string{"CANARYcli" + randHex(t, 8), "CANARYcli" + randHex(t, 8)}
	oc := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	params := func(p string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(p)}}
	}
	if _, err := oc.Chat.Completions.New(t.Context(), params(canaries[0])); err != nil {
		t.Fatal(err)
	}
	s := oc.Chat.Completions.NewStreaming(t.Context(), params(canaries[1]))
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	// The first prompt again: answered from the cache.
	if _, err := oc.Chat.Completions.New(t.Context(), params(canaries[0])); err != nil {
		t.Fatal(err)
	}
	stop()
	prompts := []string{canaries[0], canaries[1], canaries[0]}
	sent := fp.Requests()
	if len(sent) != 2 || sent[0].Usage == nil || sent[1].Usage == nil {
		t.Fatalf("the provider answered %d requests (want 2, the third from the cache), with usage: %+v", len(sent), sent)
	}

	items := jsonLines(t, c.ok("audit", "list", "--org", "acme", "--json"))
	var actions, requests []string
	var reqItems []map[string]any
	for _, it := range items {
		for _, k := range []string{"id", "time", "kind", "key_id", "model", "status", "tokens", "cost_usd", "cache", "memory", "level"} {
			if _, ok := it[k]; !ok {
				t.Errorf("audit list --json: no %q in %v", k, it)
			}
		}
		if it["kind"] == "admin" {
			actions = append(actions, it["action"].(string))
		} else {
			requests = append(requests, it["id"].(string))
			reqItems = append(reqItems, it)
			if it["level"] != "full" || it["content"] != "sealed" || it["status"] != float64(200) {
				t.Errorf("request event %v", it)
			}
		}
	}
	if want := "orgs.create keys.create providers.set providers.set audit.level"; strings.Join(actions, " ") != want {
		t.Errorf("admin events %q, want %q", actions, want)
	}
	if len(requests) != 3 {
		t.Fatalf("%d request events, want 3", len(requests))
	}
	// Each request event carries the tokens the provider reported, a
	// cost (gpt-4o-mini is priced) and what the cache did.
	for i, want := range []struct {
		cache string
		usage *fakeprovider.Usage // nil: no provider call
	}{{"miss", sent[0].Usage}, {"miss", sent[1].Usage}, {"hit", nil}} {
		it := reqItems[i]
		if it["cache"] != want.cache {
			t.Errorf("request %d: cache %v, want %s", i, it["cache"], want.cache)
		}
		if want.usage == nil {
			continue
		}
		// OpenAI's prompt_tokens include the cached ones; the event's input
		// does not (edge.Usage).
		u := want.usage
		tok, _ := it["tokens"].(map[string]any)
		if tok == nil || tok["input"] != float64(u.InputTokens-u.CachedTokens) || tok["cached_input"] != float64(u.CachedTokens) ||
			tok["output"] != float64(u.OutputTokens) || u.InputTokens == 0 || u.OutputTokens == 0 {
			t.Errorf("request %d: tokens %v, want input %d (of which cached %d) and output %d as the provider reported", i, it["tokens"], u.InputTokens, u.CachedTokens, u.OutputTokens)
		}
		if cost, _ := it["cost_usd"].(float64); cost <= 0 {
			t.Errorf("request %d: cost_usd %v, want a positive cost", i, it["cost_usd"])
		}
	}
	if since := c.ok("audit", "list", "--org", "acme", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); strings.Count(strings.TrimSpace(since), "\n") != 0 {
		t.Errorf("--since in the future listed %q", since)
	}
	for i, id := range requests {
		out := c.ok("audit", "show", id)
		if !strings.Contains(out, `"content":"`+prompts[i]+`"`) {
			t.Errorf("audit show %s does not print the request verbatim: %s", id, out)
		}
		var shown audit.Shown
		if err := json.Unmarshal([]byte(c.ok("audit", "show", id, "--json")), &shown); err != nil || shown.Request == nil || !strings.Contains(*shown.Request, prompts[i]) || shown.Response == nil {
			t.Errorf("audit show --json %s: %+v %v", id, shown, err)
		}
	}
	if out := c.ok("audit", "verify", "--org", "acme"); !strings.Contains(out, "holds: 8 events") || !strings.Contains(out, "3 full events checked") {
		t.Fatalf("verify: %q", out)
	}

	// The export carries what the chain covers: recomputed here, it
	// matches every hash.
	export := c.ok("audit", "export", "--org", "acme")
	prev := edge.GenesisHash()
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		d1, _ := hex.DecodeString(r.RequestDigest)
		d2, _ := hex.DecodeString(r.ResponseDigest)
		h := edge.ChainHash(r.Seq, prev, []byte(r.Meta), d1, d2)
		if hex.EncodeToString(h) != r.Hash || r.PrevHash != hex.EncodeToString(prev) {
			t.Fatalf("exported event %d does not chain", r.Seq)
		}
		prev = h
	}
	for _, secret := range append([]string{"sk-secret-provider-key-0123456789", key}, canaries...) {
		if strings.Contains(export, secret) || strings.Contains(c.ok("audit", "list", "--org", "acme"), secret) {
			t.Errorf("audit export or list shows %q", secret)
		}
	}
	storetest.ScanDirForCanaries(t, c.env["CODEX_DATA_DIR"], append(canaries, "sk-secret-provider-key-0123456789", key)...)

	// Shred: the content goes, the chain stays verifiable.
	c.ok("crypto", "shred", "--org", "acme", "--yes")
	if out := c.ok("audit", "verify", "--org", "acme"); !strings.Contains(out, "holds: 9 events") || !strings.Contains(out, "3 removed") {
		t.Fatalf("verify after shred: %q", out)
	}
	if code, _, errs := c.run("", "audit", "show", requests[0]); code != 1 || !strings.Contains(errs, "removed (shred)") {
		t.Fatalf("show after shred: exit %d: %s", code, errs)
	}
	list := c.ok("audit", "list", "--org", "acme", "--json")
	if !strings.Contains(list, `"action":"crypto.shred"`) || strings.Count(list, `"content":"removed:shred"`) != 3 {
		t.Fatalf("list after shred: %s", list)
	}

	// Tampering with one stored event: verify names it.
	db, err := sql.Open("sqlite", filepath.Join(c.env["CODEX_DATA_DIR"], sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_events SET meta = replace(meta, '"status":200', '"status":403') WHERE id = ?`, requests[1]); err != nil {
		t.Fatal(err)
	}
	code, out, errs := c.run("", "audit", "verify", "--org", "acme")
	if code != 1 || !strings.Contains(errs, "seq 7") || !strings.Contains(errs, requests[1]) {
		t.Fatalf("verify after tampering: exit %d: %s %s", code, out, errs)
	}
	var rep map[string]any
	code, out, _ = c.run("", "audit", "verify", "--org", "acme", "--json")
	if err := json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&rep); err != nil || code != 1 || rep["ok"] != false {
		t.Fatalf("verify --json after tampering: %d %s", code, out)
	}
}

// TestAuditAdminEventsCLI: every command that changes something adds
// exactly one admin event to its org's chain (a change of every org, one
// to each), naming the interface, the OS user, and what changed; a
// refused change, or one that changes nothing, adds none; no event holds
// a secret or a memory's text.
func TestAuditAdminEventsCLI(t *testing.T) {
	c := newCLI(t)
	acme := strings.TrimSpace(c.ok("orgs", "create", "acme"))
	beta := strings.TrimSpace(c.ok("orgs", "create", "beta", "--kek", "byok-ephemeral"))
	key := strings.TrimSpace(c.ok("keys", "create", "--org", "acme", "--name", "app", "--json"))
	var k struct{ ID, Key string }
	if err := json.Unmarshal([]byte(key), &k); err != nil {
		t.Fatal(err)
	}
	memText := "CANARYclimem" + randHex(t, 8)
	memFile := filepath.Join(t.TempDir(), "tone.txt")
	if err := os.WriteFile(memFile, []byte("key memory "+memText), 0o600); err != nil {
		t.Fatal(err)
	}
	const providerKey = "sk-secret-provider-key-cli-events-0123"

	type event struct {
		org, action, target string
		details             map[string]string
	}
	one := func(org, action, target string, details map[string]string) []event {
		return []event{{org, action, target, details}}
	}
	cases := []struct {
		stdin string
		args  []string
		code  int
		want  []event // nil: no event
	}{
		{"", []string{"limits", "set", "--org", "acme", "--rpm", "60"}, 0, one(acme, "limits.set", "", map[string]string{"rpm": "60", "tpm": "0"})},
		{"", []string{"limits", "set", "--org", "acme", "--tpm", "1000"}, 0, one(acme, "limits.set", "", map[string]string{"rpm": "60", "tpm": "1000"})},
		{"", []string{"limits", "set", "--org", acme, "--key", k.ID, "--rpm", "5", "--tpm", "50"}, 0, one(acme, "limits.set", k.ID, map[string]string{"rpm": "5", "tpm": "50"})},
		{"", []string{"limits", "set", "--org", "acme", "--rpm", "0", "--tpm", "0"}, 0, one(acme, "limits.set", "", map[string]string{"rpm": "0", "tpm": "0"})},
		{"", []string{"limits", "set", "--org", "acme", "--key", "key_nope", "--rpm", "1"}, 1, nil},
		{"", []string{"budgets", "set", "--org", "acme", "--usd", "12.50", "--period", "day"}, 0, one(acme, "budgets.set", "", map[string]string{"period": "day", "cap_usd": "12.5"})},
		{"", []string{"budgets", "set", "--org", "acme", "--key", k.ID, "--usd", "100", "--period", "month"}, 0, one(acme, "budgets.set", k.ID, map[string]string{"period": "month", "cap_usd": "100"})},
		{"", []string{"budgets", "set", "--org", "acme", "--usd", "0", "--period", "day"}, 0, one(acme, "budgets.set", "", map[string]string{"period": "day", "cap_usd": "0"})},
		{"", []string{"budgets", "set", "--org", "acme", "--usd", "1", "--period", "week"}, 2, nil},
		{providerKey, []string{"providers", "set", "--org", "acme", "openai", "--api-key-stdin"}, 0, // seals with a data key
			one(acme, "providers.set", "openai", map[string]string{"base_url": "", "key_from": "sealed", "allow_insecure_http": "false"})},
		{memText, []string{"memory", "set", "--org", "acme", "--name", "style", "--stdin"}, 0,
			one(acme, "memory.set", "style", map[string]string{"key_id": "", "version": "1", "bytes": fmt.Sprint(len(memText))})},
		{"", []string{"memory", "set", "--org", "acme", "--key", k.ID, "--name", "tone", "--file", memFile}, 0,
			one(acme, "memory.set", "tone", map[string]string{"key_id": k.ID, "version": "1", "bytes": fmt.Sprint(len("key memory " + memText))})},
		{"", []string{"memory", "rm", "--org", "acme", "style"}, 0, one(acme, "memory.rm", "style", map[string]string{"key_id": ""})},
		{"", []string{"memory", "rm", "--org", "acme", "--key", k.ID, "tone"}, 0, one(acme, "memory.rm", "tone", map[string]string{"key_id": k.ID})},
		{"", []string{"memory", "rm", "--org", "acme", "style"}, 1, nil},
		{"", []string{"crypto", "rotate", "--org", "acme"}, 0, one(acme, "crypto.rotate", "", map[string]string{"generation": "2"})},
		{"", []string{"crypto", "rewrap"}, 0, []event{
			{acme, "crypto.rewrap", "", map[string]string{"rewrapped": "0", "current": "2", "failed": "0"}},
			{beta, "crypto.rewrap", "", map[string]string{"rewrapped": "0", "current": "2", "failed": "0"}},
		}},
		{"", []string{"orgs", "kek", "set", "--org", "acme", "byok-ephemeral"}, 0, one(acme, "crypto.kek_set", "", map[string]string{"from": "default", "to": "byok-ephemeral"})},
		{"", []string{"orgs", "kek", "set", "--org", "acme", "byok-ephemeral"}, 0, nil}, // no change
		{"", []string{"orgs", "kek", "set", "--org", "acme", "default"}, 0, one(acme, "crypto.kek_set", "", map[string]string{"from": "byok-ephemeral", "to": "default"})},
		{"", []string{"orgs", "kek", "set", "--org", "acme", "local"}, 2, nil},
		// A move onto a KMS key (checked with KMS first) is recorded too:
		// TestOrgKEKCheckedBeforeRecordedLocalKMS.
	}
	admin := func(org string) []audit.Item {
		t.Helper()
		var out []audit.Item
		for _, line := range strings.Split(strings.TrimSpace(c.ok("audit", "list", "--org", org, "--json")), "\n") {
			var it audit.Item
			if err := json.Unmarshal([]byte(line), &it); err != nil {
				t.Fatalf("audit list line %q: %v", line, err)
			}
			if it.Kind == edge.AuditAdmin {
				out = append(out, it)
			}
		}
		return out
	}
	for _, tc := range cases {
		name := strings.Join(tc.args, " ")
		before := map[string]int{acme: len(admin(acme)), beta: len(admin(beta))}
		if code, _, errs := c.run(tc.stdin, tc.args...); code != tc.code {
			t.Fatalf("%s: exit %d, want %d: %s", name, code, tc.code, errs)
		}
		wantN := map[string]int{}
		for _, w := range tc.want {
			wantN[w.org]++
		}
		for _, org := range []string{acme, beta} {
			evs := admin(org)
			if added := len(evs) - before[org]; added != wantN[org] {
				t.Fatalf("%s: %d events added to org %s, want %d", name, added, org, wantN[org])
			}
			for _, w := range tc.want {
				if w.org != org {
					continue
				}
				it := evs[len(evs)-1]
				if it.Action != w.action || it.Target != w.target || it.Via != "cli" || it.Actor == "" || !maps.Equal(it.Details, w.details) {
					t.Errorf("%s: event %+v; want %s on %q with %v by the cli", name, it, w.action, w.target, w.details)
				}
			}
		}
	}
	if evs := admin(beta); evs[0].Action != "orgs.create" || !maps.Equal(evs[0].Details, map[string]string{"name": "beta", "kek": "byok-ephemeral"}) {
		t.Errorf("orgs create --kek: event %+v", evs[0])
	}
	for _, org := range []string{"acme", "beta"} {
		c.ok("audit", "verify", "--org", org)
		out := c.ok("audit", "export", "--org", org) + c.ok("audit", "list", "--org", org, "--json")
		for _, secret := range []string{providerKey, memText, k.Key} {
			if strings.Contains(out, secret) {
				t.Errorf("org %s: the audit log shows %q", org, secret)
			}
		}
	}
}
