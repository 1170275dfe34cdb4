package fakeprovider

import (
	"net/http"
	"strconv"
)

func appendAnthropicUsage(b []byte, u Usage, outputTokens int64) []byte {
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, u.InputTokens, 10)
	b = appendIntField(b, "cache_creation_input_tokens", u.CacheCreationTokens)
	b = appendIntField(b, "cache_read_input_tokens", u.CacheReadTokens)
	b = append(b, `,"cache_creation":{"ephemeral_5m_input_tokens":`...)
	b = strconv.AppendInt(b, u.CacheCreationTokens, 10)
	b = append(b, `,"ephemeral_1h_input_tokens":0}`...)
	b = appendIntField(b, "output_tokens", outputTokens)
	return append(b, `,"service_tier":"standard"}`...)
}

// messages serves POST /v1/messages.
func (ex *exchange) messages() error {
	p, ok := ex.prepare()
	if !ok {
		return nil
	}
	answer := p.answer()
	id := ex.newID("msg_fake")
	if p.req.Stream {
		return ex.messagesStream(p, id, answer)
	}
	u := anthropicUsage(p, answer)
	var err error
	withBuffer(func(b []byte) []byte {
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"type":"message","role":"assistant"`...)
		b = appendStringField(b, "model", p.req.Model)
		b = append(b, `,"content":[`...)
		stop := "end_turn"
		if p.tool != "" {
			stop = "tool_use"
			b = append(b, `{"type":"tool_use","id":`...)
			b = appendString(b, ex.newID("toolu_fake"))
			b = appendStringField(b, "name", p.tool)
			b = appendRawField(b, "input", answer)
			b = append(b, '}')
		} else {
			b = append(b, `{"type":"text","text":`...)
			b = appendString(b, answer)
			b = append(b, '}')
		}
		b = append(b, `],"stop_reason":"`...)
		b = append(b, stop...)
		b = append(b, `","stop_sequence":null,"usage":`...)
		b = appendAnthropicUsage(b, u, u.OutputTokens)
		b = append(b, "}\n"...)
		if !ex.stall {
			ex.setUsage(u)
		}
		err = ex.writeJSON(http.StatusOK, b)
		return b
	})
	return err
}

// messagesStream streams as Anthropic does: message_start (input usage and
// output_tokens 1), content_block_start, ping, the deltas, content_block_stop,
// message_delta (stop_reason and cumulative usage), message_stop.
func (ex *exchange) messagesStream(p prompt, id, answer string) error {
	padding := "."
	if p.tool != "" {
		padding = " "
	}
	answer, parts := splitChunks(answer, ex.chunks(p.req.Model), padding)
	u := anthropicUsage(p, answer)

	st := ex.startStream("text/event-stream")
	event := func(name string, body func(b []byte) []byte) error {
		b := st.begin(name)
		b = append(b, `{"type":"`...)
		b = append(b, name...)
		b = append(b, '"')
		b = body(b)
		return st.end(append(b, '}'))
	}
	none := func(b []byte) []byte { return b }
	err := event("message_start", func(b []byte) []byte {
		b = append(b, `,"message":{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"type":"message","role":"assistant"`...)
		b = appendStringField(b, "model", p.req.Model)
		b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
		b = appendAnthropicUsage(b, u, 1)
		return append(b, '}')
	})
	if err != nil {
		return err
	}
	err = event("content_block_start", func(b []byte) []byte {
		b = append(b, `,"index":0,"content_block":`...)
		if p.tool != "" {
			b = append(b, `{"type":"tool_use","id":`...)
			b = appendString(b, ex.newID("toolu_fake"))
			b = appendStringField(b, "name", p.tool)
			return append(b, `,"input":{}}`...)
		}
		return append(b, `{"type":"text","text":""}`...)
	})
	if err != nil {
		return err
	}
	if err := event("ping", none); err != nil {
		return err
	}
	for _, part := range parts {
		err := event("content_block_delta", func(b []byte) []byte {
			if p.tool != "" {
				b = append(b, `,"index":0,"delta":{"type":"input_json_delta","partial_json":`...)
			} else {
				b = append(b, `,"index":0,"delta":{"type":"text_delta","text":`...)
			}
			b = appendString(b, part)
			return append(b, '}')
		})
		if err != nil {
			return err
		}
	}
	if err := event("content_block_stop", func(b []byte) []byte { return append(b, `,"index":0`...) }); err != nil {
		return err
	}
	st.usage = &u
	err = event("message_delta", func(b []byte) []byte {
		if p.tool != "" {
			b = append(b, `,"delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":`...)
		} else {
			b = append(b, `,"delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":`...)
		}
		b = strconv.AppendInt(b, u.InputTokens, 10)
		b = appendIntField(b, "cache_creation_input_tokens", u.CacheCreationTokens)
		b = appendIntField(b, "cache_read_input_tokens", u.CacheReadTokens)
		b = appendIntField(b, "output_tokens", u.OutputTokens)
		return append(b, '}')
	})
	if err != nil {
		return err
	}
	if err := event("message_stop", none); err != nil {
		return err
	}
	return st.finish()
}

// countTokens serves POST /v1/messages/count_tokens.
func (ex *exchange) countTokens() error {
	p, ok := ex.prepare()
	if !ok {
		return nil
	}
	u := Usage{InputTokens: p.words + promptOverhead}
	b := make([]byte, 0, 32)
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, u.InputTokens, 10)
	b = append(b, "}\n"...)
	if !ex.stall {
		ex.setUsage(u)
	}
	return ex.writeJSON(http.StatusOK, b)
}

// DefaultAnthropicModels are listed by GET /v1/models to Anthropic clients.
var DefaultAnthropicModels = []string{"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"}

func (ex *exchange) anthropicModels() error {
	return ex.writeJSON(http.StatusOK, ex.s.anthropicModelsBody)
}

// appendAnthropicModels renders Anthropic's models list page.
func appendAnthropicModels(b []byte, ids []string) []byte {
	b = append(b, `{"data":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"model","id":`...)
		b = appendString(b, id)
		b = append(b, `,"display_name":`...)
		b = appendString(b, id)
		b = append(b, `,"created_at":"2025-09-29T00:00:00Z"}`...)
	}
	b = append(b, `],"has_more":false,"first_id":`...)
	b = appendString(b, ids[0])
	b = append(b, `,"last_id":`...)
	b = appendString(b, ids[len(ids)-1])
	return append(b, "}\n"...)
}
