// Package fakeprovider is a stand-in for the OpenAI and Anthropic APIs that
// speaks their exact wire formats (JSON bodies, SSE streams, usage fields,
// error shapes), so the official SDKs, the edge's tests, `make demo` and
// `make bench` run without a network.
//
// Answers and token counts are deterministic functions of the request (see
// ExpectedUsage). Models named fake-error-429, fake-error-500,
// fake-error-400, fake-hang, fake-stall and fake-slow inject faults, and
// fake-long-line answers with one very long word, so a test driving an SDK
// can trigger them; any other model answers normally.
package fakeprovider

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Models that inject faults.
const (
	ModelError429 = "fake-error-429" // 429 rate limit error with retry-after
	ModelError500 = "fake-error-500" // 500 server error
	ModelError400 = "fake-error-400" // 400 invalid request error
	ModelHang     = "fake-hang"      // no headers until the request context ends
	ModelStall    = "fake-stall"     // first chunk, then nothing until the context ends
	ModelSlow     = "fake-slow"      // waits Options.SlowLatency (default Latency, or 1s) before headers
	// ModelLongLine answers with one word of Options.LongLineBytes, streamed
	// as a single delta: one SSE data line longer than that.
	ModelLongLine = "fake-long-line"
)

// LongLineBytes is the default length of the answer of ModelLongLine.
const LongLineBytes = 1 << 20

// MaxBodyBytes is the default limit on request bodies; larger ones get 413.
const MaxBodyBytes = 32 << 20

// DefaultModels are listed by GET /v1/models when Options.Models is empty.
var DefaultModels = []string{"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3-mini", "text-embedding-3-small"}

// Options configures a Server. The zero value is a fast fake that accepts
// any non-empty key.
type Options struct {
	// Latency is waited before the response headers of every request.
	// Default 0.
	Latency time.Duration
	// SlowLatency is waited before the headers of model fake-slow, instead
	// of Latency. Default: Latency, or 1s when Latency is 0.
	SlowLatency time.Duration
	// ChunkDelay is waited before each stream chunk after the first.
	// Default 0.
	ChunkDelay time.Duration
	// Chunks is the number of text (or tool-argument) deltas per stream.
	// Default 4.
	Chunks int
	// Gate, when set, is called before each stream chunk after the first,
	// with the chunk's index: every SSE event counts, from 0 (so the first
	// gated chunk is 1). A test blocks in it to release chunk n+1 only
	// after its client saw chunk n. An error aborts the stream. Events the
	// SDKs do not surface count too: OpenAI's data: [DONE] and Anthropic's
	// ping (the third event of a Messages stream).
	Gate func(ctx context.Context, chunk int) error
	// OpenAIKey is the key OpenAI routes require as "Authorization: Bearer";
	// empty accepts any non-empty key.
	OpenAIKey string
	// AnthropicKey is the key Anthropic routes require as "x-api-key";
	// empty accepts any non-empty key.
	AnthropicKey string
	// Models are the ids GET /v1/models lists. Default DefaultModels.
	Models []string
	// MaxBodyBytes is the largest request body accepted; larger ones get
	// 413 in the provider's error shape. Default MaxBodyBytes (32 MiB).
	MaxBodyBytes int64
	// Stamp starts every stream event with a comment line
	// ": t=<unix nanoseconds>" taken just before the event is written, so a
	// client on the same host can measure how long each chunk took to reach
	// it (SSE clients ignore comments; the edge forwards them as they are).
	Stamp bool
	// LongLineBytes is the length of the answer of model fake-long-line.
	// Default LongLineBytes (1 MiB).
	LongLineBytes int
	// Header is added to every response, before the fake's own headers:
	// a test makes the provider send headers a gateway must not pass on
	// (Set-Cookie, Strict-Transport-Security, the gateway's own).
	Header http.Header
	// NoRecord turns off request recording (Requests stays empty), for
	// benchmarks. Counters and LastUsage still work.
	NoRecord bool
}

