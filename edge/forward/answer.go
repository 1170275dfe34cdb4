package forward

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/sse"
)

// answer is one provider answer being passed on to the client.
type answer struct {
	fw   *Forwarder
	x    *pipeline.Exchange
	rec  pipeline.Recorder
	resp *http.Response
	body io.Reader // resp.Body, restarting the idle timer
	idle *idleTimer
}

// json passes on a non-streamed answer, keeping a copy (up to a bound) to
// read its usage.
func (a *answer) json() error {
	fw, x := a.fw, a.x
	x.W.WriteHeader(a.resp.StatusCode)
	capture := fw.bufs.Get().(*bytes.Buffer)
	capture.Reset()
	defer fw.bufs.Put(capture)
	max := fw.opts.MaxCaptureBytes
	if n := a.resp.ContentLength; n > 0 && n <= int64(max) {
		capture.Grow(int(n))
	}
	cp := fw.chunks.Get().(*[]byte)
	defer fw.chunks.Put(cp)
	complete, gone := true, false
	for {
		n, err := a.body.Read(*cp)
		if n > 0 {
			chunk := (*cp)[:n]
			if capture.Len()+n <= max {
				capture.Write(chunk)
			} else {
				complete = false
			}
			if !gone {
				if _, werr := x.W.Write(chunk); werr != nil {
					x.Rec.Status = pipeline.StatusClientClosed
					if !a.rec.Shared() {
						complete = false
						break
					}
					gone = true // keep reading for those who wait
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && complete && a.resp.ContentLength >= 0 && int64(capture.Len()) == a.resp.ContentLength {
			// Every announced byte arrived (the client, done reading, may
			// have cancelled the call before the final EOF): complete.
			break
		}
		if err != nil {
			return a.broken(err)
		}
	}
	x.UpstreamElapsed = time.Since(x.UpstreamStart)
	if !complete {
		a.rec.End(nil, errIncomplete)
		return nil
	}
	if !gone && x.W.Header().Get("Content-Length") != "" {
		// The client has the whole answer once it is flushed: what the
		// stages do after it (settling the budget, charging tokens,
		// recording) then no longer delays it. A level-full audit still
		// holds it until its record commits (its writer ignores this).
		// Without a length the client also needs the closing chunk,
		// which only the end of the handler writes: no flush, no extra
		// write.
		x.W.Flush()
	}
	if a.resp.StatusCode < 300 {
		// An answer that is not JSON leaves usage unknown, as it should.
		res, _ := x.Format.ParseUsage(x.Endpoint, capture.Bytes())
		fw.settle(x, res)
	}
	a.rec.End(capture.Bytes(), nil)
	return nil
}

// stream passes on an SSE answer event by event, flushing each one as it
// arrives, and reads usage from the events as they pass.
func (a *answer) stream() error {
	fw, x, w := a.fw, a.x, a.x.W
	x.Stream = true
	w.WriteHeader(a.resp.StatusCode)
	w.Flush()
	track := x.Format.NewStream(x.Endpoint)
	rd := sse.NewReaderSize(a.body, fw.opts.MaxEventBytes)
	gone, ended := false, false
	for {
		ev, err := rd.Next()
		arrived := time.Now()
		if err == io.EOF || (err != nil && ended) {
			// After the provider's final event nothing is missing, even
			// if the client, done reading, cancelled the call before EOF.
			break
		}
		if err != nil {
			return a.broken(err)
		}
		ended = x.Format.IsFinal(x.Endpoint, ev.Name, ev.Data)
		usageOnly := track.Observe(string(ev.Name), ev.Data)
		a.rec.Event(ev.Raw, usageOnly)
		if (usageOnly && x.HideUsage) || gone {
			continue // the usage chunk the client did not ask for
		}
		x.EventFinal, x.EventFinalKnown = ended, true
		_, err = w.Write(ev.Raw)
		x.EventFinalKnown = false
		if err != nil {
			x.Rec.Status = pipeline.StatusClientClosed
			if !a.rec.Shared() {
				x.UpstreamElapsed = time.Since(x.UpstreamStart)
				a.rec.End(nil, errIncomplete)
				return nil
			}
			gone = true // keep reading for those who wait
			continue
		}
		w.Flush()
		fw.opts.Metrics.ChunkForwarded(time.Since(arrived))
	}
	x.UpstreamElapsed = time.Since(x.UpstreamStart)
	if a.resp.StatusCode < 300 {
		fw.settle(x, track.Result())
	}
	a.rec.End(nil, nil)
	return nil
}

// broken handles a failure after the status line was sent: the only thing
// left is to end the answer, and record why.
func (a *answer) broken(err error) error {
	fw, x := a.fw, a.x
	x.UpstreamElapsed = time.Since(x.UpstreamStart)
	p := x.Format.Provider()
	var e *edge.Error
	switch {
	case a.idle.fired.Load():
		e = errIdle
		fw.opts.Metrics.UpstreamError(p, "idle_timeout")
	case errors.Is(err, sse.ErrEventTooLarge):
		// Said plainly: the provider answered, the edge refused one event.
		e = eventTooLarge(fw.opts.MaxEventBytes)
		fw.opts.Metrics.UpstreamError(p, "event_too_large")
		x.Log().Warn("provider stream event over the limit", "provider", p, "limit_bytes", fw.opts.MaxEventBytes)
	case x.Context().Err() != nil:
		a.rec.End(nil, errIncomplete) // whoever joined since asks again
		x.Rec.Status = pipeline.StatusClientClosed
		fw.opts.Metrics.UpstreamError(p, "client_closed")
		return nil
	default:
		e = ErrUnreachable
		fw.opts.Metrics.UpstreamError(p, "broken_response")
		x.Log().Warn("provider response broken off", "provider", p, "err", withoutURL(err))
	}
	a.rec.End(nil, e)
	x.Rec.Status = e.Status
	if x.Stream {
		x.StreamError(e)
	}
	return nil
}
