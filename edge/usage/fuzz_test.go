package usage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/persiv/codex/edge"
)

// kinds are the kinds each endpoint answers with (chat completions,
// responses, embeddings, models, messages, count_tokens): a fuzz input's
// first byte picks one.
var kinds = []Kind{OpenAIChat, OpenAIResponses, OpenAIChat, NoUsage, AnthropicMessages, NoUsage}

// checkResult fails on a Result no answer can justify: a negative known
// count, or a 1-hour write share larger than all writes.
func checkResult(t *testing.T, r Result) {
	t.Helper()
	for _, c := range []edge.Count{r.Usage.Input, r.Usage.CachedInput, r.Usage.CacheWrite, r.Usage.Output, r.Usage.Reasoning, r.CacheWrite1h} {
		if c.Known && c.N < 0 {
			t.Fatalf("negative known count in %+v", r)
		}
		if !c.Known && c.N != 0 {
			t.Fatalf("unknown count with a value in %+v", r)
		}
	}
	if r.CacheWrite1h.Known && (!r.Usage.CacheWrite.Known || r.CacheWrite1h.N > r.Usage.CacheWrite.N) {
		t.Fatalf("1-hour writes exceed writes in %+v", r)
	}
}

func seedRecorded(f *testing.F) {
	files, err := filepath.Glob("testdata/*.sse")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		for _, e := range readSSE(f, file) {
			f.Add(uint8(0), e.event, e.data)
		}
	}
	b, err := os.ReadFile("testdata/anthropic_stream.sse")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(4), "", b)
	f.Add(uint8(4), "", []byte(`{"type":"message","model":"m","usage":{"input_tokens":1,"cache_creation_input_tokens":2,"cache_creation":{"ephemeral_1h_input_tokens":5},"iterations":[{"type":"compaction","input_tokens":9223372036854775807}]}}`))
	f.Add(uint8(1), "", []byte(`{"model":"gpt-4o","usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":4}},"output":[{"type":"web_search_call"}]}`))
}

func FuzzParse(f *testing.F) {
	seedRecorded(f)
	f.Fuzz(func(t *testing.T, pair uint8, _ string, body []byte) {
		k := kinds[int(pair)%len(kinds)]
		r, err := Parse(k, body)
		if err != nil && r != (Result{}) {
			t.Fatalf("Parse failed with a non-zero Result %+v", r)
		}
		checkResult(t, r)
	})
}

func FuzzObserve(f *testing.F) {
	seedRecorded(f)
	f.Fuzz(func(t *testing.T, pair uint8, event string, data []byte) {
		k := kinds[int(pair)%len(kinds)]
		s := NewStream(k)
		// The same event twice: a repeated usage event must not add up.
		first := s.Observe(event, data)
		r1 := s.Result()
		if s.Observe(event, data) != first {
			t.Fatal("Observe flagged the same event differently")
		}
		r2 := s.Result()
		if r1 != r2 {
			t.Fatalf("observing an event twice changed the result:\n %+v\n %+v", r1, r2)
		}
		if first && k != OpenAIChat {
			t.Fatalf("usageOnly on %s", k)
		}
		checkResult(t, r2)
	})
}
