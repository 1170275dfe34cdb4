package audit

import (
	"bytes"
	"context"
	"errors"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/sse"
)

// Options configure the audit stage.
type Options struct {
	// Writer stores the events; nil turns the stage off: requests pass
	// through untouched and nothing is recorded.
	Writer *Writer
	// Keys seals content at level full.
	Keys Sealer
	// MaxContentBytes bounds the request body and response kept of one
	// request at level full (CODEX_AUDIT_MAX_BYTES). A request whose
	// content is larger cannot be recorded whole and is answered 503
	// audit_unavailable (a stream: its final event replaced by that
	// error).
	MaxContentBytes int
}

// DefaultOptions are the defaults Stage fills in for zero fields: 64 MiB
// of content per request at level full, as much as the forwarder keeps of
// an answer to read its usage.
func DefaultOptions() Options { return Options{MaxContentBytes: 64 << 20} }

// ErrUnavailable answers a request at level full whose event could not be
// stored: it is not answered otherwise (the audit log fails closed).
var ErrUnavailable = &edge.Error{Status: http.StatusServiceUnavailable, Code: "audit_unavailable", RetryAfter: 1,
	Message: "The request could not be recorded in the audit log, which this key's org requires (audit level full), so it was not answered. Retry shortly."}

// Stage records every request that reached an org (after auth) in the
// org's audit log, at the level of its key or org. It wraps the stages
// from intake on, so it sees the request body as the client sent it
// (teeing the body intake reads) and the answer as the client receives it
// (through a writer placed in front of the client's), whoever produces
// it; errors of later stages it answers itself, as account would, so that
// they are recorded and, at level full, held like any answer.
//
// At level none nothing is captured and the request path does not
// allocate for the audit log: the record is copied into the writer's
// queue. At hash the digests are computed as the bytes pass, and the event
// is queued. At full the answer completes only once its event is stored:
//
//   - a JSON answer (status, headers, body) is held back until the event
//     is stored, and replaced by 503 audit_unavailable if it cannot be;
//   - a stream's events pass on as they arrive (DESIGN §3 forbids
//     buffering a stream), except its final event (the provider format's
//     rule), which is held back until the event is stored and replaced by
//     an audit_unavailable stream error if it cannot be: the client never
//     gets a complete answer that was not recorded.
//
// While the store is known to be failing (within FailFast of a failed
// write), requests at level full are refused with 503 before anything
// else happens, so the provider is not even asked.
func Stage(o Options) pipeline.Stage {
	if o.Writer == nil {
		return func(next pipeline.Handler) pipeline.Handler { return next }
	}
	if o.MaxContentBytes <= 0 {
		o.MaxContentBytes = DefaultOptions().MaxContentBytes
	}
	s := &stage{o: o}
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error { return s.serve(x, next) })
	}
}

type stage struct{ o Options }

func (s *stage) serve(x *pipeline.Exchange, next pipeline.Handler) error {
	if x.Key.Org == nil {
		return next.Serve(x) // no org, no audit log (auth answered)
	}
	switch level := x.Key.Org.AuditLevel(x.Key.ID); level {
	case edge.AuditHash:
		return s.hash(x, next)
	case edge.AuditFull:
		return s.full(x, next)
	}
	err := pipeline.Settle(x, next.Serve(x))
	e := entry{rec: x.Rec, level: edge.AuditNone}
	if s.o.Writer.record(&e) {
		x.Rec.Audit = edge.AuditNone
	}
	return err
}

// hash serves x at level hash: digests of the request body and of the
// answer, computed as the bytes pass.
func (s *stage) hash(x *pipeline.Exchange, next pipeline.Handler) error {
	f := x.Key.Org.Fingerprinter
	c := captures.Get().(*capture)
	*c = capture{w: x.W.Writer, reqMAC: newDigest(f, requestDomain), respMAC: newDigest(f, responseDomain)}
	body := c.tee(x)
	x.W.Writer = c
	err := pipeline.Settle(x, next.Serve(x))
	x.W.Writer = c.w
	if body != nil {
		x.R.Body = body.rc // nothing reads it past this point
	}
	e := entry{rec: x.Rec, level: edge.AuditHash}
	c.reqMAC.Sum(e.req[:0])
	c.respMAC.Sum(e.resp[:0])
	f.PutMAC(c.reqMAC)
	f.PutMAC(c.respMAC)
	*c = capture{}
	captures.Put(c)
	if s.o.Writer.record(&e) {
		x.Rec.Audit = edge.AuditHash
	}
	return err
}

// full serves x at level full: the request body and the answer are kept,
// sealed and stored before the answer completes (see Stage).
func (s *stage) full(x *pipeline.Exchange, next pipeline.Handler) error {
	if s.o.Writer.failing() {
		return ErrUnavailable
	}
	c := &capture{w: x.W.Writer, full: true, max: s.o.MaxContentBytes, x: x}
	c.tee(x)
	x.W.Writer = c
	err := pipeline.Settle(x, next.Serve(x))
	x.W.Writer = c.w
	if cerr := s.store(x, c); cerr != nil {
		x.Log().Warn("audit event not stored; request answered 503 audit_unavailable", "err", cerr)
		c.refuse(x)
		return nil
	}
	c.release()
	x.Rec.Audit = edge.AuditFull
	return err
}

var errTooLarge = errors.New("request and response exceed CODEX_AUDIT_MAX_BYTES")

