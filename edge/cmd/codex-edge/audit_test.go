package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/store/sqlite"
	"github.com/persiv/codex/edge/store/storetest"
)

// serveBG runs codex-edge serve with c's environment until the test ends
// or stop is called; it returns the client-facing base URL.
func (c *cli) serveBG(t *testing.T) (base string, stop func()) {
	t.Helper()
	c.env["CODEX_LISTEN"], c.env["CODEX_ADMIN_LISTEN"] = freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, io.Discard, func(k string) string { return c.env[k] })
	}()
	waitReady(t, "http://"+c.env["CODEX_LISTEN"]+"/readyz")
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return "http://" + c.env["CODEX_LISTEN"], stop
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
	fake := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
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
	stop()

	items := jsonLines(t, c.ok("audit", "list", "--org", "acme", "--json"))
	var actions, requests []string
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
			if it["level"] != "full" || it["content"] != "sealed" || it["status"] != float64(200) {
				t.Errorf("request event %v", it)
			}
		}
	}
	if want := "orgs.create keys.create providers.set providers.set audit.level"; strings.Join(actions, " ") != want {
		t.Errorf("admin events %q, want %q", actions, want)
	}
	if len(requests) != 2 {
		t.Fatalf("%d request events, want 2", len(requests))
	}
	if since := c.ok("audit", "list", "--org", "acme", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); strings.Count(strings.TrimSpace(since), "\n") != 0 {
		t.Errorf("--since in the future listed %q", since)
	}
	for i, id := range requests {
		out := c.ok("audit", "show", id)
		if !strings.Contains(out, `"content":"`+canaries[i]+`"`) {
			t.Errorf("audit show %s does not print the request verbatim: %s", id, out)
		}
		var shown audit.Shown
		if err := json.Unmarshal([]byte(c.ok("audit", "show", id, "--json")), &shown); err != nil || shown.Request == nil || !strings.Contains(*shown.Request, canaries[i]) || shown.Response == nil {
			t.Errorf("audit show --json %s: %+v %v", id, shown, err)
		}
	}
	if out := c.ok("audit", "verify", "--org", "acme"); !strings.Contains(out, "holds: 7 events") || !strings.Contains(out, "2 full events checked") {
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
	if out := c.ok("audit", "verify", "--org", "acme"); !strings.Contains(out, "holds: 8 events") || !strings.Contains(out, "2 removed") {
		t.Fatalf("verify after shred: %q", out)
	}
	if code, _, errs := c.run("", "audit", "show", requests[0]); code != 1 || !strings.Contains(errs, "removed (shred)") {
		t.Fatalf("show after shred: exit %d: %s", code, errs)
	}
	list := c.ok("audit", "list", "--org", "acme", "--json")
	if !strings.Contains(list, `"action":"crypto.shred"`) || strings.Count(list, `"content":"removed:shred"`) != 2 {
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
