package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/sse"
)

// ErrNotRenderable means an entry cannot be rendered faithfully in the
// other form (stream ↔ JSON): it holds something the renderer does not
// know (logprobs, audio, reasoning items, thinking blocks, a stream that
// did not complete). The caller keeps a separate entry per form then.
var ErrNotRenderable = errors.New("cache: entry cannot be rendered in the other form")

func notRenderable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotRenderable}, args...)...)
}

// Render returns e in the requested form: e itself when it already has
// it, or a new entry rendered from it (text, tool calls, usage and finish
// reason carried over).
func Render(e *Entry, stream bool) (*Entry, error) {
	if e.Stream == stream {
		return e, nil
	}
	out := *e
	out.Stream = stream
	var err error
	if stream {
		out.Body = nil
		err = toStream(e, &out)
	} else {
		out.Events, out.Ends, out.UsageOnly = nil, nil, nil
		out.Body, err = toJSON(e)
		out.ContentType = "application/json"
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// events returns the name and data of every event of a stream entry.
func events(e *Entry) ([]sseEvent, error) {
	rd := sse.NewReaderSize(bytes.NewReader(e.Events), len(e.Events)+1)
	var out []sseEvent
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, notRenderable("stream: %v", err)
		}
		if !ev.HasData {
			continue
		}
		out = append(out, sseEvent{name: string(ev.Name), data: append([]byte(nil), ev.Data...)})
	}
}

type sseEvent struct {
	name string
	data []byte
}

func toJSON(e *Entry) ([]byte, error) {
	evs, err := events(e)
	if err != nil {
		return nil, err
	}
	switch {
	case e.Provider == edge.OpenAI && e.Endpoint == "chat.completions":
		return chatToJSON(evs)
	case e.Provider == edge.OpenAI && e.Endpoint == "responses":
		return responsesToJSON(evs)
	case e.Provider == edge.Anthropic && e.Endpoint == "messages":
		return messagesToJSON(evs)
	}
	return nil, notRenderable("%s %s", e.Provider, e.Endpoint)
}

func toStream(e *Entry, out *Entry) error {
	var err error
	w := &streamWriter{e: out}
	switch {
	case e.Provider == edge.OpenAI && e.Endpoint == "chat.completions":
		err = chatToStream(e.Body, w)
		out.ContentType = "text/event-stream; charset=utf-8"
	case e.Provider == edge.OpenAI && e.Endpoint == "responses":
		err = responsesToStream(e.Body, w)
		out.ContentType = "text/event-stream; charset=utf-8"
	case e.Provider == edge.Anthropic && e.Endpoint == "messages":
		err = messagesToStream(e.Body, w)
		out.ContentType = "text/event-stream"
	default:
		err = notRenderable("%s %s", e.Provider, e.Endpoint)
	}
	return err
}

// streamWriter appends SSE events to an entry.
type streamWriter struct {
	e   *Entry
	buf bytes.Buffer
	err error
}

func (w *streamWriter) event(name string, v any, usageOnly bool) {
	if w.err != nil {
		return
	}
	data, ok := v.([]byte)
	if !ok {
		if data, w.err = json.Marshal(v); w.err != nil {
			return
		}
	}
	w.buf.Reset()
	w.err = sse.Write(&w.buf, name, data)
	w.e.AddEvent(w.buf.Bytes(), usageOnly)
}

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

