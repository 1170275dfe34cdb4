package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge/fakeprovider"
)

// TestDrain: while a stopping edge drains, it still answers, on the
// connections clients hold, but closes each after its answer and reports
// itself unready, so that no request is sent on a connection the
// shutdown closes.
func TestDrain(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	client := &http.Client{Transport: &http.Transport{}}
	// post returns the answer's status, whether it closed its connection,
	// and whether it came on a kept-alive one.
	post := func() (status int, closed, reused bool) {
		t.Helper()
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, _ := http.NewRequestWithContext(ctx, "POST", h.base+"/v1/chat/completions", strings.NewReader(chatBody))
		req.Header.Set("Authorization", "Bearer "+tn.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Close, reused
	}
	if st, closed, _ := post(); st != 200 || closed {
		t.Fatalf("before the drain: %d, close %v", st, closed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan struct{})
	go func() { h.srv.Drain(ctx, time.Hour); close(drained) }()
	waitUntil(t, "readyz to report the drain", func() bool {
		st, _, body := raw(t, "GET", h.base+"/readyz", nil, "")
		return st == http.StatusServiceUnavailable && strings.Contains(string(body), `"shutdown":"draining"`)
	})
	st, closed, reused := post()
	if st != 200 || !closed || !reused {
		t.Fatalf("during the drain: %d, close %v, on the kept-alive connection %v; want 200 that closes it", st, closed, reused)
	}
	if _, _, reused := post(); reused {
		t.Fatal("a connection closed by the drain was used again")
	}
	cancel()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not end with its context")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
