package server

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/keyring/byok"
	"github.com/persiv/codex/edge/keyring/kek"
)

var (
	errBYOKPlainHTTP = edge.StatusError(http.StatusForbidden, "an org's key is accepted over TLS only (CODEX_TLS_CERT); refused on plain HTTP")
	errBYOKNoToken   = edge.StatusError(http.StatusForbidden, "an org's key is accepted only with CODEX_ADMIN_TOKEN set")
)

// putBYOK takes an org's ephemeral BYOK key (orgs kek set --org ORG
// byok-ephemeral) and holds it in this process's memory only: the body is
// {"key": "<64 hex digits or base64 of 32 bytes>"}. It is refused on plain
// HTTP and when no admin token is configured, since the key must not cross
// a network in the clear nor be settable by whoever reaches loopback.
func (s *Server) putBYOK(c echo.Context) error {
	if c.Request().TLS == nil {
		return errBYOKPlainHTTP
	}
	if !s.adminTokenSet {
		return errBYOKNoToken
	}
	var body struct {
		Key string `json:"key"`
	}
	if err := c.Bind(&body); err != nil {
		return edge.StatusError(http.StatusBadRequest, "body: {\"key\": \"<256-bit key, hex or base64>\"}")
	}
	key, err := byok.ParseKey(body.Key)
	body.Key = ""
	if err != nil {
		return edge.StatusError(http.StatusBadRequest, "key: not a 256-bit key in hex or base64")
	}
	defer clear(key)
	if s.orgKeys == nil {
		return edge.StatusError(http.StatusNotFound, "this store has no per-org master keys")
	}
	o, err := s.org(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.orgKeys.SetEphemeral(o.ID, key); err != nil {
		// orgs kek set may have run after this edge last read the change
		// feed: read the orgs' master keys again before refusing.
		if _, lerr := s.orgKeys.Load(ctx); lerr != nil {
			return storeUnavailable(lerr)
		}
		if err := s.orgKeys.SetEphemeral(o.ID, key); err != nil {
			return edge.StatusError(http.StatusConflict, err.Error())
		}
	}
	// The org's credentials, memories and secret were loaded unreadable
	// while the key was missing: load them again.
	s.keys.Invalidate(o.ID)
	s.dir.ForgetOrg(o.ID)
	s.log.InfoContext(ctx, "org's ephemeral BYOK key received; held in memory only", "org_id", o.ID)
	// An org moved to byok-ephemeral with data keeps its data keys under
	// the earlier master key until its key arrives: move them now, here,
	// since only a process holding the key can.
	res, err := s.keys.RewrapOrg(ctx, o.ID, kek.Previous(ctx), nil)
	out := map[string]any{"org_id": o.ID, "status": "key held in memory", "data_keys": res.Total, "rewrapped": res.Rewrapped, "failed": res.Failed}
	if err != nil {
		s.log.WarnContext(ctx, "org's data keys not all re-wrapped under its ephemeral key; send the key again to retry", "org_id", o.ID, "err", err)
		out["error"] = "some data keys could not be re-wrapped under the key (their earlier master key is unusable); send the key again to retry"
	}
	// The fact that a key arrived, never anything derived from it.
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.BYOKSupplied(o.ID, res.Total, res.Rewrapped, res.Failed)); err != nil {
		return storeUnavailable(fmt.Errorf("admin: the org's key is held, but %w", err))
	}
	return c.JSON(http.StatusOK, out)
}
