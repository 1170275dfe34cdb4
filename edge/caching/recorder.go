package caching

import (
	"bytes"
	"context"
	"time"

	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/coalesce"
	"github.com/persiv/codex/edge/forward"
	"github.com/persiv/codex/edge/pipeline"
)

// recorder is the pipeline.Recorder of a request that leads a flight: it
// shares the answer with the flight's followers as it arrives, and stores
// it once complete.
type recorder struct {
	l        *Layer
	x        *pipeline.Exchange
	st       state
	flight   *coalesce.Flight // st.flight, kept for Release once st's ends
	stop     func() bool      // stops the AfterFunc releasing the flight
	status   int
	size     int
	overflow bool // the stream outgrew MaxShareBytes: followers are failed
	ended    bool
}

// Detach: a shared call is cancelled only when no participant is left,
// so the leader's client leaving does not cut its followers off.
// The layer releases the flight once the forwarder returns.
func (r *recorder) Detach(client context.Context) (context.Context, context.CancelFunc) {
	if !r.st.shared {
		return context.WithCancel(client)
	}
	r.flight = r.st.flight
	ctx, cancel := context.WithCancel(context.WithoutCancel(client))
	r.flight.SetCancel(cancel)
	r.stop = context.AfterFunc(client, r.flight.Release)
	return ctx, cancel
}

func (r *recorder) Shared() bool { return r.st.shared }

func (r *recorder) Start(status int, contentType string, stream bool) {
	r.status = status
	r.st.flight.Start(status, contentType, stream)
}

func (r *recorder) Event(raw []byte, usageOnly bool) {
	if r.overflow {
		return
	}
	if r.size += len(raw); r.size > r.l.o.MaxShareBytes {
		r.overflow = true
		return
	}
	r.st.flight.AddEvent(raw, usageOnly)
}

func (r *recorder) End(body []byte, err error) {
	if r.ended {
		return
	}
	r.ended = true
	switch {
	case err != nil:
		r.fail(err)
	case r.overflow:
		r.fail(forward.ErrUnreachable)
	default:
		r.finish(bytes.Clone(body))
	}
}

// fail ends the flight without a complete answer; followers get err when
// it is an *edge.Error, and otherwise ask the provider themselves.
func (r *recorder) fail(err error) {
	f := r.st.flight
	r.st.flight = nil
	if err == nil {
		err = coalesce.ErrRetry
	}
	f.Fail(err)
}

// finish ends the flight once its answer is complete: followers get it,
// and a complete 2xx answer small enough is stored.
func (r *recorder) finish(body []byte) {
	l, x, st := r.l, r.x, &r.st
	f := st.flight
	st.flight = nil
	store := st.store && r.status >= 200 && r.status < 300
	f.Finish(body, func(e *cache.Entry) {
		e.Provider, e.Endpoint = x.Format.Provider(), x.Endpoint
		e.Model, e.Usage, e.CostNanoUSD, e.CostKnown = x.Rec.Model, x.Rec.Usage, x.Rec.CostNanoUSD, x.Rec.CostKnown
		e.Created = time.Now().Unix()
		if e.Size() > l.o.MaxEntryBytes || (e.Stream && !e.Complete(x.Format)) {
			store = false
		}
	})
	if !store {
		f.Fail(nil) // already done: only stops taking followers
		return
	}
	// Sealing and storing happen off the request path; until they are
	// done, identical requests are served from the flight.
	org, record, ttl := x.Key.OrgID, st.record, st.ttl
	started := l.o.Cache.Background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.o.Cache.Set(ctx, org, record, f.Entry(), ttl); err != nil {
			x.Log().Debug("cache store failed", "err", err)
		}
		f.Fail(nil) // done already: the entry takes over from the flight
	})
	if !started {
		f.Fail(nil) // shutting down: nothing more is stored
	}
}
