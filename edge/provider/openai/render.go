package openai

import (
	"encoding/json"

	"github.com/persiv/codex/edge/provider"
)

// Rendering an answer stream ↔ JSON, for the cache: text, tool calls,
// usage and finish reason carry over; anything else (logprobs, audio,
// refusals, reasoning items) makes an answer not renderable.

// raw is a JSON value kept as sent.
type raw = json.RawMessage

var rawNull = raw("null")

func isNull(r raw) bool { return len(r) == 0 || string(r) == "null" }

// --- OpenAI chat completions ---

type chatToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatMessage struct {
	Role        string         `json:"role"`
	Content     *string        `json:"content"`
	ToolCalls   []chatToolCall `json:"tool_calls,omitempty"`
	Refusal     raw            `json:"refusal"`
	Annotations raw            `json:"annotations,omitempty"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	Logprobs     raw         `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             raw          `json:"usage,omitempty"`
	ServiceTier       raw          `json:"service_tier,omitempty"`
	SystemFingerprint raw          `json:"system_fingerprint,omitempty"`
}

type chatDelta struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
	Refusal   raw            `json:"refusal,omitempty"`
	// Anything else (audio, reasoning fields) makes the stream unrenderable.
	Audio raw `json:"audio,omitempty"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     raw       `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	ServiceTier       raw               `json:"service_tier,omitempty"`
	SystemFingerprint raw               `json:"system_fingerprint,omitempty"`
	Choices           []chatChunkChoice `json:"choices"`
	Usage             raw               `json:"usage,omitempty"`
}

func chatToJSON(evs []provider.Event) ([]byte, error) {
	var f chatFold
	for _, ev := range evs {
		if string(ev.Data) == "[DONE]" {
			f.done = true
			continue
		}
		var c chatChunk
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			return nil, provider.NotRenderable("chat chunk: %v", err)
		}
		if err := f.add(&c); err != nil {
			return nil, err
		}
	}
	return f.completion()
}

// chatFold folds the chunks of a chat completion stream into the
// completion they make up.
type chatFold struct {
	out     chatCompletion // all but the choices
	choices []*chatChoiceFold
	done    bool // [DONE] was seen
}

// chatChoiceFold is a choice being streamed.
type chatChoiceFold struct {
	role    string
	content *string
	calls   []chatToolCall
	finish  string
}

// add folds in one chunk.
func (f *chatFold) add(c *chatChunk) error {
	f.out.ID, f.out.Created, f.out.Model = c.ID, c.Created, c.Model
	f.out.ServiceTier, f.out.SystemFingerprint = c.ServiceTier, c.SystemFingerprint
	if !isNull(c.Usage) {
		f.out.Usage = c.Usage
	}
	for _, ch := range c.Choices {
		if !isNull(ch.Logprobs) || len(ch.Delta.Audio) > 0 || (len(ch.Delta.Refusal) > 0 && !isNull(ch.Delta.Refusal)) {
			return provider.NotRenderable("chat chunk with logprobs, audio or refusal")
		}
		if ch.Index < 0 || ch.Index > 127 {
			return provider.NotRenderable("choice index %d", ch.Index)
		}
		for len(f.choices) <= ch.Index {
			f.choices = append(f.choices, &chatChoiceFold{})
		}
		if err := f.choices[ch.Index].add(&ch); err != nil {
			return err
		}
	}
	return nil
}

// add folds in the choice's part of a chunk.
func (a *chatChoiceFold) add(ch *chatChunkChoice) error {
	if ch.Delta.Role != "" {
		a.role = ch.Delta.Role
	}
	if ch.Delta.Content != nil {
		s := ""
		if a.content != nil {
			s = *a.content
		}
		s += *ch.Delta.Content
		a.content = &s
	}
	for _, tc := range ch.Delta.ToolCalls {
		if err := a.addToolCall(&tc); err != nil {
			return err
		}
	}
	if ch.FinishReason != nil {
		a.finish = *ch.FinishReason
	}
	return nil
}

// addToolCall folds in a tool call delta: the first carries the id, type
// and name, each one a piece of the arguments.
func (a *chatChoiceFold) addToolCall(tc *chatToolCall) error {
	i := 0
	if tc.Index != nil {
		i = *tc.Index
	}
	if i < 0 || i > 127 {
		return provider.NotRenderable("tool call index %d", i)
	}
	for len(a.calls) <= i {
		a.calls = append(a.calls, chatToolCall{})
	}
	t := &a.calls[i]
	if tc.ID != "" {
		t.ID = tc.ID
	}
	if tc.Type != "" {
		t.Type = tc.Type
	}
	if tc.Function.Name != "" {
		t.Function.Name = tc.Function.Name
	}
	t.Function.Arguments += tc.Function.Arguments
	return nil
}

