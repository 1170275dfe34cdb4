package edge

import (
	"errors"
	"net/http"
)

// Error is an error the edge answers itself: to a client in the shape of
// the provider its route belongs to (see provider.Format.ErrorBody), or on
// the admin API as JSON (see AdminBody). Provider errors never become an
// Error: they are forwarded unchanged.
type Error struct {
	Status  int
	Code    string // OpenAI's "code"; also picks Anthropic's type
	Message string
	// Type, when set, is OpenAI's error "type" instead of the one the
	// status implies (rate limits say "requests" or "tokens", budgets
	// "insufficient_quota"). Anthropic's type always follows the status.
	Type string
	// RetryAfter, when positive, is sent as the retry-after header, in
	// seconds.
	RetryAfter int
	// Err, when set, is the cause: logged with the answer, never shown.
	Err error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// statusCodes is the one table of the codes the edge's own answers carry
// for a status, when no more precise code applies.
var statusCodes = map[int]string{
	http.StatusBadRequest:            "invalid_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "request_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusInternalServerError:   "internal",
	http.StatusServiceUnavailable:    "unavailable",
}

// StatusError returns an Error of the given status, with the status's code
// from the one table ("error" for a status it lacks).
func StatusError(status int, message string) *Error {
	code, ok := statusCodes[status]
	if !ok {
		code = "error"
	}
	return &Error{Status: status, Code: code, Message: message}
}

// ErrAdminJSONOnly refuses an admin API write without Content-Type
// application/json: no web page can send that type cross-origin without a
// CORS preflight, which the admin listener never grants.
var ErrAdminJSONOnly = StatusError(http.StatusUnsupportedMediaType, "the admin API takes JSON only: send Content-Type: application/json with every write, even one without a body")

// ErrorFor maps err to the Error the edge answers with:
//
//   - an *Error in err's chain, as it is;
//   - ErrInvalid: 400 invalid_request;
//   - ErrNotFound: 404 not_found;
//   - ErrConflict: 409 conflict;
//   - anything else: 500 internal, "internal error", with err as its cause.
//
// The stores' kinds are shown with err's text: callers and stores wrap them
// with ids and field names only, never secrets or content, and the admin
// API answers operators. What an unknown error says is for the log only.
func ErrorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var status int
	switch {
	case errors.Is(err, ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		status = http.StatusConflict
	default:
		e = StatusError(http.StatusInternalServerError, "internal error")
		e.Err = err
		return e
	}
	e = StatusError(status, err.Error())
	e.Err = err
	return e
}

// AdminBody is the admin API's error body:
// {"error":{"code":"…","message":"…"}}.
type AdminBody struct {
	Error AdminDetail `json:"error"`
}

// AdminDetail is the inside of an AdminBody.
type AdminDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// AdminBody returns e as the admin API answers it.
func (e *Error) AdminBody() AdminBody {
	return AdminBody{Error: AdminDetail{Code: e.Code, Message: e.Message}}
}
