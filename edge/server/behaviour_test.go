package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/store/storetest"
)

// raw sends a request to the edge and returns status, headers and body.
func raw(t *testing.T, method, url string, hdr map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// shape checks a body is an error in the provider's own shape.
func shape(t *testing.T, p edge.Provider, body []byte, wantType string) {
	t.Helper()
	if p == edge.Anthropic {
		var e struct {
			Type  string
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" || e.Error.Type != wantType || e.Error.Message == "" {
			t.Fatalf("not an Anthropic %s error: %s", wantType, body)
		}
		return
	}
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || (wantType != "" && e.Error.Type != wantType) {
		t.Fatalf("not an OpenAI %s error: %s", wantType, body)
	}
}

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
const msgBody = `{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`

func TestAuth(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	chat, msgs := h.base+"/v1/chat/completions", h.base+"/v1/messages"
	anth := map[string]string{"anthropic-version": "2023-06-01"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	// A well-formed key that was never issued: right prefix, right checksum.
	other := newHarness(t, fakeprovider.Options{}, nil).addOrg("elsewhere").key
	cases := []struct {
		name string
		p    edge.Provider
		url  string
		hdr  map[string]string
		body string
	}{
		{"openai missing", edge.OpenAI, chat, nil, chatBody},
		{"openai malformed", edge.OpenAI, chat, map[string]string{"Authorization": "Bearer pk_live_nope"}, chatBody},
		{"openai typo", edge.OpenAI, chat, map[string]string{"Authorization": "Bearer " + typo(tn.key, 20)}, chatBody},
		{"openai unknown", edge.OpenAI, chat, map[string]string{"Authorization": "Bearer " + other}, chatBody},
		{"openai provider key", edge.OpenAI, chat, map[string]string{"Authorization": "Bearer " + tn.providerKey}, chatBody},
		{"anthropic missing", edge.Anthropic, msgs, anth, msgBody},
		{"anthropic unknown", edge.Anthropic, msgs, with(anth, "x-api-key", other), msgBody},
	}
	before := h.fake.Count(fakeprovider.PathChatCompletions) + h.fake.Count(fakeprovider.PathMessages)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, hdr, body := raw(t, "POST", c.url, c.hdr, c.body)
			if st != 401 {
				t.Fatalf("status %d: %s", st, body)
			}
			want := "invalid_request_error"
			if c.p == edge.Anthropic {
				want = "authentication_error"
			}
			shape(t, c.p, body, want)
			if hdr.Get("x-codex-request-id") == "" || hdr.Get("Strict-Transport-Security") != "max-age=31536000; includeSubDomains" {
				t.Fatalf("headers %v", hdr)
			}
		})
	}
	if n := h.fake.Count(fakeprovider.PathChatCompletions) + h.fake.Count(fakeprovider.PathMessages); n != before {
		t.Fatal("a request with a bad key reached the provider")
	}

	// Both header forms work on every route.
	for _, hdr := range []map[string]string{{"Authorization": "Bearer " + tn.key}, {"x-api-key": tn.key}} {
		if st, _, body := raw(t, "POST", chat, hdr, chatBody); st != 200 {
			t.Fatalf("%v: %d %s", hdr, st, body)
		}
		if st, _, body := raw(t, "POST", msgs, with(anth, firstKey(hdr), hdr[firstKey(hdr)]), msgBody); st != 200 {
			t.Fatalf("%v: %d %s", hdr, st, body)
		}
	}
}

