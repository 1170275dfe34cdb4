// Package provider describes the AI providers' wire formats to the rest of
// the edge. Each provider's format lives in one package (provider/openai,
// provider/anthropic) implementing Format: its routes and endpoints, the
// rewrite a request needs, how its answers report usage, which stream
// event ends an answer, how an answer is rendered stream ↔ JSON for the
// cache, and the shape of its errors. Nothing outside those packages names
// an endpoint or switches on a provider: it asks the Format.
package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/usage"
)

// Endpoint names one API of a provider, as recorded in
// edge.RequestRecord.Endpoint (e.g. "chat.completions", "messages").
type Endpoint string

// Route is one provider endpoint the edge serves.
type Route struct {
	Method   string
	Path     string
	Endpoint Endpoint
	// Header, when set, must be present for the route to match. It tells
	// two providers' routes on one path apart: Anthropic's models list has
	// OpenAI's path, and Anthropic's SDKs send anthropic-version.
	Header string
}

// Billing is how a provider bills an endpoint.
type Billing uint8

const (
	// Unbilled: the edge does not know how the endpoint is billed; its
	// cost stays unknown.
	Unbilled Billing = iota
	// Free: the endpoint costs nothing (a models list, a token count).
	Free
	// Tokens: the endpoint bills the tokens its answers report.
	Tokens
)

// Format is one provider's wire format.
type Format interface {
	Provider() edge.Provider
	// DefaultBaseURL is the provider's public API root.
	DefaultBaseURL() string
	// Routes are the endpoints the edge serves for this provider.
	Routes() []Route
	// Owns reports whether a request that matched no route most likely
	// came from this provider's SDK, so that even a 404 comes in a shape
	// the SDK reads.
	Owns(r *http.Request) bool
	// SetCredential puts the provider credential on an upstream request.
	SetCredential(h http.Header, credential string)

	// Cacheable reports whether answers of ep may be cached.
	Cacheable(ep Endpoint) bool
	// Billing says how ep is billed.
	Billing(ep Endpoint) Billing
	// StandardTier reports whether a reported service tier is the one
	// list prices are for ("" when none was reported).
	StandardTier(tier string) bool
	// RequiredRates are the price-file fields every model of this
	// provider must set besides input: those without which none of its
	// answers could be priced.
	RequiredRates() []string

	// Rewrite returns the body to send upstream for a request to ep, given
	// what the fingerprint scan read of it, and whether usage-only stream
	// events must be kept from the client (the edge asked for them).
	Rewrite(ep Endpoint, body []byte, info fingerprint.Info) (out []byte, hideUsage bool, err error)
	// InjectSystem puts s in front of the system instruction of a request
	// to ep (the body as the client sent it), in the provider's own form,
	// leaving everything the client sent in place. ok is false, and body
	// is returned as it is, when ep has no system instruction or the body
	// has no place for one that the provider would read (the provider
	// then answers the request as the client sent it); err means the
	// body's top level is not a well-formed JSON object.
	InjectSystem(ep Endpoint, body []byte, s System) (out []byte, ok bool, err error)
	// ParseUsage reads the usage of a complete JSON answer of ep.
	ParseUsage(ep Endpoint, body []byte) (usage.Result, error)
	// NewStream returns the usage tracker of a stream from ep.
	NewStream(ep Endpoint) *usage.Stream
	// IsFinal reports whether an event, by its name and data, is the one
	// that ends a finished stream of ep; a stream cut off before it is
	// incomplete.
	IsFinal(ep Endpoint, name, data []byte) bool

	// ToJSON renders the events of a complete stream of ep as the JSON
	// answer the provider would have given. ErrNotRenderable when it
	// cannot do so faithfully.
	ToJSON(ep Endpoint, events []Event) ([]byte, error)
	// ToStream renders a JSON answer of ep as the events of a stream,
	// passing each to emit, and returns the stream's Content-Type.
	// ErrNotRenderable when it cannot do so faithfully.
	ToStream(ep Endpoint, body []byte, emit Emit) (contentType string, err error)

	// ErrorBody is e as this provider's error body.
	ErrorBody(e *edge.Error, requestID string) []byte
	// StreamError is e as this provider's stream error event: the event
	// name (empty for none) and data.
	StreamError(e *edge.Error, requestID string) (event string, data []byte)
}

// Event is one event of a stream, for rendering.
type Event struct {
	Name string
	Data []byte
}

// Emit receives one rendered stream event: its name (empty for none), its
// data, and whether it is a usage-only event (see Format.Rewrite).
type Emit func(name string, data []byte, usageOnly bool)

// ErrNotRenderable means an answer cannot be rendered faithfully in the
// other form (stream ↔ JSON): it holds something the renderer does not
// know (logprobs, audio, reasoning items, thinking blocks), or a stream did
// not complete. The cache keeps a separate entry per form then.
var ErrNotRenderable = errors.New("answer cannot be rendered in the other form")

// NotRenderable wraps ErrNotRenderable with a reason.
func NotRenderable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotRenderable}, args...)...)
}

// Formats are the formats the edge speaks, by provider. The first one is
// the default for requests no format owns.
type Formats []Format

// Get returns p's format.
func (fs Formats) Get(p edge.Provider) (Format, bool) {
	for _, f := range fs {
		if f.Provider() == p {
			return f, true
		}
	}
	return nil, false
}

// Owner returns the format a request that matched no route most likely
// came from.
func (fs Formats) Owner(r *http.Request) Format {
	for _, f := range fs {
		if f.Owns(r) {
			return f
		}
	}
	return fs[0]
}

// Match is one route with its format.
type Match struct {
	Format Format
	Route  Route
}

// Routes groups every format's routes by method and path, routes with a
// Header first, so that Pick finds the most specific.
func (fs Formats) Routes() map[[2]string][]Match {
	out := make(map[[2]string][]Match)
	for _, f := range fs {
		for _, rt := range f.Routes() {
			k := [2]string{rt.Method, rt.Path}
			m := Match{Format: f, Route: rt}
			if rt.Header != "" {
				out[k] = append([]Match{m}, out[k]...)
			} else {
				out[k] = append(out[k], m)
			}
		}
	}
	return out
}

// Pick returns the first of ms whose header requirement r meets.
func Pick(ms []Match, r *http.Request) Match {
	for _, m := range ms {
		if m.Route.Header == "" || r.Header.Get(m.Route.Header) != "" {
			return m
		}
	}
	return ms[len(ms)-1]
}

// TypedEvent reports whether an event is of type want: by its event name,
// or by the "type" its data opens with when it has none.
func TypedEvent(name, data []byte, want string) bool {
	if len(name) > 0 {
		return string(name) == want
	}
	return bytes.Contains(data, []byte(`"type":"`+want+`"`))
}

// StreamWriter marshals rendered events for an Emit, keeping the first
// error.
type StreamWriter struct {
	Emit Emit
	Err  error
}

// Event emits one event whose data is v: raw bytes as they are, anything
// else as JSON.
func (w *StreamWriter) Event(name string, v any, usageOnly bool) {
	if w.Err != nil {
		return
	}
	data, ok := v.([]byte)
	if !ok {
		if data, w.Err = json.Marshal(v); w.Err != nil {
			return
		}
	}
	w.Emit(name, data, usageOnly)
}
