package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/memory"
	"github.com/persiv/codex/edge/store/storetest"
)

// setMemory sets a memory through the admin API (keyID empty: the org's)
// and returns its version.
func (h *harness) setMemory(org, keyID, name, text string) int64 {
	h.t.Helper()
	body, _ := json.Marshal(map[string]string{"text": text})
	u := "http://" + h.srv.AdminAddr() + "/admin/v1/orgs/" + url.PathEscape(org) + "/memories/" + name
	if keyID != "" {
		u += "?key_id=" + keyID
	}
	st, out := adminReq(h.t, "PUT", u, "", map[string]string{"Content-Type": "application/json"}, string(body))
	if st != 200 {
		h.t.Fatalf("set memory %s: %d %s", name, st, out)
	}
	var info memory.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		h.t.Fatal(err)
	}
	return info.Version
}

// lastSent is the body the fake provider last received on path, decoded.
func (h *harness) lastSent(path string) map[string]any {
	h.t.Helper()
	reqs := h.fake.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Path == path {
			var m map[string]any
			if err := json.Unmarshal(reqs[i].Body, &m); err != nil {
				h.t.Fatalf("provider received %s: %v", reqs[i].Body, err)
			}
			return m
		}
	}
	h.t.Fatalf("the provider received nothing on %s", path)
	return nil
}

// memoryCall is one request shape that takes a system instruction, sent
// with an official SDK and a system instruction of the client's own.
type memoryCall struct {
	name, path string
	send       func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error)
	// system reads what the provider received as the system
	// instruction: the injected text (or "" when there is none) and the
	// client's own, which must be exactly what it sent.
	system func(sent map[string]any) (injected string, client any)
}

const (
	clientSystem = "Client system prompt."
	memoryPrompt = "what is the weather"
)

// clientBlock is the client's own cache-control block of Anthropic system.
var clientBlock = map[string]any{"type": "text", "text": clientSystem, "cache_control": map[string]any{"type": "ephemeral"}}

func openaiOpts(hdr http.Header, into **http.Response) []option.RequestOption {
	opts := []option.RequestOption{option.WithResponseInto(into)}
	for k := range hdr {
		opts = append(opts, option.WithHeader(k, hdr.Get(k)))
	}
	return opts
}

func anthropicOpts(hdr http.Header, into **http.Response) []aoption.RequestOption {
	opts := []aoption.RequestOption{aoption.WithResponseInto(into)}
	for k := range hdr {
		opts = append(opts, aoption.WithHeader(k, hdr.Get(k)))
	}
	return opts
}

func chatSystem(sent map[string]any) (string, any) {
	msgs := sent["messages"].([]any)
	first := msgs[0].(map[string]any)
	if first["role"] == "system" && first["content"] != clientSystem {
		return first["content"].(string), msgs[1:]
	}
	return "", msgs
}

// prefixed splits "injected\n\nclient" (or "client" alone).
func prefixed(s string) (string, any) {
	if i := strings.LastIndex(s, "\n\n"+clientSystem); i >= 0 && i+len(clientSystem)+2 == len(s) {
		return s[:i], clientSystem
	}
	return "", s
}

func blocksSystem(sent map[string]any) (string, any) {
	blocks := sent["system"].([]any)
	first := blocks[0].(map[string]any)
	if first["text"] != clientSystem {
		return first["text"].(string), blocks[1:]
	}
	return "", blocks
}