// store seals the content and stores the event of x, waiting for the
// commit. The client leaving does not stop it: the provider was asked.
func (s *stage) store(x *pipeline.Exchange, c *capture) error {
	if c.over {
		return errTooLarge
	}
	ctx := context.WithoutCancel(x.Context())
	d1, d2 := Digests(x.Key.Org.Fingerprinter, c.req, c.resp)
	content, err := sealContent(ctx, s.o.Keys, x.Rec.OrgID, x.Rec.ID, c.req, c.resp)
	if err != nil {
		return err
	}
	ev, err := event(requestMeta(&x.Rec, edge.AuditFull), d1, d2, content)
	if err != nil {
		return err
	}
	return s.o.Writer.commit(ctx, ev)
}

// capture stands between the later stages and the client: it reads the
// request body as intake reads it, and the answer as it is written. At
// level hash it feeds both to their digests and passes everything on; at
// level full it keeps both and holds the answer back (see Stage).
type capture struct {
	w               http.ResponseWriter // the client's
	body            teeBody             // on the request body
	reqMAC, respMAC hash.Hash           // level hash

	// Level full.
	full      bool
	x         *pipeline.Exchange
	max       int    // of len(req) + len(resp)
	req, resp []byte // the request body and the answer as the client gets it
	over      bool   // more than max: the event cannot be whole
	status    int    // the answer's status, held back with a JSON answer
	stream    bool   // the answer is an event stream
	held      []byte // of a stream: the final event and anything after it
	holding   bool
}

var _ interface {
	http.ResponseWriter
	http.Flusher
} = (*capture)(nil)

// captures are reused at level hash, where nothing keeps a capture once
// the request is recorded.
var captures = sync.Pool{New: func() any { return new(capture) }}

// tee puts the capture on the request body, and returns the tee (nil when
// there is no body).
func (c *capture) tee(x *pipeline.Exchange) *teeBody {
	if x.R.Body == nil || x.R.Body == http.NoBody {
		return nil
	}
	c.body = teeBody{rc: x.R.Body, c: c}
	x.R.Body = &c.body
	return &c.body
}

type teeBody struct {
	rc io.ReadCloser
	c  *capture
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		if t.c.full {
			t.c.req = t.c.keep(t.c.req, p[:n])
		} else {
			t.c.reqMAC.Write(p[:n])
		}
	}
	return n, err
}

func (t *teeBody) Close() error { return t.rc.Close() }

// keep appends p to buf within the bound on what one event holds.
func (c *capture) keep(buf, p []byte) []byte {
	if c.over || len(c.req)+len(c.resp)+len(p) > c.max {
		c.over = true
		return buf
	}
	return append(buf, p...)
}

func (c *capture) Header() http.Header { return c.w.Header() }

// Unwrap lets http.ResponseController reach the client's writer (intake
// sets read deadlines through it).
func (c *capture) Unwrap() http.ResponseWriter { return c.w }

func (c *capture) WriteHeader(code int) {
	c.status = code
	if c.full {
		c.stream = strings.HasPrefix(c.w.Header().Get(echo.HeaderContentType), "text/event-stream")
		if !c.stream {
			return // held with the body
		}
	}
	c.w.WriteHeader(code)
}

func (c *capture) Write(p []byte) (int, error) {
	if !c.full {
		c.respMAC.Write(p)
		return c.w.Write(p)
	}
	c.resp = c.keep(c.resp, p)
	if !c.stream {
		return len(p), nil // held
	}
	if !c.holding && c.final(p) {
		c.holding = true
	}
	if c.holding {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.w.Write(p)
}

// final reports whether p, one event as the stages write them, is the
// event that ends a finished stream.
func (c *capture) final(p []byte) bool {
	if c.x.EventFinalKnown {
		return c.x.EventFinal
	}
	ev, err := sse.NewReaderSize(bytes.NewReader(p), len(p)+1).Next()
	return err == nil && c.x.Format.IsFinal(c.x.Endpoint, ev.Name, ev.Data)
}

func (c *capture) Flush() {
	if c.full && !c.stream {
		return // held
	}
	flush(c.w)
}

// flush flushes what was written to the client. Its error (the client
// went away) shows in the next write, which the stages handle.
func flush(w http.ResponseWriter) { _ = http.NewResponseController(w).Flush() }

// release passes on what was held back, now that the event is stored. A
// client gone by now is no error: the request is recorded as answered.
func (c *capture) release() {
	switch {
	case !c.stream && c.status != 0:
		c.w.WriteHeader(c.status)
		_, _ = c.w.Write(c.resp)
	case len(c.held) > 0:
		_, _ = c.w.Write(c.held)
	default:
		return
	}
	flush(c.w)
}

// refuse answers ErrUnavailable instead of what was held back.
func (c *capture) refuse(x *pipeline.Exchange) {
	x.Rec.Status, x.W.Status = ErrUnavailable.Status, ErrUnavailable.Status
	if c.stream {
		name, data := x.Format.StreamError(ErrUnavailable, x.Rec.ID)
		_ = sse.Write(c.w, name, data) // a client gone has nothing to be told
		flush(c.w)
		return
	}
	h := c.w.Header()
	for _, k := range []string{"Content-Length", "Content-Encoding", "Transfer-Encoding", "Etag", "Last-Modified"} {
		h.Del(k)
	}
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set("Retry-After", "1")
	c.w.WriteHeader(ErrUnavailable.Status)
	_, _ = c.w.Write(x.Format.ErrorBody(ErrUnavailable, x.Rec.ID)) // a client gone has nothing to be told
}
