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

func messagesToJSON(evs []provider.Event) ([]byte, error) {
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
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return nil, provider.NotRenderable("messages event: %v", err)
		}
		switch e.Type {
		case "message_start":
			msg = e.Message
			_ = json.Unmarshal(msg["usage"], &usage)
		case "content_block_start":
			var typ string
			_ = json.Unmarshal(e.ContentBlock["type"], &typ)
			if typ != "text" && typ != "tool_use" {
				return nil, provider.NotRenderable("content block %q", typ)
			}
			if e.Index != len(blocks) {
				return nil, provider.NotRenderable("content block index %d", e.Index)
			}
			blocks = append(blocks, &block{start: e.ContentBlock, typ: typ})
		case "content_block_delta":
			if e.Index < 0 || e.Index >= len(blocks) {
				return nil, provider.NotRenderable("delta index %d", e.Index)
			}
			b := blocks[e.Index]
			switch e.Delta.Type {
			case "text_delta":
				b.text += e.Delta.Text
			case "input_json_delta":
				b.partial += e.Delta.PartialJSON
			default:
				return nil, provider.NotRenderable("delta %q", e.Delta.Type)
			}
		case "content_block_stop":
			if e.Index < 0 || e.Index >= len(blocks) {
				return nil, provider.NotRenderable("stop index %d", e.Index)
			}
			blocks[e.Index].stopped = true
		case "message_delta":
			if msg == nil {
				return nil, provider.NotRenderable("message_delta before message_start")
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
			return nil, provider.NotRenderable("stream error event")
		}
	}
	if msg == nil || !stopped {
		return nil, provider.NotRenderable("incomplete messages stream")
	}
	content := make([]any, 0, len(blocks))
	for _, b := range blocks {
		if !b.stopped {
			return nil, provider.NotRenderable("content block not stopped")
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
				return nil, provider.NotRenderable("tool input is not JSON")
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
		var blk anthropicBlock
		if err := json.Unmarshal(mustJSON(b), &blk); err != nil {
			return provider.NotRenderable("content block: %v", err)
		}
		for k := range b {
			switch k {
			case "type", "text", "id", "name", "input":
			default:
				return provider.NotRenderable("content block field %q", k)
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
				return provider.NotRenderable("tool input: %v", err)
			}
			delta = map[string]any{"type": "input_json_delta", "partial_json": compact.String()}
		default:
			return provider.NotRenderable("content block %q", blk.Type)
		}
		w.Event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": cb}, false)
		if i == 0 {
			w.Event("ping", []byte(`{"type": "ping"}`), false)
		}
		w.Event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": delta}, false)
		w.Event("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}, false)
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
	w.Event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]raw{"stop_reason": msg["stop_reason"], "stop_sequence": stopSeq}, "usage": du}, false)
	w.Event("message_stop", []byte(`{"type":"message_stop"}`), false)
	return w.Err
}

func mustJSON(m map[string]raw) []byte {
	b, _ := json.Marshal(m)
	return b
}
