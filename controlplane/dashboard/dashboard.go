// Package dashboard serves the control plane's web dashboard: login and
// sessions, members and invitations, usage overview, edge fleet and a page
// stating exactly which metadata the control plane holds.
//
// Pages are rendered on the server with html/template, charts as inline
// SVG: no script runs in the browser, and the Content-Security-Policy
// forbids any. Sessions are HS256 JWTs in HttpOnly, Secure, SameSite=Strict
// cookies, checked on every request against the user's session epoch in
// the store, so logout, a password change or removal ends every session
// of the user at once. The role, too, is the store's on every request:
// a role change applies from the member's next request, without ending
// their sessions. Every state-changing request carries a CSRF token
// bound to the session. Browser routes take forms; the JSON API under
// /api/v1/dashboard takes JSON only.
package dashboard

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/config"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/sealer"
)

// Cookie names. The session cookie holds the JWT; the pre-session cookie
// binds the login and invitation forms' CSRF token to the browser.
const (
	SessionCookie = "codex_session"
	preCookie     = "codex_pre"
)

// CSP is the Content-Security-Policy of every page: same-origin only, no
// script at all, no inline style, no framing.
const CSP = "default-src 'self'; script-src 'none'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Config is what the dashboard needs.
type Config struct {
	Store controlplane.Store
	// Enroll creates enrollment tokens and revokes edges.
	Enroll *enroll.Service
	// Key signs sessions (see SharedKey); at least 32 bytes.
	Key []byte
	// SessionTTL is a session's lifetime; 12 hours if zero.
	SessionTTL time.Duration
	// InviteTTL is an invitation link's lifetime; 7 days if zero.
	InviteTTL time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	Log *slog.Logger
	// LoginRate, LoginBurst, PasswordHashers and PasswordHashWait are
	// config.Config's (see there); config.Default()'s where zero.
	LoginRate, LoginBurst int
	PasswordHashers       int
	PasswordHashWait      time.Duration

	// StaffKey, when set, enables the staff pages under /staff: it signs
	// staff sessions (its own key, never Key; see SharedKey), at
	// least 32 bytes. Sealer opens the staff's sealed TOTP secrets; it is
	// required with StaffKey.
	StaffKey []byte
	Sealer   *sealer.Sealer
	// IngestStats, when set, reports the ingest's counters to staff.
	IngestStats func() ingest.Stats
}

// Server is the dashboard.
type Server struct {
	store   controlplane.Store
	enroll  *enroll.Service
	key     []byte
	jwtKey  []byte
	csrfKey []byte
	preKey  []byte
	ttl     time.Duration
	invTTL  time.Duration
	clock   func() time.Time
	log     *slog.Logger
	// Login attempts: per account (email), per client address and in all.
	byEmail, byAddr *limiter
	logins          *rate.Limiter
	// hashing bounds the password hashes running at once.
	hashing *gate

	staffKeys   staffKeys // zero: no staff pages
	sealer      *sealer.Sealer
	ingestStats func() ingest.Stats
}