var memoryCalls = []memoryCall{
	{"chat", fakeprovider.PathChatCompletions, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		oc := h.openai(key)
		_, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(clientSystem), openai.UserMessage(memoryPrompt)}},
			openaiOpts(hdr, &resp)...)
		return respHeader(resp), err
	}, chatSystem},
	{"chat stream", fakeprovider.PathChatCompletions, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		oc := h.openai(key)
		s := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(clientSystem), openai.UserMessage(memoryPrompt)}},
			openaiOpts(hdr, &resp)...)
		_, err := collectChat(s, nil)
		return respHeader(resp), err
	}, chatSystem},
	{"responses", fakeprovider.PathResponses, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		p := responsesParams(memoryPrompt, false)
		p.Instructions = openai.String(clientSystem)
		oc := h.openai(key)
		_, err := oc.Responses.New(ctx, p, openaiOpts(hdr, &resp)...)
		return respHeader(resp), err
	}, func(sent map[string]any) (string, any) { return prefixed(sent["instructions"].(string)) }},
	{"responses stream", fakeprovider.PathResponses, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		p := responsesParams(memoryPrompt, false)
		p.Instructions = openai.String(clientSystem)
		oc := h.openai(key)
		s := oc.Responses.NewStreaming(ctx, p, openaiOpts(hdr, &resp)...)
		var final *responses.Response
		for s.Next() {
			if e, ok := s.Current().AsAny().(responses.ResponseCompletedEvent); ok {
				final = &e.Response
			}
		}
		if err := s.Err(); err != nil || final == nil {
			return respHeader(resp), err
		}
		return respHeader(resp), nil
	}, func(sent map[string]any) (string, any) { return prefixed(sent["instructions"].(string)) }},
	{"messages", fakeprovider.PathMessages, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		p := messagesParams(memoryPrompt, false)
		p.System = []anthropic.TextBlockParam{{Text: clientSystem, CacheControl: anthropic.NewCacheControlEphemeralParam()}}
		ac := h.anthropic(key)
		_, err := ac.Messages.New(ctx, p, anthropicOpts(hdr, &resp)...)
		return respHeader(resp), err
	}, blocksSystem},
	{"messages stream", fakeprovider.PathMessages, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		p := messagesParams(memoryPrompt, false)
		p.System = []anthropic.TextBlockParam{{Text: clientSystem, CacheControl: anthropic.NewCacheControlEphemeralParam()}}
		ac := h.anthropic(key)
		s := ac.Messages.NewStreaming(ctx, p, anthropicOpts(hdr, &resp)...)
		var m anthropic.Message
		for s.Next() {
			if err := m.Accumulate(s.Current()); err != nil {
				return nil, err
			}
		}
		return respHeader(resp), s.Err()
	}, blocksSystem},
	{"count_tokens", fakeprovider.PathCountTokens, func(ctx context.Context, h *harness, key string, hdr http.Header) (http.Header, error) {
		var resp *http.Response
		ac := h.anthropic(key)
		_, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-haiku-4-5",
			System:   anthropic.MessageCountTokensParamsSystemUnion{OfString: anthropic.String(clientSystem)},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(memoryPrompt))}},
			anthropicOpts(hdr, &resp)...)
		return respHeader(resp), err
	}, func(sent map[string]any) (string, any) { return prefixed(sent["system"].(string)) }},
}

func respHeader(r *http.Response) http.Header {
	if r == nil {
		return http.Header{}
	}
	return r.Header
}

// wantClientSystem is the client's own system instruction as each shape
// must reach the provider.
func wantClientSystem(call memoryCall) any {
	switch call.name {
	case "chat", "chat stream":
		return []any{map[string]any{"role": "system", "content": clientSystem}, map[string]any{"role": "user", "content": memoryPrompt}}
	case "messages", "messages stream":
		return []any{clientBlock}
	}
	return clientSystem
}