// Request is one recorded request and what the server did with it.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Status is the response status sent, 0 if none was (a hang).
	Status int
	// Usage is the usage reported in the response; nil when the response
	// carried none (errors, models, streams without include_usage).
	Usage *Usage
	// Canceled is set when the client went away before the response ended.
	Canceled bool
}

// maxRecords is how many requests Requests keeps (the most recent ones).
const maxRecords = 1000

// Server is the fake provider, an http.Handler. It is safe for concurrent
// use.
type Server struct {
	opts       Options
	modelsBody []byte
	// anthropicModelsBody answers GET /v1/models from Anthropic clients.
	anthropicModelsBody []byte
	seq                 atomic.Uint64
	counts              [numRoutes]atomic.Int64
	canceled            atomic.Int64
	unknownPath         atomic.Int64

	mu        sync.Mutex
	records   []*Request // ring of the last maxRecords
	next      int        // ring position of the next record
	lastUsage *Usage
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.Chunks <= 0 {
		opts.Chunks = 4
	}
	if opts.SlowLatency <= 0 {
		opts.SlowLatency = opts.Latency
	}
	if opts.SlowLatency <= 0 {
		opts.SlowLatency = time.Second
	}
	if len(opts.Models) == 0 {
		opts.Models = DefaultModels
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = MaxBodyBytes
	}
	if opts.LongLineBytes <= 0 {
		opts.LongLineBytes = LongLineBytes
	}
	s := &Server{opts: opts}
	s.modelsBody = appendModels(nil, opts.Models)
	s.anthropicModelsBody = appendAnthropicModels(nil, DefaultAnthropicModels)
	return s
}

type route struct {
	path      string
	method    string
	anthropic bool
	handle    func(*exchange) error
}

// numRoutes is len(routes), spelled out because Server (which routes refers
// to through exchange) sizes its counters with it.
const numRoutes = 6

var routes = [numRoutes]route{
	{PathChatCompletions, http.MethodPost, false, (*exchange).chatCompletions},
	{PathResponses, http.MethodPost, false, (*exchange).responses},
	{PathEmbeddings, http.MethodPost, false, (*exchange).embeddings},
	{PathModels, http.MethodGet, false, (*exchange).models},
	{PathMessages, http.MethodPost, true, (*exchange).messages},
	{PathCountTokens, http.MethodPost, true, (*exchange).countTokens},
}

var anthropicModelsRoute = route{PathModels, http.MethodGet, true, (*exchange).anthropicModels}

func routeIndex(path string) int {
	for i := range routes {
		if routes[i].path == path {
			return i
		}
	}
	return -1
}

// Count returns how many requests reached path since the last Reset. For a
// path the fake does not serve, it is the number of requests to any such
// path.
func (s *Server) Count(path string) int64 {
	if i := routeIndex(path); i >= 0 {
		return s.counts[i].Load()
	}
	return s.unknownPath.Load()
}

// Canceled returns how many requests ended because their client went away
// (the request context ended) before the response was complete.
func (s *Server) Canceled() int64 { return s.canceled.Load() }

// Requests returns the most recent requests (at most 1000), oldest first.
// The records are copies; their Header and Body must not be modified.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.records))
	n := len(s.records)
	for i := range n {
		r := s.records[(s.next+i)%n]
		c := *r
		if r.Usage != nil {
			u := *r.Usage
			c.Usage = &u
		}
		out = append(out, c)
	}
	return out
}

// LastUsage returns the usage in the most recently completed response that
// carried one.
func (s *Server) LastUsage() (Usage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastUsage == nil {
		return Usage{}, false
	}
	return *s.lastUsage, true
}

// Reset clears counters, records and the last usage.
func (s *Server) Reset() {
	for i := range s.counts {
		s.counts[i].Store(0)
	}
	s.unknownPath.Store(0)
	s.canceled.Store(0)
	s.mu.Lock()
	s.records = nil
	s.next = 0
	s.lastUsage = nil
	s.mu.Unlock()
}

