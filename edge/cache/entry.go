package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/sse"
)

// Entry is one cached answer, as it was produced: a JSON body, or the SSE
// events of a stream. It holds content, so it only ever leaves the process
// sealed.
type Entry struct {
	Provider edge.Provider
	Endpoint provider.Endpoint
	// Stream says the answer was produced as a stream: Events is set, not
	// Body.
	Stream bool
	Status int
	// ContentType is the provider's Content-Type; the only provider header
	// replayed (never credentials, request ids or rate-limit state).
	ContentType string
	Body        []byte
	// Events are the raw SSE events, back to back: event i is
	// Events[end(i-1):Ends[i]]. UsageOnly[i] marks an OpenAI chat chunk
	// carrying only usage, which a client that did not ask for usage must
	// not see.
	Events    []byte
	Ends      []uint32
	UsageOnly []bool

	Model       string // the model the provider served
	Usage       edge.Usage
	CostNanoUSD int64
	CostKnown   bool
	Created     int64 // Unix seconds
}

// NumEvents is the number of SSE events of a stream entry.
func (e *Entry) NumEvents() int { return len(e.Ends) }

// Event returns the raw bytes of event i.
func (e *Entry) Event(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = e.Ends[i-1]
	}
	return e.Events[start:e.Ends[i]]
}

// AddEvent appends one raw SSE event.
func (e *Entry) AddEvent(raw []byte, usageOnly bool) {
	e.Events = append(e.Events, raw...)
	e.Ends = append(e.Ends, uint32(len(e.Events)))
	e.UsageOnly = append(e.UsageOnly, usageOnly)
}

// Size is roughly how many bytes the entry takes, for the size limit.
func (e *Entry) Size() int {
	return len(e.Body) + len(e.Events) + 5*len(e.Ends) + len(e.Model) + len(e.ContentType) + 64
}

// entryVersion is the first byte of an encoded entry; a reader refuses
// others, which makes a format change a miss, never a wrong answer.
const entryVersion = 1

const (
	flagStream = 1 << iota
	flagCostKnown
)

// AppendBinary appends the entry's encoding to b.
func (e *Entry) AppendBinary(b []byte) []byte {
	b = append(b, entryVersion)
	var flags byte
	if e.Stream {
		flags |= flagStream
	}
	if e.CostKnown {
		flags |= flagCostKnown
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = appendString(b, string(e.Provider))
	b = appendString(b, string(e.Endpoint))
	b = appendString(b, e.ContentType)
	b = appendString(b, e.Model)
	for _, c := range [...]edge.Count{e.Usage.Input, e.Usage.CachedInput, e.Usage.CacheWrite, e.Usage.Output, e.Usage.Reasoning} {
		if c.Known {
			b = append(b, 1)
			b = binary.AppendVarint(b, c.N)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendVarint(b, e.CostNanoUSD)
	b = binary.AppendVarint(b, e.Created)
	b = appendString(b, string(e.Body))
	b = binary.AppendUvarint(b, uint64(len(e.Ends)))
	prev := uint32(0)
	for i, end := range e.Ends {
		b = binary.AppendUvarint(b, uint64(end-prev))
		prev = end
		if e.UsageOnly[i] {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return append(b, e.Events...)
}

var errCorrupt = errors.New("cache: corrupt entry")

// UnmarshalBinary decodes an entry. Body and Events alias b.
func (e *Entry) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if d.byte() != entryVersion {
		return fmt.Errorf("%w: unknown version", errCorrupt)
	}
	flags := d.byte()
	e.Stream, e.CostKnown = flags&flagStream != 0, flags&flagCostKnown != 0
	e.Status = int(d.uvarint(999))
	e.Provider = edge.Provider(intern(d.bytes()))
	e.Endpoint = provider.Endpoint(intern(d.bytes()))
	e.ContentType = intern(d.bytes())
	e.Model = intern(d.bytes())
	for _, c := range [...]*edge.Count{&e.Usage.Input, &e.Usage.CachedInput, &e.Usage.CacheWrite, &e.Usage.Output, &e.Usage.Reasoning} {
		if d.byte() == 1 {
			*c = edge.Known(d.varint())
		}
	}
	e.CostNanoUSD = d.varint()
	e.Created = d.varint()
	if body := d.bytes(); len(body) > 0 {
		e.Body = body
	}
	n := int(d.uvarint(uint64(len(b))))
	if n > 0 {
		e.Ends = make([]uint32, n)
		e.UsageOnly = make([]bool, n)
	}
	end := uint64(0)
	for i := range n {
		end += d.uvarint(uint64(len(b)))
		e.Ends[i] = uint32(end)
		e.UsageOnly[i] = d.byte() == 1
	}
	if d.err != nil {
		return d.err
	}
	if uint64(len(d.b)) != end {
		return fmt.Errorf("%w: events length", errCorrupt)
	}
	if end > 0 {
		e.Events = d.b
	}
	return nil
}

// interned holds the short values entries repeat (provider, endpoint,
// content type, model), so that decoding one costs no allocation. It stops
// growing at maxInterned values; past that, a value is allocated as usual.
var interned = struct {
	sync.RWMutex
	m map[string]string
}{m: make(map[string]string)}

const (
	maxInterned    = 512
	maxInternedLen = 128
)

func intern(b []byte) string {
	if len(b) > maxInternedLen {
		return string(b)
	}
	interned.RLock()
	s, ok := interned.m[string(b)]
	interned.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	interned.Lock()
	if len(interned.m) < maxInterned {
		interned.m[s] = s
	}
	interned.Unlock()
	return s
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads an encoding, remembering the first error; reads after an
// error return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(max uint64) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > max {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint(1 << 40)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

// Complete reports whether a stream entry ends as a finished answer of
// its format does (a truncated or failed stream is not stored). A JSON
// entry is complete by construction.
func (e *Entry) Complete(f provider.Format) bool {
	if !e.Stream {
		return true
	}
	n := e.NumEvents()
	return n > 0 && FinalEvent(f, e.Endpoint, e.Event(n-1))
}

// FinalEvent reports whether raw, one event's bytes, is the event that
// ends a finished stream of the format's endpoint (see
// provider.Format.IsFinal).
func FinalEvent(f provider.Format, ep provider.Endpoint, raw []byte) bool {
	ev, err := sse.NewReaderSize(bytes.NewReader(raw), len(raw)+1).Next()
	return err == nil && f.IsFinal(ep, ev.Name, ev.Data)
}
