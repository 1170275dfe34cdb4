package usage

import (
	"testing"

	"github.com/persiv/codex/edge"
)

const (
	benchChatContent = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Qm"}`
	benchChatUsage   = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"pPg"}`
	benchAnthDelta   = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}`
	benchAnthUsage   = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`
	benchRespDelta   = `{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":1,"content_index":0,"delta":" world","logprobs":[],"obfuscation":"x1"}`
)

func benchObserve(b *testing.B, p edge.Provider, endpoint, event, data string) {
	d := []byte(data)
	s := NewStream(p, endpoint)
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		s.Observe(event, d)
	}
}

func BenchmarkObserveChatContent(b *testing.B) {
	benchObserve(b, edge.OpenAI, ChatCompletions, "", benchChatContent)
}

func BenchmarkObserveChatUsage(b *testing.B) {
	benchObserve(b, edge.OpenAI, ChatCompletions, "", benchChatUsage)
}

func BenchmarkObserveAnthropicContent(b *testing.B) {
	benchObserve(b, edge.Anthropic, Messages, "content_block_delta", benchAnthDelta)
}

func BenchmarkObserveAnthropicContentNoEventName(b *testing.B) {
	benchObserve(b, edge.Anthropic, Messages, "", benchAnthDelta)
}

func BenchmarkObserveAnthropicUsage(b *testing.B) {
	benchObserve(b, edge.Anthropic, Messages, "message_delta", benchAnthUsage)
}

func BenchmarkObserveResponsesContent(b *testing.B) {
	benchObserve(b, edge.OpenAI, Responses, "response.output_text.delta", benchRespDelta)
}

func BenchmarkObserveResponsesContentNoEventName(b *testing.B) {
	benchObserve(b, edge.OpenAI, Responses, "", benchRespDelta)
}