func (s *Server) record(r *http.Request, body []byte) *Request {
	if s.opts.NoRecord {
		return nil
	}
	rec := &Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: append([]byte(nil), body...)}
	s.mu.Lock()
	if len(s.records) < maxRecords {
		s.records = append(s.records, rec)
	} else {
		s.records[s.next] = rec
		s.next = (s.next + 1) % maxRecords
	}
	s.mu.Unlock()
	return rec
}

// exchange is one request being served.
type exchange struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context
	rt      *route
	id      uint64
	body    []byte
	rec     *Request
	done    bool // the response was written in full
	gone    bool // a write failed: the client went away
	stall   bool
	flusher http.Flusher
}

// errClientGone ends a handler whose client went away.
var errClientGone = errors.New("client went away")

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// ServeHTTP serves the providers' routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := &exchange{s: s, w: w, r: r, ctx: r.Context(), id: s.seq.Add(1)}
	ex.flusher, _ = w.(http.Flusher)
	defer ex.finish()
	for k, vv := range s.opts.Header {
		w.Header()[k] = vv
	}

	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	i := routeIndex(r.URL.Path)
	if i < 0 {
		s.unknownPath.Add(1)
		ex.openAIError(http.StatusNotFound, "invalid_request_error", "unknown_url", "", "Unknown request URL: "+r.Method+" "+r.URL.Path+".")
		return
	}
	s.counts[i].Add(1)
	ex.rt = &routes[i]
	// Anthropic's models API shares OpenAI's path; its SDKs send
	// anthropic-version, which is how the real APIs' clients differ.
	if ex.rt.path == PathModels && r.Header.Get("anthropic-version") != "" {
		ex.rt = &anthropicModelsRoute
	}

	bp := bodyPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			bodyPool.Put(bp)
		}
	}()
	body, err := readBody(w, r, (*bp)[:0], s.opts.MaxBodyBytes)
	*bp = body[:0]
	ex.body = body
	ex.rec = s.record(r, body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			ex.error(http.StatusRequestEntityTooLarge, errTooLarge, "Request body exceeds the maximum of "+strconv.FormatInt(s.opts.MaxBodyBytes, 10)+" bytes.")
			return
		}
		if ex.ctx.Err() != nil {
			return
		}
		ex.error(http.StatusBadRequest, errInvalid, "Could not read the request body.")
		return
	}
	if r.Method != ex.rt.method {
		w.Header().Set("Allow", ex.rt.method)
		ex.error(http.StatusMethodNotAllowed, errInvalid, "Method "+r.Method+" not allowed on "+r.URL.Path+".")
		return
	}
	if !ex.authorized() {
		return
	}
	err = ex.rt.handle(ex)
	if errors.Is(err, errClientGone) {
		// A failed write may come before the request context ends.
		ex.gone = true
		return
	}
	if err != nil {
		// A handler error after headers were sent can only abort the
		// response, so the client sees a broken stream.
		panic(http.ErrAbortHandler)
	}
}

// readBody reads r's body into buf, refusing bodies over limit.
func readBody(w http.ResponseWriter, r *http.Request, buf []byte, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return buf, nil
	}
	if n := r.ContentLength; n > limit {
		// Refuse at once rather than read what is announced as too large.
		return buf, &http.MaxBytesError{Limit: limit}
	} else if n > 0 && int64(cap(buf)) < n+1 {
		buf = make([]byte, 0, n+1) // +1: the read that sees EOF needs room
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
	}
}

// finish records the outcome of the exchange.
func (ex *exchange) finish() {
	if ex.done || (ex.ctx.Err() == nil && !ex.gone) {
		return
	}
	// The record first: a test that saw the counter move reads it next.
	if ex.rec != nil {
		ex.s.mu.Lock()
		ex.rec.Canceled = true
		ex.s.mu.Unlock()
	}
	ex.s.canceled.Add(1)
}

