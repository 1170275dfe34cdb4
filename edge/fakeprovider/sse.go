package fakeprovider

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// stampPrefix and stampDigits frame the send-time comment of Options.Stamp:
// a fixed width, so the digits can be written in place at the last moment.
const (
	stampPrefix = ": t="
	stampDigits = 19 // Unix nanoseconds until the year 2262
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
	if st.ex.s.opts.Stamp {
		b = append(b, stampPrefix...)
		b = append(b, make([]byte, stampDigits)...)
		b = append(b, '\n')
	}
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
	if ex.s.opts.Stamp {
		stamp(b[len(stampPrefix):len(stampPrefix)+stampDigits], time.Now())
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

// stamp writes t's Unix nanoseconds into dst, zero-padded to its width.
func stamp(dst []byte, t time.Time) {
	var tmp [stampDigits]byte
	d := strconv.AppendInt(tmp[:0], t.UnixNano(), 10)
	pad := len(dst) - len(d)
	for i := range pad {
		dst[i] = '0'
	}
	copy(dst[pad:], d)
}
