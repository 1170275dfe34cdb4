package controlplane

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/persiv/codex/shared/wire"
)

// Kind is what went wrong, as far as a client may know. It picks the HTTP
// status (Kind.Status) and is the API's error code unless an Error names a
// more precise one. The API and the dashboard share this one vocabulary.
type Kind string

const (
	KindInvalid          Kind = "invalid_request"
	KindUnauthorized     Kind = "unauthorized"
	KindForbidden        Kind = "forbidden"
	KindNotFound         Kind = "not_found"
	KindMethodNotAllowed Kind = "method_not_allowed"
	KindConflict         Kind = "conflict"
	KindTooLarge         Kind = "too_large"
	KindUnsupportedMedia Kind = "unsupported_media_type"
	KindRateLimited      Kind = "rate_limited"
	KindInternal         Kind = "internal"
	KindUnavailable      Kind = "unavailable"
)

// kindStatus is the one table from kinds to HTTP statuses.
var kindStatus = map[Kind]int{
	KindInvalid:          http.StatusBadRequest,
	KindUnauthorized:     http.StatusUnauthorized,
	KindForbidden:        http.StatusForbidden,
	KindNotFound:         http.StatusNotFound,
	KindMethodNotAllowed: http.StatusMethodNotAllowed,
	KindConflict:         http.StatusConflict,
	KindTooLarge:         http.StatusRequestEntityTooLarge,
	KindUnsupportedMedia: http.StatusUnsupportedMediaType,
	KindRateLimited:      http.StatusTooManyRequests,
	KindInternal:         http.StatusInternalServerError,
	KindUnavailable:      http.StatusServiceUnavailable,
}

// Status is the kind's HTTP status; 500 for a kind not in the table.
func (k Kind) Status() int {
	if s, ok := kindStatus[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// KindOfStatus returns the kind of an HTTP status, for errors that come with
// a status only (a router's 404 and 405). A status of no kind is
// KindInvalid when it is a 4xx, KindInternal otherwise.
func KindOfStatus(status int) Kind {
	for k, s := range kindStatus {
		if s == status {
			return k
		}
	}
	if status >= 400 && status < 500 {
		return KindInvalid
	}
	return KindInternal
}

// Error is an error with what a client may be shown: its kind and a safe
// message. Details stay in Err, for the log.
type Error struct {
	Kind    Kind
	Code    string // the API's error code when more precise than Kind
	Message string // shown to the client
	Err     error  // the cause: logged, never shown
}

// StatusError is the Error of an answer that comes with a status only (a
// router's 404 and 405): the status's kind and text.
func StatusError(status int) *Error {
	return &Error{Kind: KindOfStatus(status), Message: http.StatusText(status)}
}

// Errorf returns an Error of kind whose message is formatted.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Status is the HTTP status of the error's kind.
func (e *Error) Status() int { return e.Kind.Status() }

// APICode is the API's error code: Code when set, else the kind.
func (e *Error) APICode() string {
	if e.Code != "" {
		return e.Code
	}
	return string(e.Kind)
}

// Body returns e as the API answers it: {"error":{"code","message"}}, the
// shape an edge reads when enrollment is refused.
func (e *Error) Body() wire.ErrorBody {
	return wire.ErrorBody{Error: wire.ErrorDetail{Code: e.APICode(), Message: e.Message}}
}

// ErrorFor maps err to what a client is shown:
//
//   - an *Error in err's chain, as it is;
//   - ErrInvalid: KindInvalid with err's text, which names the field and
//     the rule;
//   - ErrUnauthorized, ErrNotFound, ErrConflict: their kind with a fixed
//     message, since the text around them may name another org's ids;
//   - anything else: KindInternal with err as its cause, which the caller
//     logs under a reference it shows instead.
func ErrorFor(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrInvalid):
		return &Error{Kind: KindInvalid, Message: err.Error(), Err: err}
	case errors.Is(err, ErrUnauthorized):
		return &Error{Kind: KindUnauthorized, Message: "Unauthorized.", Err: err}
	case errors.Is(err, ErrNotFound):
		return &Error{Kind: KindNotFound, Message: "Not found.", Err: err}
	case errors.Is(err, ErrConflict):
		return &Error{Kind: KindConflict, Message: "This conflicts with the current state. Reload and try again.", Err: err}
	}
	return &Error{Kind: KindInternal, Message: "Internal error.", Err: err}
}
