package proxy

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
)

// apiError is an error the edge itself answers, rendered in the shape of
// the provider the route belongs to. Provider errors never pass through
// here: they are forwarded unchanged.
type apiError struct {
	status  int
	code    string // OpenAI "code"; also picks the Anthropic type
	message string
	// retryAfter, when positive, is sent as the retry-after header (seconds).
	retryAfter int
}

func (e *apiError) Error() string { return e.message }

var (
	errMissingKey = &apiError{status: 401, code: "invalid_api_key", message: "Missing gateway key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."}
	errBadKey     = &apiError{status: 401, code: "invalid_api_key", message: "Invalid gateway key: it is malformed, unknown or revoked."}
	errNotFound   = &apiError{status: 404, code: "unknown_url", message: "Unknown route. The edge serves /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models, /v1/messages and /v1/messages/count_tokens."}
	errTooLarge   = &apiError{status: 413, code: "request_too_large", message: "Request body exceeds the edge's limit (CODEX_MAX_BODY_BYTES)."}
	errTimeout    = &apiError{status: 504, code: "upstream_timeout", message: "The provider did not answer in time."}
	errIdle       = &apiError{status: 504, code: "upstream_timeout", message: "The provider's stream stalled longer than the edge's idle timeout."}
	errUnreach    = &apiError{status: 502, code: "upstream_unreachable", message: "The provider could not be reached."}
	errStore      = &apiError{status: 503, code: "store_unavailable", message: "The gateway cannot verify keys right now; retry shortly."}
)

func badJSON(detail string) *apiError {
	return &apiError{status: 400, code: "invalid_json", message: "Malformed JSON body: " + detail}
}

func providerNotConfigured(p edge.Provider) *apiError {
	return &apiError{status: 403, code: "provider_not_configured", message: "This org has no " + string(p) + " provider configured on the edge."}
}

func credentialUnavailable(p edge.Provider) *apiError {
	return &apiError{status: 503, code: "provider_credential_unavailable", message: "The org's " + string(p) + " credential is not available on the edge; set it again with 'codex-edge providers set'."}
}

// anthropicType maps a status to Anthropic's error type vocabulary.
func anthropicType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 408, 504:
		return "timeout_error"
	case 503, 529:
		return "overloaded_error"
	}
	return "api_error"
}

// openAIType maps a status to OpenAI's error type vocabulary.
func openAIType(status int) string {
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

type openAIErrorBody struct {
	Error openAIError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

type anthropicErrorBody struct {
	Type      string         `json:"type"`
	Error     anthropicError `json:"error"`
	RequestID string         `json:"request_id,omitempty"`
}

type anthropicError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// errorBody renders e in p's shape.
func errorBody(p edge.Provider, e *apiError, requestID string) any {
	if p == edge.Anthropic {
		return anthropicErrorBody{Type: "error", Error: anthropicError{Type: anthropicType(e.status), Message: e.message}, RequestID: requestID}
	}
	return openAIErrorBody{Error: openAIError{Message: e.message, Type: openAIType(e.status), Code: e.code}}
}

// writeError answers e in p's shape, unless the response has started.
func writeError(c echo.Context, p edge.Provider, e *apiError) error {
	if c.Response().Committed {
		return nil
	}
	if e.retryAfter > 0 {
		c.Response().Header().Set("retry-after", strconv.Itoa(e.retryAfter))
	}
	return c.JSON(e.status, errorBody(p, e, c.Response().Header().Get(headerRequestID)))
}

// providerForPath guesses the provider of a request that matched no route,
// so even a 404 comes in a shape the client's SDK can read.
func providerForPath(r *http.Request) edge.Provider {
	if r.Header.Get("anthropic-version") != "" || len(r.URL.Path) >= 12 && r.URL.Path[:12] == "/v1/messages" {
		return edge.Anthropic
	}
	return edge.OpenAI
}
