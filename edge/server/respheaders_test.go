package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/server"
)

// TestProviderCannotSetEdgeHeaders (issue 13, finding 5): a provider's
// Strict-Transport-Security, x-codex-* and Set-Cookie never reach the
// client, on JSON and streamed answers, provider errors and cache hits;
// the edge's own headers stand, and the provider's other headers pass.
func TestProviderCannotSetEdgeHeaders(t *testing.T) {
	hostile := http.Header{
		"Strict-Transport-Security": {"max-age=0"},
		"X-Codex-Cache":             {"forged"},
		"X-Codex-Request-Id":        {"req_forged"},
		"X-Codex-Memory":            {"forged@1"},
		"Set-Cookie":                {"session=from-provider; Path=/"},
		"X-Provider-Header":         {"kept"},
	}
	h := newHarness(t, fakeprovider.Options{Header: hostile}, func(c *config.Config) { c.CacheEnabled = true })
	tn := h.addOrg("acme")
	// A stream asks another question, so that it is not served from the
	// JSON answer's cache entry.
	stream := func(body string) string {
		return strings.Replace(strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1), `"hi"`, `"hi there"`, 1)
	}
	cases := []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		cache            string // x-codex-cache the edge answers
	}{
		{"openai json", "/v1/chat/completions", chatBody, bearer(tn.key), 200, "miss"},
		{"openai json cached", "/v1/chat/completions", chatBody, bearer(tn.key), 200, "hit"},
		{"openai stream", "/v1/chat/completions", stream(chatBody), bearer(tn.key), 200, "miss"},
		{"openai stream cached", "/v1/chat/completions", stream(chatBody), bearer(tn.key), 200, "hit"},
		{"anthropic json", "/v1/messages", msgBody, anthropicHdr(tn.key), 200, "miss"},
		{"anthropic stream", "/v1/messages", stream(msgBody), anthropicHdr(tn.key), 200, "miss"},
		{"anthropic stream cached", "/v1/messages", stream(msgBody), anthropicHdr(tn.key), 200, "hit"},
		{"provider error", "/v1/chat/completions", strings.Replace(chatBody, "gpt-4o-mini", fakeprovider.ModelError429, 1), bearer(tn.key), 429, "miss"},
		{"models", "/v1/models", "", bearer(tn.key), 200, "bypass"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := "POST"
			if c.body == "" {
				method = "GET"
			}
			st, hdr, body := raw(t, method, h.base+c.path, c.hdr, c.body)
			if st != c.status {
				t.Fatalf("status %d: %s", st, body)
			}
			if got := hdr.Values("Strict-Transport-Security"); len(got) != 1 || got[0] != server.HSTS {
				t.Errorf("Strict-Transport-Security %q, want only the edge's", got)
			}
			if got := hdr.Values("X-Codex-Request-Id"); len(got) != 1 || !strings.HasPrefix(got[0], "req_") || got[0] == "req_forged" {
				t.Errorf("x-codex-request-id %q, want only the edge's", got)
			}
			if got := hdr.Values("X-Codex-Cache"); len(got) != 1 || got[0] != c.cache {
				t.Errorf("x-codex-cache %q, want %q", got, c.cache)
			}
			if got := hdr.Values("X-Codex-Memory"); len(got) != 0 {
				t.Errorf("x-codex-memory %q passed on from the provider", got)
			}
			if got := hdr.Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("Set-Cookie %q passed on from the provider", got)
			}
			if fresh := c.cache != "hit"; fresh && hdr.Get("X-Provider-Header") != "kept" {
				t.Errorf("the provider's own header was dropped: %v", hdr)
			}
		})
	}
}