func chatToJSON(evs []sseEvent) ([]byte, error) {
	var out chatCompletion
	type acc struct {
		role    string
		content *string
		calls   []chatToolCall
		finish  string
	}
	var accs []*acc
	done := false
	for _, ev := range evs {
		if string(ev.data) == "[DONE]" {
			done = true
			continue
		}
		var c chatChunk
		if err := json.Unmarshal(ev.data, &c); err != nil {
			return nil, notRenderable("chat chunk: %v", err)
		}
		out.ID, out.Created, out.Model = c.ID, c.Created, c.Model
		out.ServiceTier, out.SystemFingerprint = c.ServiceTier, c.SystemFingerprint
		if !isNull(c.Usage) {
			out.Usage = c.Usage
		}
		for _, ch := range c.Choices {
			if !isNull(ch.Logprobs) || len(ch.Delta.Audio) > 0 || (len(ch.Delta.Refusal) > 0 && !isNull(ch.Delta.Refusal)) {
				return nil, notRenderable("chat chunk with logprobs, audio or refusal")
			}
			if ch.Index < 0 || ch.Index > 127 {
				return nil, notRenderable("choice index %d", ch.Index)
			}
			for len(accs) <= ch.Index {
				accs = append(accs, &acc{})
			}
			a := accs[ch.Index]
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
				i := 0
				if tc.Index != nil {
					i = *tc.Index
				}
				if i < 0 || i > 127 {
					return nil, notRenderable("tool call index %d", i)
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
			}
			if ch.FinishReason != nil {
				a.finish = *ch.FinishReason
			}
		}
	}
	if !done {
		return nil, notRenderable("chat stream without [DONE]")
	}
	out.Object = "chat.completion"
	for i, a := range accs {
		if a.finish == "" {
			return nil, notRenderable("choice %d has no finish_reason", i)
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

func chatToStream(body []byte, w *streamWriter) error {
	var c chatCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		return notRenderable("chat completion: %v", err)
	}
	var extra map[string]raw
	_ = json.Unmarshal(body, &extra)
	for _, ch := range c.Choices {
		if !isNull(ch.Logprobs) || (len(ch.Message.Refusal) > 0 && !isNull(ch.Message.Refusal)) {
			return notRenderable("chat completion with logprobs or refusal")
		}
	}
	var msg map[string]raw
	for _, ch := range extractChoices(extra) {
		msg = ch
		for k := range msg {
			switch k {
			case "role", "content", "tool_calls", "refusal", "annotations":
			default:
				return notRenderable("chat message field %q", k)
			}
		}
	}
	chunk := func(choices []chatChunkChoice) chatChunk {
		return chatChunk{ID: c.ID, Object: "chat.completion.chunk", Created: c.Created, Model: c.Model,
			ServiceTier: c.ServiceTier, SystemFingerprint: c.SystemFingerprint, Choices: choices, Usage: rawNull}
	}
	for _, ch := range c.Choices {
		d := chatDelta{Role: ch.Message.Role, Refusal: rawNull}
		if d.Role == "" {
			d.Role = "assistant"
		}
		if ch.Message.Content != nil || len(ch.Message.ToolCalls) == 0 {
			s := ""
			if ch.Message.Content != nil {
				s = *ch.Message.Content
			}
			d.Content = &s
		}
		for i, tc := range ch.Message.ToolCalls {
			i := i
			tc.Index = &i
			d.ToolCalls = append(d.ToolCalls, tc)
		}
		w.event("", chunk([]chatChunkChoice{{Index: ch.Index, Delta: d, Logprobs: rawNull}}), false)
	}
	for _, ch := range c.Choices {
		fr := ch.FinishReason
		w.event("", chunk([]chatChunkChoice{{Index: ch.Index, Logprobs: rawNull, FinishReason: &fr}}), false)
	}
	if !isNull(c.Usage) {
		u := chunk([]chatChunkChoice{})
		u.Usage = c.Usage
		w.event("", u, true)
	}
	w.event("", []byte("[DONE]"), false)
	return w.err
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

func responsesToJSON(evs []sseEvent) ([]byte, error) {
	for _, ev := range evs {
		var e struct {
			Type     string `json:"type"`
			Response raw    `json:"response"`
		}
		if err := json.Unmarshal(ev.data, &e); err != nil {
			return nil, notRenderable("responses event: %v", err)
		}
		if e.Type == "response.completed" && !isNull(e.Response) {
			return append([]byte(nil), e.Response...), nil
		}
	}
	return nil, notRenderable("responses stream without response.completed")
}

func responsesToStream(body []byte, w *streamWriter) error {
	var resp map[string]raw
	if err := json.Unmarshal(body, &resp); err != nil {
		return notRenderable("response: %v", err)
	}
	var status string
	_ = json.Unmarshal(resp["status"], &status)
	if status != "completed" {
		return notRenderable("response status %q", status)
	}
	var items []map[string]raw
	if err := json.Unmarshal(resp["output"], &items); err != nil {
		return notRenderable("response output: %v", err)
	}
	seq := 0
	emit := func(typ string, fields map[string]any) {
		m := map[string]any{"type": typ, "sequence_number": seq}
		for k, v := range fields {
			m[k] = v
		}
		seq++
		w.event(typ, m, false)
	}
	pending := make(map[string]raw, len(resp))
	for k, v := range resp {
		pending[k] = v
	}
	pending["status"] = raw(`"in_progress"`)
	pending["output"] = raw("[]")
	pending["usage"] = rawNull
	emit("response.created", map[string]any{"response": pending})
	emit("response.in_progress", map[string]any{"response": pending})
	for oi, item := range items {
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
				return notRenderable("message content: %v", err)
			}
			added["content"] = raw("[]")
			emit("response.output_item.added", map[string]any{"output_index": oi, "item": added})
			for ci, part := range parts {
				var ptype, text string
				_ = json.Unmarshal(part["type"], &ptype)
				if ptype != "output_text" {
					return notRenderable("content part %q", ptype)
				}
				_ = json.Unmarshal(part["text"], &text)
				empty := map[string]any{"type": "output_text", "annotations": []any{}, "logprobs": []any{}, "text": ""}
				ref := map[string]any{"item_id": id, "output_index": oi, "content_index": ci}
				with := func(extra map[string]any) map[string]any {
					m := map[string]any{}
					for k, v := range ref {
						m[k] = v
					}
					for k, v := range extra {
						m[k] = v
					}
					return m
				}
				emit("response.content_part.added", with(map[string]any{"part": empty}))
				emit("response.output_text.delta", with(map[string]any{"delta": text, "logprobs": []any{}}))
				emit("response.output_text.done", with(map[string]any{"text": text, "logprobs": []any{}}))
				emit("response.content_part.done", with(map[string]any{"part": part}))
			}
		case "function_call":
			var args, name string
			_ = json.Unmarshal(item["arguments"], &args)
			_ = json.Unmarshal(item["name"], &name)
			added["arguments"] = raw(`""`)
			emit("response.output_item.added", map[string]any{"output_index": oi, "item": added})
			emit("response.function_call_arguments.delta", map[string]any{"item_id": id, "output_index": oi, "delta": args})
			emit("response.function_call_arguments.done", map[string]any{"item_id": id, "output_index": oi, "name": name, "arguments": args})
		default:
			return notRenderable("output item %q", typ)
		}
		emit("response.output_item.done", map[string]any{"output_index": oi, "item": item})
	}
	emit("response.completed", map[string]any{"response": resp})
	return w.err
}

// --- Anthropic Messages ---

type anthropicBlock struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	ID    string `json:"id"`
	Name  string `json:"name"`
	Input raw    `json:"input"`
	// Citations and other block fields make a block unrenderable.
	Citations raw `json:"citations"`
}

