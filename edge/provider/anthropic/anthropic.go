// Package anthropic is Anthropic's wire format (provider.Format): the
// Messages API, its token counter and the models list.
package anthropic

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/usage"
)

// Anthropic's endpoints.
const (
	Messages    provider.Endpoint = "messages"              // POST /v1/messages
	CountTokens provider.Endpoint = "messages.count_tokens" // POST /v1/messages/count_tokens
	Models      provider.Endpoint = "models"                // GET /v1/models, with anthropic-version
)

// versionHeader is sent by every Anthropic SDK.
const versionHeader = "anthropic-version"

// Format is Anthropic's wire format.
type Format struct{}

var _ provider.Format = Format{}

func (Format) Provider() edge.Provider { return edge.Anthropic }

func (Format) DefaultBaseURL() string { return "https://api.anthropic.com" }

// RequiredRates: Anthropic bills cache reads and writes outside input_tokens: without their rates, no answer could be priced.
func (Format) RequiredRates() []string { return []string{"cached_input", "cache_write", "output"} }

var routes = []provider.Route{
	{Method: http.MethodPost, Path: "/v1/messages", Endpoint: Messages},
	{Method: http.MethodPost, Path: "/v1/messages/count_tokens", Endpoint: CountTokens},
	// The models list has OpenAI's path; Anthropic's SDKs say who they are.
	{Method: http.MethodGet, Path: "/v1/models", Endpoint: Models, Header: versionHeader},
}

func (Format) Routes() []provider.Route { return routes }

func (Format) Owns(r *http.Request) bool {
	return r.Header.Get(versionHeader) != "" || strings.HasPrefix(r.URL.Path, "/v1/messages")
}

func (Format) SetCredential(h http.Header, credential string) { h.Set("X-Api-Key", credential) }

func (Format) Cacheable(ep provider.Endpoint) bool { return ep == Messages }

func (Format) Billing(ep provider.Endpoint) provider.Billing {
	switch ep {
	case Messages:
		return provider.Tokens
	case CountTokens, Models:
		return provider.Free
	}
	return provider.Unbilled
}

func (Format) StandardTier(tier string) bool { return tier == "" || tier == "standard" }

// Rewrite changes nothing: Anthropic streams always report usage.
func (Format) Rewrite(_ provider.Endpoint, body []byte, _ fingerprint.Info) ([]byte, bool, error) {
	return body, false, nil
}

// systemBlockBefore and systemBlockAfter wrap the injected text as a text
// block of system.
var (
	systemBlockBefore = []byte(`{"type":"text","text":`)
	systemBlockAfter  = []byte(`}`)
)

// InjectSystem puts s at the front of system, for messages and
// count_tokens alike (so a count includes what will be sent): in front of
// a string's text, or as a first text block of its own before the
// client's blocks. The client's blocks, cache_control breakpoints
// included, stay as they were; the block put in has no cache_control (a
// request may carry only four), and, being first, is part of every cached
// prefix the client's breakpoints mark.
func (Format) InjectSystem(ep provider.Endpoint, body []byte, s provider.System) ([]byte, bool, error) {
	if s.IsZero() || (ep != Messages && ep != CountTokens) {
		return body, false, nil
	}
	open, v, err := provider.Member(body, "system")
	if err != nil {
		return body, false, err
	}
	if !v.Absent() && body[v.Start] == '[' {
		out, ok := provider.InsertFirst(body, v, systemBlockBefore, s, systemBlockAfter)
		return out, ok, nil
	}
	out, ok := provider.PrependString(body, open, "system", v, s)
	return out, ok, nil
}

func kind(ep provider.Endpoint) usage.Kind {
	if ep == Messages {
		return usage.AnthropicMessages
	}
	return usage.NoUsage
}

func (Format) ParseUsage(ep provider.Endpoint, body []byte) (usage.Result, error) {
	return usage.Parse(kind(ep), body)
}

func (Format) NewStream(ep provider.Endpoint) *usage.Stream { return usage.NewStream(kind(ep)) }

// IsFinal: message_stop, named by the event field or by the data's type.
func (Format) IsFinal(ep provider.Endpoint, name, data []byte) bool {
	return ep == Messages && provider.TypedEvent(name, data, "message_stop")
}

func (Format) ToJSON(ep provider.Endpoint, evs []provider.Event) ([]byte, error) {
	if ep != Messages {
		return nil, provider.NotRenderable("anthropic %s", ep)
	}
	return messagesToJSON(evs)
}

func (Format) ToStream(ep provider.Endpoint, body []byte, emit provider.Emit) (string, error) {
	if ep != Messages {
		return "", provider.NotRenderable("anthropic %s", ep)
	}
	return "text/event-stream", messagesToStream(body, &provider.StreamWriter{Emit: emit})
}

type errorBody struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorBody is {"type":"error","error":{"type","message"},"request_id"}.
func (Format) ErrorBody(e *edge.Error, requestID string) []byte {
	b, _ := json.Marshal(errorBody{Type: "error", Error: errorDetail{Type: errorType(e.Status), Message: e.Message}, RequestID: requestID})
	return b
}

// StreamError is the error body as an "error" event, as Anthropic sends it.
func (f Format) StreamError(e *edge.Error, requestID string) (string, []byte) {
	return "error", f.ErrorBody(e, requestID)
}

// errorType maps a status to Anthropic's error type vocabulary.
func errorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 408:
		return "timeout_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 503, 529:
		return "overloaded_error"
	}
	return "api_error"
}