// New returns a dashboard.
func New(c Config) (*Server, error) {
	if len(c.Key) < KeyLen {
		return nil, fmt.Errorf("dashboard: session key must be at least %d bytes", KeyLen)
	}
	if c.Store == nil || c.Enroll == nil {
		return nil, errors.New("dashboard: Store and Enroll are required")
	}
	def := config.Default()
	c.LoginRate = cmp.Or(c.LoginRate, def.LoginRate)
	c.LoginBurst = cmp.Or(c.LoginBurst, def.LoginBurst)
	c.PasswordHashers = cmp.Or(c.PasswordHashers, def.PasswordHashers)
	c.PasswordHashWait = cmp.Or(c.PasswordHashWait, def.PasswordHashWait)
	if c.LoginRate < 0 || c.LoginBurst < 0 || c.PasswordHashers < 0 || c.PasswordHashWait < 0 {
		return nil, errors.New("dashboard: negative login limit")
	}
	s := &Server{store: c.Store, enroll: c.Enroll, key: c.Key, ttl: c.SessionTTL, invTTL: c.InviteTTL, clock: c.Now, log: c.Log,
		byEmail: newLimiter(time.Minute/LoginsPerEmail, LoginsPerEmail),
		byAddr:  newLimiter(time.Minute/LoginsPerAddress, LoginAddressBurst),
		logins:  rate.NewLimiter(rate.Every(time.Minute/time.Duration(c.LoginRate)), c.LoginBurst),
		hashing: newGate(c.PasswordHashers, c.PasswordHashWait)}
	if s.ttl <= 0 {
		s.ttl = 12 * time.Hour
	}
	if s.invTTL <= 0 {
		s.invTTL = 7 * 24 * time.Hour
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	const domain = "codex-dashboard"
	s.jwtKey, s.csrfKey, s.preKey = deriveKey(s.key, domain, "session-jwt"), deriveKey(s.key, domain, "csrf"), deriveKey(s.key, domain, "pre-session-csrf")
	if c.StaffKey != nil {
		if len(c.StaffKey) < KeyLen || c.Sealer == nil {
			return nil, fmt.Errorf("dashboard: the staff key must be at least %d bytes, and needs a Sealer", KeyLen)
		}
		if hmac.Equal(c.StaffKey, c.Key) {
			return nil, errors.New("dashboard: the staff session key must differ from the customers'")
		}
		s.staffKeys = staffKeys{jwt: deriveKey(c.StaffKey, "codex-staff", "session-jwt"), csrf: deriveKey(c.StaffKey, "codex-staff", "csrf")}
		s.sealer, s.ingestStats = c.Sealer, c.IngestStats
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.clock().UTC() }

// Register adds the dashboard's routes to e: the pages in one group
// (forms, HTML errors, browser security headers) and the JSON API under
// /api/v1/dashboard in another (JSON only, JSON errors).
func (s *Server) Register(e *echo.Echo) {
	authed := []echo.MiddlewareFunc{s.requireSession, s.requireCSRF}
	admin := slices.Concat(authed, []echo.MiddlewareFunc{requireRole(controlplane.RoleAdmin)})
	owner := slices.Concat(authed, []echo.MiddlewareFunc{requireRole(controlplane.RoleOwner)})

	pages := e.Group("", s.pageHeaders, s.pageErrors)
	pages.GET("/static/style.css", s.styleCSS)
	pages.GET("/login", s.loginPage)
	pages.POST("/login", s.login, s.requirePreCSRF)
	pages.GET("/invite/:token", s.invitePage)
	pages.POST("/invite/:token", s.acceptInvite, s.requirePreCSRF)
	pages.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/overview") }, authed...)
	pages.GET("/overview", s.overviewPage, authed...)
	pages.GET("/fleet", s.fleetPage, authed...)
	pages.POST("/fleet/tokens", s.createToken, admin...)
	pages.POST("/fleet/edges/:id/revoke", s.revokeEdge, admin...)
	pages.GET("/members", s.membersPage, authed...)
	pages.POST("/members/invite", s.invite, admin...)
	pages.POST("/members/:id/remove", s.removeMember, admin...)
	pages.POST("/members/:id/role", s.changeRole, admin...)
	pages.POST("/members/invites/:id/revoke", s.revokeInvite, admin...)
	pages.GET("/account", s.accountPage, authed...)
	pages.POST("/account/password", s.changePassword, authed...)
	pages.POST("/account/delete-org", s.deleteOrg, owner...)
	pages.POST("/logout", s.logout, authed...)
	pages.GET("/privacy", s.privacyPage, authed...)
	pages.GET("/access-log", s.accessLogPage, admin...)
	pages.POST("/access-log/break-glass", s.setBreakGlass, owner...)

	api := e.Group("/api/v1/dashboard", s.apiHeaders, s.apiErrors, s.requireSession, s.requireAPIRequest)
	api.GET("/usage", s.apiUsage)
	api.GET("/edges", s.apiEdges)
	api.POST("/edges/:id/revoke", s.apiRevokeEdge, requireRole(controlplane.RoleAdmin))
	api.GET("/members", s.apiMembers)

	if s.staffKeys.jwt != nil {
		staff := e.Group("/staff", s.pageHeaders, s.pageErrors)
		staff.GET("/login", s.staffLoginPage)
		staff.POST("/login", s.staffLogin, s.requirePreCSRF)
		signed := []echo.MiddlewareFunc{s.requireStaff, s.requireStaffCSRF}
		staff.GET("", s.staffHome, signed...)
		staff.POST("/logout", s.staffLogout, signed...)
		staff.POST("/plan", s.staffSetPlan, signed...)
		staff.POST("/requests", s.staffRequest, signed...)
		staff.POST("/requests/:id/approve", s.staffApprove, signed...)
		staff.POST("/requests/:id/deny", s.staffDeny, signed...)
		staff.POST("/requests/:id/revoke", s.staffRevoke, signed...)
		s.registerGrantRoutes(e)
	}
}

// pageHeaders sets the browser-facing security headers.
func (s *Server) pageHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer") // invitation links hold a token
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

const ctxSession = "dashboard.session"

func sess(c echo.Context) session { return c.Get(ctxSession).(session) }

// requireSession verifies the session cookie; without a valid one a page
// redirects to the login form and the API answers 401.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(SessionCookie)
		if err != nil {
			return errLogin
		}
		se, err := s.verify(c.Request().Context(), ck.Value)
		if errors.Is(err, errNoSession) {
			s.clearCookie(c, SessionCookie)
			return errLogin
		}
		if err != nil {
			return err
		}
		c.Set(ctxSession, se)
		return next(c)
	}
}

