package usage

import (
	"strings"
	"testing"
)

const (
	benchChatContent = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Qm"}`
	benchChatUsage   = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"pPg"}`
	benchAnthDelta   = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}`
	benchAnthUsage   = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`
	benchRespDelta   = `{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":1,"content_index":0,"delta":" world","logprobs":[],"obfuscation":"x1"}`
)

func benchObserve(b *testing.B, k Kind, event, data string) {
	d := []byte(data)
	s := NewStream(k)
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		s.Observe(event, d)
	}
}

func BenchmarkObserveChatContent(b *testing.B) {
	benchObserve(b, OpenAIChat, "", benchChatContent)
}

func BenchmarkObserveChatUsage(b *testing.B) {
	benchObserve(b, OpenAIChat, "", benchChatUsage)
}

func BenchmarkObserveAnthropicContent(b *testing.B) {
	benchObserve(b, AnthropicMessages, "content_block_delta", benchAnthDelta)
}

func BenchmarkObserveAnthropicContentNoEventName(b *testing.B) {
	benchObserve(b, AnthropicMessages, "", benchAnthDelta)
}

func BenchmarkObserveAnthropicUsage(b *testing.B) {
	benchObserve(b, AnthropicMessages, "message_delta", benchAnthUsage)
}

func BenchmarkObserveResponsesContent(b *testing.B) {
	benchObserve(b, OpenAIResponses, "response.output_text.delta", benchRespDelta)
}

func BenchmarkObserveResponsesContentNoEventName(b *testing.B) {
	benchObserve(b, OpenAIResponses, "", benchRespDelta)
}

// paragraph is answer text as providers send it: escaped newlines and
// quotes, a non-ASCII character.
const paragraph = `The boardwalk runs through tall grass toward the horizon; the sky is clear and blue with a few wispy clouds.\n\nIt is a \"peaceful\" scene — natural light, no people. `

// chatAnswer is an OpenAI chat completion as the API returns it, its
// content about n bytes long.
func chatAnswer(n int) []byte {
	content := strings.Repeat(paragraph, max(1, n/len(paragraph)))
	return []byte(`{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "` + content + `",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}
`)
}

func anthropicAnswer(n int) []byte {
	content := strings.Repeat(paragraph, max(1, n/len(paragraph)))
	return []byte(`{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"` + content + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":2048,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048},"output_tokens":503,"service_tier":"standard"}}`)
}

func responsesAnswer(n int) []byte {
	content := strings.Repeat(paragraph, max(1, n/len(paragraph)))
	return []byte(`{"id":"resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41","object":"response","created_at":1741476777,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{"type":"web_search_call","id":"ws_67ccd3acc8548190a2c9a7bb3e0ee6a604becb25c45c1d41","status":"completed","action":{"type":"search","query":"boardwalk photography"}},{"type":"message","id":"msg_67ccd3acc8548190a2c9a7bb3e0ee6a604becb25c45c1d41","status":"completed","role":"assistant","content":[{"type":"output_text","text":"` + content + `","annotations":[{"type":"url_citation","start_index":10,"end_index":20,"url":"https://example.com/boardwalk","title":"Boardwalks"}]}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[{"type":"web_search_preview"}],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":0},"output_tokens":356,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":684},"user":null,"metadata":{}}`)
}

type benchBody struct {
	name string
	pair uint8 // index into pairs
	body []byte
}

func benchBodies() []benchBody {
	return []benchBody{
		{"chat-1KiB", 0, chatAnswer(300)},
		{"chat-64KiB", 0, chatAnswer(64 << 10)},
		{"anthropic-2KiB", 4, anthropicAnswer(1500)},
		{"responses-2KiB", 1, responsesAnswer(900)},
		{"responses-64KiB", 1, responsesAnswer(64 << 10)},
	}
}

func benchParse(b *testing.B, parse func(Kind, []byte) (Result, error)) {
	for _, bb := range benchBodies() {
		k := kinds[bb.pair]
		b.Run(bb.name, func(b *testing.B) {
			if _, err := parse(k, bb.body); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				_, _ = parse(k, bb.body)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) { benchParse(b, Parse) }

// BenchmarkParseReference is the decoder Parse replaced, for comparison.
func BenchmarkParseReference(b *testing.B) { benchParse(b, parseReference) }
