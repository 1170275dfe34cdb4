package fakeprovider

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// serve runs one request through s without a network.
func serve(s *Server, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("anthropic-version", "2023-06-01")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func TestWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"   ", 0},
		{"one", 1},
		{" one  two\tthree\nfour ", 4},
		{"héllo wörld", 2},
		{"a\u00a0b", 2}, // no-break space separates, as unicode.IsSpace says
		{"\xff\xfe x", 2},
	}
	for _, tt := range tests {
		if got := Words(tt.in); got != tt.want {
			t.Errorf("Words(%q) = %d, want %d", tt.in, got, tt.want)
		}
		if got, want := Words(tt.in), len(strings.Fields(tt.in)); got != want {
			t.Errorf("Words(%q) = %d, strings.Fields gives %d", tt.in, got, want)
		}
	}
}

func TestSplitChunks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, pad string
		n       int
		want    string
	}{
		{"echo: hello", ".", 3, "echo: hello"},
		{"ab", ".", 4, "ab.."},
		{"héé", ".", 3, "héé"},
		{`{}`, " ", 3, `{} `},
		{"x", ".", 0, "x"},
	}
	for _, tt := range tests {
		full, parts := splitChunks(tt.in, tt.n, tt.pad)
		if full != tt.want || strings.Join(parts, "") != full {
			t.Errorf("splitChunks(%q, %d) = %q %q, want %q", tt.in, tt.n, full, parts, tt.want)
		}
		if want := max(tt.n, 1); len(parts) != want {
			t.Errorf("splitChunks(%q, %d): %d parts, want %d", tt.in, tt.n, len(parts), want)
		}
		for _, p := range parts {
			if p == "" || !utf8.ValidString(p) {
				t.Errorf("splitChunks(%q, %d): bad part %q", tt.in, tt.n, p)
			}
		}
		if Words(full) != Words(tt.in) {
			t.Errorf("padding %q changed the word count", full)
		}
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x1f\n\r\t", "é ✓ 𝄞", "bad\xffutf8", "\u2028\u2029"} {
		checkAppendString(t, s)
	}
}

func checkAppendString(t *testing.T, s string) {
	t.Helper()
	b := appendString(nil, s)
	var got string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("appendString(%q) = %s: %v", s, b, err)
	}
	want, _ := json.Marshal(s)
	var wantS string
	_ = json.Unmarshal(want, &wantS)
	if got != wantS {
		t.Fatalf("appendString(%q) decodes to %q, encoding/json to %q", s, got, wantS)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00", "\xff", "\u2028", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAppendString(t, s) })
}

// checkBody asserts a response body is valid: one JSON document, or an
// SSE stream whose every data payload is JSON (or [DONE]).
func checkBody(t *testing.T, rec *httptest.ResponseRecorder) int {
	t.Helper()
	body := rec.Body.Bytes()
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
		if !json.Valid(body) {
			t.Fatalf("invalid JSON body: %s", body)
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(body)) {
			t.Fatalf("Content-Length %s for %d bytes", cl, len(body))
		}
		return 0
	}
	events := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		events++
		if data != "[DONE]" && !json.Valid([]byte(data)) {
			t.Fatalf("invalid JSON event: %s", data)
		}
	}
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("stream does not end with a blank line: %q", body)
	}
	return events
}

// TestEveryShapeIsValidJSON runs each route and mode, with text that needs
// escaping, and checks every body and event is valid JSON.
func TestEveryShapeIsValidJSON(t *testing.T) {
	t.Parallel()
	const text = `quote" back\\slash <tag> \u2028 tab\t é`
	msgs := `[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"text","text":` + strconv.Quote(text) + `}]}]`
	tests := []struct {
		name, path, body string
		events           int
	}{
		{"chat", PathChatCompletions, `{"model":"gpt-5","messages":` + msgs + `}`, 0},
		{"chat stream", PathChatCompletions, `{"model":"gpt-5","stream":true,"messages":` + msgs + `}`, 7},
		{"chat stream usage tools", PathChatCompletions, `{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"f"}}],"messages":` + msgs + `}`, 8},
		{"responses", PathResponses, `{"model":"gpt-4o","instructions":"be \"brief\"","input":` + msgs + `}`, 0},
		{"responses stream", PathResponses, `{"model":"gpt-4o","stream":true,"input":` + strconv.Quote(text) + `}`, 12},
		{"responses stream tools", PathResponses, `{"model":"gpt-4o","stream":true,"tools":[{"type":"function","name":"f"}],"input":"x"}`, 10},
		{"embeddings", PathEmbeddings, `{"model":"e","input":[` + strconv.Quote(text) + `,"b"],"encoding_format":"base64"}`, 0},
		{"embeddings token arrays", PathEmbeddings, `{"model":"e","input":[[1,2],[3]]}`, 0},
		{"models", PathModels, ``, 0},
		{"messages", PathMessages, `{"model":"c","max_tokens":9,"system":"s","messages":` + msgs + `}`, 0},
		{"messages stream tools", PathMessages, `{"model":"c","max_tokens":9,"stream":true,"tools":[{"name":"t","input_schema":{}}],"messages":` + msgs + `}`, 10},
		{"count tokens", PathCountTokens, `{"model":"c","messages":` + msgs + `}`, 0},
	}
	s := New(Options{}) // the default of 4 chunks gives the event counts above
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodPost
			if tt.path == PathModels {
				method = http.MethodGet
			}
			rec := serve(s, method, tt.path, tt.body, map[string]string{"x-api-key": "k"})
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if n := checkBody(t, rec); n != tt.events {
				t.Fatalf("%d events, want %d", n, tt.events)
			}
		})
	}
}

