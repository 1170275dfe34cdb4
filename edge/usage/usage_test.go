package usage

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/persiv/codex/edge"
)

var unknown = edge.Count{}

func k(n int64) edge.Count { return edge.Known(n) }

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind Kind
		body string
		want Result
	}{
		{
			name: "openai chat, no cache hit",
			kind: OpenAIChat,
			body: `{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}`,
			want: Result{Model: "gpt-4o-2024-08-06", Reported: true, ServiceTier: "default",
				Usage: edge.Usage{Input: k(1117), CachedInput: k(0), Output: k(46), Reasoning: k(0)}},
		},
		{
			name: "openai chat, cached prompt and reasoning",
			kind: OpenAIChat,
			body: `{"id":"chatcmpl-1","object":"chat.completion","created":1741570283,"model":"o3-mini-2025-01-31","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}`,
			want: Result{Model: "o3-mini-2025-01-31", Reported: true, ServiceTier: "default",
				Usage: edge.Usage{Input: k(86), CachedInput: k(1920), Output: k(300), Reasoning: k(192)}},
		},
		{
			name: "openai chat, cache writes inside prompt_tokens",
			kind: OpenAIChat,
			body: `{"model":"gpt-5.6","usage":{"prompt_tokens":2600,"completion_tokens":10,"total_tokens":2610,"prompt_tokens_details":{"cached_tokens":2000,"cache_write_tokens":400}}}`,
			want: Result{Model: "gpt-5.6", Reported: true,
				Usage: edge.Usage{Input: k(200), CachedInput: k(2000), CacheWrite: k(400), Output: k(10)}},
		},
		{
			name: "openai chat, no prompt_tokens_details: cached unknown",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o-mini","usage":{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57}}`,
			want: Result{Model: "gpt-4o-mini", Reported: true,
				Usage: edge.Usage{Input: k(50), Output: k(7)}},
		},
		{
			name: "openai chat, null details and null completion",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o","usage":{"prompt_tokens":50,"completion_tokens":null,"prompt_tokens_details":null,"completion_tokens_details":null}}`,
			want: Result{Model: "gpt-4o", Reported: true, Usage: edge.Usage{Input: k(50)}},
		},
		{
			name: "openai chat, cached_tokens null",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o","usage":{"prompt_tokens":50,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":null}}}`,
			want: Result{Model: "gpt-4o", Reported: true, Usage: edge.Usage{Input: k(50), Output: k(3)}},
		},
		{
			name: "openai chat, cached more than prompt: input unknown",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o","usage":{"prompt_tokens":50,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":64}}}`,
			want: Result{Model: "gpt-4o", Reported: true, Usage: edge.Usage{CachedInput: k(64), Output: k(3)}},
		},
		{
			name: "openai chat, counts that are not counts",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o","usage":{"prompt_tokens":12.5,"completion_tokens":-3,"prompt_tokens_details":{"cached_tokens":"7"},"completion_tokens_details":{"reasoning_tokens":99999999999999999999}}}`,
			want: Result{Model: "gpt-4o", Reported: true},
		},
		{
			name: "openai chat, audio tokens",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o-audio-preview-2024-12-17","usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":60},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}`,
			want: Result{Model: "gpt-4o-audio-preview-2024-12-17", Reported: true, Unpriced: UnpricedAudio,
				Usage: edge.Usage{Input: k(100), CachedInput: k(0), Output: k(20), Reasoning: k(0)}},
		},
		{
			name: "openai chat, usage null",
			kind: OpenAIChat,
			body: `{"model":"gpt-4o","choices":[],"usage":null}`,
			want: Result{Model: "gpt-4o"},
		},
		{
			name: "openai error body",
			kind: OpenAIChat,
			body: `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			want: Result{},
		},
		{
			name: "openai responses",
			kind: OpenAIResponses,
			body: `{"id":"resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41","object":"response","created_at":1741476777,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41","status":"completed","role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove","annotations":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":380},"user":null,"metadata":{},"service_tier":"default"}`,
			want: Result{Model: "gpt-4.1-2025-04-14", Reported: true, ServiceTier: "default",
				Usage: edge.Usage{Input: k(200), CachedInput: k(128), Output: k(52), Reasoning: k(0)}},
		},
		{
			name: "openai responses, web search billed per call",
			kind: OpenAIResponses,
			body: `{"object":"response","model":"gpt-5-2025-08-07","output":[{"type":"web_search_call","id":"ws_1","status":"completed"},{"type":"message","content":[]}],"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":15}}`,
			want: Result{Model: "gpt-5-2025-08-07", Reported: true, Unpriced: UnpricedToolCalls,
				Usage: edge.Usage{Input: k(10), CachedInput: k(0), Output: k(5), Reasoning: k(0)}},
		},
		{
			name: "openai responses, usage null (background)",
			kind: OpenAIResponses,
			body: `{"object":"response","status":"queued","model":"o3-2025-04-16","output":[],"usage":null}`,
			want: Result{Model: "o3-2025-04-16"},
		},
		{
			name: "openai embeddings",
			kind: OpenAIChat,
			body: `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`,
			want: Result{Model: "text-embedding-3-small", Reported: true, Usage: edge.Usage{Input: k(8)}},
		},
		{
			name: "openai models",
			kind: NoUsage,
			body: `{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1686935002,"owned_by":"openai"}]}`,
			want: Result{},
		},
		{
			name: "anthropic message with cache write",
			kind: AnthropicMessages,
			body: `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":2051,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":1051,"ephemeral_1h_input_tokens":1000},"output_tokens":393,"service_tier":"standard","server_tool_use":null,"inference_geo":"global"}}`,
			want: Result{Model: "claude-sonnet-4-5-20250929", Reported: true, ServiceTier: "standard", CacheWrite1h: k(1000),
				Usage: edge.Usage{Input: k(21), CachedInput: k(0), CacheWrite: k(2051), Output: k(393)}},
		},
		{
			name: "anthropic message, split by lifetime that does not add up",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":3,"cache_creation_input_tokens":100,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":30},"output_tokens":4}}`,
			want: Result{Model: "claude-haiku-4-5", Reported: true,
				Usage: edge.Usage{Input: k(3), CachedInput: k(0), CacheWrite: k(100), Output: k(4)}},
		},
		{
			name: "anthropic message, writes without a split by lifetime",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":3,"cache_creation_input_tokens":100,"cache_read_input_tokens":0,"output_tokens":4}}`,
			want: Result{Model: "claude-haiku-4-5", Reported: true,
				Usage: edge.Usage{Input: k(3), CachedInput: k(0), CacheWrite: k(100), Output: k(4)}},
		},
		{
			name: "anthropic message, old shape without cache fields",
			kind: AnthropicMessages,
			body: `{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":25}}`,
			want: Result{Model: "claude-3-haiku-20240307", Reported: true, Usage: edge.Usage{Input: k(10), Output: k(25)}},
		},
		{
			name: "anthropic message, null cache fields",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-3-5-haiku-20241022","usage":{"input_tokens":10,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":25}}`,
			want: Result{Model: "claude-3-5-haiku-20241022", Reported: true, Usage: edge.Usage{Input: k(10), Output: k(25)}},
		},
		{
			name: "anthropic message, thinking and web search",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-opus-4-5-20251101","usage":{"input_tokens":15,"output_tokens":800,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens_details":{"thinking_tokens":512},"server_tool_use":{"web_search_requests":2,"web_fetch_requests":1},"service_tier":"standard","speed":"standard"}}`,
			want: Result{Model: "claude-opus-4-5-20251101", Reported: true, CacheWrite1h: k(0), ServiceTier: "standard", Speed: "standard", Unpriced: UnpricedToolCalls,
				Usage: edge.Usage{Input: k(15), CachedInput: k(0), CacheWrite: k(0), Output: k(800), Reasoning: k(512)}},
		},
		{
			name: "anthropic message, web fetch only is not a fee",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":15,"output_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":3}}}`,
			want: Result{Model: "claude-haiku-4-5", Reported: true, CacheWrite1h: k(0),
				Usage: edge.Usage{Input: k(15), CachedInput: k(0), CacheWrite: k(0), Output: k(8)}},
		},
		{
			name: "anthropic message, compaction iterations are added",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"cache_read_input_tokens":2,"cache_creation_input_tokens":3,"output_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":0},"iterations":[{"type":"compaction","input_tokens":100,"cache_read_input_tokens":20,"cache_creation_input_tokens":30,"output_tokens":40,"cache_creation":{"ephemeral_5m_input_tokens":30,"ephemeral_1h_input_tokens":0}},{"type":"message","input_tokens":10,"cache_read_input_tokens":2,"cache_creation_input_tokens":3,"output_tokens":5}]}}`,
			want: Result{Model: "claude-sonnet-4-5", Reported: true, CacheWrite1h: k(0),
				Usage: edge.Usage{Input: k(110), CachedInput: k(22), CacheWrite: k(33), Output: k(45)}},
		},
		{
			name: "anthropic message, fallback iteration from another model",
			kind: AnthropicMessages,
			body: `{"type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"output_tokens":5,"iterations":[{"type":"fallback_message","model":"claude-first","input_tokens":9,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"output_tokens":1},{"type":"message","input_tokens":10,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"output_tokens":5}]}}`,
			want: Result{Model: "claude-sonnet-4-5", Reported: true, CacheWrite1h: k(0), Unpriced: UnpricedOtherModels,
				Usage: edge.Usage{Input: k(10), CachedInput: k(0), CacheWrite: k(0), Output: k(5)}},
		},
		{
			name: "anthropic error body",
			kind: AnthropicMessages,
			body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			want: Result{},
		},
		{
			name: "anthropic count_tokens bills nothing",
			kind: NoUsage,
			body: `{"input_tokens":2095}`,
			want: Result{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.kind, []byte(tt.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Errorf("Parse =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		kind  Kind
		body  string
		unsup bool
	}{
		{"not json", OpenAIChat, `data: {"x":1}`, false},
		{"truncated", AnthropicMessages, `{"type":"message","usage":{"input_tokens":1`, false},
		{"array", OpenAIResponses, `[1,2]`, false},
		{"count_tokens not an object", NoUsage, `7`, false},
		{"zero kind", 0, `{}`, true},
		{"unknown kind", AnthropicMessages + 1, `{}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.kind, []byte(tt.body))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsup {
				t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", err, got, tt.unsup)
			}
		})
	}
}

type sseEvent struct {
	event string
	data  []byte
}

// readSSE splits a recorded stream into events the way an SSE reader does
// (one "data:" line per event in these recordings).
func readSSE(t testing.TB, path string) []sseEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var evs []sseEvent
	for block := range strings.SplitSeq(string(b), "\n\n") {
		var ev sseEvent
		for line := range strings.SplitSeq(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev.event = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				ev.data = []byte(v)
			}
		}
		if ev.data != nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// stripNames drops the event names, as if the stream carried only data
// lines.
func stripNames(evs []sseEvent) []sseEvent {
	out := make([]sseEvent, len(evs))
	for i, e := range evs {
		out[i] = sseEvent{data: e.data}
	}
	return out
}

func TestStreamRecorded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		kind      Kind
		file      string
		keep      int   // events fed (0: all)
		usageOnly []int // indexes of events Observe must flag
		want      Result
	}{
		{
			name: "openai chat with include_usage", kind: OpenAIChat,
			file: "openai_chat_stream.sse", usageOnly: []int{3},
			want: Result{Model: "gpt-4o-mini-2024-07-18", Reported: true, ServiceTier: "default",
				Usage: edge.Usage{Input: k(86), CachedInput: k(1920), Output: k(300), Reasoning: k(0)}},
		},
		{
			name: "openai chat cut before the usage chunk", kind: OpenAIChat,
			file: "openai_chat_stream.sse", keep: 3,
			want: Result{Model: "gpt-4o-mini-2024-07-18"},
		},
		{
			name: "openai responses", kind: OpenAIResponses,
			file: "openai_responses_stream.sse",
			want: Result{Model: "o4-mini-2025-04-16", Reported: true, ServiceTier: "default",
				Usage: edge.Usage{Input: k(176), CachedInput: k(1024), Output: k(340), Reasoning: k(256)}},
		},
		{
			name: "openai responses cut after created", kind: OpenAIResponses,
			file: "openai_responses_stream.sse", keep: 4,
			want: Result{Model: "o4-mini-2025-04-16"},
		},
		{
			name: "anthropic", kind: AnthropicMessages,
			file: "anthropic_stream.sse",
			want: Result{Model: "claude-sonnet-4-5-20250929", Reported: true, ServiceTier: "standard", CacheWrite1h: k(0),
				Usage: edge.Usage{Input: k(25), CachedInput: k(12000), CacheWrite: k(1800), Output: k(15)}},
		},
		{
			name: "anthropic cut before message_delta: output unknown", kind: AnthropicMessages,
			file: "anthropic_stream.sse", keep: 4,
			want: Result{Model: "claude-sonnet-4-5-20250929", Reported: true, ServiceTier: "standard", CacheWrite1h: k(0),
				Usage: edge.Usage{Input: k(25), CachedInput: k(12000), CacheWrite: k(1800)}},
		},
	}
	for _, tt := range tests {
		evs := readSSE(t, "testdata/"+tt.file)
		if tt.keep > 0 {
			evs = evs[:tt.keep]
		}
		for _, named := range []bool{true, false} {
			name := tt.name
			feed := evs
			if !named {
				name += ", no event names"
				feed = stripNames(evs)
			}
			t.Run(name, func(t *testing.T) {
				s := NewStream(tt.kind)
				var flagged []int
				for i, e := range feed {
					if s.Observe(e.event, e.data) {
						flagged = append(flagged, i)
					}
				}
				if !equalInts(flagged, tt.usageOnly) {
					t.Errorf("usageOnly events = %v, want %v", flagged, tt.usageOnly)
				}
				if got := s.Result(); got != tt.want {
					t.Errorf("Result =\n %+v\nwant\n %+v", got, tt.want)
				}
			})
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStreamEvents(t *testing.T) {
	t.Parallel()
	type ev struct {
		event, data string
		usageOnly   bool
	}
	tests := []struct {
		name   string
		kind   Kind
		events []ev
		want   Result
	}{
		{
			name: "anthropic delta repeating input and cache fields: latest wins", kind: AnthropicMessages,
			events: []ev{
				{event: "message_start", data: `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-opus-4-1-20250805","stop_reason":null,"stop_sequence":null,"stop_details":null,"usage":{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"cache_creation":{"ephemeral_5m_input_tokens":2,"ephemeral_1h_input_tokens":0},"service_tier":"standard"}}}`},
				{event: "message_delta", data: `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}`},
				{event: "message_delta", data: `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null,"stop_details":null},"usage":{"input_tokens":12,"output_tokens":99,"cache_creation_input_tokens":4,"cache_read_input_tokens":5,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":1},"output_tokens_details":{"thinking_tokens":7}}}`},
				{event: "message_stop", data: `{"type":"message_stop"}`},
			},
			// The delta raised the writes from 2 to 4 without a new split by
			// lifetime: the 1-hour share of the 2 new writes is not known.
			want: Result{Model: "claude-opus-4-1-20250805", Reported: true, ServiceTier: "standard", CacheWrite1h: unknown,
				Usage: edge.Usage{Input: k(12), CachedInput: k(5), CacheWrite: k(4), Output: k(99), Reasoning: k(7)}},
		},
		{
			name: "anthropic delta with null fields keeps message_start values", kind: AnthropicMessages,
			events: []ev{
				{event: "message_start", data: `{"type":"message_start","message":{"model":"claude-3-7-sonnet-20250219","usage":{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}`},
				{event: "message_delta", data: `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":null,"cache_read_input_tokens":null,"output_tokens":20}}`},
			},
			want: Result{Model: "claude-3-7-sonnet-20250219", Reported: true, CacheWrite1h: k(0),
				Usage: edge.Usage{Input: k(10), CachedInput: k(0), CacheWrite: k(0), Output: k(20)}},
		},
		{
			name: "anthropic error event after start", kind: AnthropicMessages,
			events: []ev{
				{event: "message_start", data: `{"type":"message_start","message":{"model":"claude-3-5-haiku-20241022","usage":{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}`},
				{event: "error", data: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
			},
			want: Result{Model: "claude-3-5-haiku-20241022", Reported: true, CacheWrite1h: k(0),
				Usage: edge.Usage{Input: k(10), CachedInput: k(0), CacheWrite: k(0)}},
		},
		{
			name: "openai chat usage on a chunk with choices is not usage-only", kind: OpenAIChat,
			events: []ev{
				{data: `{"id":"c","object":"chat.completion.chunk","model":"gpt-4.1-mini-2025-04-14","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage": {"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":0}}}`},
			},
			want: Result{Model: "gpt-4.1-mini-2025-04-14", Reported: true,
				Usage: edge.Usage{Input: k(5), CachedInput: k(0), Output: k(1)}},
		},
		{
			name: "openai chat usage chunk with no choices key", kind: OpenAIChat,
			events: []ev{
				{data: `{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","usage":{"prompt_tokens":5,"completion_tokens":1}}`, usageOnly: true},
				{data: `[DONE]`},
			},
			want: Result{Model: "gpt-4o", Reported: true, Usage: edge.Usage{Input: k(5), Output: k(1)}},
		},
		{
			name: "openai chat usage after whitespace and a string equal to the key", kind: OpenAIChat,
			events: []ev{
				{data: `{"id":"c","object":"usage","model" : "gpt-4o","choices":[{"index":0,"delta":{"content":"usage"}}],"usage" : null}`},
				{data: `{"id":"c","object":"usage","model" : "gpt-4o","choices" : [ ],"usage" :
 {"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":2}}}`, usageOnly: true},
			},
			want: Result{Model: "gpt-4o", Reported: true, Usage: edge.Usage{Input: k(3), CachedInput: k(2), Output: k(1)}},
		},
		{
			name: "openai responses incomplete", kind: OpenAIResponses,
			events: []ev{
				{event: "response.created", data: `{"type":"response.created","sequence_number":0,"response":{"object":"response","model":"gpt-5-mini-2025-08-07","output":[],"usage":null}}`},
				{event: "response.incomplete", data: `{"type":"response.incomplete","sequence_number":9,"response":{"object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"model":"gpt-5-mini-2025-08-07","output":[],"usage":{"input_tokens":40,"input_tokens_details":{"cached_tokens":0},"output_tokens":64,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":104},"service_tier":"default"}}`},
			},
			want: Result{Model: "gpt-5-mini-2025-08-07", Reported: true, ServiceTier: "default",
				Usage: edge.Usage{Input: k(40), CachedInput: k(0), Output: k(64), Reasoning: k(64)}},
		},
		{
			name: "openai responses failed without usage", kind: OpenAIResponses,
			events: []ev{
				{event: "response.created", data: `{"type":"response.created","sequence_number":0,"response":{"object":"response","model":"o3-2025-04-16","output":[],"usage":null}}`},
				{event: "response.failed", data: `{"type":"response.failed","sequence_number":3,"response":{"object":"response","status":"failed","error":{"code":"server_error","message":"The model failed"},"model":"o3-2025-04-16","output":[],"usage":null}}`},
			},
			want: Result{Model: "o3-2025-04-16"},
		},
		{
			name: "stream of an endpoint that does not stream", kind: NoUsage,
			events: []ev{{data: `{"model":"text-embedding-3-small","usage":{"prompt_tokens":8}}`}},
			want:   Result{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStream(tt.kind)
			for i, e := range tt.events {
				if got := s.Observe(e.event, []byte(e.data)); got != e.usageOnly {
					t.Errorf("event %d: usageOnly = %v, want %v", i, got, e.usageOnly)
				}
			}
			if got := s.Result(); got != tt.want {
				t.Errorf("Result =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestParseCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"9223372036854775808", 0, false},
		{"-1", 0, false},
		{"-0", 0, false},
		{"01", 0, false},
		{"1e3", 0, false},
		{"1.0", 0, false},
		{`"3"`, 0, false},
		{"null", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		n, ok := parseCount([]byte(tt.in))
		if n != tt.n || ok != tt.ok {
			t.Errorf("parseCount(%q) = %d, %v; want %d, %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
}

func TestValueOf(t *testing.T) {
	t.Parallel()
	tests := []struct{ data, want string }{
		{`{"usage":{"a":1}}`, `{"a":1}}`},
		{`{"usage" :  null}`, `null}`},
		{`{"object":"usage","usage":7}`, `7}`},
		{`{"text":"say \"usage\": {}","n":1}`, ``},
		{`{"x":["usage"]}`, ``},
		{`{"usage"`, ``},
	}
	for _, tt := range tests {
		if got := string(valueOf([]byte(tt.data), keyUsage)); got != tt.want {
			t.Errorf("valueOf(%s) = %q, want %q", tt.data, got, tt.want)
		}
	}
	if got := scanString([]byte(`{"model":"gpt-4o\u002dmini","usage":null}`), keyModel); got != "" {
		t.Errorf("scanString of an escaped model = %q, want empty", got)
	}
}
