package proxy

import (
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/provider"
)

// The errors the proxy answers itself, rendered in the shape of the
// provider the route belongs to. Provider errors never pass through here:
// they are forwarded unchanged.
var (
	errMissingKey = &edge.Error{Status: 401, Code: "invalid_api_key", Message: "Missing gateway key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."}
	errBadKey     = &edge.Error{Status: 401, Code: "invalid_api_key", Message: "Invalid gateway key: it is malformed, unknown or revoked."}
	errNotFound   = &edge.Error{Status: 404, Code: "unknown_url", Message: "Unknown route. The edge serves /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models, /v1/messages and /v1/messages/count_tokens."}
	errTooLarge   = &edge.Error{Status: 413, Code: "request_too_large", Message: "Request body exceeds the edge's limit (CODEX_MAX_BODY_BYTES)."}
	errTimeout    = &edge.Error{Status: 504, Code: "upstream_timeout", Message: "The provider did not answer in time."}
	errIdle       = &edge.Error{Status: 504, Code: "upstream_timeout", Message: "The provider's stream stalled longer than the edge's idle timeout."}
	errUnreach    = &edge.Error{Status: 502, Code: "upstream_unreachable", Message: "The provider could not be reached."}
	errStore      = &edge.Error{Status: 503, Code: "store_unavailable", Message: "The gateway cannot verify keys right now; retry shortly."}
)

func badJSON(detail string) *edge.Error {
	return &edge.Error{Status: 400, Code: "invalid_json", Message: "Malformed JSON body: " + detail}
}

func eventTooLarge(limit int) *edge.Error {
	return &edge.Error{Status: 502, Code: "upstream_event_too_large",
		Message: "The provider sent a stream event larger than the edge's limit of " + strconv.Itoa(limit) + " bytes; the stream was ended."}
}

func providerNotConfigured(p edge.Provider) *edge.Error {
	return &edge.Error{Status: 403, Code: "provider_not_configured", Message: "This org has no " + string(p) + " provider configured on the edge."}
}

func credentialUnavailable(p edge.Provider) *edge.Error {
	return &edge.Error{Status: 503, Code: "provider_credential_unavailable", Message: "The org's " + string(p) + " credential is not available on the edge; set it again with 'codex-edge providers set'."}
}

// writeError answers e in f's shape, unless the response has started.
func writeError(c echo.Context, f provider.Format, e *edge.Error) error {
	w := c.Response()
	if w.Committed {
		return nil
	}
	if e.RetryAfter > 0 {
		w.Header().Set("retry-after", strconv.Itoa(e.RetryAfter))
	}
	body := f.ErrorBody(e, w.Header().Get(headerRequestID))
	return c.Blob(e.Status, echo.MIMEApplicationJSON, body)
}
