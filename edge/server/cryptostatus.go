package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge/config"
)

// CryptoStatus is the answer of GET /admin/v1/crypto/status: what only a
// running edge knows about the orgs' master keys, for `codex-edge crypto
// status`. Both lists hold org ids, sorted, never nil.
type CryptoStatus struct {
	// WaitingForKey: orgs on byok-ephemeral whose key has not been sent
	// to this edge since it started.
	WaitingForKey []string `json:"orgs_waiting_for_key"`
	// KeyInMemory: orgs whose ephemeral key this edge holds in memory.
	KeyInMemory []string `json:"orgs_key_in_memory"`
}

// cryptoStatus answers GET /admin/v1/crypto/status. It names orgs, never
// a key.
func (s *Server) cryptoStatus(c echo.Context) error {
	out := CryptoStatus{WaitingForKey: []string{}, KeyInMemory: []string{}}
	if s.orgKeys != nil {
		if w := s.orgKeys.Waiting(); w != nil {
			out.WaitingForKey = w
		}
		out.KeyInMemory = s.orgKeys.Held()
	}
	return c.JSON(http.StatusOK, out)
}

// AdminToken returns the admin API's bearer token as serve reads it
// (CODEX_ADMIN_TOKEN or CODEX_ADMIN_TOKEN_FILE; empty when none is set),
// for the CLI's requests to a running edge.
func AdminToken(cfg config.Config, getenv func(string) string) ([]byte, error) {
	return adminToken(cfg, getenv)
}