func TestRecordsKeepTheLast1000(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	for i := range maxRecords + 5 {
		serve(s, http.MethodPost, PathCountTokens, `{"model":"c","messages":[{"role":"user","content":"`+strconv.Itoa(i)+`"}]}`, nil)
	}
	reqs := s.Requests()
	if len(reqs) != maxRecords {
		t.Fatalf("%d records, want %d", len(reqs), maxRecords)
	}
	for i, r := range reqs {
		want := `"content":"` + strconv.Itoa(i+5) + `"`
		if !strings.Contains(string(r.Body), want) || r.Method != http.MethodPost || r.Path != PathCountTokens ||
			r.Status != http.StatusOK || r.Usage == nil || r.Header.Get("anthropic-version") == "" {
			t.Fatalf("record %d: %+v, want body with %s", i, r, want)
		}
	}
	if got := s.Count(PathCountTokens); got != maxRecords+5 {
		t.Fatalf("count %d", got)
	}
	// Records are copies: changing one does not change the server's.
	reqs[0].Usage.InputTokens = -1
	if s.Requests()[0].Usage.InputTokens == -1 {
		t.Fatal("Requests shares Usage with the server")
	}
	s.Reset()
	if len(s.Requests()) != 0 || s.Count(PathCountTokens) != 0 || s.Canceled() != 0 {
		t.Fatal("Reset left state behind")
	}
	if _, ok := s.LastUsage(); ok {
		t.Fatal("Reset left the last usage")
	}
}

func TestNoRecord(t *testing.T) {
	t.Parallel()
	s := New(Options{NoRecord: true})
	rec := serve(s, http.MethodPost, PathChatCompletions, `{"model":"m","messages":[{"role":"user","content":"a b"}]}`, nil)
	if rec.Code != http.StatusOK || len(s.Requests()) != 0 || s.Count(PathChatCompletions) != 1 {
		t.Fatalf("status %d, %d records", rec.Code, len(s.Requests()))
	}
	if u, ok := s.LastUsage(); !ok || u.InputTokens != 2+promptOverhead {
		t.Fatalf("LastUsage %+v %v", u, ok)
	}
	if got := s.Count("/elsewhere"); got != 0 {
		t.Fatalf("unknown path count %d", got)
	}
	serve(s, http.MethodGet, "/elsewhere", "", nil)
	if got := s.Count("/elsewhere"); got != 1 {
		t.Fatalf("unknown path count %d, want 1", got)
	}
}

func TestDefaultBodyLimit(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	req := httptest.NewRequest(http.MethodPost, PathChatCompletions, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer k")
	req.ContentLength = 32<<20 + 1
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d for a body announced over 32 MiB", rec.Code)
	}
}

func TestExpectedUsageRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path, body string
		want             Usage
	}{
		// words: 3 ("a b c"), input 11, cached 5; answer "echo: a b c" = 4 words.
		{"chat", PathChatCompletions, `{"model":"gpt-4o","messages":[{"role":"user","content":"a b c"}]}`,
			Usage{InputTokens: 11, CachedTokens: 5, OutputTokens: 4}},
		{"chat reasoning", PathChatCompletions, `{"model":"o1","messages":[{"role":"user","content":"a b c"}]}`,
			Usage{InputTokens: 11, CachedTokens: 5, OutputTokens: 12, ReasoningTokens: 8}},
		// {"query":"a b c"} is 3 words.
		{"chat tool", PathChatCompletions, `{"model":"gpt-4o","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"a b c"}]}`,
			Usage{InputTokens: 11, CachedTokens: 5, OutputTokens: 3}},
		{"responses", PathResponses, `{"model":"gpt-4o","instructions":"x y","input":"a b c"}`,
			Usage{InputTokens: 13, CachedTokens: 6, OutputTokens: 4}},
		{"messages", PathMessages, `{"model":"c","max_tokens":1,"system":"s","messages":[{"role":"user","content":"a b c"}]}`,
			Usage{InputTokens: 12, OutputTokens: 4}},
		// input 12: read 6, creation 3, input 3.
		{"messages cache", PathMessages, `{"model":"c","max_tokens":1,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"a b c"}]}`,
			Usage{InputTokens: 3, CacheReadTokens: 6, CacheCreationTokens: 3, OutputTokens: 4}},
		{"count tokens", PathCountTokens, `{"model":"c","messages":[{"role":"user","content":"a b c"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"text","text":"d e"}]}]}]}`,
			Usage{InputTokens: 13}},
		{"embeddings", PathEmbeddings, `{"model":"e","input":["a b","",[1,2,3]]}`, Usage{InputTokens: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpectedUsage(tt.path, []byte(tt.body))
			if err != nil || got != tt.want {
				t.Fatalf("ExpectedUsage = %+v, %v; want %+v", got, err, tt.want)
			}
			s := New(Options{})
			rec := serve(s, http.MethodPost, tt.path, tt.body, map[string]string{"x-api-key": "k"})
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if last, ok := s.LastUsage(); !ok || last != tt.want {
				t.Fatalf("served usage %+v, want %+v", last, tt.want)
			}
		})
	}
	if _, err := ExpectedUsage(PathModels, []byte(`{}`)); err == nil {
		t.Fatal("ExpectedUsage for /v1/models did not fail")
	}
	if _, err := ExpectedUsage(PathChatCompletions, []byte(`{`)); err == nil {
		t.Fatal("ExpectedUsage of malformed JSON did not fail")
	}
}

// FuzzRequest sends arbitrary bodies to every POST route: the fake must
// never panic, and must answer either a valid response or a provider error.
func FuzzRequest(f *testing.F) {
	f.Add(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, uint8(0))
	f.Add(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`, uint8(0))
	f.Add(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]}],"stream":true}`, uint8(1))
	f.Add(`{"model":"m","input":[[1,2]],"dimensions":3}`, uint8(2))
	f.Add(`{"model":"c","max_tokens":1,"stream":true,"tools":[{"name":"t"}],"messages":[{"role":"user","content":"x"}]}`, uint8(3))
	f.Add(`{"model":"c","messages":null}`, uint8(4))
	f.Add(`{"model":"fake-error-429","input":"x"}`, uint8(1))
	paths := []string{PathChatCompletions, PathResponses, PathEmbeddings, PathMessages, PathCountTokens}
	s := New(Options{NoRecord: true, Chunks: 3})
	f.Fuzz(func(t *testing.T, body string, route uint8) {
		if strings.Contains(body, "fake-hang") || strings.Contains(body, "fake-stall") || strings.Contains(body, "fake-slow") {
			return // these wait for the client by design
		}
		rec := serve(s, http.MethodPost, paths[int(route)%len(paths)], body, map[string]string{"x-api-key": "k"})
		checkBody(t, rec)
		if rec.Code != http.StatusOK {
			var e struct {
				Error *struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("status %d without a provider error: %s", rec.Code, rec.Body)
			}
		}
	})
}

func benchmarkServe(b *testing.B, path, body string) {
	s := New(Options{NoRecord: true})
	req := httptest.NewRequest(http.MethodPost, path, nil)
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("x-api-key", "k")
	req.Header.Set("anthropic-version", "2023-06-01")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		clear(w.h)
		s.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// discardWriter is a minimal http.ResponseWriter, so benchmarks measure the
// fake rather than httptest's recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Flush()                      {}

const benchMessages = `[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the quarterly report in three sentences, please, focusing on revenue."}]`

func BenchmarkChatCompletionsJSON(b *testing.B) {
	benchmarkServe(b, PathChatCompletions, `{"model":"gpt-4o-mini","messages":`+benchMessages+`}`)
}

func BenchmarkChatCompletionsStream(b *testing.B) {
	benchmarkServe(b, PathChatCompletions, `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":`+benchMessages+`}`)
}

func BenchmarkResponsesStream(b *testing.B) {
	benchmarkServe(b, PathResponses, `{"model":"gpt-4o-mini","stream":true,"input":`+benchMessages+`}`)
}

func BenchmarkMessagesJSON(b *testing.B) {
	benchmarkServe(b, PathMessages, `{"model":"claude-x","max_tokens":100,"system":"You are a helpful assistant.","messages":[{"role":"user","content":"Summarise the quarterly report in three sentences, please, focusing on revenue."}]}`)
}

func BenchmarkEmbeddings(b *testing.B) {
	benchmarkServe(b, PathEmbeddings, `{"model":"text-embedding-3-small","input":["one two three","four five"]}`)
}
