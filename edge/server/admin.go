package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
)

// Limits of the admin listener. It has no write timeout: /debug/pprof/profile
// and /debug/pprof/trace answer only after the time they were asked to
// record (30 s by default).
const (
	// AdminReadHeaderTimeout bounds how long a client may take to send a
	// request's headers.
	AdminReadHeaderTimeout = 10 * time.Second
	// AdminIdleTimeout closes a keep-alive connection that has carried no
	// request for this long, so idle clients cannot hold connections open
	// for ever.
	AdminIdleTimeout = 2 * time.Minute
	// AdminMaxHeaderBytes bounds a request's headers.
	AdminMaxHeaderBytes = 64 << 10
)

// adminToken returns the bearer token the admin API requires, from
// CODEX_ADMIN_TOKEN or the file CODEX_ADMIN_TOKEN_FILE. Without one the
// admin API is served only on a loopback admin address.
func adminToken(cfg config.Config, getenv func(string) string) ([]byte, error) {
	token := strings.TrimSpace(getenv(config.AdminTokenEnv))
	if cfg.AdminTokenFile != "" {
		b, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("CODEX_ADMIN_TOKEN_FILE: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" && !config.IsLoopback(cfg.AdminListen) {
		return nil, fmt.Errorf("CODEX_ADMIN_LISTEN=%s is not a loopback address: set CODEX_ADMIN_TOKEN or CODEX_ADMIN_TOKEN_FILE so the admin API is not open to the network", cfg.AdminListen)
	}
	if token != "" && len(token) < 16 {
		return nil, errors.New("the admin token (CODEX_ADMIN_TOKEN or CODEX_ADMIN_TOKEN_FILE) must be at least 16 characters")
	}
	return []byte(token), nil
}

// guardAdmin runs before every route of the admin listener. A browser on
// the admin host is the attacker it stops: a web page can make that
// browser send requests to 127.0.0.1, and, by rebinding its own DNS name to
// 127.0.0.1, read the answers as if same-origin. So it refuses
//
//   - cross-site requests: Sec-Fetch-Site cross-site or same-site, or an
//     Origin other than the listener's own;
//   - without an admin token, a Host header that is not a loopback name
//     (localhost, 127.0.0.1 or [::1], any port): a rebound name is not;
//   - writes (POST, PUT, PATCH, DELETE) without Content-Type
//     application/json, with or without a body: no form or no-cors fetch
//     can send that type cross-origin without a CORS preflight, which this
//     listener never grants.
func guardAdmin(token []byte) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if crossSite(r) {
				return errCrossSite
			}
			if len(token) == 0 && !loopbackHost(r.Host) {
				return errAdminHost
			}
			switch r.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
					return edge.ErrAdminJSONOnly
				}
			}
			return next(c)
		}
	}
}

// The admin listener's refusals.
var (
	errCrossSite  = edge.StatusError(http.StatusForbidden, "cross-site request refused by the admin listener")
	errAdminHost  = edge.StatusError(http.StatusForbidden, "without an admin token the admin listener answers only to Host localhost, 127.0.0.1 or [::1]; set CODEX_ADMIN_TOKEN to reach it by another name")
	errAdminToken = edge.StatusError(http.StatusUnauthorized, "admin token required: Authorization: Bearer <CODEX_ADMIN_TOKEN>")
)

// crossSite reports whether a browser sent r from another site or origin.
// Clients other than browsers send neither header.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return !strings.EqualFold(origin, scheme+r.Host)
}

// loopbackHost reports whether a Host header names this machine's loopback
// interface by a name no other site can rebind.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	switch strings.ToLower(host) {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// requireToken checks the admin bearer token when one is set, in constant
// time (both sides hashed first, so not even the length leaks); an empty
// token means loopback-only access, checked at start-up and by guardAdmin.
func requireToken(token []byte) echo.MiddlewareFunc {
	want := sha256.Sum256(token)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if len(token) > 0 {
				got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
				sum := sha256.Sum256([]byte(got))
				if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
					return errAdminToken
				}
			}
			return next(c)
		}
	}
}