// completion returns the completion the stream made up, as JSON.
func (f *chatFold) completion() ([]byte, error) {
	if !f.done {
		return nil, provider.NotRenderable("chat stream without [DONE]")
	}
	out := f.out
	out.Object = "chat.completion"
	for i, a := range f.choices {
		if a.finish == "" {
			return nil, provider.NotRenderable("choice %d has no finish_reason", i)
		}
		if a.role == "" {
			a.role = "assistant"
		}
		if a.content != nil && *a.content == "" && len(a.calls) > 0 {
			a.content = nil // OpenAI sends null content with tool calls
		}
		out.Choices = append(out.Choices, chatChoice{Index: i, Message: chatMessage{
			Role: a.role, Content: a.content, ToolCalls: a.calls, Refusal: rawNull, Annotations: raw("[]"),
		}, Logprobs: rawNull, FinishReason: a.finish})
	}
	if out.Choices == nil {
		out.Choices = []chatChoice{}
	}
	return json.Marshal(out)
}

func chatToStream(body []byte, w *provider.StreamWriter) error {
	var c chatCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		return provider.NotRenderable("chat completion: %v", err)
	}
	if err := chatStreamable(body, &c); err != nil {
		return err
	}
	chunk := func(choices []chatChunkChoice) chatChunk {
		return chatChunk{ID: c.ID, Object: "chat.completion.chunk", Created: c.Created, Model: c.Model,
			ServiceTier: c.ServiceTier, SystemFingerprint: c.SystemFingerprint, Choices: choices, Usage: rawNull}
	}
	for _, ch := range c.Choices {
		w.Event("", chunk([]chatChunkChoice{{Index: ch.Index, Delta: chatMessageDelta(ch.Message), Logprobs: rawNull}}), false)
	}
	for _, ch := range c.Choices {
		fr := ch.FinishReason
		w.Event("", chunk([]chatChunkChoice{{Index: ch.Index, Logprobs: rawNull, FinishReason: &fr}}), false)
	}
	if !isNull(c.Usage) {
		u := chunk([]chatChunkChoice{})
		u.Usage = c.Usage
		w.Event("", u, true)
	}
	w.Event("", []byte("[DONE]"), false)
	return w.Err
}

// chatStreamable reports, as ErrNotRenderable, what in a completion a
// stream cannot carry: logprobs, a refusal, or message fields it does not
// know.
func chatStreamable(body []byte, c *chatCompletion) error {
	var extra map[string]raw
	_ = json.Unmarshal(body, &extra)
	for _, ch := range c.Choices {
		if !isNull(ch.Logprobs) || (len(ch.Message.Refusal) > 0 && !isNull(ch.Message.Refusal)) {
			return provider.NotRenderable("chat completion with logprobs or refusal")
		}
	}
	for _, msg := range extractChoices(extra) {
		for k := range msg {
			switch k {
			case "role", "content", "tool_calls", "refusal", "annotations":
			default:
				return provider.NotRenderable("chat message field %q", k)
			}
		}
	}
	return nil
}

// chatMessageDelta returns the delta that streams a choice's message whole.
func chatMessageDelta(m chatMessage) chatDelta {
	d := chatDelta{Role: m.Role, Refusal: rawNull}
	if d.Role == "" {
		d.Role = "assistant"
	}
	if m.Content != nil || len(m.ToolCalls) == 0 {
		s := ""
		if m.Content != nil {
			s = *m.Content
		}
		d.Content = &s
	}
	for i, tc := range m.ToolCalls {
		tc.Index = &i
		d.ToolCalls = append(d.ToolCalls, tc)
	}
	return d
}

func extractChoices(doc map[string]raw) []map[string]raw {
	var choices []struct {
		Message map[string]raw `json:"message"`
	}
	_ = json.Unmarshal(doc["choices"], &choices)
	out := make([]map[string]raw, 0, len(choices))
	for _, c := range choices {
		out = append(out, c.Message)
	}
	return out
}

// --- OpenAI Responses ---

