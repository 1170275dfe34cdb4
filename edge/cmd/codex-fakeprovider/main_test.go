package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	env := map[string]string{"CODEX_FAKE_OPENAI_KEY": "sk-one"}
	errc := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		errc <- run(runCtx, []string{"-listen", "127.0.0.1:0", "-chunks", "2"}, func(k string) string { return env[k] }, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read url: %v", err)
	}
	url := strings.TrimSpace(line)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("printed %q, want a loopback URL", url)
	}
	for _, tt := range []struct {
		key    string
		status int
	}{{"sk-one", http.StatusOK}, {"sk-two", http.StatusUnauthorized}} {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+tt.key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/models: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != tt.status {
			t.Fatalf("key %s: status %d, want %d", tt.key, res.StatusCode, tt.status)
		}
	}
	// A stalled stream must not keep the server from stopping promptly.
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions",
		strings.NewReader(`{"model":"fake-stall","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-one")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("stall request: %v", err)
	}
	defer res.Body.Close()
	first, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "data: {") {
		t.Fatalf("first stalled chunk %q, %v", first, err)
	}
	began := time.Now()
	stop()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v (stderr: %s)", err, stderr.String())
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Fatalf("stopping took %v with a stalled stream open", d)
		}
	case <-ctx.Done():
		t.Fatal("run did not stop")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no stop log: %s", stderr.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-chunks", "0"}, {"extra"}, {"-latency", "soon"}} {
		err := run(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
