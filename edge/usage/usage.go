// Package usage extracts token usage from provider responses into
// edge.Usage, for JSON answers (Parse) and server-sent event streams
// (Stream).
//
// A figure the provider did not report, absent or null, stays unknown: it
// is never read as zero and never estimated. Buckets are disjoint, as
// edge.Usage defines them, and the rules that make them so differ per
// provider:
//
// OpenAI counts cache reads and cache writes inside prompt_tokens
// (input_tokens in the Responses API), so
//
//	Input       = prompt_tokens − cached_tokens − cache_write_tokens
//	CachedInput = prompt_tokens_details.cached_tokens
//	CacheWrite  = prompt_tokens_details.cache_write_tokens, unknown when absent
//	              (models before GPT-5.6 report none and bill writes as input)
//	Output      = completion_tokens (Reasoning, a part of it, from completion_tokens_details)
//
// When prompt_tokens is reported but cached_tokens is not, Input is
// prompt_tokens (less cache writes when those are reported) and CachedInput
// stays unknown: Input may then include cached tokens, and the unknown
// CachedInput is what keeps package pricing from claiming a known cost for
// a model with a cached-input rate. Embedding models have no such rate, so
// an embeddings answer (which reports prompt_tokens only) is fully priced.
// A subtraction that would go negative leaves Input unknown.
//
// Anthropic counts its cache buckets outside input_tokens, so each field
// maps to one bucket as is; thinking tokens (output_tokens_details) fill
// Reasoning, a part of Output. Compaction iterations (usage.iterations),
// which the provider bills but leaves out of the top-level fields, are
// added to the buckets.
//
// Token counts alone do not always make the bill: Result also carries the
// service tier, the 1-hour share of cache writes, and Unpriced, the reason
// the answer incurred charges no token price covers (server-side tool
// calls, audio, a second model), so package pricing can refuse to claim a
// known cost.
package usage

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/persiv/codex/edge"
)

// Kind is the shape of answer a reader expects: which usage object, where.
// The provider formats (package provider) say which kind each endpoint
// answers with.
type Kind uint8

const (
	// NoUsage is an answer that reports none (a models list, a token
	// count): Parse only checks it is a JSON object.
	NoUsage Kind = iota + 1
	// OpenAIChat is an OpenAI chat completion or embeddings answer, or a
	// chat completion chunk stream.
	OpenAIChat
	// OpenAIResponses is an OpenAI Responses API object, or its stream.
	OpenAIResponses
	// AnthropicMessages is an Anthropic message, or its stream.
	AnthropicMessages
)

