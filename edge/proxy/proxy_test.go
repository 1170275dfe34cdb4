package proxy

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
