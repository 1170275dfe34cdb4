// Package pipeline holds what the stages of the edge's request path share:
// the Exchange (one request on its way through the edge), the Handler a
// stage wraps, and the Recorder the forwarder writes the provider's answer
// to. The stages live in packages of their own, named for their concern,
// and are assembled by package proxy, outermost first:
//
//	account → auth → audit → ratelimit → intake → caching → budget → forward
//
// A stage wraps the next one, as net/http middleware does; a stage that
// answers itself (a 401, a cache hit) does not call it.
package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/sse"
)

// Handler serves an exchange. An *edge.Error it returns is answered to the
// client in the provider's shape by the account stage (unless the answer
// had started); any other error is echo's.
type Handler interface {
	Serve(x *Exchange) error
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(x *Exchange) error

func (f HandlerFunc) Serve(x *Exchange) error { return f(x) }

// Stage wraps the next handler of the request path.
type Stage func(next Handler) Handler

// Chain returns the handler that runs stages in order, outermost first,
// ending with last.
func Chain(last Handler, stages ...Stage) Handler {
	h := last
	for i := len(stages) - 1; i >= 0; i-- {
		h = stages[i](h)
	}
	return h
}

// Headers the edge sets on every answer.
const (
	HeaderRequestID = "X-Codex-Request-Id"
	HeaderCache     = "X-Codex-Cache"
)

// Exchange is one request on its way through the edge: what each stage
// learned of it, and the record the account stage stores at the end.
type Exchange struct {
	R *http.Request
	W *echo.Response

	Format   provider.Format
	Endpoint provider.Endpoint
	Start    time.Time

	// Set by auth.
	Key      directory.Key
	Upstream directory.Upstream

	// Set by intake: the body as sent upstream, whether the answer is a
	// stream, whether usage-only stream events must be kept from the
	// client (the edge asked for them; see provider.Format.Rewrite), and
	// the request's own cap on output tokens (0: none).
	Body      []byte
	Stream    bool
	HideUsage bool
	OutputCap int64

	// Set by caching when the answer is shared or stored; the forwarder
	// writes the provider's answer to it as well as to the client.
	Recorder Recorder

	// EventFinal, set by the forwarder before it writes a stream event,
	// says whether that event ends the stream (provider.Format.IsFinal),
	// and EventFinalKnown that it was set: a writer further out (audit at
	// level full) needs to know without parsing the event again. Replays
	// from the cache do not set it.
	EventFinal, EventFinalKnown bool

	// UpstreamStart is when the provider call began (zero: none was
	// made); UpstreamElapsed how long until its answer ended.
	UpstreamStart   time.Time
	UpstreamElapsed time.Duration

	Rec edge.RequestRecord

	base *slog.Logger
}

// Settle answers err, when it is an *edge.Error, in the provider's shape
// and sets the record's status to what the client got: the status already
// recorded, 500 for an error echo's handler answers, or the response's.
// The account stage settles every request so; a stage that must know the
// status earlier (audit) settles with it.
func Settle(x *Exchange, err error) error {
	// Checked first: errors.As's target escapes, an allocation the
	// requests that succeed need not make.
	if err != nil {
		if ae := (*edge.Error)(nil); errors.As(err, &ae) {
			err = x.Fail(ae)
		}
	}
	switch {
	case x.Rec.Status != 0:
	case err != nil && !x.W.Committed:
		x.Rec.Status = http.StatusInternalServerError // echo's error handler answers it
	default:
		x.Rec.Status = x.W.Status
	}
	return err
}

// New starts the exchange of a request to ep of f: it gets its request id
// and the cache status "bypass" until a stage says otherwise.
func New(w *echo.Response, r *http.Request, f provider.Format, ep provider.Endpoint, id string, start time.Time, log *slog.Logger) *Exchange {
	w.Header()[HeaderRequestID] = []string{id}
	w.Header()[HeaderCache] = []string{string(edge.CacheBypass)}
	return &Exchange{
		R: r, W: w, Format: f, Endpoint: ep, Start: start, base: log,
		Rec: edge.RequestRecord{ID: id, Time: start.UTC(), Provider: f.Provider(), Endpoint: string(ep), Cache: edge.CacheBypass},
	}
}

// Log is the logger for lines about this request: each carries its
// request id (and org, once known). Made on each call, which costs only
// requests that log (few do), and is safe from any goroutine.
func (x *Exchange) Log() *slog.Logger {
	if x.Rec.OrgID != "" {
		return x.base.With("request_id", x.Rec.ID, "org", x.Rec.OrgID)
	}
	return x.base.With("request_id", x.Rec.ID)
}

// Context is the client request's context.
func (x *Exchange) Context() context.Context { return x.R.Context() }

// SetCache sets the cache status of the answer, on the record and in the
// x-codex-cache header.
func (x *Exchange) SetCache(s edge.CacheStatus) {
	if x.Rec.Cache == s {
		return
	}
	x.Rec.Cache = s
	x.W.Header()[HeaderCache] = []string{string(s)}
}

// Fail answers e in the provider's shape, unless the answer has started,
// and records its status.
func (x *Exchange) Fail(e *edge.Error) error {
	x.Rec.Status = e.Status
	return WriteError(x.W, x.Format, e, x.Rec.ID)
}

// WriteError answers e in f's shape, unless the answer has started.
func WriteError(w *echo.Response, f provider.Format, e *edge.Error, requestID string) error {
	if w.Committed {
		return nil
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	w.WriteHeader(e.Status)
	_, err := w.Write(f.ErrorBody(e, requestID))
	return err
}

// StreamError ends a started stream with e as the provider's stream error
// event.
func (x *Exchange) StreamError(e *edge.Error) {
	name, data := x.Format.StreamError(e, x.Rec.ID)
	// A client gone mid-stream is already recorded by the writer that
	// found it; nothing is left to tell it.
	_ = sse.Write(x.W, name, data)
	x.W.Flush()
}

// StatusClientClosed records a request whose client went away (nginx's
// 499).
const StatusClientClosed = 499

// Recorder receives the provider's answer as the forwarder passes it on to
// the client.
type Recorder interface {
	// Detach returns the context for the provider call and its cancel. A
	// shared call outlives its client while others wait for its answer.
	Detach(client context.Context) (ctx context.Context, cancel context.CancelFunc)
	// Shared reports whether others wait for the answer: the forwarder
	// then keeps reading after its own client left.
	Shared() bool
	// Start records the answer's status and content type.
	Start(status int, contentType string, stream bool)
	// Event records one raw stream event.
	Event(raw []byte, usageOnly bool)
	// End ends the answer: body is a complete JSON answer (nil for a
	// stream), err nil when the answer is complete. An *edge.Error is
	// what those waiting for the answer are told.
	End(body []byte, err error)
}