func messagesToJSON(evs []sseEvent) ([]byte, error) {
	var msg map[string]raw
	var usage map[string]raw
	type block struct {
		start   map[string]raw
		typ     string
		text    string
		partial string
		stopped bool
	}
	var blocks []*block
	stopped := false
	for _, ev := range evs {
		var e struct {
			Type         string         `json:"type"`
			Message      map[string]raw `json:"message"`
			Index        int            `json:"index"`
			ContentBlock map[string]raw `json:"content_block"`
			Delta        struct {
				Type         string `json:"type"`
				Text         string `json:"text"`
				PartialJSON  string `json:"partial_json"`
				StopReason   raw    `json:"stop_reason"`
				StopSequence raw    `json:"stop_sequence"`
			} `json:"delta"`
			Usage map[string]raw `json:"usage"`
		}
		if err := json.Unmarshal(ev.data, &e); err != nil {
			return nil, notRenderable("messages event: %v", err)
		}
		switch e.Type {
		case "message_start":
			msg = e.Message
			_ = json.Unmarshal(msg["usage"], &usage)
		case "content_block_start":
			var typ string
			_ = json.Unmarshal(e.ContentBlock["type"], &typ)
			if typ != "text" && typ != "tool_use" {
				return nil, notRenderable("content block %q", typ)
			}
			if e.Index != len(blocks) {
				return nil, notRenderable("content block index %d", e.Index)
			}
			blocks = append(blocks, &block{start: e.ContentBlock, typ: typ})
		case "content_block_delta":
			if e.Index < 0 || e.Index >= len(blocks) {
				return nil, notRenderable("delta index %d", e.Index)
			}
			b := blocks[e.Index]
			switch e.Delta.Type {
			case "text_delta":
				b.text += e.Delta.Text
			case "input_json_delta":
				b.partial += e.Delta.PartialJSON
			default:
				return nil, notRenderable("delta %q", e.Delta.Type)
			}
		case "content_block_stop":
			if e.Index < 0 || e.Index >= len(blocks) {
				return nil, notRenderable("stop index %d", e.Index)
			}
			blocks[e.Index].stopped = true
		case "message_delta":
			if msg == nil {
				return nil, notRenderable("message_delta before message_start")
			}
			msg["stop_reason"] = e.Delta.StopReason
			if len(e.Delta.StopSequence) > 0 {
				msg["stop_sequence"] = e.Delta.StopSequence
			}
			if usage == nil {
				usage = map[string]raw{}
			}
			for k, v := range e.Usage {
				if !isNull(v) {
					usage[k] = v
				}
			}
		case "message_stop":
			stopped = true
		case "ping":
		case "error":
			return nil, notRenderable("stream error event")
		}
	}
	if msg == nil || !stopped {
		return nil, notRenderable("incomplete messages stream")
	}
	content := make([]any, 0, len(blocks))
	for _, b := range blocks {
		if !b.stopped {
			return nil, notRenderable("content block not stopped")
		}
		c := make(map[string]raw, len(b.start))
		for k, v := range b.start {
			c[k] = v
		}
		if b.typ == "text" {
			c["text"], _ = json.Marshal(b.text)
		} else {
			in := raw(b.partial)
			if b.partial == "" {
				in = raw("{}")
			}
			if !json.Valid(in) {
				return nil, notRenderable("tool input is not JSON")
			}
			c["input"] = in
		}
		content = append(content, c)
	}
	out := make(map[string]any, len(msg))
	for k, v := range msg {
		out[k] = v
	}
	out["content"] = content
	if usage != nil {
		out["usage"] = usage
	}
	return json.Marshal(out)
}

