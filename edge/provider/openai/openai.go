// Package openai is OpenAI's wire format (provider.Format): chat
// completions, the Responses API, embeddings and the models list.
package openai

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/usage"
)

// OpenAI's endpoints.
const (
	ChatCompletions provider.Endpoint = "chat.completions" // POST /v1/chat/completions
	Responses       provider.Endpoint = "responses"        // POST /v1/responses
	Embeddings      provider.Endpoint = "embeddings"       // POST /v1/embeddings
	Models          provider.Endpoint = "models"           // GET /v1/models
)

// Format is OpenAI's wire format.
type Format struct{}

var _ provider.Format = Format{}

func (Format) Provider() edge.Provider { return edge.OpenAI }

func (Format) DefaultBaseURL() string { return "https://api.openai.com" }

// RequiredRates: OpenAI reports cache reads inside input tokens and has no separate cache-write bucket for most models: input alone prices an answer.
func (Format) RequiredRates() []string { return nil }

var routes = []provider.Route{
	{Method: http.MethodPost, Path: "/v1/chat/completions", Endpoint: ChatCompletions},
	{Method: http.MethodPost, Path: "/v1/responses", Endpoint: Responses},
	{Method: http.MethodPost, Path: "/v1/embeddings", Endpoint: Embeddings},
	{Method: http.MethodGet, Path: "/v1/models", Endpoint: Models},
}

func (Format) Routes() []provider.Route { return routes }

// Owns is false: OpenAI's shape is the default for requests no format
// owns.
func (Format) Owns(*http.Request) bool { return false }

func (Format) SetCredential(h http.Header, credential string) {
	h.Set("Authorization", "Bearer "+credential)
}

func (Format) Cacheable(ep provider.Endpoint) bool {
	return ep == ChatCompletions || ep == Responses || ep == Embeddings
}

func (Format) Billing(ep provider.Endpoint) provider.Billing {
	switch ep {
	case ChatCompletions, Responses, Embeddings:
		return provider.Tokens
	case Models:
		return provider.Free
	}
	return provider.Unbilled
}

func (Format) StandardTier(tier string) bool { return tier == "" || tier == "default" }

// Rewrite makes a chat stream report its usage, which OpenAI sends only
// when asked (stream_options.include_usage); the client, who did not ask,
// must not see the extra usage chunk.
func (Format) Rewrite(ep provider.Endpoint, body []byte, info fingerprint.Info) ([]byte, bool, error) {
	if ep != ChatCompletions || !info.Stream || info.IncludeUsage {
		return body, false, nil
	}
	out, err := requestUsage(body, info.HasStreamOptions)
	return out, err == nil, err
}

// chatSystemBefore and chatSystemAfter wrap the injected text as a chat
// message.
var (
	chatSystemBefore = []byte(`{"role":"system","content":`)
	chatSystemAfter  = []byte(`}`)
)

// InjectSystem: chat completions get a leading system message; the
// Responses API gets s at the front of instructions (which it does not
// carry over from a previous response, so every request needs it).
// Embeddings and the models list take none.
func (Format) InjectSystem(ep provider.Endpoint, body []byte, s provider.System) ([]byte, bool, error) {
	if s.IsZero() {
		return body, false, nil
	}
	switch ep {
	case ChatCompletions:
		_, v, err := provider.Member(body, "messages")
		if err != nil {
			return body, false, err
		}
		out, ok := provider.InsertFirst(body, v, chatSystemBefore, s, chatSystemAfter)
		return out, ok, nil
	case Responses:
		open, v, err := provider.Member(body, "instructions")
		if err != nil {
			return body, false, err
		}
		out, ok := provider.PrependString(body, open, "instructions", v, s)
		return out, ok, nil
	}
	return body, false, nil
}

// requestUsage sets stream_options.include_usage in a chat request.
func requestUsage(body []byte, hasStreamOptions bool) ([]byte, error) {
	if !hasStreamOptions {
		// Common case: insert the option after the opening brace, leaving
		// every byte the client sent as it was.
		i := bytes.IndexByte(body, '{')
		out := make([]byte, 0, len(body)+40)
		out = append(out, body[:i+1]...)
		out = append(out, `"stream_options":{"include_usage":true}`...)
		if rest := bytes.TrimLeft(body[i+1:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...), nil
	}
	// The client set stream_options without include_usage: set it there.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	var so map[string]json.RawMessage
	if err := json.Unmarshal(doc["stream_options"], &so); err != nil {
		return nil, err
	}
	so["include_usage"] = json.RawMessage("true")
	doc["stream_options"], _ = json.Marshal(so)
	return json.Marshal(doc)
}

func kind(ep provider.Endpoint) usage.Kind {
	switch ep {
	case ChatCompletions, Embeddings:
		return usage.OpenAIChat
	case Responses:
		return usage.OpenAIResponses
	}
	return usage.NoUsage
}

func (Format) ParseUsage(ep provider.Endpoint, body []byte) (usage.Result, error) {
	return usage.Parse(kind(ep), body)
}

func (Format) NewStream(ep provider.Endpoint) *usage.Stream { return usage.NewStream(kind(ep)) }

// IsFinal: chat's data "[DONE]", the Responses API's response.completed.
func (Format) IsFinal(ep provider.Endpoint, name, data []byte) bool {
	switch ep {
	case ChatCompletions:
		return string(data) == "[DONE]"
	case Responses:
		return provider.TypedEvent(name, data, "response.completed")
	}
	return false
}

func (Format) ToJSON(ep provider.Endpoint, evs []provider.Event) ([]byte, error) {
	switch ep {
	case ChatCompletions:
		return chatToJSON(evs)
	case Responses:
		return responsesToJSON(evs)
	}
	return nil, provider.NotRenderable("openai %s", ep)
}

func (Format) ToStream(ep provider.Endpoint, body []byte, emit provider.Emit) (string, error) {
	w := &provider.StreamWriter{Emit: emit}
	switch ep {
	case ChatCompletions:
		return streamType, chatToStream(body, w)
	case Responses:
		return streamType, responsesToStream(body, w)
	}
	return "", provider.NotRenderable("openai %s", ep)
}

// streamType is the Content-Type of OpenAI's streams.
const streamType = "text/event-stream; charset=utf-8"

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// ErrorBody is {"error":{"message","type","param","code"}}.
func (Format) ErrorBody(e *edge.Error, _ string) []byte {
	typ := e.Type
	if typ == "" {
		typ = errorType(e.Status)
	}
	b, _ := json.Marshal(errorBody{Error: errorDetail{Message: e.Message, Type: typ, Code: e.Code}})
	return b
}

// StreamError is the error body as an unnamed event, as OpenAI sends it.
func (f Format) StreamError(e *edge.Error, requestID string) (string, []byte) {
	return "", f.ErrorBody(e, requestID)
}

// errorType maps a status to OpenAI's error type vocabulary.
func errorType(status int) string {
	switch {
	case status == 401:
		return "invalid_request_error"
	case status == 403:
		return "permission_error"
	case status == 429:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}
