// Package sse reads and writes Server-Sent Events (the WHATWG HTML
// "text/event-stream" format) for the streaming pass-through: the edge
// forwards each upstream event's exact bytes as soon as the event is
// complete, and looks at its parsed name and data on the side.
//
// Differences from a browser's EventSource, all on purpose: every block
// ending in a blank line is returned, including comment-only keep-alives
// and blocks without data (HasData tells them apart), so their bytes can be
// forwarded; an event cut off by the end of the stream is returned with
// Partial set instead of being dropped; id and retry fields are ignored.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// DefaultMaxEventSize is the largest event, in raw bytes, a Reader made by
// NewReader accepts.
const DefaultMaxEventSize = 1 << 20

// ErrEventTooLarge is wrapped by the error a Reader returns for an event
// larger than its limit.
var ErrEventTooLarge = errors.New("sse: event too large")

// Event is one event of a stream. Its slices are valid until the next call
// of Next.
type Event struct {
	// Raw is the event's exact bytes, including the blank line that ends
	// it. Concatenating Raw of every event returns the stream unchanged.
	Raw []byte
	// Name is the value of the last "event" field; empty when there is
	// none (a client then treats the event as "message").
	Name []byte
	// Data is the values of the "data" fields joined by "\n".
	Data []byte
	// HasData reports whether the event has at least one "data" field. Per
	// the SSE specification only such events are dispatched to a client;
	// the others (comments such as ": ping", stray blank lines) matter only
	// as bytes to forward.
	HasData bool
	// Partial reports that the stream ended before the event's blank line.
	Partial bool
}

// Reader reads events from a stream. It reuses its buffers: after warm-up
// Next does not allocate.
type Reader struct {
	r      io.Reader
	max    int
	buf    []byte // buf[:n] holds bytes read; buf[:off] were returned
	n, off int
	data   []byte // data of events with several data lines
	skipLF bool   // the last line ended in '\r': a '\n' next belongs to it
	bomOK  bool   // past the point where a byte order mark may appear
	eof    bool
	err    error // sticky
}

// NewReader returns a Reader with the default event size limit.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, DefaultMaxEventSize) }

// NewReaderSize returns a Reader that rejects events larger than
// maxEventSize raw bytes (DefaultMaxEventSize if maxEventSize <= 0).
func NewReaderSize(r io.Reader, maxEventSize int) *Reader {
	if maxEventSize <= 0 {
		maxEventSize = DefaultMaxEventSize
	}
	return &Reader{r: r, max: maxEventSize}
}

// Next returns the next event. At the end of the stream it returns io.EOF;
// any other error is sticky. It reads from the underlying reader only when
// the buffered bytes hold no complete event, so an event is returned as
// soon as its blank line has arrived.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	// The previous event's bytes are no longer needed; they are moved out
	// of the way only when the buffer needs the room (see makeRoom).
	if r.off == r.n {
		r.off, r.n = 0, 0
	}
	ev := eventState{start: r.off, line: r.off, from: r.off}
	for {
		if end, ok := r.scanLines(&ev); ok {
			r.off = end
			return r.event(&ev, end, false), nil
		}
		// The buffered bytes end inside this event: read more.
		if r.eof {
			return r.endOfStream(&ev)
		}
		if err := r.fill(&ev); err != nil {
			return Event{}, err
		}
	}
}

// eventState is what Next has parsed of the current event, as offsets into
// the buffer (which may move when it grows).
type eventState struct {
	start          int // Raw begins at buf[start]
	line           int // start of the next line
	from           int // where the search for line's break resumes
	lines          int // non-blank lines
	nameS, nameE   int // Name
	dataN          int // number of data fields
	data0S, data0E int // the first data value
	emptyReads     int // reads that returned nothing
}

var bom = []byte("\xef\xbb\xbf")

// scanLines interprets the complete lines buffered from ev.line on. At the
// blank line that ends the event it returns the offset after that line and
// true.
func (r *Reader) scanLines(ev *eventState) (end int, ok bool) {
	b := r.buf[:r.n]
	// from is where the search for p's line break resumes: the bytes
	// before it were searched already, so a long line arriving in many
	// reads is not searched again and again.
	p, from := ev.line, ev.from
	if r.skipLF && p < len(b) {
		r.skipLF = false
		if b[p] == '\n' {
			p++
			from = p
		}
	}
	for p < len(b) {
		le, next, ok := lineEnd(b, max(p, from))
		if !ok {
			from = len(b)
			break
		}
		if next == len(b) && next == le+1 && b[le] == '\r' {
			// A lone '\r' ends the buffered bytes: whether a '\n' follows
			// is not known yet; it is skipped when it comes, so this line
			// need not wait. (A complete "\r\n" ends here too, and then
			// the next '\n' is a blank line of its own.)
			r.skipLF = true
		}
		if !r.line(ev, p, le) {
			return next, true // a blank line ends the event
		}
		p, from = next, next
	}
	ev.line, ev.from = p, from
	return 0, false
}

// endOfStream returns the event the end of the stream cuts off, or io.EOF when
// no bytes are left.
func (r *Reader) endOfStream(ev *eventState) (Event, error) {
	if r.n == ev.start {
		r.err = io.EOF
		return Event{}, io.EOF
	}
	if ev.line < r.n {
		r.line(ev, ev.line, r.n) // a last line without a line break
	}
	r.off = r.n
	return r.event(ev, r.n, ev.lines > 0), nil
}

