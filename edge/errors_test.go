package edge_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/persiv/codex/edge"
)

// Issue 14, item 4: one mapping from the edge's error kinds to its answers.
func TestErrorFor(t *testing.T) {
	own := &edge.Error{Status: http.StatusConflict, Code: "not_enrolled", Message: "enroll first"}
	cause := errors.New("disk on fire")
	for _, c := range []struct {
		name      string
		err       error
		status    int
		code, msg string
		wantCause error
		sameAsOwn bool
	}{
		{"an Error, wrapped", fmt.Errorf("sharing: %w", own), http.StatusConflict, "not_enrolled", "enroll first", nil, true},
		{"invalid", fmt.Errorf("key %q: state %q: %w", "key_1", "x", edge.ErrInvalid), 400, "invalid_request", `key "key_1": state "x": invalid`, edge.ErrInvalid, false},
		{"not found", fmt.Errorf("key %q: %w", "key_nope", edge.ErrNotFound), 404, "not_found", `key "key_nope": not found`, edge.ErrNotFound, false},
		{"conflict", fmt.Errorf("create dek: %w", edge.ErrConflict), 409, "conflict", "create dek: conflict", edge.ErrConflict, false},
		{"anything else", fmt.Errorf("read /var/lib/codex/ledger: %w", cause), 500, "internal", "internal error", cause, false},
	} {
		e := edge.ErrorFor(c.err)
		if e.Status != c.status || e.Code != c.code || e.Message != c.msg {
			t.Errorf("%s: %d %q %q, want %d %q %q", c.name, e.Status, e.Code, e.Message, c.status, c.code, c.msg)
		}
		if c.sameAsOwn && e != own {
			t.Errorf("%s: not the Error in the chain", c.name)
		}
		if c.wantCause != nil && !errors.Is(e, c.wantCause) {
			t.Errorf("%s: the cause is lost", c.name)
		}
	}
}

func TestStatusError(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
	}{
		{400, "invalid_request"}, {401, "unauthorized"}, {403, "forbidden"}, {404, "not_found"},
		{405, "method_not_allowed"}, {415, "unsupported_media_type"}, {500, "internal"}, {418, "error"},
	} {
		if e := edge.StatusError(c.status, "m"); e.Status != c.status || e.Code != c.code || e.Message != "m" {
			t.Errorf("StatusError(%d) = %+v, want code %q", c.status, e, c.code)
		}
	}
}
