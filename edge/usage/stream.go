package usage

import (
	"bytes"
	"encoding/json"
)

// Stream follows the usage of one server-sent event stream. Feed it every
// event with Observe, then read Result. It is not safe for concurrent use.
//
// Observe is on the streaming hot path: events that cannot carry usage are
// recognised by their event name or a byte scan and never unmarshalled. The
// scan looks for a member named "usage" (see valueOf); a usage member
// nested deeper than expected costs one unmarshal, not a wrong figure,
// because the unmarshal reads only the fields at their defined places.
type Stream struct {
	kind  Kind
	model string
	res   Result // OpenAI: the latest usage-bearing event's figures
	anth  anthropicState
}

// NewStream returns a tracker for a stream of kind k. For a kind that does
// not stream the tracker ignores every event and its Result reports
// nothing.
func NewStream(k Kind) *Stream { return &Stream{kind: k} }

var (
	keyUsage = []byte(`"usage"`)
	keyModel = []byte(`"model"`)
)

// Observe takes one SSE event: its event name (empty when the event had no
// "event:" line) and its data (the joined "data:" lines). It returns
// usageOnly: true for an OpenAI chat chunk that carries usage and no
// choices, which the proxy drops when it asked for usage on the client's
// behalf (stream_options.include_usage).
func (s *Stream) Observe(event string, data []byte) (usageOnly bool) {
	switch s.kind {
	case OpenAIChat:
		return s.observeChat(data)
	case OpenAIResponses:
		s.observeResponses(event, data)
	case AnthropicMessages:
		s.observeMessages(event, data)
	}
	return false
}

func (s *Stream) observeChat(data []byte) bool {
	if s.model == "" {
		s.model = scanString(data, keyModel)
	}
	v := valueOf(data, keyUsage)
	if len(v) == 0 || v[0] != '{' {
		return false // no usage, or "usage":null on an ordinary chunk
	}
	var c chatChunk
	if json.Unmarshal(data, &c) != nil || c.Usage == nil {
		return false
	}
	r := Result{Model: c.Model, ServiceTier: deref(c.ServiceTier)}
	if r.Model == "" {
		r.Model = s.model
	}
	c.Usage.apply(&r)
	s.res = r
	return noChoices(c.Choices)
}

// noChoices reports whether a choices member is absent, null or empty.
func noChoices(raw json.RawMessage) bool {
	v := skipSpace(raw)
	switch {
	case len(v) == 0 || string(v) == "null":
		return true
	case v[0] == '[':
		v = skipSpace(v[1:])
		return len(v) > 0 && v[0] == ']'
	}
	return false
}

// Event types that can carry what a Stream looks for: for the Responses
// API a response object with a model or a usage, for Anthropic a usage.
var (
	responseEvents = []string{"response.created", "response.completed", "response.failed", "response.incomplete"}
	messageEvents  = []string{"message_start", "message_delta"}
)

func isOneOf(t string, names []string) bool {
	for _, n := range names {
		if t == n {
			return true
		}
	}
	return false
}

// maybe reports whether an event may be one of names: by its event name,
// else by the "type" that opens its data, else (data of another shape) by
// whether it holds a usage key or the extra key. It does not allocate.
func maybe(event string, data []byte, names []string, extra []byte) bool {
	if event != "" {
		return isOneOf(event, names)
	}
	if t := dataType(data); t != nil {
		for _, n := range names {
			if string(t) == n {
				return true
			}
		}
		return false
	}
	return bytes.Contains(data, keyUsage) || (extra != nil && bytes.Contains(data, extra))
}

func (s *Stream) observeResponses(event string, data []byte) {
	if !maybe(event, data, responseEvents, keyModel) {
		return
	}
	var e responseEvent
	if json.Unmarshal(data, &e) != nil || e.Response == nil {
		return
	}
	if e.Type == "" {
		e.Type = event
	}
	if !isOneOf(e.Type, responseEvents) {
		return
	}
	if e.Type == "response.created" {
		if s.model == "" {
			s.model = e.Response.Model
		}
		return
	}
	r := Result{Model: s.model}
	e.Response.apply(&r)
	s.res = r
}

func (s *Stream) observeMessages(event string, data []byte) {
	if !maybe(event, data, messageEvents, nil) {
		return
	}
	var e anthropicEvent
	if json.Unmarshal(data, &e) != nil {
		return
	}
	if e.Type == "" {
		e.Type = event
	}
	switch e.Type {
	case "message_start":
		if e.Message == nil {
			return
		}
		if e.Message.Model != "" {
			s.anth.model = e.Message.Model
		}
		if e.Message.Usage != nil {
			s.anth.merge(e.Message.Usage, false)
		}
	case "message_delta":
		if e.Usage != nil {
			s.anth.merge(e.Usage, true)
		}
	}
}

// Result returns the usage seen so far. For a stream that ended early
// (client gone, upstream cut) it holds what was reported before the end:
// an Anthropic stream without a message_delta has an unknown Output, since
// the provider bills the tokens generated until it stopped; an OpenAI
// stream without its final usage event has no usage at all.
func (s *Stream) Result() Result {
	switch s.kind {
	case OpenAIChat, OpenAIResponses:
		r := s.res
		if r.Model == "" {
			r.Model = s.model
		}
		return r
	case AnthropicMessages:
		return s.anth.result()
	}
	return Result{}
}

// dataType returns the value of a "type" member that opens the event data,
// as both providers write their events ({"type":"…",…}); nil otherwise.
func dataType(data []byte) []byte {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(data, []byte(prefix)) {
		return nil
	}
	rest := data[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return nil
	}
	return rest[:end]
}

// valueOf returns data from the value of the first member named key (a
// quoted name) on, or nil. In valid JSON a quoted name followed by a colon
// is a member name: a quote inside a string is escaped, so the name cannot
// be matched inside one, and a string value equal to the name is followed
// by something other than a colon.
func valueOf(data, key []byte) []byte {
	for {
		i := bytes.Index(data, key)
		if i < 0 {
			return nil
		}
		data = skipSpace(data[i+len(key):])
		if len(data) > 0 && data[0] == ':' {
			return skipSpace(data[1:])
		}
	}
}

// scanString returns the string value of the first member named key, or
// empty when there is none or it holds escapes (an ordinary model name has
// none; the final usage event supplies the model in that case).
func scanString(data, key []byte) string {
	v := valueOf(data, key)
	if len(v) == 0 || v[0] != '"' {
		return ""
	}
	v = v[1:]
	end := bytes.IndexByte(v, '"')
	if end <= 0 || bytes.IndexByte(v[:end], '\\') >= 0 {
		return ""
	}
	return string(v[:end])
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
