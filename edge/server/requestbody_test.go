package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
)

// Request bodies (issue 13, finding 3): buffers grow as bytes arrive, a
// trickled body times out, and the bodies in progress share one budget.

// metricValue reads one unlabelled metric from the admin listener.
func metricValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(metrics(t, h), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// startBody opens a connection and sends a request's headers declaring
// declared body bytes, then the first part of the body.
func startBody(t *testing.T, h *harness, path string, hdr map[string]string, declared int, first string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, declared)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.WriteString(first)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// heapGrowth is how much the live heap grew since base (a heapInUse).
func heapGrowth(base uint64) uint64 {
	return max(heapInUse(), base) - base
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestDeclaredLengthCostsNoMemory: 20 connections each declaring a
// 32 MiB body and sending one byte hold a few KiB each, not 32 MiB.
func TestDeclaredLengthCostsNoMemory(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	const conns, declared = 20, 32 << 20
	// Far below one declared body: what 20 pre-allocated ones would pass
	// at once.
	const bound = 16 << 20

	base := heapInUse()
	for range conns {
		startBody(t, h, "/v1/chat/completions", bearer(tn.key), declared, "{")
	}
	var grown uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		grown = heapGrowth(base)
		if grown > bound {
			t.Fatalf("heap grew by %d MiB for %d connections declaring %d MiB and sending 1 byte each (bound %d MiB)",
				grown>>20, conns, declared>>20, bound>>20)
		}
		// Every handler counted its byte: all are reading their body.
		if metricValue(t, h, "codex_edge_request_body_bytes_in_flight") == conns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bodies' first bytes were never counted in flight")
		}
		time.Sleep(20 * time.Millisecond)
	}
	grown = heapGrowth(base)
	t.Logf("heap growth with %d connections declaring %d MiB and sending 1 byte: %d KiB", conns, declared>>20, grown>>10)
	if grown > bound {
		t.Fatalf("heap grew by %d MiB (bound %d MiB)", grown>>20, bound>>20)
	}
}

// TestTrickledBodyTimesOut: a body still arriving after CODEX_BODY_TIMEOUT
// is answered 408 in the provider's shape, without waiting for the rest.
func TestTrickledBodyTimesOut(t *testing.T) {
	const timeout = 400 * time.Millisecond
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.BodyTimeout = timeout })
	tn := h.addOrg("acme")
	cases := []struct {
		name, path, body string
		hdr              map[string]string
		p                edge.Provider
		typ              string
	}{
		{"openai", "/v1/chat/completions", chatBody, bearer(tn.key), edge.OpenAI, "invalid_request_error"},
		{"anthropic", "/v1/messages", msgBody, anthropicHdr(tn.key), edge.Anthropic, "timeout_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// One byte every 100ms: the whole body would take 7s or more.
			start := time.Now()
			conn := startBody(t, h, c.path, c.hdr, len(c.body), c.body[:1])
			done := make(chan struct{})
			defer close(done)
			go func() {
				for i := 1; i < len(c.body); i++ {
					select {
					case <-done:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := io.WriteString(conn, c.body[i:i+1]); err != nil {
						return
					}
				}
			}()
			if err := conn.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			took := time.Since(start)
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d after %v: %s", resp.StatusCode, took, body)
			}
			shape(t, c.p, body, c.typ)
			// The timer runs from when the edge starts reading the body; the
			// slack is for the key lookup and a loaded machine.
			if took < timeout || took > timeout+3*time.Second {
				t.Fatalf("answered after %v; the body timeout is %v", took, timeout)
			}
		})
	}
	if n := h.fake.Count(fakeprovider.PathChatCompletions) + h.fake.Count(fakeprovider.PathMessages); n != 0 {
		t.Fatalf("%d trickled requests reached the provider", n)
	}
	// A body that arrives in time is served as before.
	if st, _, body := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), chatBody); st != 200 {
		t.Fatalf("status %d: %s", st, body)
	}
}

// TestInflightBodyBudget: while the bodies in progress hold
// CODEX_MAX_INFLIGHT_BODY_BYTES, another body is answered 503 with
// retry-after in the provider's shape; once they are done it is served.
func TestInflightBodyBudget(t *testing.T) {
	const budget = 1 << 20
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) {
		c.MaxBodyBytes, c.MaxInflightBodyBytes = budget, budget
	})
	tn := h.addOrg("acme")
	held := startBody(t, h, "/v1/chat/completions", bearer(tn.key), budget, strings.Repeat(" ", 768<<10))
	testutil.Eventually(t, 10*time.Second, "the held body to be counted", func() bool {
		return metricValue(t, h, "codex_edge_request_body_bytes_in_flight") == 768<<10
	})

	big := func(p edge.Provider) string {
		pad := strings.Repeat("a", 512<<10)
		if p == edge.Anthropic {
			return `{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"` + pad + `"}]}`
		}
		return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + pad + `"}]}`
	}
	for _, c := range []struct {
		p         edge.Provider
		path, typ string
		hdr       map[string]string
	}{
		{edge.OpenAI, "/v1/chat/completions", "server_error", bearer(tn.key)},
		{edge.Anthropic, "/v1/messages", "overloaded_error", anthropicHdr(tn.key)},
	} {
		st, hdr, body := raw(t, "POST", h.base+c.path, c.hdr, big(c.p))
		if st != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" {
			t.Fatalf("%s over the budget: status %d, retry-after %q: %.200s", c.p, st, hdr.Get("Retry-After"), body)
		}
		shape(t, c.p, body, c.typ)
	}
	if n := h.fake.Count(fakeprovider.PathChatCompletions) + h.fake.Count(fakeprovider.PathMessages); n != 0 {
		t.Fatalf("%d requests over the budget reached the provider", n)
	}

	held.Close()
	testutil.Eventually(t, 10*time.Second, "the held body to be released", func() bool {
		return metricValue(t, h, "codex_edge_request_body_bytes_in_flight") == 0
	})
	if st, _, body := raw(t, "POST", h.base+"/v1/chat/completions", bearer(tn.key), big(edge.OpenAI)); st != 200 {
		t.Fatalf("after the budget was freed: status %d: %.200s", st, body)
	}
	testutil.Eventually(t, 10*time.Second, "every body to be released", func() bool {
		return metricValue(t, h, "codex_edge_request_body_bytes_in_flight") == 0
	})
}
