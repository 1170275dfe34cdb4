package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring/byok"
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
	org := c.Param("org")
	if s.orgKeys == nil {
		return edge.StatusError(http.StatusNotFound, "this store has no per-org master keys")
	}
	if err := s.orgKeys.SetEphemeral(org, key); err != nil {
		return edge.StatusError(http.StatusConflict, err.Error())
	}
	s.keys.Invalidate(org)
	s.log.InfoContext(c.Request().Context(), "org's ephemeral BYOK key received; held in memory only", "org_id", org)
	return c.JSON(http.StatusOK, map[string]string{"org_id": org, "status": "key held in memory"})
}