func firstKey(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

func TestRevocation(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	hdr := map[string]string{"Authorization": "Bearer " + tn.key}
	url := h.base + "/v1/chat/completions"
	if st, _, _ := raw(t, "POST", url, hdr, chatBody); st != 200 {
		t.Fatalf("status %d before revocation", st)
	}
	// Through this instance: refused at once.
	if err := h.srv.Directory().Revoke(context.Background(), tn.orgID, tn.keyID); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := raw(t, "POST", url, hdr, chatBody); st != 401 {
		t.Fatalf("status %d right after revocation through this instance", st)
	}

	// By another process (the CLI writes the store): refused within the
	// change-feed poll.
	id2, key2 := h.addKey(tn.orgID)
	hdr2 := map[string]string{"Authorization": "Bearer " + key2}
	if st, _, _ := raw(t, "POST", url, hdr2, chatBody); st != 200 {
		t.Fatalf("new key: status %d", st)
	}
	if err := h.store.RevokeKey(context.Background(), tn.orgID, id2, time.Now()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a key revoked in the store to be refused", func() bool {
		st, _, _ := raw(t, "POST", url, hdr2, chatBody)
		return st == 401
	})
}

func TestKeysNeverCrossOrgs(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	a, b := h.addOrg("a"), h.addOrg("b")
	ask := func(tn tenant) {
		t.Helper()
		if _, err := oa(h, tn.key).Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("which org")}}); err != nil {
			t.Fatal(err)
		}
	}
	// Byte-identical requests: each org's goes out with its own credential,
	// and org b is never served org a's cached answer.
	for _, tn := range []tenant{a, b} {
		ask(tn)
		reqs := h.fake.Requests()
		if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+tn.providerKey {
			t.Fatalf("org %s's request went out with %q", tn.orgID, got)
		}
	}
	if n := h.fake.Count(fakeprovider.PathChatCompletions); n != 2 {
		t.Fatalf("%d provider calls for two orgs, want 2", n)
	}
	ask(a) // org a's own repeat is a cache hit
	if n := h.fake.Count(fakeprovider.PathChatCompletions); n != 2 {
		t.Fatalf("org a's repeat called the provider (%d calls)", n)
	}
	ra, rb := h.records(a.orgID, 2), h.records(b.orgID, 1)
	if ra[0].KeyID != a.keyID || rb[0].KeyID != b.keyID || ra[0].Cache != edge.CacheMiss || ra[1].Cache != edge.CacheHit || rb[0].Cache != edge.CacheMiss {
		t.Fatalf("records: org a %+v, org b %+v", ra, rb)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.MaxBodyBytes = 4096 })
	tn := h.addOrg("acme")
	oa := map[string]string{"Authorization": "Bearer " + tn.key, "Content-Type": "application/json"}
	an := map[string]string{"x-api-key": tn.key, "anthropic-version": "2023-06-01"}
	big := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("a", 5000) + `"}]}`
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
		p                  edge.Provider
		typ                string
	}{
		{"malformed openai", "POST", "/v1/chat/completions", oa, `{"model":`, 400, edge.OpenAI, "invalid_request_error"},
		{"not an object", "POST", "/v1/embeddings", oa, `[1,2]`, 400, edge.OpenAI, "invalid_request_error"},
		{"malformed anthropic", "POST", "/v1/messages", an, `{"model":"x",}`, 400, edge.Anthropic, "invalid_request_error"},
		{"too large openai", "POST", "/v1/chat/completions", oa, big, 413, edge.OpenAI, "invalid_request_error"},
		{"too large anthropic", "POST", "/v1/messages/count_tokens", an, big, 413, edge.Anthropic, "request_too_large"},
		{"unknown route openai", "POST", "/v1/completions", oa, chatBody, 404, edge.OpenAI, "invalid_request_error"},
		{"unknown route anthropic", "GET", "/v1/messages/batches", an, "", 404, edge.Anthropic, "not_found_error"},
		{"wrong method", "GET", "/v1/chat/completions", oa, "", 404, edge.OpenAI, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, _, body := raw(t, c.method, h.base+c.path, c.hdr, c.body)
			if st != c.status && !(c.name == "wrong method" && st == 405) {
				t.Fatalf("status %d, want %d: %s", st, c.status, body)
			}
			shape(t, c.p, body, c.typ)
		})
	}
	// A body over the limit sent without a declared length is cut off too.
	req, _ := http.NewRequest("POST", h.base+"/v1/chat/completions", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+tn.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}
	if h.fake.Count(fakeprovider.PathChatCompletions) != 0 {
		t.Fatal("bad input reached the provider")
	}
}

