package usage

import (
	"encoding/json"

	"github.com/persiv/codex/edge"
)

// anthropicMessage is a Messages API answer, and the "message" member of a
// message_start stream event.
type anthropicMessage struct {
	Model string          `json:"model"`
	Usage *anthropicUsage `json:"usage"`
}

// anthropicUsage is the usage object of a message, of message_start and
// (with fewer fields, all cumulative) of message_delta.
type anthropicUsage struct {
	InputTokens              count          `json:"input_tokens"`
	CacheReadInputTokens     count          `json:"cache_read_input_tokens"`
	CacheCreationInputTokens count          `json:"cache_creation_input_tokens"`
	OutputTokens             count          `json:"output_tokens"`
	CacheCreation            *cacheCreation `json:"cache_creation"`
	OutputTokensDetails      *struct {
		ThinkingTokens count `json:"thinking_tokens"`
	} `json:"output_tokens_details"`
	ServerToolUse  map[string]json.RawMessage `json:"server_tool_use"`
	ServiceTier    *string                    `json:"service_tier"`
	Speed          *string                    `json:"speed"`
	Iterations     *[]anthropicIteration      `json:"iterations"`
	FallbackCredit json.RawMessage            `json:"fallback_credit"`
}

var anthropicUsageFields = []string{
	"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens",
	"cache_creation", "output_tokens_details", "server_tool_use", "service_tier",
	"speed", "iterations", "fallback_credit",
}

// decodeAnthropicUsage reads a usage object (s at its '{') into u, a
// member of the top-level object, as json.Unmarshal would (see scanner).
// It returns errFallback for iterations, which it leaves to
// json.Unmarshal: rare, and a slice of structs, whose reuse on a repeated
// member is not worth copying here.
func decodeAnthropicUsage(s *scanner, u *anthropicUsage) error {
	const depth = 2 // the top-level object, the usage object
	_, err := s.object(func(name []byte) error {
		switch fieldIndex(name, anthropicUsageFields) {
		case 0:
			return s.countValue(&u.InputTokens, depth)
		case 1:
			return s.countValue(&u.CacheReadInputTokens, depth)
		case 2:
			return s.countValue(&u.CacheCreationInputTokens, depth)
		case 3:
			return s.countValue(&u.OutputTokens, depth)
		case 4:
			if ok, err := newIfObject(s, &u.CacheCreation); !ok {
				return err
			}
			return decodeCacheCreation(s, u.CacheCreation)
		case 5:
			if ok, err := newIfObject(s, &u.OutputTokensDetails); !ok {
				return err
			}
			return decodeOutputTokensDetails(s, u.OutputTokensDetails)
		case 6:
			return decodeServerToolUse(s, &u.ServerToolUse)
		case 7:
			return s.stringPtrValue(&u.ServiceTier, depth)
		case 8:
			return s.stringPtrValue(&u.Speed, depth)
		case 9:
			return errFallback
		case 10:
			// json.RawMessage keeps the bytes, null included; merge reads
			// them before Parse returns, so they need no copy.
			raw, err := s.value(depth)
			u.FallbackCredit = raw
			return err
		}
		return s.skipValue(depth)
	})
	return err
}