// TestMemoryInjection drives every request shape that takes a system
// instruction through the official SDKs, streamed and not: the provider
// receives the org's memory, then the key's, in its own system
// instruction and in front of the client's (kept exactly, cache_control
// included); the answer says which memories it carried; x-codex-memory:
// off sends the client's request as it was; another key of the org gets
// the org's memory alone.
func TestMemoryInjection(t *testing.T) {
	// Without the cache, every request reaches the provider (a stream
	// would otherwise be served from the answer to its JSON twin).
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = false })
	tn := h.addOrg("acme")
	plainKeyID, plainKey := h.addKey(tn.orgID)
	h.setMemory("acme", "", "style", "Answer in British English.")
	h.setMemory(tn.orgID, "", "about", "The user works at Acme.\nBe \"precise\".")
	h.setMemory("acme", tn.keyID, "tone", "Be terse.")
	orgText := "The user works at Acme.\nBe \"precise\".\n\nAnswer in British English."
	for _, call := range memoryCalls {
		t.Run(call.name, func(t *testing.T) {
			for _, c := range []struct {
				name, key, want, label string
				hdr                    http.Header
			}{
				{"key with its own", tn.key, orgText + "\n\nBe terse.", "about@1,style@1,tone@1", nil},
				{"key without", plainKey, orgText, "about@1,style@1", nil},
				{"off", tn.key, "", "", http.Header{"X-Codex-Memory": {"Off"}}},
			} {
				hdr, err := call.send(ctxT(t), h, c.key, c.hdr)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if got := hdr.Get("X-Codex-Memory"); got != c.label {
					t.Errorf("%s: x-codex-memory %q, want %q", c.name, got, c.label)
				}
				injected, client := call.system(h.lastSent(call.path))
				if injected != c.want {
					t.Errorf("%s: the provider received memory %q, want %q", c.name, injected, c.want)
				}
				if !reflect.DeepEqual(client, wantClientSystem(call)) {
					t.Errorf("%s: the client's own system instruction reached the provider as %#v", c.name, client)
				}
			}
		})
	}
	_ = plainKeyID

	// Endpoints without a system instruction carry no memory and say so.
	st, hdr, body := raw(t, "POST", h.base+"/v1/embeddings", bearer(tn.key), `{"model":"text-embedding-3-small","input":"hi"}`)
	if st != 200 || hdr.Get("X-Codex-Memory") != "" {
		t.Fatalf("embeddings: %d %q %s", st, hdr.Get("X-Codex-Memory"), body)
	}
	// Anthropic system as a string, from a raw client.
	st, hdr, body = raw(t, "POST", h.base+"/v1/messages", anthropicHdr(tn.key),
		`{"model":"claude-haiku-4-5","max_tokens":16,"system":"`+clientSystem+`","messages":[{"role":"user","content":"hi"}]}`)
	if st != 200 || hdr.Get("X-Codex-Memory") != "about@1,style@1,tone@1" {
		t.Fatalf("messages with a string system: %d %q %s", st, hdr.Get("X-Codex-Memory"), body)
	}
	if got := h.lastSent(fakeprovider.PathMessages)["system"]; got != orgText+"\n\nBe terse.\n\n"+clientSystem {
		t.Fatalf("string system sent as %q", got)
	}

	// A malformed body is refused as it would be without memory, its
	// error pointing into the client's own bytes.
	for _, bad := range []string{`{"model":"m","messages":[{"role":"user"}], "x": tru}`, `{"model":"m","messages":[`, `[]`} {
		st1, _, withMem := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), bad)
		st2, _, without := raw(t, "POST", h.base+"/v1/chat/completions", with(bearer(tn.key), "X-Codex-Memory", "off"), bad)
		if st1 != 400 || st2 != 400 || string(withMem) != string(without) {
			t.Errorf("malformed %s: %d %s; without memory %d %s", bad, st1, withMem, st2, without)
		}
	}
}

// TestMemoryCrossOrg: one org's memories never reach another org's
// requests, whatever the names.
func TestMemoryCrossOrg(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = false })
	a := h.addOrg("alpha")
	b := h.addOrg("beta")
	h.setMemory("alpha", "", "style", "ALPHA-ONLY memory text")
	h.setMemory("alpha", a.keyID, "tone", "ALPHA-KEY memory text")
	for _, call := range memoryCalls {
		hdr, err := call.send(ctxT(t), h, b.key, nil)
		if err != nil {
			t.Fatalf("%s: %v", call.name, err)
		}
		injected, _ := call.system(h.lastSent(call.path))
		if hdr.Get("X-Codex-Memory") != "" || injected != "" {
			t.Fatalf("%s: beta's request carried %q (%q)", call.name, injected, hdr.Get("X-Codex-Memory"))
		}
	}
	// A memory of beta's of the same name is beta's alone.
	h.setMemory("beta", "", "style", "BETA memory text")
	for _, tn := range []tenant{a, b} {
		if _, err := memoryCalls[0].send(ctxT(t), h, tn.key, nil); err != nil {
			t.Fatal(err)
		}
		injected, _ := memoryCalls[0].system(h.lastSent(fakeprovider.PathChatCompletions))
		if strings.Contains(injected, "ALPHA") == (tn.orgID == b.orgID) || strings.Contains(injected, "BETA") != (tn.orgID == b.orgID) {
			t.Fatalf("org %s's request carried %q", tn.orgID, injected)
		}
	}
	// A key of another org cannot be given a memory.
	body, _ := json.Marshal(map[string]string{"text": "x"})
	st, out := adminReq(t, "PUT", "http://"+h.srv.AdminAddr()+"/admin/v1/orgs/beta/memories/tone?key_id="+a.keyID, "",
		map[string]string{"Content-Type": "application/json"}, string(body))
	if st != 404 {
		t.Fatalf("memory for another org's key: %d %s", st, out)
	}
}