func TestProviderErrorsPassThrough(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	for _, c := range []struct {
		path, body string
		hdr        map[string]string
	}{
		{"/v1/chat/completions", `{"model":"fake-error-429","messages":[{"role":"user","content":"x"}]}`, map[string]string{"Authorization": "Bearer "}},
		{"/v1/messages", `{"model":"fake-error-429","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, map[string]string{"x-api-key": "", "anthropic-version": "2023-06-01"}},
		{"/v1/chat/completions", `{"model":"fake-error-500","messages":[{"role":"user","content":"x"}]}`, map[string]string{"Authorization": "Bearer "}},
	} {
		hdrFor := func(secret string) map[string]string {
			m := map[string]string{}
			for k, v := range c.hdr {
				if v == "Bearer " || (k == "x-api-key") {
					v += secret
				}
				m[k] = v
			}
			return m
		}
		dst, dh, dbody := raw(t, "POST", h.fakeURL+c.path, hdrFor(tn.providerKey), c.body)
		est, eh, ebody := raw(t, "POST", h.base+c.path, hdrFor(tn.key), c.body)
		// The provider numbers its request ids; everything else must match.
		reqID := regexp.MustCompile(`req_fake[0-9]+`)
		dbody, ebody = reqID.ReplaceAll(dbody, nil), reqID.ReplaceAll(ebody, nil)
		if dst != est || !bytes.Equal(dbody, ebody) || dh.Get("retry-after") != eh.Get("retry-after") {
			t.Fatalf("%s: through the edge %d %s (retry-after %q), direct %d %s (retry-after %q)",
				c.body, est, ebody, eh.Get("retry-after"), dst, dbody, dh.Get("retry-after"))
		}
	}
}

func TestTimeoutsAndUnreachable(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) {
		c.UpstreamHeaderTimeout = 300 * time.Millisecond
		c.UpstreamIdleTimeout = 300 * time.Millisecond
	})
	tn := h.addOrg("acme")

	// No response headers in time: 504 in each provider's shape.
	_, err := oa(h, tn.key).Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{Model: "fake-hang",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 504 || oe.Type != "server_error" {
		t.Fatalf("hang via openai: %v", err)
	}
	_, err = an(h, tn.key).Messages.New(ctxT(t), anthropic.MessageNewParams{Model: "fake-hang", MaxTokens: 5,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 504 || !strings.Contains(ae.RawJSON(), "timeout_error") {
		t.Fatalf("hang via anthropic: %v", err)
	}

	// A stream that stalls after it started ends with an error event.
	s := an(h, tn.key).Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{Model: "fake-stall", MaxTokens: 5,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}})
	events := 0
	for s.Next() {
		events++
	}
	if s.Err() == nil || !strings.Contains(s.Err().Error(), "timeout_error") || events == 0 {
		t.Fatalf("stalled stream: %d events, err %v", events, s.Err())
	}
	recs := h.records(tn.orgID, 3)
	for _, r := range recs {
		if r.Status != 504 {
			t.Fatalf("record status %d, want 504: %+v", r.Status, r)
		}
	}

	// A provider that is not there: 502.
	ctx := context.Background()
	if err := h.store.SetProvider(ctx, edge.ProviderConfig{OrgID: tn.orgID, Provider: edge.OpenAI, BaseURL: "http://127.0.0.1:1", APIKeyEnv: "PROVIDER_KEY_acme"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "502 from an unreachable provider", func() bool {
		st, _, body := raw(t, "POST", h.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + tn.key, "Cache-Control": "no-store"}, chatBody)
		if st == 502 {
			shape(t, edge.OpenAI, body, "server_error")
		}
		return st == 502
	})
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	ctx, cancel := context.WithCancel(ctxT(t))
	s := oa(h, tn.key).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "fake-stall",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	if !s.Next() {
		t.Fatalf("no first chunk: %v", s.Err())
	}
	cancel()
	s.Close()
	testutil.Eventually(t, 10*time.Second, "the provider to see the request cancelled", func() bool { return h.fake.Canceled() == 1 })
}

// TestStreamChunksAreNotHeldBack proves each chunk reaches the SDK before
// the provider emits the next one: the fake provider holds chunk n+1 until
// the client has seen chunk n, so an edge that buffered would deadlock.
func TestStreamChunksAreNotHeldBack(t *testing.T) {
	const deltas = 6
	var seen atomic.Int64 // text deltas the client has received
	var firstDelta atomic.Int64
	gate := func(ctx context.Context, n int) error {
		first := int(firstDelta.Load())
		if n <= first || n > first+deltas-1 {
			return nil // not between two deltas
		}
		deadline := time.Now().Add(5 * time.Second)
		for seen.Load() < int64(n-first) {
			if time.Now().After(deadline) {
				return fmt.Errorf("client had seen %d deltas before the provider emitted event %d: the edge is holding chunks back", seen.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	h := newHarness(t, fakeprovider.Options{Chunks: deltas, Gate: gate}, nil)
	tn := h.addOrg("acme")

	t.Run("openai", func(t *testing.T) {
		seen.Store(0)
		firstDelta.Store(1) // after the role chunk
		s := oa(h, tn.key).Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four five six seven")}})
		for s.Next() {
			if c := s.Current(); len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				seen.Add(1)
			}
		}
		if s.Err() != nil || seen.Load() != deltas {
			t.Fatalf("%d deltas, err %v", seen.Load(), s.Err())
		}
	})
	t.Run("anthropic", func(t *testing.T) {
		seen.Store(0)
		firstDelta.Store(3) // after message_start, content_block_start, ping
		s := an(h, tn.key).Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("one two three four five six seven"))}})
		for s.Next() {
			if ev := s.Current(); ev.Type == "content_block_delta" {
				seen.Add(1)
			}
		}
		if s.Err() != nil || seen.Load() != deltas {
			t.Fatalf("%d deltas, err %v", seen.Load(), s.Err())
		}
	})
}

// TestNoContentAtRest sends unique canaries in prompts (and so in answers,
// which echo them) and finds none in any file under the data directory.
func TestNoContentAtRest(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	canaries := []string{"CANARYa7f3e9q1prompt", "CANARYz8k2m4w6stream", "CANARYm5n7b9v2anthropic"}
	ctx := ctxT(t)
	if _, err := oa(h, tn.key).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(canaries[0])}}); err != nil {
		t.Fatal(err)
	}
	s := oa(h, tn.key).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(canaries[1])}})
	for s.Next() {
	}
	if _, err := an(h, tn.key).Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 16,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(canaries[2]))}}); err != nil {
		t.Fatal(err)
	}
	h.records(tn.orgID, 3)
	storetest.ScanDirForCanaries(t, h.cfg.DataDir, append(canaries, tn.key, tn.providerKey)...)
}

func TestTLSOnly13(t *testing.T) {
	certFile, keyFile, pool := testutil.SelfSignedCert(t)
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) {
		c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	addr := strings.TrimPrefix(h.base, "http://")
	// TLS 1.2 and below: refused at the handshake.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: v})
		if err == nil {
			conn.Close()
			t.Fatalf("a TLS %x client was accepted", v)
		}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS.Version != tls.VersionTLS13 || resp.Header.Get("Strict-Transport-Security") != "max-age=31536000; includeSubDomains" {
		t.Fatalf("TLS %x, HSTS %q", resp.TLS.Version, resp.Header.Get("Strict-Transport-Security"))
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	raw(t, "POST", h.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + tn.key}, chatBody)
	_, _, stream := raw(t, "POST", h.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + tn.key},
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count the chunks"}]}`)
	events := strings.Count(string(stream), "data: ")
	if events < 3 {
		t.Fatalf("stream of %d events: %s", events, stream)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, _, body := raw(t, "GET", h.base+p, nil, ""); st != 200 {
			t.Fatalf("%s: %d %s", p, st, body)
		}
	}
	admin := "http://" + h.srv.AdminAddr()
	st, hdr, body := raw(t, "GET", admin+"/metrics", nil, "")
	if st != 200 || hdr.Get("Strict-Transport-Security") == "" {
		t.Fatalf("metrics: %d", st)
	}
	m := string(body)
	for _, want := range []string{`codex_edge_requests_total{cache="miss",endpoint="chat.completions",model="gpt-4o-mini",provider="openai",status="200"} 2`,
		"codex_edge_added_latency_seconds_bucket", "codex_edge_upstream_latency_seconds_bucket", "codex_edge_metadata_queue_depth", "codex_edge_metadata_dropped_total",
		// every event the client received was timed, and none other
		fmt.Sprintf("codex_edge_stream_chunk_forward_seconds_count %d\n", events)} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, secret := range []string{tn.orgID, tn.keyID, tn.key, tn.providerKey} {
		if strings.Contains(m, secret) {
			t.Errorf("metrics contain %q", secret)
		}
	}
	if st, _, _ := raw(t, "GET", admin+"/debug/pprof/", nil, ""); st != 404 {
		t.Fatalf("pprof reachable while disabled: %d", st)
	}
}

// oa and an return addressable SDK clients (their services have pointer
// methods).
func oa(h *harness, key string) *openai.Client {
	c := h.openai(key)
	return &c
}

func an(h *harness, key string) *anthropic.Client {
	c := h.anthropic(key)
	return &c
}

func TestAdminRevoke(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr()
	if st, _ := status(t, h, tn.key); st != 200 {
		t.Fatalf("before revocation: %d", st)
	}
	jsonType := map[string]string{"Content-Type": "application/json"}
	if st, _, body := raw(t, "POST", admin+"/admin/v1/keys/key_nope/revoke", jsonType, ""); st != 404 {
		t.Fatalf("unknown key: %d %s", st, body)
	}
	if st, _, body := raw(t, "POST", admin+"/admin/v1/keys/"+tn.keyID+"/revoke", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "x=1"); st != 415 {
		t.Fatalf("form body: %d %s", st, body)
	}
	if st, _, body := raw(t, "POST", admin+"/admin/v1/keys/"+tn.keyID+"/revoke", jsonType, ""); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	// At once on this instance: no poll interval in between.
	if st, _ := status(t, h, tn.key); st != 401 {
		t.Fatalf("right after the admin revocation: %d", st)
	}
}

func TestAdminToken(t *testing.T) {
	const token = "admin-token-0123456789"
	h := newHarnessEnv(t, fakeprovider.Options{}, nil, map[string]string{"CODEX_ADMIN_TOKEN": token})
	tn := h.addOrg("acme")
	url := "http://" + h.srv.AdminAddr() + "/admin/v1/keys/" + tn.keyID + "/revoke"
	for _, hdr := range []map[string]string{{"Content-Type": "application/json"}, {"Content-Type": "application/json", "Authorization": "Bearer wrong-token-0123456789"}} {
		if st, _, _ := raw(t, "POST", url, hdr, ""); st != 401 {
			t.Fatalf("%v: %d, want 401", hdr, st)
		}
	}
	if st, _, body := raw(t, "POST", url, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}, ""); st != 200 {
		t.Fatalf("with the token: %d %s", st, body)
	}
}

// typo changes the character at i to a different one.
func typo(key string, i int) string {
	c := byte('X')
	if key[i] == c {
		c = 'Y'
	}
	return key[:i] + string(c) + key[i+1:]
}
