package fakeprovider

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

var jsonPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// withBuffer runs f with a pooled buffer sized for a typical response.
func withBuffer(f func(b []byte) []byte) {
	bp := jsonPool.Get().(*[]byte)
	b := f((*bp)[:0])
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		jsonPool.Put(bp)
	}
}

func (ex *exchange) newID(prefix string) string {
	return prefix + strconv.FormatUint(ex.id, 10)
}

func appendOpenAIUsage(b []byte, u Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, u.InputTokens, 10)
	b = appendIntField(b, "completion_tokens", u.OutputTokens)
	b = appendIntField(b, "total_tokens", u.TotalTokens())
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, u.CachedTokens, 10)
	b = append(b, `,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":`...)
	b = strconv.AppendInt(b, u.ReasoningTokens, 10)
	return append(b, `,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
}

// chatCompletions serves POST /v1/chat/completions.
func (ex *exchange) chatCompletions() error {
	p, ok := ex.prepare()
	if !ok {
		return nil
	}
	answer := p.answer()
	created := time.Now().Unix()
	if p.req.Stream {
		return ex.chatStream(p, answer, created)
	}
	u := openAIUsage(p, answer)
	var err error
	withBuffer(func(b []byte) []byte {
		b = append(b, `{"id":`...)
		b = appendString(b, ex.newID("chatcmpl-fake"))
		b = append(b, `,"object":"chat.completion","created":`...)
		b = strconv.AppendInt(b, created, 10)
		b = appendStringField(b, "model", p.req.Model)
		b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant"`...)
		finish := "stop"
		if p.tool != "" {
			finish = "tool_calls"
			b = append(b, `,"content":null,"tool_calls":[{"id":`...)
			b = appendString(b, ex.newID("call_fake"))
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendString(b, p.tool)
			b = appendStringField(b, "arguments", answer)
			b = append(b, `}}]`...)
		} else {
			b = appendStringField(b, "content", answer)
		}
		b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}],"usage":`...)
		b = appendOpenAIUsage(b, u)
		b = append(b, `,"service_tier":"default","system_fingerprint":"fp_fake"}`...)
		b = append(b, '\n')
		if !ex.stall {
			ex.setUsage(u)
		}
		err = ex.writeJSON(http.StatusOK, b)
		return b
	})
	return err
}

// chatStream streams a chat completion as OpenAI does: a role chunk, the
// deltas, a chunk carrying finish_reason, the usage chunk (only when
// stream_options.include_usage is set; other chunks then carry
// "usage":null), and data: [DONE].
func (ex *exchange) chatStream(p prompt, answer string, created int64) error {
	includeUsage := p.req.StreamOptions != nil && p.req.StreamOptions.IncludeUsage
	padding := "."
	if p.tool != "" {
		padding = " "
	}
	answer, parts := splitChunks(answer, ex.chunks(p.req.Model), padding)
	u := openAIUsage(p, answer)

	prefix := make([]byte, 0, 192)
	prefix = append(prefix, `{"id":`...)
	prefix = appendString(prefix, ex.newID("chatcmpl-fake"))
	prefix = append(prefix, `,"object":"chat.completion.chunk","created":`...)
	prefix = strconv.AppendInt(prefix, created, 10)
	prefix = appendStringField(prefix, "model", p.req.Model)
	prefix = append(prefix, `,"service_tier":"default","system_fingerprint":"fp_fake","choices":[`...)
	suffix := "]}"
	if includeUsage {
		suffix = `],"usage":null}`
	}

	st := ex.startStream("text/event-stream; charset=utf-8")
	chunk := func(choice func(b []byte) []byte) error {
		b := append(st.begin(""), prefix...)
		b = choice(b)
		b = append(b, suffix...)
		return st.end(b)
	}
	// First chunk: the role, and for a tool call its id and name.
	err := chunk(func(b []byte) []byte {
		b = append(b, `{"index":0,"delta":{"role":"assistant",`...)
		if p.tool != "" {
			b = append(b, `"content":null,"tool_calls":[{"index":0,"id":`...)
			b = appendString(b, ex.newID("call_fake"))
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendString(b, p.tool)
			b = append(b, `,"arguments":""}}],`...)
		} else {
			b = append(b, `"content":"",`...)
		}
		return append(b, `"refusal":null},"logprobs":null,"finish_reason":null}`...)
	})
	if err != nil {
		return err
	}
	for _, part := range parts {
		err := chunk(func(b []byte) []byte {
			if p.tool != "" {
				b = append(b, `{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`...)
				b = appendString(b, part)
				b = append(b, `}}]}`...)
			} else {
				b = append(b, `{"index":0,"delta":{"content":`...)
				b = appendString(b, part)
				b = append(b, '}')
			}
			return append(b, `,"logprobs":null,"finish_reason":null}`...)
		})
		if err != nil {
			return err
		}
	}
	finish := `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`
	if p.tool != "" {
		finish = `{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}`
	}
	if err := chunk(func(b []byte) []byte { return append(b, finish...) }); err != nil {
		return err
	}
	if includeUsage {
		b := append(st.begin(""), prefix...)
		b = append(b, `],"usage":`...)
		b = appendOpenAIUsage(b, u)
		b = append(b, '}')
		st.usage = &u
		if err := st.end(b); err != nil {
			return err
		}
	}
	if err := st.end(append(st.begin(""), "[DONE]"...)); err != nil {
		return err
	}
	return st.finish()
}

// responses serves POST /v1/responses.
func (ex *exchange) responses() error {
	p, ok := ex.prepare()
	if !ok {
		return nil
	}
	answer := p.answer()
	r := responseState{
		id:      ex.newID("resp_fake"),
		itemID:  ex.newID("msg_fake"),
		callID:  ex.newID("call_fake"),
		created: time.Now().Unix(),
		p:       &p,
	}
	if p.tool != "" {
		r.itemID = ex.newID("fc_fake")
	}
	if p.req.Stream {
		return ex.responsesStream(&r, answer)
	}
	u := openAIUsage(p, answer)
	r.answer, r.usage = answer, &u
	var err error
	withBuffer(func(b []byte) []byte {
		b = r.appendResponse(b, "completed")
		b = append(b, '\n')
		if !ex.stall {
			ex.setUsage(u)
		}
		err = ex.writeJSON(http.StatusOK, b)
		return b
	})
	return err
}

// responseState is what a Responses API answer is built from.
type responseState struct {
	id, itemID, callID string
	created            int64
	p                  *prompt
	answer             string // set once the output is complete
	usage              *Usage // set once the response is complete
}

// appendResponse appends the response object with status; the output is
// empty until r.answer is set.
func (r *responseState) appendResponse(b []byte, status string) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, r.id)
	b = append(b, `,"object":"response","created_at":`...)
	b = strconv.AppendInt(b, r.created, 10)
	b = appendStringField(b, "status", status)
	b = append(b, `,"background":false,"error":null,"incomplete_details":null,"instructions":`...)
	if in := string(r.p.req.Instructions); in != "" {
		b = appendString(b, in)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"max_output_tokens":null`...)
	b = appendStringField(b, "model", r.p.req.Model)
	b = append(b, `,"output":[`...)
	if r.answer != "" {
		b = r.appendItem(b, "completed")
	}
	b = append(b, `],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":`...)
	if r.usage != nil {
		b = append(b, `{"input_tokens":`...)
		b = strconv.AppendInt(b, r.usage.InputTokens, 10)
		b = append(b, `,"input_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, r.usage.CachedTokens, 10)
		b = append(b, '}')
		b = appendIntField(b, "output_tokens", r.usage.OutputTokens)
		b = append(b, `,"output_tokens_details":{"reasoning_tokens":`...)
		b = strconv.AppendInt(b, r.usage.ReasoningTokens, 10)
		b = append(b, '}')
		b = appendIntField(b, "total_tokens", r.usage.TotalTokens())
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	return append(b, `,"user":null,"metadata":{}}`...)
}

// appendItem appends the output item: a message, or a function call when
// the request had tools. The content is r.answer ("" while in progress).
func (r *responseState) appendItem(b []byte, status string) []byte {
	if r.p.tool != "" {
		b = append(b, `{"id":`...)
		b = appendString(b, r.itemID)
		b = append(b, `,"type":"function_call"`...)
		b = appendStringField(b, "status", status)
		b = appendStringField(b, "arguments", r.answer)
		b = appendStringField(b, "call_id", r.callID)
		b = appendStringField(b, "name", r.p.tool)
		return append(b, '}')
	}
	b = append(b, `{"id":`...)
	b = appendString(b, r.itemID)
	b = append(b, `,"type":"message"`...)
	b = appendStringField(b, "status", status)
	b = append(b, `,"content":[`...)
	if status == "completed" {
		b = appendOutputText(b, r.answer)
	}
	return append(b, `],"role":"assistant"}`...)
}

func appendOutputText(b []byte, text string) []byte {
	b = append(b, `{"type":"output_text","annotations":[],"logprobs":[],"text":`...)
	b = appendString(b, text)
	return append(b, '}')
}

// responsesStream streams the Responses API event sequence, each event with
// its event: line and sequence_number.
func (ex *exchange) responsesStream(r *responseState, answer string) error {
	padding := "."
	if r.p.tool != "" {
		padding = " "
	}
	answer, parts := splitChunks(answer, ex.chunks(r.p.req.Model), padding)
	u := openAIUsage(*r.p, answer)

	st := ex.startStream("text/event-stream; charset=utf-8")
	seq := int64(0)
	event := func(name string, body func(b []byte) []byte) error {
		b := st.begin(name)
		b = append(b, `{"type":"`...)
		b = append(b, name...)
		b = append(b, `","sequence_number":`...)
		b = strconv.AppendInt(b, seq, 10)
		seq++
		b = body(b)
		return st.end(append(b, '}'))
	}
	itemRef := func(b []byte) []byte {
		b = appendStringField(b, "item_id", r.itemID)
		b = append(b, `,"output_index":0`...)
		if r.p.tool == "" {
			b = append(b, `,"content_index":0`...)
		}
		return b
	}
	steps := []struct {
		name string
		body func(b []byte) []byte
	}{
		{"response.created", func(b []byte) []byte {
			return r.appendResponse(append(b, `,"response":`...), "in_progress")
		}},
		{"response.in_progress", func(b []byte) []byte {
			return r.appendResponse(append(b, `,"response":`...), "in_progress")
		}},
		{"response.output_item.added", func(b []byte) []byte {
			b = append(b, `,"output_index":0,"item":`...)
			return r.appendItem(b, "in_progress")
		}},
	}
	if r.p.tool == "" {
		steps = append(steps, struct {
			name string
			body func(b []byte) []byte
		}{"response.content_part.added", func(b []byte) []byte {
			b = append(itemRef(b), `,"part":`...)
			return appendOutputText(b, "")
		}})
	}
	for _, s := range steps {
		if err := event(s.name, s.body); err != nil {
			return err
		}
	}
	deltaName := "response.output_text.delta"
	if r.p.tool != "" {
		deltaName = "response.function_call_arguments.delta"
	}
	for _, part := range parts {
		err := event(deltaName, func(b []byte) []byte {
			b = appendStringField(itemRef(b), "delta", part)
			if r.p.tool == "" {
				b = append(b, `,"logprobs":[]`...)
			}
			return b
		})
		if err != nil {
			return err
		}
	}
	r.answer = answer
	var err error
	if r.p.tool != "" {
		err = event("response.function_call_arguments.done", func(b []byte) []byte {
			b = appendStringField(itemRef(b), "name", r.p.tool)
			return appendStringField(b, "arguments", answer)
		})
	} else {
		err = event("response.output_text.done", func(b []byte) []byte {
			b = appendStringField(itemRef(b), "text", answer)
			return append(b, `,"logprobs":[]`...)
		})
		if err == nil {
			err = event("response.content_part.done", func(b []byte) []byte {
				b = append(itemRef(b), `,"part":`...)
				return appendOutputText(b, answer)
			})
		}
	}
	if err != nil {
		return err
	}
	err = event("response.output_item.done", func(b []byte) []byte {
		b = append(b, `,"output_index":0,"item":`...)
		return r.appendItem(b, "completed")
	})
	if err != nil {
		return err
	}
	r.usage = &u
	st.usage = &u
	err = event("response.completed", func(b []byte) []byte {
		return r.appendResponse(append(b, `,"response":`...), "completed")
	})
	if err != nil {
		return err
	}
	return st.finish()
}

// models serves GET /v1/models from the list rendered by New.
func (ex *exchange) models() error {
	return ex.writeJSON(http.StatusOK, ex.s.modelsBody)
}

func appendModels(b []byte, ids []string) []byte {
	b = append(b, `{"object":"list","data":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"object":"model","created":1686935002,"owned_by":"system"}`...)
	}
	return append(b, "]}\n"...)
}
