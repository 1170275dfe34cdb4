package fakeprovider_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
)

// TestGateOrdering proves per-chunk delivery: chunk n+1 is released only
// after the client has decoded chunk n, so a fake that buffered events
// would deadlock here (and fail on the context deadline).
func TestGateOrdering(t *testing.T) {
	t.Parallel()
	release := make(chan int)
	var mu sync.Mutex
	var order []string
	log := func(format string, args ...any) {
		mu.Lock()
		order = append(order, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	gate := func(ctx context.Context, chunk int) error {
		select {
		case n := <-release:
			if n != chunk {
				return fmt.Errorf("released %d, gate is at %d", n, chunk)
			}
			log("gate %d", chunk)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	const chunks = 3
	fp, ts := start(t, fakeprovider.Options{Gate: gate, Chunks: chunks})
	ctx := testContext(t)
	client := openAIClient(ts)
	stream := client.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", "one two three", false))
	seen := 0
	for stream.Next() {
		log("saw %d", seen)
		seen++
		select {
		case release <- seen:
		case <-ctx.Done():
			t.Fatalf("gate %d never asked: %v", seen, ctx.Err())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	// role chunk, deltas, finish chunk; [DONE] (gated too) ends the stream.
	if seen != chunks+2 {
		t.Fatalf("saw %d chunks, want %d", seen, chunks+2)
	}
	var want []string
	for i := range seen {
		want = append(want, fmt.Sprintf("saw %d", i), fmt.Sprintf("gate %d", i+1))
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("order\n%v\nwant\n%v", order, want)
	}
	if fp.Canceled() != 0 {
		t.Fatalf("canceled %d, want 0", fp.Canceled())
	}
}

func TestGateErrorAbortsStream(t *testing.T) {
	t.Parallel()
	gate := func(ctx context.Context, chunk int) error {
		if chunk == 2 {
			return errors.New("injected")
		}
		return nil
	}
	_, ts := start(t, fakeprovider.Options{Gate: gate})
	client := openAIClient(ts)
	stream := client.Chat.Completions.NewStreaming(testContext(t), chatParams("gpt-4o", "hi", false))
	n := 0
	for stream.Next() {
		n++
	}
	if n != 2 || stream.Err() == nil {
		t.Fatalf("got %d chunks and error %v; want 2 chunks and a broken stream", n, stream.Err())
	}
}

func TestHangCountsCancel(t *testing.T) {
	t.Parallel()
	for _, path := range []string{fakeprovider.PathChatCompletions, fakeprovider.PathMessages} {
		t.Run(path, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{})
			ctx, cancel := context.WithCancel(testContext(t))
			body := `{"model":"fake-hang","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
			req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("anthropic-version", "2023-06-01")
			errc := make(chan error, 1)
			go func() {
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					res.Body.Close()
					err = fmt.Errorf("got headers (status %d) from a hanging model", res.StatusCode)
				}
				errc <- err
			}()
			testutil.Eventually(t, 5*time.Second, "the request to arrive", func() bool { return fp.Count(path) == 1 })
			if fp.Canceled() != 0 {
				t.Fatal("counted canceled before the client went away")
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("client error %v, want context.Canceled", err)
			}
			testutil.Eventually(t, 5*time.Second, "the cancel to be counted", func() bool { return fp.Canceled() == 1 })
			rec := fp.Requests()[0]
			if !rec.Canceled || rec.Status != 0 {
				t.Fatalf("record %+v, want canceled with no status", rec)
			}
		})
	}
}

func TestStallStream(t *testing.T) {
	t.Parallel()
	fp, ts := start(t, fakeprovider.Options{})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	client := openAIClient(ts)
	stream := client.Chat.Completions.NewStreaming(ctx, chatParams(fakeprovider.ModelStall, "hi", false))
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if c := stream.Current(); len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant" {
		t.Fatalf("first chunk %s", c.RawJSON())
	}
	next := make(chan bool, 1)
	go func() { next <- stream.Next() }()
	select {
	case ok := <-next:
		t.Fatalf("stream went on after the first chunk (Next=%v, err=%v)", ok, stream.Err())
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if <-next {
		t.Fatal("Next returned true after cancel")
	}
	testutil.Eventually(t, 5*time.Second, "the cancel to be counted", func() bool { return fp.Canceled() == 1 })
}

func TestStallJSON(t *testing.T) {
	t.Parallel()
	fp, ts := start(t, fakeprovider.Options{})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	body := `{"model":"fake-stall","input":"hello"}`
	req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+fakeprovider.PathResponses, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	buf := make([]byte, 16)
	if _, err := io.ReadFull(res.Body, buf); err != nil || !strings.HasPrefix(string(buf), `{"id":"resp_`) {
		t.Fatalf("first bytes %q, %v", buf, err)
	}
	cancel()
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Fatal("stalled body ended cleanly")
	}
	testutil.Eventually(t, 5*time.Second, "the cancel to be counted", func() bool { return fp.Canceled() == 1 })
	if _, ok := fp.LastUsage(); ok {
		t.Fatal("usage recorded for a response never completed")
	}
}

func TestLatencies(t *testing.T) {
	_, ts := start(t, fakeprovider.Options{Latency: 20 * time.Millisecond, SlowLatency: 60 * time.Millisecond})
	client := openAIClient(ts)
	for _, tt := range []struct {
		model string
		min   time.Duration
	}{{"gpt-4o", 20 * time.Millisecond}, {fakeprovider.ModelSlow, 60 * time.Millisecond}} {
		began := time.Now()
		res, err := client.Chat.Completions.New(testContext(t), chatParams(tt.model, "hi", false))
		if err != nil {
			t.Fatalf("%s: %v", tt.model, err)
		}
		if d := time.Since(began); d < tt.min {
			t.Fatalf("%s answered in %v, want at least %v", tt.model, d, tt.min)
		}
		if res.Choices[0].Message.Content != "echo: hi" {
			t.Fatalf("%s answered %q", tt.model, res.Choices[0].Message.Content)
		}
	}
}

func TestSlowDefaultsToLatency(t *testing.T) {
	_, ts := start(t, fakeprovider.Options{Latency: 30 * time.Millisecond})
	client := openAIClient(ts)
	began := time.Now()
	if _, err := client.Chat.Completions.New(testContext(t), chatParams(fakeprovider.ModelSlow, "hi", false)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 30*time.Millisecond || d > 900*time.Millisecond {
		t.Fatalf("fake-slow took %v, want Latency (30ms), not the 1s default", d)
	}
}

func TestChunkDelay(t *testing.T) {
	const delay = 5 * time.Millisecond
	_, ts := start(t, fakeprovider.Options{ChunkDelay: delay, Chunks: 4})
	client := openAIClient(ts)
	began := time.Now()
	stream := client.Chat.Completions.NewStreaming(testContext(t), chatParams("gpt-4o", "a b c d", false))
	var gaps []time.Duration
	last := time.Now()
	for stream.Next() {
		gaps = append(gaps, time.Since(last))
		last = time.Now()
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	// 7 events (role, 4 deltas, finish, [DONE]): 6 delays at least.
	if d := time.Since(began); d < 6*delay {
		t.Fatalf("stream took %v, want at least %v", d, 6*delay)
	}
	if len(gaps) != 6 {
		t.Fatalf("%d chunks, want 6", len(gaps))
	}
}

func TestCancelMidStreamByClient(t *testing.T) {
	t.Parallel()
	// A gate that waits for the test lets it cancel while a stream is open.
	entered := make(chan struct{}, 1)
	gate := func(ctx context.Context, chunk int) error {
		if chunk == 1 {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	fp, ts := start(t, fakeprovider.Options{Gate: gate})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	client := openAIClient(ts)
	stream := client.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", "hi", false))
	if !stream.Next() {
		t.Fatal(stream.Err())
	}
	<-entered
	cancel()
	for stream.Next() {
	}
	testutil.Eventually(t, 5*time.Second, "the cancel to be counted", func() bool { return fp.Canceled() == 1 })
	if got := fp.Count(fakeprovider.PathChatCompletions); got != 1 {
		t.Fatalf("count %d", got)
	}
}

func TestStamp(t *testing.T) {
	t.Parallel()
	_, ts := start(t, fakeprovider.Options{Stamp: true, Chunks: 3, ChunkDelay: time.Millisecond})
	before := time.Now().UnixNano()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"a b c"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixNano()
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	// role, 3 deltas, finish, [DONE]
	if len(events) != 6 {
		t.Fatalf("%d events, want 6:\n%s", len(events), body)
	}
	last := before
	for i, ev := range events {
		line, rest, _ := strings.Cut(ev, "\n")
		digits, ok := strings.CutPrefix(line, ": t=")
		if !ok || len(digits) != 19 || !strings.HasPrefix(rest, "data: ") {
			t.Fatalf("event %d does not start with a stamp comment: %q", i, ev)
		}
		ns, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			t.Fatalf("event %d: stamp %q: %v", i, digits, err)
		}
		if ns < last || ns > after {
			t.Fatalf("event %d stamped %d, want in [%d, %d] and not before the previous event", i, ns, last, after)
		}
		last = ns
	}

	// SDKs ignore the comments.
	client := openAIClient(ts)
	stream := client.Chat.Completions.NewStreaming(testContext(t), chatParams("gpt-4o", "a b c", false))
	var text strings.Builder
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.Len() == 0 {
		t.Fatal("the SDK read no text from a stamped stream")
	}
}

// TestLongLine checks model fake-long-line: its answer is one word of
// LongLineBytes, streamed as a single delta, so each stream carries SSE data
// lines longer than that (the Responses API repeats the full text in its
// done events), and the SDKs read it back whole.
func TestLongLine(t *testing.T) {
	t.Parallel()
	const n = fakeprovider.LongLineBytes
	tests := []struct {
		name, path, body string
		headers          map[string]string
		wantLong         int // lines longer than n
	}{
		{"chat stream", fakeprovider.PathChatCompletions, `{"model":"fake-long-line","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil, 1},
		{"chat JSON", fakeprovider.PathChatCompletions, `{"model":"fake-long-line","messages":[{"role":"user","content":"hi"}]}`, nil, 1},
		{"responses stream", fakeprovider.PathResponses, `{"model":"fake-long-line","stream":true,"input":"hi"}`, nil, 5},
		{"messages stream", fakeprovider.PathMessages, `{"model":"fake-long-line","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"anthropic-version": "2023-06-01"}, 1},
	}
	_, ts := start(t, fakeprovider.Options{Chunks: 8})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, err %v: %.200s", resp.StatusCode, err, b)
			}
			long := 0
			for _, line := range strings.Split(string(b), "\n") {
				if len(line) > n {
					long++
					if !strings.Contains(line, strings.Repeat("x", n)) {
						t.Errorf("long line does not carry the %d-byte word", n)
					}
				}
			}
			if long != tt.wantLong {
				t.Errorf("%d lines longer than %d bytes, want %d", long, n, tt.wantLong)
			}
		})
	}
	t.Run("SDK", func(t *testing.T) {
		client := openAIClient(ts)
		stream := client.Chat.Completions.NewStreaming(testContext(t), chatParams(fakeprovider.ModelLongLine, "hi", false))
		var text strings.Builder
		deltas := 0
		for stream.Next() {
			if c := stream.Current(); len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				deltas++
				text.WriteString(c.Choices[0].Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if deltas != 1 || text.String() != strings.Repeat("x", n) {
			t.Fatalf("%d deltas of %d bytes in all, want one of %d", deltas, text.Len(), n)
		}
	})
}