// setUsage records the usage a response reports. It is called before the
// bytes carrying the usage are written, so a test that has read the whole
// response sees it.
func (ex *exchange) setUsage(u Usage) {
	ex.s.mu.Lock()
	if ex.rec != nil {
		ex.rec.Usage = &u
	}
	ex.s.lastUsage = &u
	ex.s.mu.Unlock()
}

// authorized checks the provider's credential header and answers 401 when
// it is missing or wrong.
func (ex *exchange) authorized() bool {
	if ex.rt.anthropic {
		// Anthropic takes "x-api-key", and current SDKs send the key as
		// "Authorization: Bearer" instead; the API accepts both.
		key := ex.r.Header.Get("x-api-key")
		if key == "" {
			key = bearer(ex.r.Header.Get("Authorization"))
		}
		switch {
		case key == "":
			ex.anthropicError(http.StatusUnauthorized, "authentication_error", "x-api-key header is required")
			return false
		case ex.s.opts.AnthropicKey != "" && key != ex.s.opts.AnthropicKey:
			ex.anthropicError(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
			return false
		}
		return true
	}
	key := bearer(ex.r.Header.Get("Authorization"))
	if key == "" {
		ex.openAIError(http.StatusUnauthorized, "invalid_request_error", "", "",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
		return false
	}
	if want := ex.s.opts.OpenAIKey; want != "" && key != want {
		ex.openAIError(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "", "Incorrect API key provided.")
		return false
	}
	return true
}

// bearer returns the credential of an "Authorization: Bearer" header value,
// "" when there is none.
func bearer(auth string) string {
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !equalFold(auth[:len(prefix)], prefix) {
		return ""
	}
	return auth[len(prefix):]
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// prepare parses the body, validates it and applies latency and faults.
// It returns false when it has already answered.
func (ex *exchange) prepare() (prompt, bool) {
	r, err := parseRequest(ex.body)
	if err != nil {
		ex.error(http.StatusBadRequest, errInvalid, "We could not parse the JSON body of your request.")
		return prompt{}, false
	}
	if ex.rt.anthropic {
		if ex.r.Header.Get("anthropic-version") == "" {
			ex.error(http.StatusBadRequest, errInvalid, "anthropic-version: header is required")
			return prompt{}, false
		}
		if ex.rt.path == PathMessages && r.MaxTokens == nil {
			ex.error(http.StatusBadRequest, errInvalid, "max_tokens: Field required")
			return prompt{}, false
		}
		if len(r.Messages) == 0 {
			ex.error(http.StatusBadRequest, errInvalid, "messages: Field required")
			return prompt{}, false
		}
	}
	if r.Model == "" {
		ex.error(http.StatusBadRequest, errInvalid, "model: Field required")
		return prompt{}, false
	}
	p, err := newPrompt(r, ex.body)
	if err != nil {
		ex.error(http.StatusBadRequest, errInvalid, "Invalid 'input': "+err.Error())
		return prompt{}, false
	}
	p.longLine = ex.s.opts.LongLineBytes
	if !ex.fault(r.Model) {
		return prompt{}, false
	}
	return p, true
}

// fault applies latency and the fault a model name selects. It returns
// false when the exchange is over.
func (ex *exchange) fault(model string) bool {
	latency := ex.s.opts.Latency
	if model == ModelSlow {
		latency = ex.s.opts.SlowLatency
	}
	if !sleep(ex.ctx, latency) {
		return false
	}
	switch model {
	case ModelError429:
		h := ex.w.Header()
		h.Set("retry-after", "1")
		if !ex.rt.anthropic {
			h.Set("x-ratelimit-limit-requests", "60")
			h.Set("x-ratelimit-remaining-requests", "0")
			h.Set("x-ratelimit-reset-requests", "1s")
		}
		ex.error(http.StatusTooManyRequests, errRateLimit, "Rate limit reached for requests. Please try again in 1s.")
		return false
	case ModelError500:
		ex.error(http.StatusInternalServerError, errServer, "The server had an error while processing your request.")
		return false
	case ModelError400:
		ex.error(http.StatusBadRequest, errInvalid, "Invalid request (fault injected by model "+ModelError400+").")
		return false
	case ModelHang:
		<-ex.ctx.Done()
		return false
	case ModelStall:
		ex.stall = true
	}
	return true
}

// chunks is the number of deltas a streamed answer to model is split in.
func (ex *exchange) chunks(model string) int {
	if model == ModelLongLine {
		return 1
	}
	return ex.s.opts.Chunks
}

// sleep waits d or until ctx ends, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (ex *exchange) requestID() string {
	return "req_fake" + strconv.FormatUint(ex.id, 10)
}

// writeHeader sends the status and the provider's request-id header.
func (ex *exchange) writeHeader(status int, contentType string, length int) {
	h := ex.w.Header()
	h.Set("Content-Type", contentType)
	if length >= 0 {
		h.Set("Content-Length", strconv.Itoa(length))
	}
	if ex.rt != nil && ex.rt.anthropic {
		h.Set("request-id", ex.requestID())
	} else {
		h.Set("x-request-id", ex.requestID())
	}
	if ex.rec != nil {
		ex.s.mu.Lock()
		ex.rec.Status = status
		ex.s.mu.Unlock()
	}
	ex.w.WriteHeader(status)
}

// writeJSON sends a complete JSON response. For model fake-stall it sends
// the headers and half the body, then waits for the client to go away.
//
//nolint:gosec // G705: body is JSON, sent as application/json.
func (ex *exchange) writeJSON(status int, body []byte) error {
	ex.writeHeader(status, "application/json", len(body))
	if ex.stall {
		if _, err := ex.w.Write(body[:len(body)/2]); err != nil {
			return errClientGone
		}
		ex.flush()
		<-ex.ctx.Done()
		return errClientGone
	}
	if _, err := ex.w.Write(body); err != nil {
		return errClientGone
	}
	ex.done = true
	return nil
}

func (ex *exchange) flush() {
	if ex.flusher != nil {
		ex.flusher.Flush()
	}
}

// Error kinds, mapped to each provider's error shape in one place.
type errKind int

const (
	errInvalid errKind = iota
	errTooLarge
	errRateLimit
	errServer
)

// error answers with the route's provider error shape.
func (ex *exchange) error(status int, kind errKind, msg string) {
	if ex.rt != nil && ex.rt.anthropic {
		typ := "invalid_request_error"
		switch kind {
		case errTooLarge:
			typ = "request_too_large"
		case errRateLimit:
			typ = "rate_limit_error"
		case errServer:
			typ = "api_error"
		}
		ex.anthropicError(status, typ, msg)
		return
	}
	typ, code := "invalid_request_error", ""
	switch kind {
	case errTooLarge:
		code = "request_too_large"
	case errRateLimit:
		typ, code = "requests", "rate_limit_exceeded"
	case errServer:
		typ = "server_error"
	}
	ex.openAIError(status, typ, code, "", msg)
}

// openAIError writes {"error":{"message","type","param","code"}}; empty
// code and param are null, as OpenAI sends them.
func (ex *exchange) openAIError(status int, typ, code, param, msg string) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{`...)
	b = appendStringField(b, "message", msg)
	b = appendStringField(b, "type", typ)
	b = appendNullableString(b, "param", param)
	b = appendNullableString(b, "code", code)
	b = append(b, "}}\n"...)
	_ = ex.writeJSON(status, b)
	ex.done = true
}

// anthropicError writes {"type":"error","error":{"type","message"},"request_id"}.
func (ex *exchange) anthropicError(status int, typ, msg string) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"type":"error","error":{`...)
	b = appendStringField(b, "type", typ)
	b = appendStringField(b, "message", msg)
	b = append(b, '}')
	b = appendStringField(b, "request_id", ex.requestID())
	b = append(b, '}')
	_ = ex.writeJSON(status, b)
	ex.done = true
}

func appendNullableString(b []byte, name, v string) []byte {
	if v == "" {
		return appendRawField(b, name, "null")
	}
	return appendStringField(b, name, v)
}
