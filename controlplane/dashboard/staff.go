package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/password"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/totp"
)

// Staff pages: our own staff sign in under /staff with a password and a
// TOTP code, in a session of their own (cookie StaffCookie, scoped to
// /staff, signed with a key of its own). They see orgs (name, plan,
// created), fleet health and ingest counters; an org's pages only under a
// break-glass grant (see grant.go).
const (
	// StaffCookie holds a staff session. Its path is /staff: the browser
	// never sends it to the customers' pages.
	StaffCookie = "codex_staff"
	// StaffAudience is the audience of staff session JWTs, so that a
	// customer session can never pass for one even under the same key.
	StaffAudience = "codex-staff"
	// StaffSessionTTL is a staff session's lifetime.
	StaffSessionTTL = 4 * time.Hour
)

// staffKeys are the keys derived from the staff session key.
type staffKeys struct {
	jwt, csrf []byte
}

type staffClaims struct {
	Epoch int64 `json:"epoch"`
	jwt.RegisteredClaims
}

// staffSession is a verified, current staff session.
type staffSession struct {
	ID    string // jti; staff CSRF tokens are bound to it
	Staff controlplane.Staff
}

const ctxStaff = "dashboard.staff"

func staffOf(c echo.Context) staffSession { return c.Get(ctxStaff).(staffSession) }

func (s *Server) issueStaff(st controlplane.Staff) (string, error) {
	now := s.now()
	c := staffClaims{Epoch: st.SessionEpoch, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Audience: jwt.ClaimStrings{StaffAudience}, Subject: st.ID, ID: randomID(),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(StaffSessionTTL)),
	}}
	tok, err := jwt.NewWithClaims(jwt.GetSigningMethod(signMethod), c).SignedString(s.staffKeys.jwt)
	if err != nil {
		return "", fmt.Errorf("sign staff session: %w", err)
	}
	return tok, nil
}

// verifyStaff checks a staff session token, then that the account is
// enabled and has not ended its sessions since: `staff disable` ends a
// live session at its next request.
func (s *Server) verifyStaff(ctx context.Context, raw string) (staffSession, error) {
	var c staffClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return s.staffKeys.jwt, nil },
		jwt.WithValidMethods([]string{signMethod}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithIssuer(Issuer), jwt.WithAudience(StaffAudience), jwt.WithTimeFunc(s.now), jwt.WithStrictDecoding())
	if err != nil {
		return staffSession{}, fmt.Errorf("%w: %v", errNoSession, err)
	}
	if c.Subject == "" || c.ID == "" {
		return staffSession{}, fmt.Errorf("%w: missing claims", errNoSession)
	}
	st, err := s.store.StaffMember(ctx, c.Subject)
	switch {
	case errors.Is(err, controlplane.ErrNotFound):
		return staffSession{}, fmt.Errorf("%w: staff account gone", errNoSession)
	case err != nil:
		return staffSession{}, err
	case st.Disabled():
		return staffSession{}, fmt.Errorf("%w: staff account disabled", errNoSession)
	case st.SessionEpoch != c.Epoch:
		return staffSession{}, fmt.Errorf("%w: sessions ended", errNoSession)
	}
	return staffSession{ID: c.ID, Staff: st}, nil
}

// errStaffLogin sends a browser to the staff sign-in form (and an API
// client a 401).
var errStaffLogin = &controlplane.Error{Kind: controlplane.KindUnauthorized, Message: "Please sign in as staff."}

// requireStaff verifies the staff session cookie.
func (s *Server) requireStaff(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(StaffCookie)
		if err != nil {
			return errStaffLogin
		}
		se, err := s.verifyStaff(c.Request().Context(), ck.Value)
		if errors.Is(err, errNoSession) {
			s.clearStaffCookie(c)
			return errStaffLogin
		}
		if err != nil {
			return err
		}
		c.Set(ctxStaff, se)
		return next(c)
	}
}

// requireStaffCSRF checks the staff session's token on every form.
func (s *Server) requireStaffCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !isSafe(c.Request().Method) {
			if !csrfValid(s.staffKeys.csrf, staffOf(c).ID, form(c, "csrf")) {
				return errCSRF
			}
		}
		return next(c)
	}
}

