package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// ev is an expected event; raw is checked only when the input is read in
// one piece, since where a "\r\n" splits can depend on read boundaries.
type ev struct {
	raw, name, data  string
	hasData, partial bool
}

func readAll(t testing.TB, r *Reader) ([]Event, error) {
	t.Helper()
	var out []Event
	for {
		e, err := r.Next()
		if err != nil {
			return out, err
		}
		// Copy: the slices are only valid until the next call.
		out = append(out, Event{
			Raw:     bytes.Clone(e.Raw),
			Name:    bytes.Clone(e.Name),
			Data:    bytes.Clone(e.Data),
			HasData: e.HasData,
			Partial: e.Partial,
		})
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []ev
	}{
		{"empty stream", "", nil},
		{"one event", "data: hello\n\n", []ev{{"data: hello\n\n", "", "hello", true, false}}},
		{"named", "event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
			[]ev{{"event: message_start\ndata: {\"type\":\"message_start\"}\n\n", "message_start", `{"type":"message_start"}`, true, false}}},
		{"multi-line data", "data: a\ndata: b\ndata:c\n\n", []ev{{"data: a\ndata: b\ndata:c\n\n", "", "a\nb\nc", true, false}}},
		{"CRLF", "event: e\r\ndata: a\r\ndata: b\r\n\r\n", []ev{{"event: e\r\ndata: a\r\ndata: b\r\n\r\n", "e", "a\nb", true, false}}},
		{"CR", "data: a\rdata: b\r\r", []ev{{"data: a\rdata: b\r\r", "", "a\nb", true, false}}},
		{"mixed line breaks", "data: a\r\ndata: b\rdata: c\n\n", []ev{{"data: a\r\ndata: b\rdata: c\n\n", "", "a\nb\nc", true, false}}},
		{"two events", "data: 1\n\ndata: 2\n\n", []ev{{"data: 1\n\n", "", "1", true, false}, {"data: 2\n\n", "", "2", true, false}}},
		{"comment only", ": ping\n\n", []ev{{": ping\n\n", "", "", false, false}}},
		{"comment inside", ": ping\ndata: x\n: pong\n\n", []ev{{": ping\ndata: x\n: pong\n\n", "", "x", true, false}}},
		{"id and retry ignored", "id: 5\nretry: 100\ndata: x\n\n", []ev{{"id: 5\nretry: 100\ndata: x\n\n", "", "x", true, false}}},
		{"no space", "data:x\n\n", []ev{{"data:x\n\n", "", "x", true, false}}},
		{"only one space removed", "data:  x \n\n", []ev{{"data:  x \n\n", "", " x ", true, false}}},
		{"field without colon", "data\n\n", []ev{{"data\n\n", "", "", true, false}}},
		{"empty data", "data:\n\n", []ev{{"data:\n\n", "", "", true, false}}},
		{"empty data lines", "data\ndata\n\n", []ev{{"data\ndata\n\n", "", "\n", true, false}}},
		{"colon in value", "data: a:b\n\n", []ev{{"data: a:b\n\n", "", "a:b", true, false}}},
		{"unknown field", "foo: bar\n\n", []ev{{"foo: bar\n\n", "", "", false, false}}},
		{"field names are exact", "Data: x\ndata : y\n\n", []ev{{"Data: x\ndata : y\n\n", "", "", false, false}}},
		{"last event name wins", "event: a\nevent: b\ndata: x\n\n", []ev{{"event: a\nevent: b\ndata: x\n\n", "b", "x", true, false}}},
		{"name without data", "event: e\n\n", []ev{{"event: e\n\n", "e", "", false, false}}},
		{"stray blank lines", "\n\r\ndata: a\n\n\n", []ev{{"\n", "", "", false, false}, {"\r\n", "", "", false, false}, {"data: a\n\n", "", "a", true, false}, {"\n", "", "", false, false}}},
		{"unterminated last event", "data: a\n\ndata: b", []ev{{"data: a\n\n", "", "a", true, false}, {"data: b", "", "b", true, true}}},
		{"last event without blank line", "event: x\ndata: b\n", []ev{{"event: x\ndata: b\n", "x", "b", true, true}}},
		{"trailing CR", "data: b\r", []ev{{"data: b\r", "", "b", true, true}}},
		{"BOM", "\xef\xbb\xbfdata: a\n\n", []ev{{"\xef\xbb\xbfdata: a\n\n", "", "a", true, false}}},
		{"BOM only at start", "data: a\n\n\xef\xbb\xbfdata: b\n\n", []ev{{"data: a\n\n", "", "a", true, false}, {"\xef\xbb\xbfdata: b\n\n", "", "", false, false}}},
		{"NUL and invalid UTF-8 kept", "data: \x00\xff\n\n", []ev{{"data: \x00\xff\n\n", "", "\x00\xff", true, false}}},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"bytewise": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"halves":   func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"dataEOF":  func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				got, err := readAll(t, NewReader(mk(tt.in)))
				if err != io.EOF {
					t.Fatalf("Next error = %v, want io.EOF", err)
				}
				var raw []byte
				for _, e := range got {
					raw = append(raw, e.Raw...)
				}
				if string(raw) != tt.in {
					t.Fatalf("raw bytes %q, want %q", raw, tt.in)
				}
				if rname != "whole" {
					// Only the events that carry something are compared:
					// read boundaries may split a "\r\n" into an extra
					// empty event.
					got, want := significant(got), significantWant(tt.want)
					if got != want {
						t.Fatalf("events\n%s\nwant\n%s", got, want)
					}
					return
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %d events, want %d: %+v", len(got), len(tt.want), got)
				}
				for i, w := range tt.want {
					g := got[i]
					if string(g.Raw) != w.raw || string(g.Name) != w.name || string(g.Data) != w.data || g.HasData != w.hasData || g.Partial != w.partial {
						t.Errorf("event %d = {%q %q %q %v %v}, want %+v", i, g.Raw, g.Name, g.Data, g.HasData, g.Partial, w)
					}
				}
			})
		}
	}
}