var kindNames = [...]string{NoUsage: "no-usage", OpenAIChat: "openai-chat", OpenAIResponses: "openai-responses", AnthropicMessages: "anthropic-messages"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Reasons a Result is Unpriced.
const (
	UnpricedToolCalls   = "tool_calls"   // server-side tools billed per call (web search, file search, code interpreter, image generation)
	UnpricedAudio       = "audio"        // audio tokens, priced at audio rates
	UnpricedOtherModels = "other_models" // part of the answer came from another model (Anthropic advisor or fallback iterations)
	UnpricedIterations  = "iterations"   // usage.iterations of a kind this package does not know
)

// ErrUnsupported is returned for a Kind the package does not know.
var ErrUnsupported = errors.New("usage: unsupported kind of answer")

// Result is the accounting-relevant content of one answer.
type Result struct {
	// Model is the model the provider reports having served (often a dated
	// snapshot of the requested one); empty when it reported none.
	Model string
	// Usage holds the billed token counters.
	Usage edge.Usage
	// Reported is true when the answer carried a usage object at all.
	Reported bool
	// ServiceTier is the tier the provider reports having used: OpenAI
	// "default", "flex", "priority", "scale"; Anthropic "standard",
	// "priority", "batch". Empty when not reported.
	ServiceTier string
	// Speed is Anthropic's inference speed mode ("standard", "fast");
	// empty when not reported.
	Speed string
	// CacheWrite1h is the part of Usage.CacheWrite written with a 1-hour
	// lifetime (Anthropic cache_creation.ephemeral_1h_input_tokens), which
	// is billed at a higher rate than a 5-minute write. Known 0 when there
	// were no writes; unknown when the split by lifetime is missing or does
	// not add up to CacheWrite.
	CacheWrite1h edge.Count
	// Unpriced, when not empty, names why the answer incurred charges that
	// token prices do not cover (one of the Unpriced constants).
	Unpriced string
}

// Parse extracts the usage of a complete JSON answer. An answer without a
// usage object (an error body, a models list, a count_tokens result, which
// bills nothing) yields a Result with every counter unknown and a nil error;
// only a body that is not a JSON object (or null) is an error.
//
// Parse is on the edge's hot path for every answer that is not streamed,
// and an answer may be many MiB of which the usage object is a few hundred
// bytes: it walks the top-level members (see scanner), decodes only those
// it reads and skips the rest, content included, without decoding or
// copying them. It returns what json.Unmarshal of the whole body into the
// answer's struct would give, errors included (a body the standard decoder
// refuses anywhere, or a member it reads of the wrong JSON type), and the
// tests hold it to that.
func Parse(k Kind, body []byte) (Result, error) {
	var (
		r   Result
		err error
	)
	switch k {
	case OpenAIChat:
		r, err = parseOpenAI(body, false)
	case OpenAIResponses:
		r, err = parseOpenAI(body, true)
	case NoUsage:
		err = walk(&scanner{data: body}, nil)
	case AnthropicMessages:
		r, err = parseAnthropic(body)
	default:
		return Result{}, fmt.Errorf("parse %s: %w", k, ErrUnsupported)
	}
	if err != nil {
		return Result{}, fmt.Errorf("parse %s: %w", k, err)
	}
	return r, nil
}

// walk checks that s.data is a JSON object, or null, and calls member for
// each top-level member in order with its decoded name. member must move s
// past the value (with s.value, s.skipValue or a walk of its own); a nil
// member skips every value. Members are handed over in order, duplicates
// included, so a callback that decodes each occurrence into the same place
// ends with what encoding/json would: the last value, merged into the
// earlier ones where those were objects.
func walk(s *scanner, member func(name []byte) error) error {
	null, err := s.openObject()
	if err != nil || null {
		return err
	}
	for first := true; ; first = false {
		name, more, err := s.nextMember(first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if member != nil {
			err = member(name)
		} else {
			err = s.skipValue(1)
		}
		if err != nil {
			return err
		}
	}
	return s.end()
}

// Top-level members Parse reads, as fieldIndex matches them: by their
// decoded names, exactly or else case-insensitively, as encoding/json
// matches a member to a struct field.
var (
	openAIFields    = []string{"model", "service_tier", "usage", "output"}
	anthropicFields = []string{"model", "usage"}
)

// parseOpenAI reads a chat completion or embeddings answer, or with
// responses a Responses API object (whose output items may be tool calls).
func parseOpenAI(body []byte, responses bool) (Result, error) {
	var (
		model, tier string
		u           *openAIUsage
		out         outputScan
	)
	s := scanner{data: body}
	err := walk(&s, func(name []byte) error {
		switch fieldIndex(name, openAIFields) {
		case 0:
			return s.stringValue(&model, false)
		case 1:
			return s.stringValue(&tier, true)
		case 2:
			if ok, err := newIfObject(&s, &u); !ok {
				return err
			}
			return decodeOpenAIUsage(&s, u)
		case 3:
			if responses {
				return out.scan(&s)
			}
		}
		return s.skipValue(1)
	})
	if err != nil {
		return Result{}, err
	}
	r := Result{Model: model, ServiceTier: tier}
	if u != nil {
		u.apply(&r)
	}
	if out.toolCalls() {
		r.Unpriced = UnpricedToolCalls
	}
	return r, nil
}

func parseAnthropic(body []byte) (Result, error) {
	var (
		model string
		u     *anthropicUsage
	)
	s := scanner{data: body}
	err := walk(&s, func(name []byte) error {
		switch fieldIndex(name, anthropicFields) {
		case 0:
			return s.stringValue(&model, false)
		case 1:
			if u != nil || s.peek() != '{' {
				// A repeated usage merges into the first: leave that to
				// encoding/json, as a null or a wrong type.
				return s.unmarshalUsage(&u)
			}
			start := s.off
			v := new(anthropicUsage)
			switch err := decodeAnthropicUsage(&s, v); err {
			case nil:
				u = v
				return nil
			case errFallback:
				s.off = start
				return s.unmarshalUsage(&u)
			default:
				return err
			}
		}
		return s.skipValue(1)
	})
	if err != nil {
		return Result{}, err
	}
	st := anthropicState{model: model}
	if u != nil {
		st.merge(u, true)
	}
	return st.result(), nil
}

// stringValue decodes a top-level string member into dst. A null leaves
// dst as it is, as it does a Go string field, unless nullClears (a *string
// field, which null resets to nil, read as "").
func (s *scanner) stringValue(dst *string, nullClears bool) error {
	raw, err := s.value(1)
	if err != nil {
		return err
	}
	str, null, err := decodeString(raw)
	switch {
	case err != nil:
		return err
	case !null:
		*dst = str
	case nullClears:
		*dst = ""
	}
	return nil
}

// unmarshalUsage decodes a top-level usage member into *u with
// json.Unmarshal, through a copy of *u: taking the address of the caller's
// pointer would move it to the heap on every call, fallback or not.
func (s *scanner) unmarshalUsage(u **anthropicUsage) error {
	v := *u
	err := s.unmarshalValue(&v)
	*u = v
	return err
}

// unmarshalValue decodes a top-level member into dst with json.Unmarshal,
// which is what decoding the whole body does for that field.
func (s *scanner) unmarshalValue(dst any) error {
	raw, err := s.value(1)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, dst)
}

// count is a token counter as the provider wrote it: null, a missing field,
// or anything but a non-negative integer leaves it unknown. Unknown is not
// an error, so one odd field does not cost the rest of the usage object.
type count edge.Count

func (c *count) UnmarshalJSON(b []byte) error {
	*c = count{}
	n, ok := parseCount(b)
	if ok {
		*c = count{N: n, Known: true}
	}
	return nil
}

// parseCount accepts a JSON integer in [0, MaxInt64] (a "-0" or a leading
// zero is not JSON and is refused).
func parseCount(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func (c count) edge() edge.Count { return edge.Count(c) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// sub returns a − b when both are known and the result is not negative;
// otherwise unknown.
func sub(a, b edge.Count) edge.Count {
	if !a.Known || !b.Known || b.N > a.N {
		return edge.Count{}
	}
	return edge.Known(a.N - b.N)
}

// add returns a + b when both are known and the sum does not overflow.
func add(a, b edge.Count) edge.Count {
	if !a.Known || !b.Known || a.N > 1<<63-1-b.N {
		return edge.Count{}
	}
	return edge.Known(a.N + b.N)
}