var (
	cacheCreationFields       = []string{"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}
	outputTokensDetailsFields = []string{"thinking_tokens"}
)

func decodeCacheCreation(s *scanner, c *cacheCreation) error {
	const depth = 3
	_, err := s.object(func(name []byte) error {
		switch fieldIndex(name, cacheCreationFields) {
		case 0:
			return s.countValue(&c.Ephemeral5m, depth)
		case 1:
			return s.countValue(&c.Ephemeral1h, depth)
		}
		return s.skipValue(depth)
	})
	return err
}

func decodeOutputTokensDetails(s *scanner, d *struct {
	ThinkingTokens count `json:"thinking_tokens"`
}) error {
	const depth = 3
	_, err := s.object(func(name []byte) error {
		if fieldIndex(name, outputTokensDetailsFields) == 0 {
			return s.countValue(&d.ThinkingTokens, depth)
		}
		return s.skipValue(depth)
	})
	return err
}

// decodeServerToolUse reads server_tool_use into a map as encoding/json
// does: entries are added to a map already there, and null clears it.
func decodeServerToolUse(s *scanner, m *map[string]json.RawMessage) error {
	const depth = 3
	if s.peek() == '{' && *m == nil {
		*m = make(map[string]json.RawMessage)
	}
	null, err := s.object(func(name []byte) error {
		raw, err := s.value(depth)
		if err != nil {
			return err
		}
		// The bytes need no copy, as for fallback_credit.
		(*m)[string(name)] = raw
		return nil
	})
	if null {
		*m = nil
	}
	return err
}

type anthropicIteration struct {
	Type                     string         `json:"type"`
	InputTokens              count          `json:"input_tokens"`
	CacheReadInputTokens     count          `json:"cache_read_input_tokens"`
	CacheCreationInputTokens count          `json:"cache_creation_input_tokens"`
	OutputTokens             count          `json:"output_tokens"`
	CacheCreation            *cacheCreation `json:"cache_creation"`
}

// cacheCreation splits cache_creation_input_tokens by lifetime.
type cacheCreation struct {
	Ephemeral5m count `json:"ephemeral_5m_input_tokens"`
	Ephemeral1h count `json:"ephemeral_1h_input_tokens"`
}

// oneHour returns the 1-hour share of writes, known only when the split
// accounts for exactly the writes reported beside it: message_delta may
// update the writes without re-sending the split, and a stale split must
// not price new writes.
func (c *cacheCreation) oneHour(writes count) edge.Count {
	switch {
	case !writes.Known:
		return edge.Count{}
	case writes.N == 0:
		return edge.Known(0)
	case c == nil:
		return edge.Count{}
	}
	if sum := add(c.Ephemeral5m.edge(), c.Ephemeral1h.edge()); !sum.Known || sum.N != writes.N {
		return edge.Count{}
	}
	return c.Ephemeral1h.edge()
}

// freeServerTools are server_tool_use counters that carry no per-call fee
// (web fetch bills only the tokens it adds).
var freeServerTools = map[string]bool{"web_fetch_requests": true}

// anthropicState folds a message's usage objects: the latest reported value
// of each field wins, since message_delta repeats cumulative totals.
type anthropicState struct {
	model           string
	in, read, write count
	split           *cacheCreation // the latest split of write by lifetime
	out, thinking   count
	// outFinal is set once the output count is final: in a JSON answer at
	// once, in a stream only by a message_delta. The output_tokens of
	// message_start is a running figure, not what an interrupted stream
	// bills.
	outFinal    bool
	tier, speed string
	iterations  []anthropicIteration
	paidTools   bool
	fallback    bool
	seen        bool
}

// merge takes the fields u reports; final says whether its output_tokens
// is the final count.
func (s *anthropicState) merge(u *anthropicUsage, final bool) {
	s.seen = true
	take := func(dst *count, c count) {
		if c.Known {
			*dst = c
		}
	}
	take(&s.in, u.InputTokens)
	take(&s.read, u.CacheReadInputTokens)
	take(&s.write, u.CacheCreationInputTokens)
	if u.OutputTokens.Known {
		s.out = u.OutputTokens
		s.outFinal = final
	}
	if u.CacheCreation != nil {
		s.split = u.CacheCreation
	}
	if u.OutputTokensDetails != nil {
		take(&s.thinking, u.OutputTokensDetails.ThinkingTokens)
	}
	if u.ServiceTier != nil {
		s.tier = *u.ServiceTier
	}
	if u.Speed != nil {
		s.speed = *u.Speed
	}
	if u.Iterations != nil {
		s.iterations = *u.Iterations
	}
	for k, v := range u.ServerToolUse {
		if freeServerTools[k] {
			continue
		}
		if string(v) == "null" {
			continue
		}
		// A paid tool was used, or a counter this package cannot read.
		if n, ok := parseCount(v); !ok || n > 0 {
			s.paidTools = true
		}
	}
	if len(u.FallbackCredit) > 0 && string(u.FallbackCredit) != "null" {
		s.fallback = true
	}
}

func (s *anthropicState) result() Result {
	r := Result{Model: s.model, Reported: s.seen, ServiceTier: s.tier, Speed: s.speed}
	if !s.seen {
		return r
	}
	out := s.out
	if !s.outFinal {
		out = count{}
	}
	u := edge.Usage{
		Input:       s.in.edge(),
		CachedInput: s.read.edge(),
		CacheWrite:  s.write.edge(),
		Output:      out.edge(),
		Reasoning:   s.thinking.edge(),
	}
	w1h := s.split.oneHour(s.write)
	for _, it := range s.iterations {
		switch it.Type {
		case "message":
			// Already in the top-level fields.
		case "compaction":
			// Billed, but not part of the top-level fields.
			u.Input = add(u.Input, it.InputTokens.edge())
			u.CachedInput = add(u.CachedInput, it.CacheReadInputTokens.edge())
			u.CacheWrite = add(u.CacheWrite, it.CacheCreationInputTokens.edge())
			u.Output = add(u.Output, it.OutputTokens.edge())
			w1h = add(w1h, it.CacheCreation.oneHour(it.CacheCreationInputTokens))
		case "advisor_message", "fallback_message":
			r.Unpriced = UnpricedOtherModels
		default:
			r.Unpriced = UnpricedIterations
		}
	}
	if s.fallback {
		r.Unpriced = UnpricedOtherModels
	}
	if s.paidTools {
		r.Unpriced = UnpricedToolCalls
	}
	// A 1-hour share larger than all writes is no share at all.
	if w1h.Known && (!u.CacheWrite.Known || w1h.N > u.CacheWrite.N) {
		w1h = edge.Count{}
	}
	r.Usage = u
	r.CacheWrite1h = w1h
	return r
}

// anthropicEvent is a message_start or message_delta stream event.
type anthropicEvent struct {
	Type    string            `json:"type"`
	Message *anthropicMessage `json:"message"`
	Usage   *anthropicUsage   `json:"usage"`
}