// errLogin sends a browser to the login form (and an API client a 401).
var errLogin = &controlplane.Error{Kind: controlplane.KindUnauthorized, Message: "Please sign in."}

func isSafe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// requireCSRF checks the session-bound token of every state-changing form.
func (s *Server) requireCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if isSafe(c.Request().Method) {
			return next(c)
		}
		if !csrfValid(s.csrfKey, sess(c).ID, form(c, "csrf")) {
			return errCSRF
		}
		return next(c)
	}
}

var errCSRF = &controlplane.Error{Kind: controlplane.KindForbidden, Message: "This form has expired or did not come from this dashboard. Reload the page and try again."}

// preToken is the CSRF token of the login and invitation forms, bound to
// the pre-session cookie.
func (s *Server) preToken(c echo.Context) string {
	var v string
	if ck, err := c.Cookie(preCookie); err == nil && len(ck.Value) >= 24 {
		v = ck.Value
	} else {
		v = randomID()
		s.setCookie(c, preCookie, v, time.Hour)
	}
	m := hmac.New(sha256.New, s.preKey)
	m.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) requirePreCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(preCookie)
		if err != nil || len(ck.Value) < 24 {
			return errCSRF
		}
		m := hmac.New(sha256.New, s.preKey)
		m.Write([]byte(ck.Value))
		if !hmac.Equal([]byte(form(c, "csrf")), []byte(base64.RawURLEncoding.EncodeToString(m.Sum(nil)))) {
			return errCSRF
		}
		return next(c)
	}
}

// roleRank orders roles: each may do what the ones below it may.
func roleRank(r controlplane.Role) int {
	switch r {
	case controlplane.RoleOwner:
		return 3
	case controlplane.RoleAdmin:
		return 2
	case controlplane.RoleViewer:
		return 1
	}
	return 0
}

// mayManage reports whether actor may remove target or change its role:
// admins and owners may, but only an owner may touch an owner.
func mayManage(actor, target controlplane.User) bool {
	return roleRank(actor.Role) >= roleRank(controlplane.RoleAdmin) &&
		(target.Role != controlplane.RoleOwner || actor.Role == controlplane.RoleOwner)
}

// mayGrant reports whether actor may make someone role: owners grant any
// role, admins admin and viewer.
func mayGrant(actor controlplane.User, role controlplane.Role) bool {
	return roleRank(actor.Role) >= roleRank(controlplane.RoleAdmin) &&
		(role != controlplane.RoleOwner || actor.Role == controlplane.RoleOwner)
}

func requireRole(min controlplane.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if roleRank(sess(c).User.Role) < roleRank(min) {
				return errForbidden
			}
			return next(c)
		}
	}
}

var errForbidden = &controlplane.Error{Kind: controlplane.KindForbidden, Message: "Your role does not allow this. Ask an admin or owner of your organization."}

func (s *Server) setCookie(c echo.Context, name, value string, maxAge time.Duration) {
	c.SetCookie(&http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func (s *Server) clearCookie(c echo.Context, name string) {
	c.SetCookie(&http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// shownError is what the user sees of err: controlplane.ErrorFor, with an
// echo error by its status. An internal error is logged with its cause
// under a reference that internal puts in the message.
func (s *Server) shownError(c echo.Context, err error, internal func(ref string) string) controlplane.Error {
	var ee *echo.HTTPError
	if errors.As(err, &ee) {
		err = controlplane.StatusError(ee.Code)
	}
	e := *controlplane.ErrorFor(err)
	if e.Kind == controlplane.KindInternal {
		ref := randomID()[:10]
		s.log.Error("dashboard request failed", "path", c.Path(), "error_id", ref, "err", err)
		e.Message = internal(ref)
	}
	return e
}

// pageErrors renders errors as pages.
func (s *Server) pageErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		switch err {
		case errLogin:
			return c.Redirect(http.StatusSeeOther, "/login")
		case errStaffLogin:
			return c.Redirect(http.StatusSeeOther, "/staff/login")
		}
		e := s.shownError(c, err, func(ref string) string {
			return "Something went wrong on our side (reference " + ref + ")."
		})
		data := s.base(c, "Error")
		data.Error = e.Message
		data.Status = e.Status()
		return s.render(c, e.Status(), "error", data)
	}
}