func responsesToJSON(evs []provider.Event) ([]byte, error) {
	for _, ev := range evs {
		var e struct {
			Type     string `json:"type"`
			Response raw    `json:"response"`
		}
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return nil, provider.NotRenderable("responses event: %v", err)
		}
		if e.Type == "response.completed" && !isNull(e.Response) {
			return append([]byte(nil), e.Response...), nil
		}
	}
	return nil, provider.NotRenderable("responses stream without response.completed")
}

func responsesToStream(body []byte, w *provider.StreamWriter) error {
	var resp map[string]raw
	if err := json.Unmarshal(body, &resp); err != nil {
		return provider.NotRenderable("response: %v", err)
	}
	var status string
	_ = json.Unmarshal(resp["status"], &status)
	if status != "completed" {
		return provider.NotRenderable("response status %q", status)
	}
	var items []map[string]raw
	if err := json.Unmarshal(resp["output"], &items); err != nil {
		return provider.NotRenderable("response output: %v", err)
	}
	rs := responsesStream{w: w}
	pending := make(map[string]raw, len(resp))
	for k, v := range resp {
		pending[k] = v
	}
	pending["status"] = raw(`"in_progress"`)
	pending["output"] = raw("[]")
	pending["usage"] = rawNull
	rs.emit("response.created", map[string]any{"response": pending})
	rs.emit("response.in_progress", map[string]any{"response": pending})
	for oi, item := range items {
		if err := rs.item(oi, item); err != nil {
			return err
		}
	}
	rs.emit("response.completed", map[string]any{"response": resp})
	return w.Err
}

// responsesStream writes the events of a Responses stream, numbering them.
type responsesStream struct {
	w   *provider.StreamWriter
	seq int
}

// emit writes an event of type typ with fields.
func (rs *responsesStream) emit(typ string, fields map[string]any) {
	m := map[string]any{"type": typ, "sequence_number": rs.seq}
	for k, v := range fields {
		m[k] = v
	}
	rs.seq++
	rs.w.Event(typ, m, false)
}

// item writes the events that stream output item oi.
func (rs *responsesStream) item(oi int, item map[string]raw) error {
	var typ, id string
	_ = json.Unmarshal(item["type"], &typ)
	_ = json.Unmarshal(item["id"], &id)
	added := make(map[string]raw, len(item))
	for k, v := range item {
		added[k] = v
	}
	added["status"] = raw(`"in_progress"`)
	switch typ {
	case "message":
		var parts []map[string]raw
		if err := json.Unmarshal(item["content"], &parts); err != nil {
			return provider.NotRenderable("message content: %v", err)
		}
		added["content"] = raw("[]")
		rs.emit("response.output_item.added", map[string]any{"output_index": oi, "item": added})
		for ci, part := range parts {
			if err := rs.textPart(id, oi, ci, part); err != nil {
				return err
			}
		}
	case "function_call":
		var args, name string
		_ = json.Unmarshal(item["arguments"], &args)
		_ = json.Unmarshal(item["name"], &name)
		added["arguments"] = raw(`""`)
		rs.emit("response.output_item.added", map[string]any{"output_index": oi, "item": added})
		rs.emit("response.function_call_arguments.delta", map[string]any{"item_id": id, "output_index": oi, "delta": args})
		rs.emit("response.function_call_arguments.done", map[string]any{"item_id": id, "output_index": oi, "name": name, "arguments": args})
	default:
		return provider.NotRenderable("output item %q", typ)
	}
	rs.emit("response.output_item.done", map[string]any{"output_index": oi, "item": item})
	return nil
}

// textPart writes the events that stream content part ci of message
// item id, output item oi; only output_text parts can be streamed.
func (rs *responsesStream) textPart(id string, oi, ci int, part map[string]raw) error {
	var ptype, text string
	_ = json.Unmarshal(part["type"], &ptype)
	if ptype != "output_text" {
		return provider.NotRenderable("content part %q", ptype)
	}
	_ = json.Unmarshal(part["text"], &text)
	empty := map[string]any{"type": "output_text", "annotations": []any{}, "logprobs": []any{}, "text": ""}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{"item_id": id, "output_index": oi, "content_index": ci}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	rs.emit("response.content_part.added", with(map[string]any{"part": empty}))
	rs.emit("response.output_text.delta", with(map[string]any{"delta": text, "logprobs": []any{}}))
	rs.emit("response.output_text.done", with(map[string]any{"text": text, "logprobs": []any{}}))
	rs.emit("response.content_part.done", with(map[string]any{"part": part}))
	return nil
}
