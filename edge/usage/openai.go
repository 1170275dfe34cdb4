package usage

import (
	"encoding/json"

	"github.com/persiv/codex/edge"
)

// openAIUsage is the usage object of chat completions and embeddings
// (prompt_/completion_ names) and of the Responses API (input_/output_
// names); a body uses one set or the other.
type openAIUsage struct {
	PromptTokens      count            `json:"prompt_tokens"`
	CompletionTokens  count            `json:"completion_tokens"`
	PromptDetails     *openAIInDetails `json:"prompt_tokens_details"`
	CompletionDetails *openAIOutDetail `json:"completion_tokens_details"`

	InputTokens   count            `json:"input_tokens"`
	OutputTokens  count            `json:"output_tokens"`
	InputDetails  *openAIInDetails `json:"input_tokens_details"`
	OutputDetails *openAIOutDetail `json:"output_tokens_details"`
}

type openAIInDetails struct {
	CachedTokens     count `json:"cached_tokens"`
	CacheWriteTokens count `json:"cache_write_tokens"`
	AudioTokens      count `json:"audio_tokens"`
}

type openAIOutDetail struct {
	ReasoningTokens count `json:"reasoning_tokens"`
	AudioTokens     count `json:"audio_tokens"`
}

// apply fills r from u. The Responses API names are used when the chat
// names are absent, so one type serves every OpenAI endpoint.
func (u *openAIUsage) apply(r *Result) {
	r.Reported = true
	prompt, completion := u.PromptTokens.edge(), u.CompletionTokens.edge()
	in, out := u.PromptDetails, u.CompletionDetails
	if !prompt.Known && !completion.Known && in == nil && out == nil {
		prompt, completion = u.InputTokens.edge(), u.OutputTokens.edge()
		in, out = u.InputDetails, u.OutputDetails
	}

	var cached, written, reasoning edge.Count
	if in != nil {
		cached, written = in.CachedTokens.edge(), in.CacheWriteTokens.edge()
		if in.AudioTokens.Known && in.AudioTokens.N > 0 {
			r.Unpriced = UnpricedAudio
		}
	}
	if out != nil {
		reasoning = out.ReasoningTokens.edge()
		if out.AudioTokens.Known && out.AudioTokens.N > 0 {
			r.Unpriced = UnpricedAudio
		}
	}

	// Cache reads and writes are parts of prompt_tokens: take out those
	// reported. An unreported cache read leaves Input = prompt_tokens with
	// CachedInput unknown (see the package comment).
	input := prompt
	if cached.Known {
		input = sub(input, cached)
	}
	if written.Known {
		input = sub(input, written)
	}
	r.Usage = edge.Usage{
		Input:       input,
		CachedInput: cached,
		CacheWrite:  written,
		Output:      completion,
		Reasoning:   reasoning,
	}
}

// openAIResponse is a Responses API response object: the JSON answer, and
// the "response" member of response.* stream events.
type openAIResponse struct {
	Model       string       `json:"model"`
	ServiceTier *string      `json:"service_tier"`
	Usage       *openAIUsage `json:"usage"`
	Output      []struct {
		Type string `json:"type"`
	} `json:"output"`
}

// toolCallTypes are output items the Responses API bills per call, on top
// of the tokens.
var toolCallTypes = map[string]bool{
	"web_search_call":       true,
	"file_search_call":      true,
	"code_interpreter_call": true,
	"image_generation_call": true,
}

func (b *openAIResponse) apply(r *Result) {
	if b.Model != "" {
		r.Model = b.Model
	}
	if b.ServiceTier != nil {
		r.ServiceTier = *b.ServiceTier
	}
	if b.Usage != nil {
		b.Usage.apply(r)
	}
	for _, o := range b.Output {
		if toolCallTypes[o.Type] {
			r.Unpriced = UnpricedToolCalls
		}
	}
}

// chatChunk is a chat.completion.chunk that carries a usage object.
type chatChunk struct {
	Model       string          `json:"model"`
	ServiceTier *string         `json:"service_tier"`
	Usage       *openAIUsage    `json:"usage"`
	Choices     json.RawMessage `json:"choices"`
}

// responseEvent is a response.* stream event carrying a response object.
type responseEvent struct {
	Type     string          `json:"type"`
	Response *openAIResponse `json:"response"`
}
