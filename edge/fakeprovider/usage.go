package fakeprovider

import (
	"cmp"
	"fmt"
	"strings"
)

// Usage is the token accounting the fake reports for one response, in
// provider-neutral terms. Every counter is a deterministic function of the
// request (see ExpectedUsage), so accounting tests can predict it.
type Usage struct {
	// InputTokens is OpenAI's prompt_tokens / input_tokens (cached tokens
	// included), or Anthropic's input_tokens (cache reads and writes
	// excluded, as Anthropic reports them).
	InputTokens int64
	// OutputTokens is completion_tokens / output_tokens, reasoning included.
	OutputTokens int64
	// CachedTokens is OpenAI's cached_tokens, a part of InputTokens.
	CachedTokens int64
	// ReasoningTokens is OpenAI's reasoning_tokens, a part of OutputTokens;
	// non-zero only for models starting with "o" or "gpt-5".
	ReasoningTokens int64
	// CacheCreationTokens is Anthropic's cache_creation_input_tokens.
	CacheCreationTokens int64
	// CacheReadTokens is Anthropic's cache_read_input_tokens.
	CacheReadTokens int64
}

// TotalTokens is every token billed: OpenAI's total_tokens, or for
// Anthropic the sum of input, cache creation, cache read and output tokens.
func (u Usage) TotalTokens() int64 {
	return u.InputTokens + u.CacheCreationTokens + u.CacheReadTokens + u.OutputTokens
}

// promptOverhead is added to every request's input words, so even an empty
// prompt has non-zero (and cacheable) input tokens.
const promptOverhead = 8

// Routes served by the fake.
const (
	PathChatCompletions = "/v1/chat/completions"
	PathResponses       = "/v1/responses"
	PathEmbeddings      = "/v1/embeddings"
	PathModels          = "/v1/models"
	PathMessages        = "/v1/messages"
	PathCountTokens     = "/v1/messages/count_tokens"
)

// ExpectedUsage returns the usage the fake reports for a request body sent
// to path (one of the Path constants), as the server itself computes it:
//
//   - words = whitespace-separated words of all text in the request
//     (messages, system, instructions, input), input = words + 8;
//   - OpenAI: InputTokens = input, CachedTokens = input/2, visible output =
//     words of the answer (the text, or the tool call's arguments),
//     ReasoningTokens = 2 × visible output for reasoning models,
//     OutputTokens = visible + reasoning;
//   - Anthropic: OutputTokens = words of the answer; when the body contains
//     "cache_control" anywhere, CacheReadTokens = input/2,
//     CacheCreationTokens = input/4 and InputTokens is the rest, otherwise
//     InputTokens = input;
//   - count_tokens: InputTokens = input;
//   - embeddings: InputTokens = the words of each input (its length for a
//     token array), at least 1 per input.
func ExpectedUsage(path string, body []byte) (Usage, error) {
	r, err := parseRequest(body)
	if err != nil {
		return Usage{}, err
	}
	if path == PathEmbeddings {
		in, err := embeddingInputs(r.Input)
		if err != nil {
			return Usage{}, err
		}
		return Usage{InputTokens: embeddingTokens(in)}, nil
	}
	p, err := newPrompt(r, body)
	if err != nil {
		return Usage{}, err
	}
	switch path {
	case PathChatCompletions, PathResponses:
		return openAIUsage(p, p.answer()), nil
	case PathMessages:
		return anthropicUsage(p, p.answer()), nil
	case PathCountTokens:
		return Usage{InputTokens: p.words + promptOverhead}, nil
	}
	return Usage{}, fmt.Errorf("no usage for path %q", path)
}

func openAIUsage(p prompt, answer string) Usage {
	u := Usage{InputTokens: p.words + promptOverhead}
	u.CachedTokens = u.InputTokens / 2
	visible := int64(Words(answer))
	if isReasoningModel(p.req.Model) {
		u.ReasoningTokens = 2 * visible
	}
	u.OutputTokens = visible + u.ReasoningTokens
	return u
}

func anthropicUsage(p prompt, answer string) Usage {
	in := p.words + promptOverhead
	u := Usage{InputTokens: in, OutputTokens: int64(Words(answer))}
	if p.cacheControl {
		u.CacheReadTokens = in / 2
		u.CacheCreationTokens = in / 4
		u.InputTokens = in - u.CacheReadTokens - u.CacheCreationTokens
	}
	return u
}

// answer is the deterministic reply: with tools, the arguments of a call to
// the first tool ({"query":"<last user words>"}); otherwise
// "echo: <last user words>". For ModelLongLine the text, or the query, is
// one word of p.longLine bytes (LongLineBytes when unset), so its usage
// does not depend on the length.
func (p prompt) answer() string {
	if p.req.Model == ModelLongLine {
		word := strings.Repeat("x", cmp.Or(p.longLine, LongLineBytes))
		if p.tool != "" {
			return `{"query":"` + word + `"}`
		}
		return word
	}
	if p.tool != "" {
		return string(appendString([]byte(`{"query":`), p.lastUser)) + "}"
	}
	if p.lastUser == "" {
		return "echo: (empty)"
	}
	return "echo: " + p.lastUser
}

// splitChunks splits s into exactly n pieces of near-equal rune counts. A
// string shorter than n runes is first padded with pad (a dot for text, a
// space for JSON), so a stream always carries n non-empty deltas; neither
// padding changes the word count. It returns the padded string too.
func splitChunks(s string, n int, pad string) (string, []string) {
	if n <= 1 && s != "" {
		return s, []string{s} // no copy of a long answer as runes
	}
	runes := []rune(s)
	if len(runes) < n {
		s += strings.Repeat(pad, n-len(runes))
		runes = []rune(s)
	}
	out := make([]string, n)
	for i := range n {
		out[i] = string(runes[i*len(runes)/n : (i+1)*len(runes)/n])
	}
	return s, out
}
