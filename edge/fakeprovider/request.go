package fakeprovider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxEchoWords caps the words of the last user message echoed back, so an
// answer stays small whatever the prompt.
const maxEchoWords = 64

// content is message content in any of the providers' forms: a string, an
// array of parts carrying "text" (text, input_text, output_text), or parts
// nesting content (Anthropic tool_result). Only the text is kept.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		// The common case, a string without escapes, needs no second decode.
		if len(b) >= 2 && b[len(b)-1] == '"' {
			if inner := b[1 : len(b)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
				*c = content(inner)
				return nil
			}
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = content(s)
	case '[':
		var parts []struct {
			Text    string  `json:"text"`
			Content content `json:"content"`
			Output  content `json:"output"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		var sb strings.Builder
		for _, p := range parts {
			for _, s := range [...]string{p.Text, string(p.Content), string(p.Output)} {
				if s == "" {
					continue
				}
				if sb.Len() > 0 {
					sb.WriteByte('\n')
				}
				sb.WriteString(s)
			}
		}
		*c = content(sb.String())
	}
	// Numbers, objects and null carry no text the fake counts.
	return nil
}

type message struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
	Output  content `json:"output"` // Responses function_call_output items
}

// tool covers OpenAI chat tools ({"function":{"name"}}), Responses and
// Anthropic tools ({"name"}) and custom tools ({"custom":{"name"}}).
type tool struct {
	Name     string `json:"name"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
	Custom struct {
		Name string `json:"name"`
	} `json:"custom"`
}

func (t tool) name() string {
	switch {
	case t.Function.Name != "":
		return t.Function.Name
	case t.Name != "":
		return t.Name
	case t.Custom.Name != "":
		return t.Custom.Name
	}
	return "tool"
}

// request is the union of the request bodies the fake serves; each route
// reads the fields its provider defines.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages     []message       `json:"messages"`
	Tools        []tool          `json:"tools"`
	Instructions content         `json:"instructions"` // Responses
	System       content         `json:"system"`       // Anthropic
	MaxTokens    *int64          `json:"max_tokens"`   // Anthropic (required there)
	Input        json.RawMessage `json:"input"`        // Responses, Embeddings

	// Embeddings.
	EncodingFormat string `json:"encoding_format"`
	Dimensions     int    `json:"dimensions"`
}

// prompt is what the fake derives its answer and token counts from.
type prompt struct {
	req          request
	words        int64  // words of all text in the request
	lastUser     string // words of the last user message, single-spaced, capped
	tool         string // name of the first tool, "" when none
	cacheControl bool   // the body mentions cache_control anywhere
	longLine     int    // length of ModelLongLine's answer; 0: LongLineBytes
}

func parseRequest(body []byte) (request, error) {
	var r request
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("parse body: %w", err)
	}
	return r, nil
}

// newPrompt derives the prompt from a parsed request. Responses input may be
// a string or a list of items; both are folded into messages.
func newPrompt(r request, body []byte) (prompt, error) {
	p := prompt{req: r}
	if len(r.Input) > 0 && len(r.Messages) == 0 {
		in := bytes.TrimLeft(r.Input, " \t\r\n")
		switch {
		case len(in) > 0 && in[0] == '"':
			var s string
			if err := json.Unmarshal(in, &s); err != nil {
				return p, fmt.Errorf("input: %w", err)
			}
			p.req.Messages = []message{{Role: "user", Content: content(s)}}
		case len(in) > 0 && in[0] == '[':
			if err := json.Unmarshal(in, &p.req.Messages); err != nil {
				return p, fmt.Errorf("input: %w", err)
			}
		}
	}
	p.words = int64(Words(string(r.Instructions)) + Words(string(r.System)))
	last := -1
	for i, m := range p.req.Messages {
		p.words += int64(Words(string(m.Content)) + Words(string(m.Output)))
		if m.Role == "user" {
			last = i
		}
	}
	if last >= 0 {
		p.lastUser = firstWords(string(p.req.Messages[last].Content), maxEchoWords)
	}
	if len(r.Tools) > 0 {
		p.tool = r.Tools[0].name()
	}
	p.cacheControl = bytes.Contains(body, []byte(`"cache_control"`))
	return p, nil
}

// Words counts whitespace-separated words: the fake's notion of a token.
func Words(s string) int {
	n := 0
	in := false
	for i := 0; i < len(s); {
		c := s[i]
		var space bool
		if c < utf8.RuneSelf {
			space = c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
			i++
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			space = unicode.IsSpace(r)
			i += size
		}
		if !space && !in {
			n++
		}
		in = !space
	}
	return n
}

// firstWords returns at most max words of s joined by single spaces.
func firstWords(s string, max int) string {
	f := strings.Fields(s)
	if len(f) > max {
		f = f[:max]
	}
	return strings.Join(f, " ")
}

// isReasoningModel reports whether OpenAI would bill reasoning tokens for model.
func isReasoningModel(model string) bool {
	return strings.HasPrefix(model, "o") || strings.HasPrefix(model, "gpt-5")
}
