package controlplane_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/persiv/codex/controlplane"
)

// Issue 14, item 4: one kind vocabulary, one table to HTTP statuses.
func TestKindStatus(t *testing.T) {
	for _, c := range []struct {
		kind   controlplane.Kind
		status int
	}{
		{controlplane.KindInvalid, 400}, {controlplane.KindUnauthorized, 401}, {controlplane.KindForbidden, 403},
		{controlplane.KindNotFound, 404}, {controlplane.KindMethodNotAllowed, 405}, {controlplane.KindConflict, 409},
		{controlplane.KindTooLarge, 413}, {controlplane.KindUnsupportedMedia, 415}, {controlplane.KindRateLimited, 429},
		{controlplane.KindInternal, 500}, {controlplane.KindUnavailable, 503}, {"no_such_kind", 500},
	} {
		if got := c.kind.Status(); got != c.status {
			t.Errorf("%s.Status() = %d, want %d", c.kind, got, c.status)
		}
		if c.kind != "no_such_kind" && controlplane.KindOfStatus(c.status) != c.kind {
			t.Errorf("KindOfStatus(%d) = %s, want %s", c.status, controlplane.KindOfStatus(c.status), c.kind)
		}
	}
	if k := controlplane.KindOfStatus(http.StatusTeapot); k != controlplane.KindInvalid {
		t.Errorf("KindOfStatus(418) = %s", k)
	}
	if k := controlplane.KindOfStatus(http.StatusBadGateway); k != controlplane.KindInternal {
		t.Errorf("KindOfStatus(502) = %s", k)
	}
}

func TestErrorFor(t *testing.T) {
	own := &controlplane.Error{Kind: controlplane.KindUnauthorized, Code: "invalid_token", Message: "invalid or expired enrollment token"}
	cause := errors.New("database is locked")
	for _, c := range []struct {
		name      string
		err       error
		status    int
		code, msg string
	}{
		{"an Error, wrapped", fmt.Errorf("enroll: %w", own), 401, "invalid_token", "invalid or expired enrollment token"},
		{"invalid", fmt.Errorf("%w: name must match [a-z]", controlplane.ErrInvalid), 400, "invalid_request", "invalid: name must match [a-z]"},
		{"unauthorized", fmt.Errorf("token of org_b: %w", controlplane.ErrUnauthorized), 401, "unauthorized", "Unauthorized."},
		{"not found", fmt.Errorf("edge edge_of_org_b: %w", controlplane.ErrNotFound), 404, "not_found", "Not found."},
		{"last owner", controlplane.ErrLastOwner, 409, "conflict", "This conflicts with the current state. Reload and try again."},
		{"anything else", fmt.Errorf("store: %w", cause), 500, "internal", "Internal error."},
	} {
		e := controlplane.ErrorFor(c.err)
		if e.Status() != c.status || e.APICode() != c.code || e.Message != c.msg {
			t.Errorf("%s: %d %q %q, want %d %q %q", c.name, e.Status(), e.APICode(), e.Message, c.status, c.code, c.msg)
		}
		if body := e.Body(); body.Error.Code != c.code || body.Error.Message != c.msg {
			t.Errorf("%s: body %+v", c.name, body)
		}
	}
	if e := controlplane.ErrorFor(fmt.Errorf("store: %w", cause)); !errors.Is(e, cause) {
		t.Error("an internal error lost its cause")
	}
}