func (s *Server) setStaffCookie(c echo.Context, tok string) {
	c.SetCookie(&http.Cookie{Name: StaffCookie, Value: tok, Path: "/staff", MaxAge: int(StaffSessionTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func (s *Server) clearStaffCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: StaffCookie, Value: "", Path: "/staff", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

type staffLoginData struct {
	Email string
	Token string
}

func (s *Server) staffLoginPage(c echo.Context) error {
	d := s.base(c, "Staff sign in")
	d.Page = staffLoginData{Token: s.preToken(c)}
	return s.render(c, http.StatusOK, "staff_login", d)
}

func (s *Server) staffLoginError(c echo.Context, status int, email, msg string) error {
	d := s.base(c, "Staff sign in")
	d.Error, d.Page = msg, staffLoginData{Email: email, Token: s.preToken(c)}
	return s.render(c, status, "staff_login", d)
}

const msgStaffLogin = "Email, password or code is incorrect."

// staffLogin checks the password, then the TOTP code, then that the
// code's time step was not used before (the store compares and records
// it in one statement). The customers' login limits apply, charged
// before any password is checked; every sign-in, and every refusal of a
// known account, goes to the access log.
func (s *Server) staffLogin(c echo.Context) error {
	ctx := c.Request().Context()
	email, pw, code := normalizeEmail(form(c, "email")), form(c, "password"), strings.TrimSpace(form(c, "code"))
	now := s.now()
	switch {
	case !s.byAddr.allow(clientAddr(c), now):
		return s.tooManyStaffLogins(c, email, "address", time.Minute)
	case !s.logins.AllowN(now, 1):
		return s.tooManyStaffLogins(c, email, "all", time.Second)
	case !s.byEmail.allow("staff:"+email, now):
		return s.tooManyStaffLogins(c, email, "account", time.Minute)
	}
	if !validEmail(email) || len(pw) > password.MaxLength {
		return s.staffLoginError(c, http.StatusUnauthorized, email, msgStaffLogin)
	}
	st, err := s.store.StaffByEmail(ctx, email)
	if err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}
	known := err == nil
	if !s.hashing.enter(ctx) {
		return s.tooManyStaffLogins(c, email, "hashing", time.Second)
	}
	hash := dummyHash()
	if known {
		hash = st.PasswordHash
	}
	pwErr := password.Verify(pw, hash)
	s.hashing.leave()
	refuse := func(why string) error {
		s.log.Info("staff login refused", "staff_id", st.ID, "why", why)
		if err := s.store.AppendAccessEvent(ctx, controlplane.AccessEvent{At: now, Kind: controlplane.EventSignInRefused,
			StaffID: st.ID, StaffEmail: st.Email, Detail: why}); err != nil {
			return err
		}
		return s.staffLoginError(c, http.StatusUnauthorized, email, msgStaffLogin)
	}
	switch {
	case !known:
		s.log.Info("staff login failed")
		return s.staffLoginError(c, http.StatusUnauthorized, email, msgStaffLogin)
	case st.Disabled():
		return refuse("account disabled")
	case pwErr != nil:
		return refuse("wrong password")
	}
	secret, err := s.sealer.Open(ctx, sealer.Binding{Purpose: controlplane.StaffTOTPPurpose, Name: "staff/" + st.ID}, st.TOTPSecret)
	if err != nil {
		return fmt.Errorf("open the TOTP secret of %s: %w", st.ID, err)
	}
	step, err := totp.Check(string(secret), code, now)
	clear(secret)
	if err != nil {
		return refuse("wrong code")
	}
	err = s.store.UseTOTPStep(ctx, st.ID, step)
	switch {
	case errors.Is(err, controlplane.ErrCodeUsed):
		return refuse("code used before")
	case errors.Is(err, controlplane.ErrStaffDisabled):
		return refuse("account disabled")
	case err != nil:
		return err
	}
	st.TOTPStep = step
	// Logged before the session starts: no sign-in without its event.
	if err := s.store.AppendAccessEvent(ctx, controlplane.AccessEvent{At: now, Kind: controlplane.EventSignIn, StaffID: st.ID, StaffEmail: st.Email}); err != nil {
		return err
	}
	tok, err := s.issueStaff(st)
	if err != nil {
		return err
	}
	s.setStaffCookie(c, tok)
	s.clearCookie(c, preCookie)
	s.log.Info("staff login", "staff_id", st.ID)
	return c.Redirect(http.StatusSeeOther, "/staff")
}

func (s *Server) tooManyStaffLogins(c echo.Context, email, limit string, retry time.Duration) error {
	s.log.Warn("staff login rate limited", "limit", limit)
	c.Response().Header().Set("Retry-After", fmt.Sprint(int(retry/time.Second)))
	msg := "Too many sign-in attempts. Wait a minute and try again."
	if retry < time.Minute {
		msg = msgBusy
	}
	return s.staffLoginError(c, http.StatusTooManyRequests, email, msg)
}

func (s *Server) staffLogout(c echo.Context) error {
	st := staffOf(c).Staff
	if err := s.store.EndStaffSessions(c.Request().Context(), st.ID); err != nil {
		return err
	}
	s.clearStaffCookie(c)
	s.log.Info("staff logout", "staff_id", st.ID)
	return c.Redirect(http.StatusSeeOther, "/staff/login")
}

// staffHomeData is the staff home page: no org's usage rows, members or
// invitations.
type staffHomeData struct {
	Orgs      []controlplane.OrgHealth
	Names     map[string]string // org id → name
	Requests  []controlplane.AccessRequest
	Ingest    *ingest.Stats
	Plans     []controlplane.Plan
	Durations []ttlOpt
	Now       time.Time
}

// grantDurations are the durations a request may ask for.
var grantDurations = []ttlOpt{{"15m", "15 minutes"}, {"1h", "1 hour"}, {"2h", "2 hours"}, {"4h", "4 hours"}, {"8h", "8 hours"}}

var staffNotices = map[string]string{
	"plan":      "The plan was changed.",
	"requested": "Access requested. Two other staff members must approve it.",
	"approved":  "Your approval was recorded.",
	"granted":   "Your approval granted the request.",
	"denied":    "The request was denied.",
	"revoked":   "The request or grant was ended.",
}

func (s *Server) staffHome(c echo.Context) error { return s.renderStaffHome(c, http.StatusOK, "") }

func (s *Server) renderStaffHome(c echo.Context, status int, msg string) error {
	ctx := c.Request().Context()
	now := s.now()
	if _, err := s.store.ExpireAccess(ctx, now); err != nil {
		return err
	}
	h := staffHomeData{Names: map[string]string{}, Plans: controlplane.Plans, Durations: grantDurations, Now: now}
	var err error
	if h.Orgs, err = s.store.StaffOrgs(ctx); err != nil {
		return err
	}
	for _, o := range h.Orgs {
		h.Names[o.ID] = o.Name
	}
	if h.Requests, err = s.store.AccessRequests(ctx); err != nil {
		return err
	}
	if s.ingestStats != nil {
		st := s.ingestStats()
		h.Ingest = &st
	}
	d := s.base(c, "Staff")
	d.Page, d.Error = h, msg
	if msg == "" {
		d.Notice = staffNotices[c.QueryParam("done")]
	}
	return s.render(c, status, "staff_home", d)
}

// staffFail shows a refusal on the staff home page with its status.
func (s *Server) staffFail(c echo.Context, err error) error {
	var msg string
	switch {
	case errors.Is(err, controlplane.ErrBreakGlassOff):
		msg = "This organization has switched break-glass access off: the request was refused and recorded in its access log."
	case errors.Is(err, controlplane.ErrSelfApproval):
		msg = "You cannot approve your own request: two other staff members must. The attempt was recorded."
	case errors.Is(err, controlplane.ErrConflict):
		msg = "This conflicts with the request's current state (already approved by you, no longer pending, or you already have an open request for this organization)."
	case errors.Is(err, controlplane.ErrInvalid):
		msg = controlplane.ErrorFor(err).Message
	default:
		return err
	}
	return s.renderStaffHome(c, controlplane.ErrorFor(err).Status(), msg)
}

func (s *Server) staffSetPlan(c echo.Context) error {
	st := staffOf(c).Staff
	err := s.store.SetPlan(c.Request().Context(), form(c, "org"), controlplane.Plan(form(c, "plan")), st, s.now())
	if err != nil {
		return s.staffFail(c, err)
	}
	s.log.Info("staff set plan", "staff_id", st.ID, "org_id", form(c, "org"), "plan", form(c, "plan"))
	return c.Redirect(http.StatusSeeOther, "/staff?done=plan")
}

func (s *Server) staffRequest(c echo.Context) error {
	st := staffOf(c).Staff
	d := controlplane.DefaultGrantDuration
	if v := form(c, "duration"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return s.staffFail(c, fmt.Errorf("duration %q: %w", v, controlplane.ErrInvalid))
		}
	}
	r := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: form(c, "org"), StaffID: st.ID,
		Reason: strings.TrimSpace(form(c, "reason")), Duration: d, RequestedAt: s.now()}
	if err := s.store.RequestAccess(c.Request().Context(), r); err != nil {
		if errors.Is(err, controlplane.ErrNotFound) {
			return s.staffFail(c, fmt.Errorf("no such organization: %w", controlplane.ErrInvalid))
		}
		return s.staffFail(c, err)
	}
	s.log.Info("staff requested access", "staff_id", st.ID, "org_id", r.OrgID, "request_id", r.ID, "duration", d)
	return c.Redirect(http.StatusSeeOther, "/staff?done=requested")
}

func (s *Server) staffApprove(c echo.Context) error {
	st := staffOf(c).Staff
	r, err := s.store.ApproveAccess(c.Request().Context(), c.Param("id"), st.ID, s.now())
	if err != nil {
		return s.staffFail(c, err)
	}
	s.log.Info("staff approved access", "staff_id", st.ID, "request_id", r.ID, "state", r.State)
	if r.State == controlplane.AccessActive {
		return c.Redirect(http.StatusSeeOther, "/staff?done=granted")
	}
	return c.Redirect(http.StatusSeeOther, "/staff?done=approved")
}

func (s *Server) staffDeny(c echo.Context) error {
	st := staffOf(c).Staff
	if err := s.store.DenyAccess(c.Request().Context(), c.Param("id"), st.ID, s.now()); err != nil {
		return s.staffFail(c, err)
	}
	s.log.Info("staff denied access", "staff_id", st.ID, "request_id", c.Param("id"))
	return c.Redirect(http.StatusSeeOther, "/staff?done=denied")
}

func (s *Server) staffRevoke(c echo.Context) error {
	st := staffOf(c).Staff
	if err := s.store.RevokeAccess(c.Request().Context(), c.Param("id"), st.ID, s.now()); err != nil {
		return s.staffFail(c, err)
	}
	s.log.Info("staff revoked access", "staff_id", st.ID, "request_id", c.Param("id"))
	return c.Redirect(http.StatusSeeOther, "/staff?done=revoked")
}
