package caching

import (
	"context"
	"errors"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/coalesce"
	"github.com/persiv/codex/edge/forward"
	"github.com/persiv/codex/edge/pipeline"
)

// followerResultWait bounds how long a follower that has sent its client
// the final event waits for the leader's accounting.
const followerResultWait = 5 * time.Second

// follow serves x from the flight f another identical request leads. A
// follower asking for the leader's form receives a stream event by event;
// one asking for the other form waits for the complete answer and gets it
// rendered. It returns served false when the leader gave up, or its answer
// cannot be rendered in x's form: x then calls the provider itself.
func (l *Layer) follow(x *pipeline.Exchange, st *state, f *coalesce.Flight) (bool, error) {
	defer f.Release()
	v := f.Snapshot()
	var err error
	for !v.Done && (!v.Started || !x.Stream || !v.Entry.Stream) {
		if v, err = f.Wait(x.Context(), v); err != nil {
			x.Rec.Status = pipeline.StatusClientClosed
			return true, nil
		}
	}
	if v.Err != nil && (!v.Started || !x.Stream || !v.Entry.Stream) {
		if ae := (*edge.Error)(nil); errors.As(v.Err, &ae) {
			return true, ae
		}
		return false, nil
	}
	if !x.Stream || !v.Entry.Stream {
		return followWhole(x, st, &v.Entry)
	}
	return true, followStream(x, f, v)
}

// followWhole serves x the leader's complete answer, rendered in x's form.
func followWhole(x *pipeline.Exchange, st *state, e *cache.Entry) (bool, error) {
	if e.Stream != x.Stream {
		if e.Status >= 300 {
			return false, nil // a provider error: this form asks itself
		}
		out, err := cache.Render(x.Format, e, x.Stream)
		if err != nil {
			st.record = x.Rec.Fingerprint + "/" + form(x.Stream)
			return false, nil
		}
		e = out
	}
	x.SetCache(edge.CacheHit)
	writeEntry(x, e, e.NumEvents())
	accountHit(x, e)
	return true, nil
}

// followStream passes the leader's stream on to x event by event as the
// leader receives it.
func followStream(x *pipeline.Exchange, f *coalesce.Flight, v coalesce.View) error {
	x.SetCache(edge.CacheHit)
	w := x.W
	if v.Entry.ContentType != "" {
		w.Header().Set("Content-Type", v.Entry.ContentType)
	}
	x.Rec.Status = v.Entry.Status
	w.WriteHeader(v.Entry.Status)
	w.Flush()
	ctx := x.Context()
	sent, sentAll := 0, false
	var err error
	for {
		n := v.Entry.NumEvents()
		if !writeEvents(x, &v.Entry, sent, n) {
			x.Rec.Status = pipeline.StatusClientClosed
			return nil
		}
		sent = n
		if v.Done {
			break
		}
		if !sentAll && n > 0 && cache.FinalEvent(x.Format, x.Endpoint, v.Entry.Event(n-1)) {
			// The client has the whole answer and may hang up now; the
			// leader is about to finish, and its usage is what this hit
			// is accounted with.
			sentAll = true
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), followerResultWait)
			defer cancel()
		}
		if v, err = f.Wait(ctx, v); err != nil {
			x.Rec.Status = pipeline.StatusClientClosed
			return nil
		}
	}
	if v.Err != nil {
		ae := forward.ErrUnreachable
		errors.As(v.Err, &ae)
		x.Rec.Status = ae.Status
		x.StreamError(ae)
		return nil
	}
	accountHit(x, &v.Entry)
	return nil
}
