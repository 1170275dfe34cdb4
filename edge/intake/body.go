package intake

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/persiv/codex/edge"
)

// Reading request bodies (issue 13, finding 3). A body is read into a
// buffer that grows only as its bytes arrive, whatever Content-Length
// declares; the read is bounded in time (Options.BodyTimeout), and the
// bodies held by all requests in progress are bounded together
// (Options.MaxInflightBodyBytes).

const (
	// bodyReadStep is the most a body buffer grows ahead of the bytes that
	// arrived: a client declaring a large body and sending little costs
	// little.
	bodyReadStep = 32 << 10
	// bodyPoolMax is the largest body buffer kept for reuse, so that one
	// large body does not stay in memory after its request.
	bodyPoolMax = 64 << 10
)

var (
	errBodyTimeout = &edge.Error{Status: 408, Code: "request_timeout", Message: "The request body did not arrive within the edge's time limit (CODEX_BODY_TIMEOUT, CODEX_CLIENT_READ_TIMEOUT)."}
	errBodyBudget  = &edge.Error{Status: 503, Code: "edge_overloaded", RetryAfter: 1,
		Message: "The edge is holding as many request bodies as it may (CODEX_MAX_INFLIGHT_BODY_BYTES); retry shortly."}
	errBodyRead = &edge.Error{Status: 400, Code: "invalid_body", Message: "Could not read the request body."}
)

// bodyBudget counts the request-body bytes held by requests in progress.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

// take counts n more bytes, or reports false (counting nothing) when that
// would pass the budget.
func (b *bodyBudget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) give(n int64) { b.used.Add(-n) }

// requestBody is a request body read in full; release returns its
// buffer and its share of the budget.
type requestBody struct {
	in    *intake
	buf   *[]byte
	taken int64
}

func (rb *requestBody) bytes() []byte { return *rb.buf }

func (rb *requestBody) release() {
	rb.in.bodies.give(rb.taken)
	rb.in.o.Metrics.BodyBytes(-rb.taken)
	if cap(*rb.buf) <= bodyPoolMax {
		*rb.buf = (*rb.buf)[:0]
		bodyPool.Put(rb.buf)
	}
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// readBody reads r's body, refusing at once a body declared over
// MaxBodyBytes, and answering 413 once more than that arrived, 408 when it
// takes longer than BodyTimeout, and 503 when the bodies in progress would
// pass MaxInflightBodyBytes. The caller must release the body, also after
// an error.
func (in *intake) readBody(w http.ResponseWriter, r *http.Request) (*requestBody, error) {
	rb := &requestBody{in: in, buf: bodyPool.Get().(*[]byte)}
	// The read deadline bounds a body trickled in. It is lifted once the
	// body is read, since on HTTP/1 it would otherwise also end a long
	// answer's stream; after an error it stays, so that net/http, draining
	// what is left of the body before it closes the connection, does not
	// wait on the client either. A writer without deadlines (an in-process
	// test) reads unbounded.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(in.o.BodyTimeout)) == nil
	limit := in.o.MaxBodyBytes
	if r.ContentLength > limit {
		return rb, errTooLarge
	}
	b := *rb.buf
	defer func() { *rb.buf = b }()
	for {
		if len(b) == cap(b) {
			// Room for bodyReadStep more bytes (append may round up to
			// about what arrived so far), never past the limit's next byte.
			b = append(b, make([]byte, min(bodyReadStep, limit+1-int64(len(b))))...)[:len(b)]
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		if n > 0 {
			if !in.bodies.take(int64(n)) {
				in.o.Metrics.BodyRefused("budget")
				return rb, errBodyBudget
			}
			rb.taken += int64(n)
			in.o.Metrics.BodyBytes(int64(n))
			b = b[:len(b)+n]
			if int64(len(b)) > limit {
				return rb, errTooLarge
			}
		}
		if err == nil {
			continue
		}
		switch {
		case errors.Is(err, io.EOF):
			if deadline {
				// It was set above, so lifting it cannot fail.
				_ = rc.SetReadDeadline(time.Time{})
			}
			return rb, nil
		case isTimeout(err):
			in.o.Metrics.BodyRefused("timeout")
			return rb, errBodyTimeout
		}
		return rb, errBodyRead
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