// revokeKey revokes a gateway key through this instance: it stops working
// here at once, and on other instances within CODEX_CHANGE_POLL.
func (s *Server) revokeKey(c echo.Context) error {
	ctx := c.Request().Context()
	k, err := s.store.KeyByID(ctx, c.Param("id"))
	if errors.Is(err, edge.ErrNotFound) {
		return err
	}
	if err != nil {
		return storeUnavailable(fmt.Errorf("admin: look up key: %w", err))
	}
	if err := s.dir.Revoke(ctx, k.OrgID, k.ID); err != nil {
		return storeUnavailable(fmt.Errorf("admin: revoke key %s: %w", k.ID, err))
	}
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.Change{OrgID: k.OrgID, Action: "keys.revoke", Target: k.ID}); err != nil {
		return storeUnavailable(fmt.Errorf("admin: the key was revoked, but %w", err))
	}
	s.log.Info("gateway key revoked", "key", k.ID, "org", k.OrgID)
	return c.JSON(http.StatusOK, map[string]string{"id": k.ID, "state": string(edge.KeyRevoked)})
}

// auditSharing records a switch of metrics sharing through the admin API
// in every org's audit log (the telemetry routes answer; this middleware
// sees a successful POST /sharing go by), and the enrollment a switch on
// made when the edge was not enrolled yet, even if the switch then failed.
func (s *Server) auditSharing(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		enrolled := new(bool)
		req := c.Request()
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), enrolledKey{}, enrolled)))
		err := next(c)
		by := audit.API(req)
		if *enrolled {
			st := s.tel.Status()
			if aerr := audit.AdminAll(req.Context(), s.store, by, audit.Change{Action: "telemetry.enroll", Target: st.EdgeID, Details: map[string]string{
				"control_plane": st.ControlPlaneURL, "control_plane_org": st.OrgID, "subject": st.Subject}}); aerr != nil {
				s.log.Error("admin: enrolled with the control plane, but not recorded in the audit log", "err", aerr)
			}
		}
		if err != nil || req.Method != http.MethodPost || !strings.HasSuffix(c.Path(), "/sharing") || c.Response().Status != http.StatusOK {
			return err
		}
		on := s.tel.Status().Sharing
		if aerr := audit.AdminAll(req.Context(), s.store, by,
			audit.Change{Action: "telemetry.sharing", Details: map[string]string{"on": fmt.Sprint(on)}}); aerr != nil {
			// The answer has gone out: the change stands, unrecorded.
			s.log.Error("admin: metrics sharing switched, but not recorded in the audit log", "err", aerr)
		}
		return nil
	}
}

// enrolledKey marks the context of an admin request whose enrollment,
// should it happen, auditSharing records.
type enrolledKey struct{}

// noteEnrolled wraps Options.Enroll so that an enrollment made for an
// admin request is known to auditSharing: the telemetry routes enroll
// inside their handler, out of the audit log's sight.
func noteEnrolled(enroll func(context.Context) error) func(context.Context) error {
	if enroll == nil {
		return nil
	}
	return func(ctx context.Context) error {
		if err := enroll(ctx); err != nil {
			return err
		}
		if done, ok := ctx.Value(enrolledKey{}).(*bool); ok {
			*done = true
		}
		return nil
	}
}

// storeUnavailable is the answer to a store that failed: the store, not the
// request, is at fault, and a retry may succeed.
func storeUnavailable(err error) *edge.Error {
	e := edge.StatusError(http.StatusServiceUnavailable, "store unavailable")
	e.Err = err
	return e
}

// adminError is the admin listener's echo.HTTPErrorHandler: every error a
// route, a guard or echo itself returns is answered as an edge.Error
// (edge.ErrorFor), in the admin API's one JSON shape. Server errors are
// logged with their cause under a reference the answer repeats.
func (s *Server) adminError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		err = edge.StatusError(he.Code, http.StatusText(he.Code))
	}
	e := *edge.ErrorFor(err)
	if e.Status >= 500 {
		var id [6]byte
		rand.Read(id[:])
		ref := hex.EncodeToString(id[:])
		s.log.Error("admin request failed", "path", c.Path(), "status", e.Status, "error_id", ref, "err", err)
		e.Message += " (reference " + ref + ")"
	}
	if err := c.JSON(e.Status, e.AdminBody()); err != nil {
		s.log.Warn("admin: write error answer", "err", err)
	}
}
