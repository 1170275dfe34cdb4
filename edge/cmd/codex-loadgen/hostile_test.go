package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

const shaped = `{"error":{"message":"Malformed JSON body: nesting deeper than 64","type":"invalid_request_error","param":null,"code":"invalid_json"}}`

func TestClassifyDeep(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		err    error
		want   deepOutcome
	}{
		{"400 in the provider's shape", 400, shaped, nil, deepRejected},
		{"400 without a body", 400, "", nil, deepOther},
		{"400 in Anthropic's shape", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"x"}}`, nil, deepRejected},
		{"400 with another shape", 400, `{"error":"bad"}`, nil, deepOther},
		{"400 without a type", 400, `{"error":{"message":"x"}}`, nil, deepOther},
		{"forwarded", 200, `{"id":"x"}`, nil, deepForwarded},
		{"server error in shape", 500, shaped, nil, deepOther},
		{"413 in shape", 413, shaped, nil, deepOther},
		{"transport error", 0, "", errors.New("connection reset"), deepOther},
		{"body cut short", 400, shaped[:20], io.ErrUnexpectedEOF, deepOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyDeep(tt.status, []byte(tt.body), tt.err); got != tt.want {
				t.Fatalf("classifyDeep = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestClassifyLong(t *testing.T) {
	const want = 1 << 20
	tests := []struct {
		name string
		s    streamSeen
		want longOutcome
	}{
		{"whole line and end", streamSeen{status: 200, longest: want + 200, done: true}, longDelivered},
		{"line cut short", streamSeen{status: 200, longest: want / 2, done: true}, longBroken},
		{"no end", streamSeen{status: 200, longest: want + 200}, longBroken},
		{"read error", streamSeen{status: 200, longest: want + 200, done: true, err: io.ErrUnexpectedEOF}, longBroken},
		{"error event", streamSeen{status: 200, errorEvent: true}, longRefused},
		{"error event after a read error", streamSeen{status: 200, errorEvent: true, err: io.ErrUnexpectedEOF}, longRefused},
		{"error status in shape", streamSeen{status: 502, body: []byte(shaped)}, longRefused},
		{"error status unshaped", streamSeen{status: 502, body: []byte("bad gateway")}, longBroken},
		{"no answer", streamSeen{err: errors.New("connection refused")}, longBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyLong(tt.s, want); got != tt.want {
				t.Fatalf("classifyLong = %d, want %d", got, tt.want)
			}
		})
	}
}

func slow(opened int, closed, open []time.Duration) *slowStats {
	return &slowStats{opened: opened, closed: closed, open: open}
}

func TestJudgeSlow(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		st      *slowStats
		timeout time.Duration
		want    bool
	}{
		{"all cut in time", slow(3, []time.Duration{10 * s, 10 * s, 11 * s}, nil), 10 * s, true},
		{"reopened ones still young", slow(4, []time.Duration{10 * s, 10 * s}, []time.Duration{2 * s, 3 * s}), 10 * s, true},
		{"one cut late", slow(2, []time.Duration{10 * s, 10*s + grace + s}, nil), 10 * s, false},
		{"one held past the timeout", slow(2, []time.Duration{10 * s}, []time.Duration{10*s + grace + s}), 10 * s, false},
		{"no timeout, held", slow(2, nil, []time.Duration{3 * s, 3 * s}), 0, false},
		{"none cut", slow(2, nil, []time.Duration{3 * s, 3 * s}), 10 * s, false},
		{"none opened", slow(0, nil, nil), 10 * s, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := judgeSlow(tt.st, "slow", tt.timeout)
			if v.pass != tt.want {
				t.Fatalf("pass = %v, want %v: %s", v.pass, tt.want, v)
			}
		})
	}
}

func lat(d ...time.Duration) []time.Duration { return d }

// all is n latencies of d: every percentile is d.
func all(d time.Duration) []time.Duration { return slices.Repeat([]time.Duration{d}, 100) }

// passing is a hostile result every criterion passes.
func passing() *hostileResult {
	ms := time.Millisecond
	r := &hostileResult{
		opts: hostileOptions{slowloris: 2, slowBodies: 1, depth: 10000, deepRate: 10, longLines: 1, longLineBytes: 100,
			headerTimeout: 10 * time.Second, readTimeout: 15 * time.Second, maxRSS: 200 << 20, pid: 1},
		baseline: result{n: 100, lat: all(4 * ms)},
		attack:   result{n: 100, lat: all(7 * ms)},
		baseRSS:  40 << 20, peakRSS: 120 << 20,
		slowHeaders: slowStats{opened: 2, closed: lat(10*time.Second, 10*time.Second)},
		slowBody:    slowStats{opened: 1, closed: lat(15 * time.Second)},
		baseOwn:     own(100, 0, 0),
		attackOwn:   own(100, 0, 0),
		alive:       true,
	}
	r.deep.add(deepRejected, "")
	r.long.add(longDelivered, "")
	return r
}

// own is an added-latency histogram with n observations under 100µs, a
// under 250µs and b under 1ms.
func own(n, a, b float64) hist {
	return hist{bounds: []float64{100e-6, 250e-6, 1e-3, math.Inf(1)}, counts: []float64{n, n + a, n + a + b, n + a + b}}
}

func TestJudge(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name     string
		change   func(r *hostileResult)
		failing  string // the criterion that fails, "" for none
		criteria int
	}{
		{"all pass", func(*hostileResult) {}, "", 9},
		{"p99 exactly doubled", func(r *hostileResult) { r.attack.lat = all(8 * ms) }, "", 9},
		{"p99 more than doubled", func(r *hostileResult) { r.attack.lat = all(8*ms + 1) }, "legitimate p99", 9},
		{"no baseline", func(r *hostileResult) { r.baseline.lat = nil }, "legitimate p99", 9},
		{"legitimate errors", func(r *hostileResult) { r.attack.errors = 1 }, "legitimate requests", 9},
		{"memory over the bound", func(r *hostileResult) { r.peakRSS = 201 << 20 }, "edge memory", 9},
		{"memory unknown", func(r *hostileResult) { r.peakRSS = 0 }, "edge memory", 9},
		{"memory not sampled", func(r *hostileResult) { r.opts.pid = 0 }, "", 8},
		{"deep JSON unclear", func(r *hostileResult) { r.deep.add(deepOther, "status 500") }, "10000-deep JSON", 9},
		{"deep JSON forwarded", func(r *hostileResult) { r.deep.add(deepForwarded, "") }, "", 9},
		{"deep JSON never sent", func(r *hostileResult) { r.deep = outcomes[deepOutcome]{} }, "10000-deep JSON", 9},
		{"long line broken", func(r *hostileResult) { r.long.add(longBroken, "cut") }, "100-byte SSE line", 9},
		{"long line refused", func(r *hostileResult) { r.long.add(longRefused, "") }, "", 9},
		{"slowloris held", func(r *hostileResult) { r.slowHeaders.open = lat(20 * time.Second) }, "slowloris", 9},
		{"slow bodies held", func(r *hostileResult) { r.slowBody.closed = nil; r.slowBody.open = lat(20 * time.Second) }, "slow bodies", 9},
		{"no slow bodies sent", func(r *hostileResult) { r.opts.slowBodies = 0; r.slowBody = slowStats{} }, "", 8},
		{"edge gone", func(r *hostileResult) { r.alive = false }, "edge still serving", 9},
		{"edge's own p99 more than doubled", func(r *hostileResult) { r.attackOwn = own(100, 0, 2) }, "edge's own added p99", 9},
		{"edge's own p99 up a little", func(r *hostileResult) { r.attackOwn = own(100, 2, 0) }, "", 9},
		{"edge's metrics unread", func(r *hostileResult) { r.attackOwn = hist{} }, "", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := passing()
			tt.change(r)
			vs := judge(r)
			if len(vs) != tt.criteria {
				t.Errorf("%d verdicts, want %d: %v", len(vs), tt.criteria, vs)
			}
			for _, v := range vs {
				failing := tt.failing != "" && strings.HasPrefix(v.what, tt.failing)
				if v.pass == failing {
					t.Errorf("%s", v)
				}
				if got := v.String(); !strings.HasPrefix(got, map[bool]string{true: "PASS  ", false: "FAIL  "}[v.pass]) {
					t.Errorf("verdict line %q does not start with its judgement", got)
				}
			}
		})
	}
}

func TestMeasureFor(t *testing.T) {
	s := time.Second
	tests := []struct {
		duration, header, read, want time.Duration
	}{
		{5 * s, 10 * s, 0, 10*s + grace},
		{5 * s, 10 * s, 15 * s, 15*s + grace},
		{30 * s, 10 * s, 15 * s, 30 * s},
		{5 * s, 0, 0, 5 * s},
	}
	for _, tt := range tests {
		o := hostileOptions{duration: tt.duration, headerTimeout: tt.header, readTimeout: tt.read}
		if got := measureFor(o); got != tt.want {
			t.Errorf("measureFor(%s, header %s, read %s) = %s, want %s", tt.duration, tt.header, tt.read, got, tt.want)
		}
	}
}

func TestDeepBodies(t *testing.T) {
	const depth = 7
	for i, b := range deepBodies(depth) {
		if !json.Valid(b) {
			t.Fatalf("body %d is not JSON: %s", i, b)
		}
		deepest, d := 0, 0
		for _, c := range b {
			switch c {
			case '[', '{':
				d++
				deepest = max(deepest, d)
			case ']', '}':
				d--
			}
		}
		// The top-level object, then the messages array (and for objects
		// the message holding them).
		if want := []int{depth + 1, depth + 3}[i]; deepest != want {
			t.Errorf("body %d nests %d deep, want %d: %s", i, deepest, want, b)
		}
	}
}

func TestLongStream(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the client's read buffer
	errEvent := `data: {"type":"error","error":{"type":"overloaded_error","message":"m"}}` + "\n"
	tests := []struct {
		name        string
		status      int
		body        string
		wantLongest int
		done, event bool
	}{
		{"long line", 200, "event: content_block_delta\ndata: {\"c\":\"" + long + "\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", len(long) + 15, true, false},
		{"error event", 200, "event: ping\ndata: {\"type\": \"ping\"}\n\nevent: error\n" + errEvent + "\n", len(errEvent), false, true},
		{"error status", 502, shaped, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer ts.Close()
			s := longStream(t.Context(), target{"edge", ts.URL, "k"})
			if s.err != nil || s.status != tt.status || s.longest != tt.wantLongest || s.done != tt.done || s.errorEvent != tt.event {
				t.Fatalf("saw %+v, want status %d, longest %d, done %v, error event %v", s, tt.status, tt.wantLongest, tt.done, tt.event)
			}
			if tt.status != 200 && string(s.body) != tt.body {
				t.Fatalf("error body %q, want %q", s.body, tt.body)
			}
		})
	}
}

// TestSlowConn checks that a slow connection the server cuts counts as
// closed by it, and one still open when the phase ends counts as open.
func TestSlowConn(t *testing.T) {
	tests := []struct {
		name         string
		body         bool
		header, read time.Duration // the server's timeouts
		wantClosed   bool
	}{
		{"headers cut", false, 100 * time.Millisecond, 0, true},
		{"headers held", false, 0, 0, false},
		{"body cut", true, 0, 100 * time.Millisecond, true},
		{"body held", true, 100 * time.Millisecond, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{ReadHeaderTimeout: tt.header, ReadTimeout: tt.read,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if _, err := io.ReadAll(r.Body); err != nil {
						http.Error(w, "slow", http.StatusRequestTimeout)
					}
				})}
			go func() { _ = srv.Serve(ln) }() // ErrServerClosed at the end
			defer srv.Close()
			var st slowStats
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				slowConn(ctx, ln.Addr().String(), "k", tt.body, 0, &st)
			}()
			// Wait for the first connection's outcome when the server cuts
			// it; otherwise give it a moment past the server's timeouts.
			polls := 15
			if tt.wantClosed {
				polls = 250
			}
			for range polls {
				st.mu.Lock()
				n := len(st.closed)
				st.mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			<-done
			opened, _, closed, open := st.summary()
			if got := len(closed) > 0; got != tt.wantClosed || opened != len(closed)+len(open) {
				t.Fatalf("opened %d, closed %v, open %v; want closed by the server: %v", opened, closed, open, tt.wantClosed)
			}
			if !tt.wantClosed && len(open) != 1 {
				t.Fatalf("open %v, want the one connection", open)
			}
		})
	}
}
