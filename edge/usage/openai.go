package usage

import (
	"bytes"
	"encoding/json"
	"errors"

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

var openAIUsageFields = []string{
	"prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details",
	"input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details",
}

// decodeOpenAIUsage reads a usage object (s at its '{') into u, a member
// of the top-level object, as json.Unmarshal would (see scanner).
func decodeOpenAIUsage(s *scanner, u *openAIUsage) error {
	const depth = 2 // the top-level object, the usage object
	_, err := s.object(func(name []byte) error {
		switch fieldIndex(name, openAIUsageFields) {
		case 0:
			return s.countValue(&u.PromptTokens, depth)
		case 1:
			return s.countValue(&u.CompletionTokens, depth)
		case 2:
			if ok, err := newIfObject(s, &u.PromptDetails); !ok {
				return err
			}
			return decodeInDetails(s, u.PromptDetails)
		case 3:
			if ok, err := newIfObject(s, &u.CompletionDetails); !ok {
				return err
			}
			return decodeOutDetails(s, u.CompletionDetails)
		case 4:
			return s.countValue(&u.InputTokens, depth)
		case 5:
			return s.countValue(&u.OutputTokens, depth)
		case 6:
			if ok, err := newIfObject(s, &u.InputDetails); !ok {
				return err
			}
			return decodeInDetails(s, u.InputDetails)
		case 7:
			if ok, err := newIfObject(s, &u.OutputDetails); !ok {
				return err
			}
			return decodeOutDetails(s, u.OutputDetails)
		}
		return s.skipValue(depth)
	})
	return err
}

var (
	inDetailsFields  = []string{"cached_tokens", "cache_write_tokens", "audio_tokens"}
	outDetailsFields = []string{"reasoning_tokens", "audio_tokens"}
)

func decodeInDetails(s *scanner, d *openAIInDetails) error {
	const depth = 3
	_, err := s.object(func(name []byte) error {
		switch fieldIndex(name, inDetailsFields) {
		case 0:
			return s.countValue(&d.CachedTokens, depth)
		case 1:
			return s.countValue(&d.CacheWriteTokens, depth)
		case 2:
			return s.countValue(&d.AudioTokens, depth)
		}
		return s.skipValue(depth)
	})
	return err
}

func decodeOutDetails(s *scanner, d *openAIOutDetail) error {
	const depth = 3
	_, err := s.object(func(name []byte) error {
		switch fieldIndex(name, outDetailsFields) {
		case 0:
			return s.countValue(&d.ReasoningTokens, depth)
		case 1:
			return s.countValue(&d.AudioTokens, depth)
		}
		return s.skipValue(depth)
	})
	return err
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

// outputScan follows the output member of a Responses object for Parse,
// which needs only whether an item is a tool call: the items are walked,
// their content skipped, and only their type read. A second output member
// (which no provider sends) falls back to decoding every occurrence into
// the struct the reference decoder uses, since encoding/json reuses the
// elements of the first and a type the second does not set survives.
type outputScan struct {
	n     int    // output members seen
	first []byte // the first one's value
	tools bool   // the first one holds a tool call
	items *[]struct {
		Type string `json:"type"`
	}
}

func (o *outputScan) scan(s *scanner) error {
	o.n++
	if o.n == 1 {
		start := s.off
		tools, err := s.outputTools()
		o.first, o.tools = s.data[start:s.off], tools
		return err
	}
	raw, err := s.value(1)
	if err != nil {
		return err
	}
	if o.n == 2 {
		o.items = new([]struct {
			Type string `json:"type"`
		})
		if err := json.Unmarshal(o.first, o.items); err != nil {
			return err
		}
	}
	return json.Unmarshal(raw, o.items)
}

func (o *outputScan) toolCalls() bool {
	if o.n < 2 {
		return o.tools
	}
	for _, it := range *o.items {
		if toolCallTypes[it.Type] {
			return true
		}
	}
	return false
}

var (
	outputItemFields = []string{"type"}

	errOutputType = errors.New("output is not an array of objects")
	errItemType   = errors.New("output item type is not a string")
)

// outputTools reads a top-level output value: null or an array of objects
// (or nulls), each of whose type is a string (or null, or absent). Any
// other shape is an error, as it is when decoding into the
// []struct{Type string} of openAIResponse.
func (s *scanner) outputTools() (tools bool, err error) {
	switch s.peek() {
	case 'n':
		return false, s.literal("null")
	case '[':
		s.off++
	default:
		return false, errOutputType
	}
	if s.peek() == ']' {
		s.off++
		return false, nil
	}
	for {
		switch s.peek() {
		case 'n':
			if err := s.literal("null"); err != nil {
				return false, err
			}
		case '{':
			s.off++
			typ, err := s.itemType()
			if err != nil {
				return false, err
			}
			if toolCallTypes[string(typ)] {
				tools = true
			}
		default:
			return false, errOutputType
		}
		switch s.peek() {
		case ',':
			s.off++
		case ']':
			s.off++
			return tools, nil
		default:
			return false, s.errorf("want ',' or ']' after array element")
		}
	}
}

// itemType reads the members of an output item (its '{' consumed) and
// returns its type: the last string value of a member named type, as
// json.Unmarshal keeps, since a null does not reset a string.
func (s *scanner) itemType() (typ []byte, err error) {
	for first := true; ; first = false {
		name, more, err := s.nextMember(first)
		if err != nil {
			return nil, err
		}
		if !more {
			return typ, nil
		}
		if fieldIndex(name, outputItemFields) != 0 {
			// The item sits at depth 3: object, output array, item.
			if err := s.skipValue(3); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := s.value(3)
		if err != nil {
			return nil, err
		}
		switch raw[0] {
		case 'n':
		case '"':
			// Only escapes need decoding: a type with invalid UTF-8 is no
			// tool call type, as raw bytes or with U+FFFD in their place.
			typ = raw[1 : len(raw)-1]
			if bytes.IndexByte(typ, '\\') >= 0 {
				str, _, err := decodeString(raw)
				if err != nil {
					return nil, err
				}
				typ = []byte(str)
			}
		default:
			return nil, errItemType
		}
	}
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
