package anthropic

import (
	"bytes"
	"encoding/json"

	"github.com/persiv/codex/edge/provider"
)

// Rendering an answer stream ↔ JSON, for the cache: text and tool_use
// blocks, usage and stop reason carry over; anything else (thinking blocks,
// citations, server tools) makes an answer not renderable.

// raw is a JSON value kept as sent.
type raw = json.RawMessage

var rawNull = raw("null")

func isNull(r raw) bool { return len(r) == 0 || string(r) == "null" }

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

// messagesEvent is one event of a Messages stream, as far as rendering
// reads it.
type messagesEvent struct {
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

// messagesFold folds the events of a Messages stream into the message
// they make up.
type messagesFold struct {
	msg     map[string]raw // message_start's message, updated by message_delta
	usage   map[string]raw
	blocks  []*messagesBlock
	stopped bool // message_stop was seen
}

// messagesBlock is a content block being streamed.
type messagesBlock struct {
	start   map[string]raw // content_block_start's content_block
	typ     string
	text    string // text_delta, joined
	partial string // input_json_delta, joined
	stopped bool
}

func messagesToJSON(evs []provider.Event) ([]byte, error) {
	var f messagesFold
	for _, ev := range evs {
		var e messagesEvent
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return nil, provider.NotRenderable("messages event: %v", err)
		}
		if err := f.add(&e); err != nil {
			return nil, err
		}
	}
	return f.message()
}

// add folds in one event.
func (f *messagesFold) add(e *messagesEvent) error {
	switch e.Type {
	case "message_start":
		f.msg = e.Message
		_ = json.Unmarshal(f.msg["usage"], &f.usage)
	case "content_block_start":
		return f.blockStart(e)
	case "content_block_delta":
		return f.blockDelta(e)
	case "content_block_stop":
		if e.Index < 0 || e.Index >= len(f.blocks) {
			return provider.NotRenderable("stop index %d", e.Index)
		}
		f.blocks[e.Index].stopped = true
	case "message_delta":
		return f.messageDelta(e)
	case "message_stop":
		f.stopped = true
	case "ping":
	case "error":
		return provider.NotRenderable("stream error event")
	}
	return nil
}

func (f *messagesFold) blockStart(e *messagesEvent) error {
	var typ string
	_ = json.Unmarshal(e.ContentBlock["type"], &typ)
	if typ != "text" && typ != "tool_use" {
		return provider.NotRenderable("content block %q", typ)
	}
	if e.Index != len(f.blocks) {
		return provider.NotRenderable("content block index %d", e.Index)
	}
	f.blocks = append(f.blocks, &messagesBlock{start: e.ContentBlock, typ: typ})
	return nil
}

func (f *messagesFold) blockDelta(e *messagesEvent) error {
	if e.Index < 0 || e.Index >= len(f.blocks) {
		return provider.NotRenderable("delta index %d", e.Index)
	}
	b := f.blocks[e.Index]
	switch e.Delta.Type {
	case "text_delta":
		b.text += e.Delta.Text
	case "input_json_delta":
		b.partial += e.Delta.PartialJSON
	default:
		return provider.NotRenderable("delta %q", e.Delta.Type)
	}
	return nil
}

// messageDelta takes the stop reason and the final usage counts.
func (f *messagesFold) messageDelta(e *messagesEvent) error {
	if f.msg == nil {
		return provider.NotRenderable("message_delta before message_start")
	}
	f.msg["stop_reason"] = e.Delta.StopReason
	if len(e.Delta.StopSequence) > 0 {
		f.msg["stop_sequence"] = e.Delta.StopSequence
	}
	if f.usage == nil {
		f.usage = map[string]raw{}
	}
	for k, v := range e.Usage {
		if !isNull(v) {
			f.usage[k] = v
		}
	}
	return nil
}