func messagesToStream(body []byte, w *streamWriter) error {
	var msg map[string]raw
	if err := json.Unmarshal(body, &msg); err != nil {
		return notRenderable("message: %v", err)
	}
	var blocks []map[string]raw
	if err := json.Unmarshal(msg["content"], &blocks); err != nil {
		return notRenderable("message content: %v", err)
	}
	start := make(map[string]raw, len(msg))
	for k, v := range msg {
		start[k] = v
	}
	start["content"] = raw("[]")
	start["stop_reason"] = rawNull
	start["stop_sequence"] = rawNull
	w.event("message_start", map[string]any{"type": "message_start", "message": start}, false)
	for i, b := range blocks {
		var blk anthropicBlock
		if err := json.Unmarshal(mustJSON(b), &blk); err != nil {
			return notRenderable("content block: %v", err)
		}
		for k := range b {
			switch k {
			case "type", "text", "id", "name", "input":
			default:
				return notRenderable("content block field %q", k)
			}
		}
		var cb map[string]any
		var delta map[string]any
		switch blk.Type {
		case "text":
			cb = map[string]any{"type": "text", "text": ""}
			delta = map[string]any{"type": "text_delta", "text": blk.Text}
		case "tool_use":
			cb = map[string]any{"type": "tool_use", "id": blk.ID, "name": blk.Name, "input": map[string]any{}}
			var compact bytes.Buffer
			if err := json.Compact(&compact, blk.Input); err != nil {
				return notRenderable("tool input: %v", err)
			}
			delta = map[string]any{"type": "input_json_delta", "partial_json": compact.String()}
		default:
			return notRenderable("content block %q", blk.Type)
		}
		w.event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": cb}, false)
		if i == 0 {
			w.event("ping", []byte(`{"type": "ping"}`), false)
		}
		w.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": delta}, false)
		w.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}, false)
	}
	var usage map[string]raw
	_ = json.Unmarshal(msg["usage"], &usage)
	du := map[string]raw{}
	for _, k := range []string{"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens", "server_tool_use"} {
		if v, ok := usage[k]; ok {
			du[k] = v
		}
	}
	stopSeq := msg["stop_sequence"]
	if len(stopSeq) == 0 {
		stopSeq = rawNull
	}
	w.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]raw{"stop_reason": msg["stop_reason"], "stop_sequence": stopSeq}, "usage": du}, false)
	w.event("message_stop", []byte(`{"type":"message_stop"}`), false)
	return w.err
}

func mustJSON(m map[string]raw) []byte {
	b, _ := json.Marshal(m)
	return b
}
