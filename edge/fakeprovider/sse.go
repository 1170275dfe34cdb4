package fakeprovider

import (
	"fmt"
	"net/http"
)

// stream writes one SSE response. Every event is flushed as soon as it is
// written; ChunkDelay, Gate and the fake-stall fault apply between events.
type stream struct {
	ex  *exchange
	n   int // events written so far
	buf []byte
	// usage, when set, is recorded just before the next event is written:
	// the event that reports it.
	usage *Usage
}

func (ex *exchange) startStream(contentType string) *stream {
	h := ex.w.Header()
	h.Set("Cache-Control", "no-cache")
	ex.writeHeader(http.StatusOK, contentType, -1)
	return &stream{ex: ex, buf: make([]byte, 0, 1024)}
}

// begin starts an event: the "event:" line when name is set, then "data: ".
// The caller appends the data and passes the buffer to end.
func (st *stream) begin(name string) []byte {
	b := st.buf[:0]
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	return append(b, "data: "...)
}

// end finishes the event begun with begin, waits for its turn and writes it.
func (st *stream) end(b []byte) error {
	b = append(b, '\n', '\n')
	st.buf = b
	ex := st.ex
	if st.n > 0 {
		if ex.stall {
			<-ex.ctx.Done()
			return errClientGone
		}
		if !sleep(ex.ctx, ex.s.opts.ChunkDelay) {
			return errClientGone
		}
		if gate := ex.s.opts.Gate; gate != nil {
			if err := gate(ex.ctx, st.n); err != nil {
				if ex.ctx.Err() != nil {
					return errClientGone
				}
				return fmt.Errorf("gate chunk %d: %w", st.n, err)
			}
		}
	}
	if st.usage != nil {
		ex.setUsage(*st.usage)
		st.usage = nil
	}
	if _, err := ex.w.Write(b); err != nil {
		return errClientGone
	}
	ex.flush()
	st.n++
	return nil
}

// finish marks the response complete.
func (st *stream) finish() error {
	st.ex.done = true
	return nil
}
