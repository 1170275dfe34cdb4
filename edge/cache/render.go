package cache

import (
	"bytes"
	"io"

	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/sse"
)

// Render returns e in the requested form: e itself when it already has
// it, or a new entry its format renders from it (text, tool calls, usage
// and finish reason carried over). provider.ErrNotRenderable when the
// format cannot do so faithfully.
func Render(f provider.Format, e *Entry, stream bool) (*Entry, error) {
	if e.Stream == stream {
		return e, nil
	}
	out := *e
	out.Stream = stream
	var err error
	if stream {
		out.Body = nil
		var buf bytes.Buffer
		var werr error
		out.ContentType, err = f.ToStream(e.Endpoint, e.Body, func(name string, data []byte, usageOnly bool) {
			buf.Reset()
			if err := sse.Write(&buf, name, data); err != nil {
				werr = err
			}
			out.AddEvent(buf.Bytes(), usageOnly)
		})
		if err == nil {
			err = werr
		}
	} else {
		out.Events, out.Ends, out.UsageOnly = nil, nil, nil
		var evs []provider.Event
		if evs, err = events(e); err == nil {
			out.Body, err = f.ToJSON(e.Endpoint, evs)
		}
		out.ContentType = "application/json"
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// events returns the name and data of every event of a stream entry.
func events(e *Entry) ([]provider.Event, error) {
	rd := sse.NewReaderSize(bytes.NewReader(e.Events), len(e.Events)+1)
	var out []provider.Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, provider.NotRenderable("stream: %v", err)
		}
		if !ev.HasData {
			continue
		}
		out = append(out, provider.Event{Name: string(ev.Name), Data: append([]byte(nil), ev.Data...)})
	}
}