// TestMemoryCacheFollowsVersion: the memory is part of the fingerprint, so
// a new version never serves an answer made under the old one, while the
// same version hits; a memory set by another process (the CLI) applies
// within CODEX_CHANGE_POLL.
func TestMemoryCacheFollowsVersion(t *testing.T) {
	forBackends(t, func(t *testing.T, redis bool) {
		h := cacheHarness(t, fakeprovider.Options{}, redis)
		tn := h.addOrg("acme")
		h.setMemory("acme", "", "style", "Version one.")
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"cache me please"}]}`
		send := func(want, label string, hdr map[string]string) {
			t.Helper()
			st, got, b := raw(t, "POST", h.base+"/v1/chat/completions", hdr, body)
			if st != 200 || got.Get("X-Codex-Cache") != want || got.Get("X-Codex-Memory") != label {
				t.Fatalf("%d cache %q memory %q, want %s %q: %s", st, got.Get("X-Codex-Cache"), got.Get("X-Codex-Memory"), want, label, b)
			}
		}
		send("miss", "style@1", bearer(tn.key))
		send("hit", "style@1", bearer(tn.key))
		// Opting out is another request: it does not get the answer made
		// with the memory.
		send("miss", "", with(bearer(tn.key), "X-Codex-Memory", "off"))
		send("hit", "", with(bearer(tn.key), "X-Codex-Memory", "off"))

		h.setMemory("acme", "", "style", "Version two.")
		n := h.fake.Count(fakeprovider.PathChatCompletions)
		send("miss", "style@2", bearer(tn.key))
		if h.fake.Count(fakeprovider.PathChatCompletions) != n+1 {
			t.Fatal("a new memory version was answered without the provider")
		}
		if injected, _ := chatSystem(h.lastSent(fakeprovider.PathChatCompletions)); injected != "Version two." {
			t.Fatalf("the provider received %q", injected)
		}
		send("hit", "style@2", bearer(tn.key))

		// Set by another process, straight in the store: the edge follows
		// the change feed.
		kr := openTestKeyring(t, h)
		if _, err := (memory.Service{Store: h.store, Keys: kr}).Set(context.Background(), tn.orgID, "", "style", []byte("Version three.")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "the CLI's version", func() bool {
			_, got, _ := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), body)
			return got.Get("X-Codex-Memory") == "style@3"
		})
		if injected, _ := chatSystem(h.lastSent(fakeprovider.PathChatCompletions)); injected != "Version three." {
			t.Fatalf("after the CLI's set the provider received %q", injected)
		}
		// Removed: requests carry no memory, and do not get an answer
		// made with one.
		st, out := adminReq(t, "DELETE", "http://"+h.srv.AdminAddr()+"/admin/v1/orgs/acme/memories/style", "",
			map[string]string{"Content-Type": "application/json"}, "")
		if st != 200 {
			t.Fatalf("remove: %d %s", st, out)
		}
		send("hit", "", bearer(tn.key)) // the opted-out answer: same request
	})
}

// openTestKeyring opens a keyring on the harness's store and data
// directory, as the CLI does.
func openTestKeyring(t *testing.T, h *harness) *keyring.Keyring {
	t.Helper()
	spec, err := kek.Parse(h.cfg.KEK)
	if err != nil {
		t.Fatal(err)
	}
	master, _, err := kek.Open(context.Background(), spec, h.getenv, h.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: h.store, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestMemoryAdminAPI: the admin API lists, shows and removes memories as
// the CLI does, with the admin API's errors.
func TestMemoryAdminAPI(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr() + "/admin/v1/orgs/"
	js := map[string]string{"Content-Type": "application/json"}
	h.setMemory("acme", "", "style", "Org text.")
	if v := h.setMemory("acme", "", "style", "Org text, again."); v != 2 {
		t.Fatalf("second set: version %d", v)
	}
	h.setMemory("acme", tn.keyID, "tone", "Key text é.")

	st, out := adminReq(t, "GET", admin+"acme/memories", "", nil, "")
	want := `{"memories":[{"name":"style","key_id":"","version":2,"bytes":16,"tokens":4},{"name":"tone","key_id":"` + tn.keyID + `","version":1,"bytes":12,"tokens":4}]}`
	if st != 200 || strings.TrimSpace(out) != want {
		t.Fatalf("list: %d %s\nwant %s", st, out, want)
	}
	st, out = adminReq(t, "GET", admin+tn.orgID+"/memories/tone?key_id="+tn.keyID, "", nil, "")
	if st != 200 || !strings.Contains(out, `"text":"Key text é."`) {
		t.Fatalf("show: %d %s", st, out)
	}
	for _, c := range []struct {
		method, path, body string
		want               int
		code               string
	}{
		{"GET", "nope/memories", "", 404, "not_found"},
		{"PUT", "acme/memories/bad%20name", `{"text":"x"}`, 400, "invalid_request"},
		{"PUT", "acme/memories/ok", `{"text":"  "}`, 400, "invalid_request"},
		{"PUT", "acme/memories/ok", `{"txt":"x"}`, 400, "invalid_request"},
		{"PUT", "acme/memories/ok?key_id=key_nope", `{"text":"x"}`, 404, "not_found"},
		{"GET", "acme/memories/tone", "", 404, "not_found"}, // the key's, not the org's
		{"DELETE", "acme/memories/nope", "", 404, "not_found"},
	} {
		st, out := adminReq(t, c.method, admin+c.path, "", js, c.body)
		var e struct{ Error struct{ Code string } }
		_ = json.Unmarshal([]byte(out), &e) // a body that is no error leaves the code empty: reported below
		if st != c.want || e.Error.Code != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, st, out, c.want, c.code)
		}
	}
	if st, out := adminReq(t, "DELETE", admin+"acme/memories/tone?key_id="+tn.keyID, "", js, ""); st != 200 {
		t.Fatalf("remove: %d %s", st, out)
	}
	hdr, err := memoryCalls[0].send(ctxT(t), h, tn.key, nil)
	if err != nil || hdr.Get("X-Codex-Memory") != "style@2" {
		t.Fatalf("after removing the key's memory: %q %v", hdr.Get("X-Codex-Memory"), err)
	}
	// The admin API needs its token like every other route.
	h2 := newHarnessEnv(t, fakeprovider.Options{}, nil, map[string]string{"CODEX_ADMIN_TOKEN": "0123456789abcdef0123"})
	h2.addOrg("acme")
	if st, _ := adminReq(t, "GET", "http://"+h2.srv.AdminAddr()+"/admin/v1/orgs/acme/memories", "", nil, ""); st != 401 {
		t.Fatalf("without the admin token: %d", st)
	}
}

// TestMemoryShred: after a crypto shred the org's memories are unreadable:
// requests go on without them (an unreadable record is a miss, never an
// error), the admin API says so, and a set makes them work again.
func TestMemoryShred(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = false })
	tn := h.addOrg("acme")
	h.setMemory("acme", "", "style", "Before the shred.")
	if hdr, err := memoryCalls[0].send(ctxT(t), h, tn.key, nil); err != nil || hdr.Get("X-Codex-Memory") != "style@1" {
		t.Fatalf("before the shred: %q %v", hdr.Get("X-Codex-Memory"), err)
	}
	if _, err := h.srv.Keyring().Shred(context.Background(), tn.orgID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "requests without the shredded memory", func() bool {
		hdr, err := memoryCalls[0].send(ctxT(t), h, tn.key, nil)
		return err == nil && hdr.Get("X-Codex-Memory") == ""
	})
	if injected, _ := chatSystem(h.lastSent(fakeprovider.PathChatCompletions)); injected != "" {
		t.Fatalf("the provider received %q after the shred", injected)
	}
	st, out := adminReq(t, "GET", "http://"+h.srv.AdminAddr()+"/admin/v1/orgs/acme/memories/style", "", nil, "")
	if st != 410 || !strings.Contains(out, "memory_unreadable") {
		t.Fatalf("show after the shred: %d %s", st, out)
	}
	if v := h.setMemory("acme", "", "style", "After the shred."); v != 2 {
		t.Fatalf("set after the shred: version %d", v)
	}
	if hdr, err := memoryCalls[0].send(ctxT(t), h, tn.key, nil); err != nil || hdr.Get("X-Codex-Memory") != "style@2" {
		t.Fatalf("set again: %q %v", hdr.Get("X-Codex-Memory"), err)
	}
}

// memoryCanaries makes n memory texts, each with a unique canary.
func memoryCanaries(n int) (texts, canaries []string) {
	for i := range n {
		b := make([]byte, 8)
		rand.Read(b)
		c := fmt.Sprintf("CANARYmem%d%s", i, hex.EncodeToString(b))
		canaries = append(canaries, c)
		texts = append(texts, "Always mention "+c+" politely.")
	}
	return texts, canaries
}

// TestMemoryNoPlaintextAtRest: memory texts, set through the admin API and
// injected into requests whose answers are cached in a Redis with
// persistence, appear in no file of the data directory nor of Redis.
func TestMemoryNoPlaintextAtRest(t *testing.T) {
	rp := startRedis(t)
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = true; c.RedisURL = rp.url() })
	tn := h.addOrg("acme")
	texts, canaries := memoryCanaries(3)
	h.setMemory("acme", "", "style", texts[0])
	h.setMemory("acme", "", "style", texts[1]) // the older version too
	h.setMemory("acme", tn.keyID, "tone", texts[2])
	for _, call := range memoryCalls {
		for range 2 { // miss, then hit
			if _, err := call.send(ctxT(t), h, tn.key, nil); err != nil {
				t.Fatalf("%s: %v", call.name, err)
			}
		}
		injected, _ := call.system(h.lastSent(call.path))
		if !strings.Contains(injected, canaries[1]) || !strings.Contains(injected, canaries[2]) {
			t.Fatalf("%s: the provider did not receive the memories: %q", call.name, injected)
		}
	}
	h.records(tn.orgID, 2*len(memoryCalls))
	rp.persist(context.Background())
	if found, err := storetest.FindCanaries(rp.dir, tn.orgID); err != nil || len(found) == 0 {
		t.Fatalf("the Redis files hold no entries of the org (%v): the scan would prove nothing", err)
	}
	storetest.ScanDirForCanaries(t, rp.dir, canaries...)
	storetest.ScanDirForCanaries(t, h.cfg.DataDir, canaries...)
}

// TestMemoryMetadata: the request's metadata names the memories and their
// estimated tokens; a request without memory records none.
func TestMemoryMetadata(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.MetadataFlush = 5 * time.Millisecond })
	tn := h.addOrg("acme")
	h.setMemory("acme", "", "style", "Twelve bytes")       // 3 tokens
	h.setMemory("acme", tn.keyID, "tone", "Café au lait.") // 12 ASCII, 1 other: 4 tokens
	_, hdr, _ := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	withMem := hdr.Get("X-Codex-Request-Id")
	_, hdr, _ = raw(t, "POST", h.base+"/v1/chat/completions", with(bearer(tn.key), "X-Codex-Memory", "off"), `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	without := hdr.Get("X-Codex-Request-Id")
	rec := recordByID(t, h, tn.orgID, withMem)
	if rec.MemoryID != "style@1,tone@1" || rec.MemoryTokensEstimate != 7 {
		t.Fatalf("record: memory %q, %d tokens; want style@1,tone@1, 7", rec.MemoryID, rec.MemoryTokensEstimate)
	}
	if rec := recordByID(t, h, tn.orgID, without); rec.MemoryID != "" || rec.MemoryTokensEstimate != 0 {
		t.Fatalf("opted-out record: %q %d", rec.MemoryID, rec.MemoryTokensEstimate)
	}
}
