package cache_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
)

func sampleEntries() []*cache.Entry {
	js := &cache.Entry{Provider: edge.OpenAI, Endpoint: openai.ChatCompletions, Status: 200, ContentType: "application/json",
		Body: []byte(`{"id":"x","choices":[]}`), Model: "gpt-4o-mini-2024-07-18",
		Usage:       edge.Usage{Input: edge.Known(12), CachedInput: edge.Known(0), Output: edge.Known(5), Reasoning: edge.Known(0)},
		CostNanoUSD: 4200, CostKnown: true, Created: 1795948000}
	st := &cache.Entry{Provider: edge.Anthropic, Endpoint: anthropic.Messages, Stream: true, Status: 200, ContentType: "text/event-stream",
		Model: "claude-haiku-4-5", Usage: edge.Usage{Input: edge.Known(3), Output: edge.Known(1 << 40)}, CostNanoUSD: -1, Created: 1}
	st.AddEvent([]byte("event: message_start\ndata: {}\n\n"), false)
	st.AddEvent([]byte("data: {\"usage\":{}}\n\n"), true)
	st.AddEvent([]byte("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), false)
	return []*cache.Entry{js, st, {Status: 204}}
}

func TestEntryRoundTrip(t *testing.T) {
	for i, e := range sampleEntries() {
		b := e.AppendBinary(nil)
		var got cache.Entry
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if !reflect.DeepEqual(&got, e) {
			t.Fatalf("entry %d:\ngot  %+v\nwant %+v", i, got, *e)
		}
		// Every truncation is refused, never half-read.
		for n := range len(b) {
			var part cache.Entry
			if part.UnmarshalBinary(b[:n]) == nil {
				t.Fatalf("entry %d truncated to %d bytes decoded", i, n)
			}
		}
	}
}

func TestEntryEvents(t *testing.T) {
	st := sampleEntries()[1]
	if st.NumEvents() != 3 || !bytes.Equal(st.Event(1), []byte("data: {\"usage\":{}}\n\n")) || !st.UsageOnly[1] {
		t.Fatalf("events %q", st.Events)
	}
	if !st.Complete(anthropic.Format{}) {
		t.Fatal("a stream ending in message_stop is complete")
	}
	cut := *st
	cut.Ends, cut.UsageOnly = st.Ends[:2], st.UsageOnly[:2]
	cut.Events = st.Events[:st.Ends[1]]
	if cut.Complete(anthropic.Format{}) {
		t.Fatal("a stream without message_stop is not complete")
	}
}

// FuzzEntry: any bytes either decode to an entry that encodes back to the
// same bytes, or are refused; never a panic.
func FuzzEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(e.AppendBinary(nil))
	}
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e cache.Entry
		if e.UnmarshalBinary(b) != nil {
			return
		}
		for i := range e.NumEvents() {
			_ = e.Event(i)
		}
		_ = e.Complete(openai.Format{})
		_ = e.Complete(anthropic.Format{})
		var again cache.Entry
		if err := again.UnmarshalBinary(e.AppendBinary(nil)); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
	})
}

func TestFinalEvent(t *testing.T) {
	for _, c := range []struct {
		f        provider.Format
		endpoint provider.Endpoint
		raw      string
		want     bool
	}{
		{openai.Format{}, openai.ChatCompletions, "data: [DONE]\n\n", true},
		{openai.Format{}, openai.ChatCompletions, "data:[DONE]\n\n", true},
		{openai.Format{}, openai.ChatCompletions, ": t=1\ndata: [DONE]\n\n", true},
		{openai.Format{}, openai.ChatCompletions, "data: {\"choices\":[{\"delta\":{\"content\":\"data: [DONE]\"}}]}\n\n", false},
		{openai.Format{}, openai.Responses, "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n", true},
		{openai.Format{}, openai.Responses, "data: {\"type\":\"response.completed\"}\n\n", true},
		{openai.Format{}, openai.Responses, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"\\\"response.completed\\\"\"}\n\n", false},
		{anthropic.Format{}, anthropic.Messages, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", true},
		{anthropic.Format{}, anthropic.Messages, "event: message_delta\ndata: {\"type\":\"message_delta\"}\n\n", false},
		{anthropic.Format{}, anthropic.CountTokens, "event: message_stop\ndata: {}\n\n", false},
		{openai.Format{}, openai.ChatCompletions, "", false},
	} {
		if got := cache.FinalEvent(c.f, c.endpoint, []byte(c.raw)); got != c.want {
			t.Errorf("FinalEvent(%s %s, %q) = %v, want %v", c.f.Provider(), c.endpoint, c.raw, got, c.want)
		}
	}
}