func significant(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		if e.HasData || len(e.Name) > 0 {
			fmt.Fprintf(&b, "%q %q %v %v\n", e.Name, e.Data, e.HasData, e.Partial)
		}
	}
	return b.String()
}

func significantWant(evs []ev) string {
	var b strings.Builder
	for _, e := range evs {
		if e.hasData || e.name != "" {
			fmt.Fprintf(&b, "%q %q %v %v\n", e.name, e.data, e.hasData, e.partial)
		}
	}
	return b.String()
}

func TestReaderMaxEventSize(t *testing.T) {
	t.Parallel()
	const limit = 16
	exact := "data: 123456789\n\n" // 17 bytes
	if len(exact) != limit+1 {
		t.Fatal("test input has the wrong size")
	}
	ok := "data: 12345678\n\n" // 16 bytes: at the limit
	r := NewReaderSize(strings.NewReader(ok+exact), limit)
	e, err := r.Next()
	if err != nil || string(e.Data) != "12345678" {
		t.Fatalf("event at the limit: %q, %v", e.Data, err)
	}
	_, err = r.Next()
	if !errors.Is(err, ErrEventTooLarge) || !strings.Contains(err.Error(), "16") {
		t.Fatalf("oversized event: error %v, want ErrEventTooLarge naming 16", err)
	}
	if _, err2 := r.Next(); err2 != err {
		t.Fatalf("error is not sticky: %v", err2)
	}

	// The default limit is 1 MiB; an endless line hits it instead of
	// growing the buffer forever.
	r = NewReader(io.MultiReader(strings.NewReader("data: "), neverEnding('x')))
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) || !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("endless event: %v", err)
	}
	if cap(r.buf) > DefaultMaxEventSize {
		t.Fatalf("buffer grew to %d bytes", cap(r.buf))
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestReaderErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom)))
	if e, err := r.Next(); err != nil || string(e.Data) != "a" {
		t.Fatalf("first event: %q, %v", e.Data, err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("read error = %v, want %v", err, boom)
	}
	r = NewReader(zeroReader{})
	if _, err := r.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("reader without progress: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// TestReaderDoesNotWait checks that an event is returned as soon as its
// blank line arrives, even with "\r" line breaks, where the reader cannot
// yet know whether a "\n" follows.
func TestReaderDoesNotWait(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"data: a\n\n", "data: a\r\n\r\n", "data: a\r\r"} {
		pr, pw := io.Pipe()
		r := NewReader(pr)
		go func() { _, _ = pw.Write([]byte(first)) }() // the reader reads it, or the test fails
		got := make(chan string, 1)
		go func() {
			e, err := r.Next()
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(e.Data)
		}()
		select {
		case d := <-got:
			if d != "a" {
				t.Errorf("%q: got %q", first, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: Next waits for more input after a complete event", first)
		}
		// The stream goes on normally.
		go func() {
			_, _ = pw.Write([]byte("\ndata: b\n\n"))
			pw.Close()
		}()
		evs, err := readAll(t, r)
		if err != io.EOF || significant(evs) != significantWant([]ev{{data: "b", hasData: true}}) {
			t.Errorf("%q: rest of stream %s, %v", first, significant(evs), err)
		}
	}
}

func TestReaderSteadyStateAllocs(t *testing.T) {
	stream := openAIStream(50)
	src := &loopReader{b: stream}
	r := NewReader(src)
	for range 200 { // warm up
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Next allocates %v times per event", n)
	}
}

// TestReaderLongStream reads a long stream of events of many sizes in small
// pieces, so that events straddle reads, the buffer grows and events are
// moved to its front.
func TestReaderLongStream(t *testing.T) {
	t.Parallel()
	var in bytes.Buffer
	breaks := []string{"\n", "\r\n", "\r"}
	seed := uint64(42)
	rnd := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for i := range 3000 {
		nl := breaks[rnd(3)]
		if rnd(4) == 0 {
			fmt.Fprintf(&in, "event: e%d%s", i, nl)
		}
		if rnd(10) == 0 {
			in.WriteString(": keep-alive" + nl)
		}
		for range 1 + rnd(3) {
			fmt.Fprintf(&in, "data: %d %s%s", i, strings.Repeat("x", rnd(3000)), nl)
		}
		in.WriteString(nl)
	}
	in.WriteString("data: unterminated")
	want := significant(reference(in.Bytes()))
	for _, seed := range []uint64{1, 2, 3} {
		got, err := readAll(t, NewReaderSize(&chunkReader{b: in.Bytes(), seed: seed}, 16<<10))
		if err != io.EOF {
			t.Fatal(err)
		}
		var raw []byte
		for _, e := range got {
			raw = append(raw, e.Raw...)
		}
		if !bytes.Equal(raw, in.Bytes()) {
			t.Fatal("raw bytes differ from the input")
		}
		if g := significant(got); g != want {
			t.Fatalf("events differ from the reference (%d vs %d bytes of listing)", len(g), len(want))
		}
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		event, data, want string
	}{
		{"", "x", "data: x\n\n"},
		{"delta", "a\nb", "event: delta\ndata: a\ndata: b\n\n"},
		{"e", "", "event: e\ndata: \n\n"},
		{"", "a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"},
		{"", " leading space", "data:  leading space\n\n"},
		{" spaced", "x", "event:  spaced\ndata: x\n\n"},
		{"", "{\"type\":\"message_stop\"}", "data: {\"type\":\"message_stop\"}\n\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := Write(&buf, tt.event, []byte(tt.data)); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("Write(%q, %q) = %q, want %q", tt.event, tt.data, buf.String(), tt.want)
		}
	}
	for _, bad := range []string{"a\nb", "a\r", "\r\n"} {
		if err := Write(io.Discard, bad, nil); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Write(%q) error = %v", bad, err)
		}
	}
	boom := errors.New("broken pipe")
	if err := Write(errWriter{boom}, "", []byte("x")); !errors.Is(err, boom) {
		t.Errorf("write error = %v", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func FuzzReader(f *testing.F) {
	f.Add([]byte("data: a\n\n"), uint64(0))
	f.Add([]byte("event: e\r\ndata: a\r\ndata: b\r\n\r\n: ping\r\r\ndata"), uint64(1))
	f.Add([]byte("\xef\xbb\xbfdata: a\r\rdata:b\n\n\n"), uint64(7))
	f.Add(openAIStream(3), uint64(12345))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		got, err := readAll(t, NewReader(&chunkReader{b: in, seed: seed}))
		if err != io.EOF {
			t.Fatalf("Next error = %v", err)
		}
		var raw []byte
		for _, e := range got {
			raw = append(raw, e.Raw...)
		}
		if !bytes.Equal(raw, in) {
			t.Fatalf("raw bytes %q, want %q", raw, in)
		}
		if g, w := significant(got), significant(reference(in)); g != w {
			t.Fatalf("events\n%s\nwant\n%s", g, w)
		}
		// A small limit may stop the stream but never breaks it.
		small, err := readAll(t, NewReaderSize(&chunkReader{b: in, seed: seed}, 32))
		if err != io.EOF && !errors.Is(err, ErrEventTooLarge) {
			t.Fatalf("small limit: %v", err)
		}
		raw = raw[:0]
		for _, e := range small {
			if len(e.Raw) > 32 {
				t.Fatalf("event of %d bytes passed a limit of 32", len(e.Raw))
			}
			raw = append(raw, e.Raw...)
		}
		if !bytes.HasPrefix(in, raw) {
			t.Fatal("small limit: raw bytes are not a prefix of the input")
		}
		if g, w := significant(small), significant(reference(in)); !strings.HasPrefix(w, g) {
			t.Fatalf("small limit: events\n%s\nare not a prefix of\n%s", g, w)
		}
	})
}

func FuzzWriteRead(f *testing.F) {
	f.Add("", []byte("x"))
	f.Add("content_block_delta", []byte("{\"a\":\n1}\r\n"))
	f.Add(" e", []byte(""))
	f.Add("bad\nname", []byte("x"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		var buf bytes.Buffer
		err := Write(&buf, name, data)
		if strings.ContainsAny(name, "\r\n") {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Write accepted name %q", name)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		written := bytes.Clone(buf.Bytes())
		// The limit is not under test here: make room for any input size.
		evs, err := readAll(t, NewReaderSize(&buf, len(written)))
		if err != io.EOF || len(evs) != 1 {
			t.Fatalf("read back %d events, %v", len(evs), err)
		}
		e := evs[0]
		want := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
		if string(e.Name) != name || !bytes.Equal(e.Data, want) || !e.HasData || e.Partial || !bytes.Equal(e.Raw, written) {
			t.Fatalf("round trip of %q %q gave %+v", name, data, e)
		}
	})
}

// reference parses a whole stream the straightforward way, following the
// SSE specification's line rules.
func reference(in []byte) []Event {
	var out []Event
	var name, data []byte
	hasData, lines := false, 0
	in = bytes.TrimPrefix(in, bom)
	for len(in) > 0 {
		i := bytes.IndexAny(in, "\r\n")
		var line []byte
		terminated := i >= 0
		if !terminated {
			line, in = in, nil
		} else {
			line = in[:i]
			if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
				i++
			}
			in = in[i+1:]
		}
		if len(line) == 0 {
			out = append(out, Event{Name: name, Data: data, HasData: hasData})
			name, data, hasData, lines = nil, nil, false, 0
			continue
		}
		lines++
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "event":
			name = value
		}
	}
	if lines > 0 {
		out = append(out, Event{Name: name, Data: data, HasData: hasData, Partial: true})
	}
	return out
}

// chunkReader returns its bytes in pseudo-random pieces of 0 to 16 bytes.
type chunkReader struct {
	b    []byte
	seed uint64
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	c.seed = c.seed*6364136223846793005 + 1442695040888963407
	n := min(int(c.seed>>60), len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// loopReader replays b forever, in reads of at most 1 KiB, like a network
// connection delivering a stream.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), 1024)], l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// openAIStream returns n chat.completion.chunk events as OpenAI sends them.
func openAIStream(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token%d\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n", i)
	}
	return b.Bytes()
}

// anthropicStream returns n content_block_delta events as Anthropic sends
// them, with a ping between.
func anthropicStream(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" token%d\"}}\n\n", i)
		if i%10 == 0 {
			b.WriteString("event: ping\ndata: {\"type\": \"ping\"}\n\n")
		}
	}
	return b.Bytes()
}

func BenchmarkNext(b *testing.B) {
	for name, stream := range map[string][]byte{"openai": openAIStream(100), "anthropic": anthropicStream(100)} {
		b.Run(name, func(b *testing.B) {
			r := NewReader(&loopReader{b: stream})
			b.ReportAllocs()
			var total int64
			for b.Loop() {
				e, err := r.Next()
				if err != nil {
					b.Fatal(err)
				}
				total += int64(len(e.Raw))
			}
			b.SetBytes(total / int64(b.N))
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	data := []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" hello"}}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Write(io.Discard, "", data); err != nil {
			b.Fatal(err)
		}
	}
}