// message returns the message the stream made up, as JSON.
func (f *messagesFold) message() ([]byte, error) {
	if f.msg == nil || !f.stopped {
		return nil, provider.NotRenderable("incomplete messages stream")
	}
	content := make([]any, 0, len(f.blocks))
	for _, b := range f.blocks {
		c, err := b.block()
		if err != nil {
			return nil, err
		}
		content = append(content, c)
	}
	out := make(map[string]any, len(f.msg))
	for k, v := range f.msg {
		out[k] = v
	}
	out["content"] = content
	if f.usage != nil {
		out["usage"] = f.usage
	}
	return json.Marshal(out)
}

// block returns the finished content block.
func (b *messagesBlock) block() (map[string]raw, error) {
	if !b.stopped {
		return nil, provider.NotRenderable("content block not stopped")
	}
	c := make(map[string]raw, len(b.start))
	for k, v := range b.start {
		c[k] = v
	}
	if b.typ == "text" {
		c["text"], _ = json.Marshal(b.text)
		return c, nil
	}
	in := raw(b.partial)
	if b.partial == "" {
		in = raw("{}")
	}
	if !json.Valid(in) {
		return nil, provider.NotRenderable("tool input is not JSON")
	}
	c["input"] = in
	return c, nil
}

func messagesToStream(body []byte, w *provider.StreamWriter) error {
	var msg map[string]raw
	if err := json.Unmarshal(body, &msg); err != nil {
		return provider.NotRenderable("message: %v", err)
	}
	var blocks []map[string]raw
	if err := json.Unmarshal(msg["content"], &blocks); err != nil {
		return provider.NotRenderable("message content: %v", err)
	}
	start := make(map[string]raw, len(msg))
	for k, v := range msg {
		start[k] = v
	}
	start["content"] = raw("[]")
	start["stop_reason"] = rawNull
	start["stop_sequence"] = rawNull
	w.Event("message_start", map[string]any{"type": "message_start", "message": start}, false)
	for i, b := range blocks {
		cb, delta, err := blockEvents(b)
		if err != nil {
			return err
		}
		w.Event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": cb}, false)
		if i == 0 {
			w.Event("ping", []byte(`{"type": "ping"}`), false)
		}
		w.Event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": delta}, false)
		w.Event("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}, false)
	}
	w.Event("message_delta", messageDeltaEvent(msg), false)
	w.Event("message_stop", []byte(`{"type":"message_stop"}`), false)
	return w.Err
}

// blockEvents returns what content_block_start and the one
// content_block_delta carry for a content block of a message.
func blockEvents(b map[string]raw) (start, delta map[string]any, err error) {
	var blk anthropicBlock
	if err := json.Unmarshal(mustJSON(b), &blk); err != nil {
		return nil, nil, provider.NotRenderable("content block: %v", err)
	}
	for k := range b {
		switch k {
		case "type", "text", "id", "name", "input":
		default:
			return nil, nil, provider.NotRenderable("content block field %q", k)
		}
	}
	switch blk.Type {
	case "text":
		start = map[string]any{"type": "text", "text": ""}
		delta = map[string]any{"type": "text_delta", "text": blk.Text}
	case "tool_use":
		start = map[string]any{"type": "tool_use", "id": blk.ID, "name": blk.Name, "input": map[string]any{}}
		var compact bytes.Buffer
		if err := json.Compact(&compact, blk.Input); err != nil {
			return nil, nil, provider.NotRenderable("tool input: %v", err)
		}
		delta = map[string]any{"type": "input_json_delta", "partial_json": compact.String()}
	default:
		return nil, nil, provider.NotRenderable("content block %q", blk.Type)
	}
	return start, delta, nil
}

// messageDeltaEvent returns the message_delta event that ends a message:
// its stop reason and usage.
func messageDeltaEvent(msg map[string]raw) map[string]any {
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
	return map[string]any{"type": "message_delta",
		"delta": map[string]raw{"stop_reason": msg["stop_reason"], "stop_sequence": stopSeq}, "usage": du}
}

func mustJSON(m map[string]raw) []byte {
	b, _ := json.Marshal(m)
	return b
}
