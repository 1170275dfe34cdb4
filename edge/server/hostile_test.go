package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
)

// readAnswer reads what the edge sends on c until it closes the
// connection; it fails the test if the edge keeps the connection open.
func readAnswer(t *testing.T, c net.Conn) string {
	t.Helper()
	// Far past the timeouts under test: reaching it means the edge never
	// cut the connection.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the edge kept a slow connection open: %v (read %q)", err, b)
	}
	return string(b)
}

// TestClientTimeouts proves the bounds on slow clients (slowloris): a
// connection whose request headers do not end within
// CODEX_CLIENT_HEADER_TIMEOUT is closed, and a body still arriving after
// CODEX_CLIENT_READ_TIMEOUT is refused with 408 in the route's provider
// shape and its connection closed; an answer streaming for longer than the
// read timeout is not cut.
func TestClientTimeouts(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{Chunks: 4, ChunkDelay: 150 * time.Millisecond}, func(c *config.Config) {
		c.ClientHeaderTimeout, c.ClientReadTimeout = 200*time.Millisecond, 400*time.Millisecond
	})
	tn := h.addOrg("acme")
	addr := strings.TrimPrefix(h.base, "http://")

	t.Run("slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: edge\r\nX-Slow: 1\r\n"); err != nil {
			t.Fatal(err)
		}
		if got := readAnswer(t, c); got != "" {
			t.Fatalf("answer to unfinished headers: %q", got)
		}
	})

	bodies := []struct {
		name, path, headers string
		p                   edge.Provider
		typ                 string
	}{
		{"slow body openai", "/v1/chat/completions", "Authorization: Bearer " + tn.key, edge.OpenAI, "invalid_request_error"},
		{"slow body anthropic", "/v1/messages", "x-api-key: " + tn.key + "\r\nanthropic-version: 2023-06-01", edge.Anthropic, "timeout_error"},
	}
	for _, tt := range bodies {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "POST "+tt.path+" HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"+tt.headers+
				"\r\nContent-Length: 4096\r\n\r\n{\"model\":"); err != nil {
				t.Fatal(err)
			}
			got := readAnswer(t, c)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("no HTTP answer: %v: %q", err, got)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408: %s", resp.StatusCode, body)
			}
			shape(t, tt.p, body, tt.typ)
		})
	}

	t.Run("stream outlives the read timeout", func(t *testing.T) {
		start := time.Now()
		s := oa(h, tn.key).Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four")}})
		deltas := 0
		for s.Next() {
			if c := s.Current(); len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				deltas++
			}
		}
		if s.Err() != nil || deltas != 4 {
			t.Fatalf("%d deltas, err %v", deltas, s.Err())
		}
		if took := time.Since(start); took <= h.cfg.ClientReadTimeout {
			t.Fatalf("the stream took %s, not longer than the read timeout %s: the case proves nothing", took, h.cfg.ClientReadTimeout)
		}
	})
}

// TestDeepJSON sends 10,000-deep request bodies: the edge refuses them with
// a 400 in the route's provider shape, without reaching the provider.
func TestDeepJSON(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	const depth = 10000
	oaHdr := map[string]string{"Authorization": "Bearer " + tn.key, "Content-Type": "application/json"}
	anHdr := map[string]string{"x-api-key": tn.key, "anthropic-version": "2023-06-01"}
	tests := []struct {
		name, path string
		hdr        map[string]string
		body       string
		p          edge.Provider
	}{
		{"arrays", "/v1/chat/completions", oaHdr,
			`{"model":"gpt-4o-mini","messages":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`, edge.OpenAI},
		{"objects", "/v1/chat/completions", oaHdr,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":` + strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) + `}]}`, edge.OpenAI},
		{"anthropic", "/v1/messages", anHdr,
			`{"model":"claude-haiku-4-5","max_tokens":5,"metadata":` + strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) + `}`, edge.Anthropic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, body := raw(t, "POST", h.base+tt.path, tt.hdr, tt.body)
			if st != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %.300s", st, body)
			}
			shape(t, tt.p, body, "invalid_request_error")
		})
	}
	if n := h.fake.Count(fakeprovider.PathChatCompletions) + h.fake.Count(fakeprovider.PathMessages); n != 0 {
		t.Fatalf("%d deep bodies reached the provider", n)
	}
}

// TestLongSSELine streams answers made of one long SSE line through the
// edge: a 1 MiB line arrives whole; a line over the edge's event limit
// (4 MiB) ends the stream with an error event saying so, in the provider's
// stream error format.
func TestLongSSELine(t *testing.T) {
	tests := []struct {
		name      string
		bytes     int
		delivered bool
	}{
		{"1 MiB", 1 << 20, true},
		{"over the event limit", 5 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fakeprovider.Options{LongLineBytes: tt.bytes}, nil)
			tn := h.addOrg("acme")
			s := oa(h, tn.key).Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{Model: fakeprovider.ModelLongLine,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
			var text strings.Builder
			for s.Next() {
				if c := s.Current(); len(c.Choices) > 0 {
					text.WriteString(c.Choices[0].Delta.Content)
				}
			}
			if tt.delivered {
				if s.Err() != nil || text.String() != strings.Repeat("x", tt.bytes) {
					t.Fatalf("%d bytes of text, err %v; want %d", text.Len(), s.Err(), tt.bytes)
				}
				return
			}
			if s.Err() == nil || !strings.Contains(s.Err().Error(), "larger than the edge's limit") {
				t.Fatalf("stream ended with %v, want an error event about the event size", s.Err())
			}
		})
	}
}
