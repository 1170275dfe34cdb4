package forward

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestCopyRequestHeaders(t *testing.T) {
	src := http.Header{
		"Authorization":     {"Bearer pk_live_x"},
		"X-Api-Key":         {"pk_live_x"},
		"Anthropic-Version": {"2023-06-01"},
		"Openai-Beta":       {"assistants=v2"},
		"Connection":        {"keep-alive, X-Hop"},
		"X-Hop":             {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Accept-Encoding":   {"gzip"},
		"X-Codex-Cache-Ttl": {"60"},
		"Content-Type":      {"application/json"},
		"User-Agent":        {"OpenAI/Go 3"},
	}
	dst := http.Header{}
	copyRequestHeaders(dst, src)
	for _, gone := range []string{"Authorization", "X-Api-Key", "Connection", "X-Hop", "Keep-Alive", "Accept-Encoding", "X-Codex-Cache-Ttl"} {
		if dst.Get(gone) != "" {
			t.Errorf("%s forwarded to the provider", gone)
		}
	}
	for _, kept := range []string{"Anthropic-Version", "Openai-Beta", "Content-Type", "User-Agent"} {
		if dst.Get(kept) != src.Get(kept) {
			t.Errorf("%s not forwarded", kept)
		}
	}
}

func TestWithoutURL(t *testing.T) {
	err := &url.Error{Op: "Post", URL: "http://provider/v1/chat/completions?api-key=secret-in-query", Err: errors.New("connection refused")}
	if got := withoutURL(fmt.Errorf("call: %w", err)).Error(); strings.Contains(got, "secret-in-query") || got != "connection refused" {
		t.Fatalf("logged error %q", got)
	}
}

func TestCopyResponseHeaders(t *testing.T) {
	edgeOwn := http.Header{
		"Strict-Transport-Security": {"max-age=31536000; includeSubDomains"},
		"X-Codex-Request-Id":        {"req_edge"},
		"X-Codex-Cache":             {"miss"},
	}
	src := http.Header{
		"Strict-Transport-Security": {"max-age=0"},
		"X-Codex-Request-Id":        {"req_forged"},
		"X-Codex-Cache":             {"hit"},
		"X-Codex-Memory":            {"forged@1"},
		"Set-Cookie":                {"session=provider; Path=/"},
		"Set-Cookie2":               {"old=1"},
		// Naming the edge's headers as hop-by-hop must not remove them.
		"Connection":        {"keep-alive, Strict-Transport-Security, x-codex-request-id, X-Hop"},
		"X-Hop":             {"1"},
		"Transfer-Encoding": {"chunked"},
		"Content-Type":      {"application/json"},
		"Openai-Request-Id": {"abc"},
		"Retry-After":       {"3"},
	}
	dst := edgeOwn.Clone()
	copyResponseHeaders(dst, src)
	for k, v := range edgeOwn {
		if got := dst.Values(k); len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %q, want the edge's %q", k, got, v[0])
		}
	}
	for _, gone := range []string{"X-Codex-Memory", "Set-Cookie", "Set-Cookie2", "Connection", "X-Hop", "Transfer-Encoding"} {
		if dst.Get(gone) != "" {
			t.Errorf("%s passed on to the client", gone)
		}
	}
	for _, kept := range []string{"Content-Type", "Openai-Request-Id", "Retry-After"} {
		if dst.Get(kept) != src.Get(kept) {
			t.Errorf("%s not passed on", kept)
		}
	}
}