// fill reads more of the stream into the buffer, first making room when
// it is full. Its errors are sticky.
func (r *Reader) fill(ev *eventState) error {
	if r.n-ev.start >= r.max {
		r.err = fmt.Errorf("%w: larger than %d bytes", ErrEventTooLarge, r.max)
		return r.err
	}
	if r.n == len(r.buf) {
		r.makeRoom(ev)
	}
	m, err := r.r.Read(r.buf[r.n:])
	r.n += m
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil:
		r.err = fmt.Errorf("sse: read: %w", err)
		return r.err
	case m == 0:
		if ev.emptyReads++; ev.emptyReads >= 100 {
			r.err = fmt.Errorf("sse: read: %w", io.ErrNoProgress)
			return r.err
		}
	}
	return nil
}

// lineEnd finds the first line break at or after p: le is its offset and
// next the offset after it. ok is false when the buffered bytes hold none.
func lineEnd(b []byte, p int) (le, next int, ok bool) {
	rest := b[p:]
	k := bytes.IndexByte(rest, '\n')
	if k < 0 {
		k = bytes.IndexByte(rest, '\r')
		if k < 0 {
			return 0, 0, false
		}
		return p + k, p + k + 1, true
	}
	if cr := bytes.IndexByte(rest[:k], '\r'); cr >= 0 {
		if cr == k-1 {
			return p + cr, p + k + 1, true // "\r\n"
		}
		return p + cr, p + cr + 1, true
	}
	return p + k, p + k + 1, true
}

// line interprets the line buf[s:e] and reports whether it was blank.
func (r *Reader) line(ev *eventState, s, e int) bool {
	if !r.bomOK {
		// The stream's first line may start with a byte order mark.
		r.bomOK = true
		if bytes.HasPrefix(r.buf[s:e], bom) {
			s += len(bom)
		}
	}
	if s == e {
		return false
	}
	ev.lines++
	line := r.buf[s:e]
	if line[0] == ':' {
		return true // comment
	}
	name, value := line, line[len(line):]
	vs := e
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		name, value = line[:c], line[c+1:]
		vs = s + c + 1
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
			vs++
		}
	}
	switch string(name) {
	case "data":
		switch ev.dataN {
		case 0:
			ev.data0S, ev.data0E = vs, e
		case 1:
			r.data = append(r.data[:0], r.buf[ev.data0S:ev.data0E]...)
			fallthrough
		default:
			r.data = append(r.data, '\n')
			r.data = append(r.data, value...)
		}
		ev.dataN++
	case "event":
		ev.nameS, ev.nameE = vs, e
	}
	return true
}

func (r *Reader) event(ev *eventState, end int, partial bool) Event {
	out := Event{
		Raw:     r.buf[ev.start:end:end],
		Name:    r.buf[ev.nameS:ev.nameE:ev.nameE],
		HasData: ev.dataN > 0,
		Partial: partial,
	}
	switch {
	case ev.dataN == 1:
		out.Data = r.buf[ev.data0S:ev.data0E:ev.data0E]
	case ev.dataN > 1:
		out.Data = r.data
	}
	return out
}

// makeRoom makes room at the end of a full buffer: it moves the current
// event to the front or, if it already is there, grows the buffer up to
// the event size limit.
func (r *Reader) makeRoom(ev *eventState) {
	d := ev.start
	if d == 0 {
		size := min(max(2*len(r.buf), 4096), r.max)
		nb := make([]byte, size)
		copy(nb, r.buf[:r.n])
		r.buf = nb
		return
	}
	r.n = copy(r.buf, r.buf[d:r.n])
	ev.start = 0
	ev.line -= d
	ev.from -= d
	if ev.nameE > 0 { // a name was seen
		ev.nameS -= d
		ev.nameE -= d
	}
	if ev.dataN > 0 {
		ev.data0S -= d
		ev.data0E -= d
	}
}

// ErrInvalidName is returned by Write for an event name containing a line
// break.
var ErrInvalidName = errors.New("sse: event name contains a line break")

var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

// Write writes one event to w in a single Write call: an "event" line when
// event is not empty, one "data" line per line of data, and the blank line
// that ends the event. Since SSE has no way to carry "\r", line breaks in
// data ("\n", "\r\n" or "\r") are all read back as "\n"; empty data is
// still sent (as one empty data line), so the event is dispatched.
func Write(w io.Writer, event string, data []byte) error {
	if strings.ContainsAny(event, "\r\n") {
		return ErrInvalidName
	}
	bp := writeBufs.Get().(*[]byte)
	b := (*bp)[:0]
	if event != "" {
		b = append(b, "event: "...)
		b = append(b, event...)
		b = append(b, '\n')
	}
	for {
		b = append(b, "data: "...)
		k := bytes.IndexAny(data, "\r\n")
		if k < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:k]...)
		b = append(b, '\n')
		if data[k] == '\r' && k+1 < len(data) && data[k+1] == '\n' {
			k++
		}
		data = data[k+1:]
	}
	b = append(b, '\n')
	_, err := w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		writeBufs.Put(bp)
	}
	if err != nil {
		return fmt.Errorf("sse: write: %w", err)
	}
	return nil
}
