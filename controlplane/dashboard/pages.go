package dashboard

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/password"
)

//go:embed templates static
var assets embed.FS

var pages = func() map[string]*template.Template {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", n))
	}
	return out
}()

// pageData is what every page's template gets; Page holds the page's own.
type pageData struct {
	Title  string
	Nav    string
	User   controlplane.User
	Org    controlplane.Org
	CSRF   string
	Signed bool
	Admin  bool // may change things: admin or owner
	Error  string
	Status int
	Notice string
	Page   any
	// Owner: the member is an owner (sees the plan, sets break-glass).
	Owner bool
	// Staff is the signed-in staff member on staff pages.
	Staff *controlplane.Staff
	// Grant is the break-glass grant an org page is read under; Base
	// then prefixes the org's page links (StaffOrgPrefix/<org>).
	Grant *controlplane.AccessRequest
	Base  string
	// SecurityURL is where SECURITY.md is published.
	SecurityURL string
}

// SecurityURL is where the repository's SECURITY.md is published: the
// "What we can see" page links to it.
const SecurityURL = "https://github.com/persiv/codex/blob/main/SECURITY.md"

func (s *Server) base(c echo.Context, title string) pageData {
	d := pageData{Title: title, SecurityURL: SecurityURL}
	if se, ok := c.Get(ctxSession).(session); ok {
		d.Signed, d.User, d.CSRF = true, se.User, csrfToken(s.csrfKey, se.ID)
		d.Admin = roleRank(se.User.Role) >= roleRank(controlplane.RoleAdmin)
		d.Owner = se.User.Role == controlplane.RoleOwner
		if o, err := s.store.Org(c.Request().Context(), se.User.OrgID); err == nil {
			d.Org = o
		}
	}
	if st, ok := c.Get(ctxStaff).(staffSession); ok {
		d.Staff, d.CSRF = &st.Staff, csrfToken(s.staffKeys.csrf, st.ID)
		if g, ok := c.Get(ctxGrant).(controlplane.AccessRequest); ok {
			d.Grant, d.Base, d.User = &g, StaffOrgPrefix+g.OrgID, actor(c)
			if o, err := s.store.Org(c.Request().Context(), g.OrgID); err == nil {
				d.Org = o
			}
		}
	}
	return d
}

func (s *Server) render(c echo.Context, status int, name string, d pageData) error {
	t, ok := pages[name]
	if !ok {
		return fmt.Errorf("no template %q", name)
	}
	d.Nav = name
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

func (s *Server) styleCSS(c echo.Context) error {
	b, err := assets.ReadFile("static/style.css")
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", b)
}

// notices are the fixed messages a redirect may ask a page to show.
var notices = map[string]string{
	"revoked":         "The edge was revoked: NATS refuses its connections and ingest drops its batches.",
	"removed":         "The member was removed; their sessions have ended.",
	"role":            "The role was changed. It applies from the member's next request.",
	"invite-revoked":  "The invitation was revoked: its link no longer works.",
	"password":        "Password changed. Every other session of yours has ended.",
	"break-glass-on":  "Break-glass access is on: staff may ask for read-only access, which two other staff members must approve.",
	"break-glass-off": "Break-glass access is off: staff requests are refused, and any open request or grant has ended.",
	"org-deleted":     "The organization was deleted: its members, data and edge credentials are gone, and its edges can no longer send metrics.",
}

func notice(c echo.Context) string { return notices[c.QueryParam("done")] }

// clientAddr is the TCP peer: X-Forwarded-For would let a client pick its
// own rate-limit bucket.
func clientAddr(c echo.Context) string {
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		return c.Request().RemoteAddr
	}
	return host
}

func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func validEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return len(s) <= 254 && at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n<>\"'")
}

// dummyHash is verified against when an email has no account, so that a
// wrong email takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	var b [24]byte
	rand.Read(b[:])
	h, err := password.Hash(base64.RawURLEncoding.EncodeToString(b[:]))
	if err != nil {
		panic(err)
	}
	return h
})

type loginData struct {
	Email string
	Token string
}

// form reads a field of the request body only: a token in the query
// string would end up in logs and histories.
func form(c echo.Context, name string) string { return c.Request().PostFormValue(name) }

// loginPage shows the form even to a signed-in browser: signing in again
// replaces its session.
func (s *Server) loginPage(c echo.Context) error {
	d := s.base(c, "Sign in")
	d.Notice = notice(c)
	d.Page = loginData{Token: s.preToken(c)}
	return s.render(c, http.StatusOK, "login", d)
}

func (s *Server) loginError(c echo.Context, status int, email, msg string) error {
	d := s.base(c, "Sign in")
	d.Error, d.Page = msg, loginData{Email: email, Token: s.preToken(c)}
	return s.render(c, status, "login", d)
}

func (s *Server) login(c echo.Context) error {
	ctx := c.Request().Context()
	email, pw := normalizeEmail(form(c, "email")), form(c, "password")
	now := s.now()
	// Every limit is charged before any password is checked: argon2id is
	// the expensive part an attacker would make us do. The account's
	// bucket comes last, so that only attempts within the others make one.
	switch {
	case !s.byAddr.allow(clientAddr(c), now):
		return s.tooManyLogins(c, email, "address", time.Minute)
	case !s.logins.AllowN(now, 1):
		return s.tooManyLogins(c, email, "all", time.Second)
	case !s.byEmail.allow(email, now):
		return s.tooManyLogins(c, email, "account", time.Minute)
	}
	if !validEmail(email) || len(pw) > password.MaxLength {
		return s.loginError(c, http.StatusUnauthorized, email, "Email or password is incorrect.")
	}
	users, err := s.store.UsersByEmail(ctx, email)
	if err != nil {
		return err
	}
	if !s.hashing.enter(ctx) {
		return s.tooManyLogins(c, email, "hashing", time.Second)
	}
	defer s.hashing.leave()
	var match *controlplane.User
	for i := range users {
		if password.Verify(pw, users[i].PasswordHash) == nil {
			match = &users[i]
			break
		}
	}
	if len(users) == 0 {
		_ = password.Verify(pw, dummyHash())
	}
	if match == nil {
		s.log.Info("dashboard login failed")
		return s.loginError(c, http.StatusUnauthorized, email, "Email or password is incorrect.")
	}
	if err := s.startSession(c, *match); err != nil {
		return err
	}
	s.log.Info("dashboard login", "org_id", match.OrgID, "user_id", match.ID)
	return c.Redirect(http.StatusSeeOther, "/overview")
}

// msgBusy answers a request refused by the global login limit or for want
// of a free password hasher: the client did nothing wrong.
const msgBusy = "Too many sign-ins right now. Try again in a moment."

// tooManyLogins answers 429 for a login refused by limit ("address",
// "all", "account" or "hashing"), asking to retry after retry.
func (s *Server) tooManyLogins(c echo.Context, email, limit string, retry time.Duration) error {
	s.log.Warn("dashboard login rate limited", "limit", limit)
	c.Response().Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
	msg := "Too many sign-in attempts. Wait a minute and try again."
	if retry < time.Minute {
		msg = msgBusy
	}
	return s.loginError(c, http.StatusTooManyRequests, email, msg)
}

// startSession sets a freshly issued session cookie and drops the
// pre-session one.
func (s *Server) startSession(c echo.Context, u controlplane.User) error {
	tok, _, err := s.issue(u)
	if err != nil {
		return err
	}
	s.setCookie(c, SessionCookie, tok, s.ttl)
	s.clearCookie(c, preCookie)
	return nil
}

func (s *Server) logout(c echo.Context) error {
	u := sess(c).User
	if err := s.store.EndSessions(c.Request().Context(), u.OrgID, u.ID); err != nil {
		return err
	}
	s.clearCookie(c, SessionCookie)
	s.log.Info("dashboard logout", "org_id", u.OrgID, "user_id", u.ID)
	return c.Redirect(http.StatusSeeOther, "/login")
}

func (s *Server) accountPage(c echo.Context) error {
	d := s.base(c, "Account")
	d.Notice = notice(c)
	return s.render(c, http.StatusOK, "account", d)
}

// deleteOrg deletes the owner's org once they have typed its name: its
// edges are revoked and its usage stream deleted, then every row of it
// (members, tokens, edges, usage, the access log) removed. A wrong name
// changes nothing.
func (s *Server) deleteOrg(c echo.Context) error {
	ctx := c.Request().Context()
	u := sess(c).User
	o, err := s.store.Org(ctx, u.OrgID)
	if err != nil {
		return err
	}
	if form(c, "confirm") != o.Name {
		d := s.base(c, "Account")
		d.Error = "The name you typed is not the organization's name: nothing was deleted."
		return s.render(c, http.StatusBadRequest, "account", d)
	}
	del, err := s.enroll.DeleteOrg(ctx, u.OrgID, u.ID)
	if err != nil {
		return err
	}
	var rows int64
	for _, n := range del.Rows {
		rows += n
	}
	s.log.Warn("dashboard org deleted", "org_id", u.OrgID, "by", u.ID, "rows", rows)
	s.clearCookie(c, SessionCookie)
	return c.Redirect(http.StatusSeeOther, "/login?done=org-deleted")
}

func (s *Server) changePassword(c echo.Context) error {
	ctx := c.Request().Context()
	u := sess(c).User
	fail := func(status int, msg string) error {
		d := s.base(c, "Account")
		d.Error = msg
		return s.render(c, status, "account", d)
	}
	if !s.byEmail.allow(u.Email, s.now()) {
		return fail(http.StatusTooManyRequests, "Too many attempts. Wait a minute and try again.")
	}
	if !s.hashing.enter(ctx) {
		c.Response().Header().Set("Retry-After", "1")
		return fail(http.StatusTooManyRequests, msgBusy)
	}
	defer s.hashing.leave()
	if password.Verify(form(c, "current"), u.PasswordHash) != nil {
		return fail(http.StatusUnauthorized, "The current password is incorrect.")
	}
	pw := form(c, "new")
	if pw != form(c, "confirm") {
		return fail(http.StatusBadRequest, "The new passwords do not match.")
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return fail(http.StatusBadRequest, fmt.Sprintf("The new password must be %d to %d characters long.", password.MinLength, password.MaxLength))
	}
	if err := s.store.SetPassword(ctx, u.OrgID, u.ID, hash); err != nil {
		return err
	}
	// Every session ended with the epoch; this browser gets a new one.
	nu, err := s.store.User(ctx, u.OrgID, u.ID)
	if err != nil {
		return err
	}
	if err := s.startSession(c, nu); err != nil {
		return err
	}
	s.log.Info("dashboard password changed", "org_id", u.OrgID, "user_id", u.ID)
	return c.Redirect(http.StatusSeeOther, "/account?done=password")
}

// InvitePrefix starts every invitation token.
const InvitePrefix = "cpinvite_"

func newInviteToken() (string, [32]byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	tok := InvitePrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok))
}

type membersData struct {
	Members  []controlplane.User
	Invites  []inviteRow
	Roles    []controlplane.Role // the roles this user may grant
	Link     string              // a just-created invitation link, shown once
	LinkFor  string
	CanOwner bool
	Owners   int // the last owner gets no remove button
}

// inviteRow is a pending invitation as listed: never its token, which
// only the link holds.
type inviteRow struct {
	ID        string // hex of the token's hash: names it in the revoke form
	Email     string
	Role      controlplane.Role
	By        string // the inviter's email; empty once they left
	CreatedAt time.Time
	ExpiresAt time.Time
	CanRevoke bool
}

// inviteID names an invitation in URLs by its hash.
func inviteID(hash [32]byte) string { return hex.EncodeToString(hash[:]) }

func parseInviteID(id string) ([32]byte, bool) {
	var h [32]byte
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

func (s *Server) members(c echo.Context) (membersData, error) {
	ctx := c.Request().Context()
	u := actor(c)
	var m membersData
	var err error
	if m.Members, err = s.store.Users(ctx, u.OrgID); err != nil {
		return m, err
	}
	invs, err := s.store.Invites(ctx, u.OrgID, s.now())
	if err != nil {
		return m, err
	}
	emails := map[string]string{}
	for _, x := range m.Members {
		emails[x.ID] = x.Email
		if x.Role == controlplane.RoleOwner {
			m.Owners++
		}
	}
	for _, inv := range invs {
		m.Invites = append(m.Invites, inviteRow{ID: inviteID(inv.Hash), Email: inv.Email, Role: inv.Role, By: emails[inv.CreatedBy],
			CreatedAt: inv.CreatedAt, ExpiresAt: inv.ExpiresAt, CanRevoke: mayGrant(u, inv.Role)})
	}
	m.Roles = []controlplane.Role{controlplane.RoleViewer, controlplane.RoleAdmin}
	if u.Role == controlplane.RoleOwner {
		m.Roles, m.CanOwner = append(m.Roles, controlplane.RoleOwner), true
	}
	return m, nil
}

func (s *Server) membersPage(c echo.Context) error {
	m, err := s.members(c)
	if err != nil {
		return err
	}
	d := s.base(c, "Members")
	d.Notice, d.Page = notice(c), m
	return s.render(c, http.StatusOK, "members", d)
}

func (s *Server) invite(c echo.Context) error {
	ctx := c.Request().Context()
	u := sess(c).User
	email, role := normalizeEmail(form(c, "email")), controlplane.Role(form(c, "role"))
	fail := func(status int, msg string) error {
		m, err := s.members(c)
		if err != nil {
			return err
		}
		d := s.base(c, "Members")
		d.Error, d.Page = msg, m
		return s.render(c, status, "members", d)
	}
	if !validEmail(email) {
		return fail(http.StatusBadRequest, "Enter a valid email address.")
	}
	if !role.Valid() {
		return fail(http.StatusBadRequest, "Choose a role.")
	}
	if !mayGrant(u, role) {
		return errForbidden
	}
	tok, hash := newInviteToken()
	now := s.now()
	if err := s.store.CreateInvite(ctx, controlplane.Invite{Hash: hash, OrgID: u.OrgID, Email: email, Role: role, CreatedBy: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.invTTL)}); err != nil {
		return err
	}
	s.log.Info("dashboard invite created", "org_id", u.OrgID, "by", u.ID, "role", role, "invite", inviteID(hash)[:12])
	m, err := s.members(c)
	if err != nil {
		return err
	}
	m.Link, m.LinkFor = c.Scheme()+"://"+c.Request().Host+"/invite/"+tok, email
	d := s.base(c, "Members")
	d.Page = m
	return s.render(c, http.StatusOK, "members", d)
}

var (
	errLastOwner = &controlplane.Error{Kind: controlplane.KindConflict, Message: "An organization needs at least one owner: make someone else an owner first."}
	errOwnRole   = &controlplane.Error{Kind: controlplane.KindForbidden, Message: "You cannot change your own role: ask another owner."}
	errStaleRole = &controlplane.Error{Kind: controlplane.KindConflict, Message: "The member's role changed meanwhile. Reload the page and try again."}
)

func (s *Server) removeMember(c echo.Context) error {
	ctx := c.Request().Context()
	u := sess(c).User
	target, err := s.store.User(ctx, u.OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	if !mayManage(u, target) {
		return errForbidden
	}
	err = s.store.RemoveUser(ctx, u.OrgID, target.ID, target.Role)
	switch {
	case errors.Is(err, controlplane.ErrLastOwner):
		return errLastOwner
	case errors.Is(err, controlplane.ErrConflict):
		return errStaleRole
	}
	if err != nil {
		return err
	}
	s.log.Info("dashboard member removed", "org_id", u.OrgID, "by", u.ID, "user_id", target.ID)
	if target.ID == u.ID {
		s.clearCookie(c, SessionCookie)
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return c.Redirect(http.StatusSeeOther, "/members?done=removed")
}

// changeRole sets another member's role. The member's sessions go on: each
// request reads the role from the store, so the new one applies from
// their next request. The store re-checks the role this handler saw, so
// an owner promoted since cannot be demoted by an admin.
func (s *Server) changeRole(c echo.Context) error {
	ctx := c.Request().Context()
	u := sess(c).User
	target, err := s.store.User(ctx, u.OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	if target.ID == u.ID {
		return errOwnRole
	}
	to := controlplane.Role(form(c, "role"))
	if !to.Valid() {
		return &controlplane.Error{Kind: controlplane.KindInvalid, Message: "Choose a role."}
	}
	if !mayManage(u, target) || !mayGrant(u, to) {
		return errForbidden
	}
	err = s.store.SetRole(ctx, u.OrgID, target.ID, target.Role, to)
	switch {
	case errors.Is(err, controlplane.ErrLastOwner):
		return errLastOwner
	case errors.Is(err, controlplane.ErrConflict):
		return errStaleRole
	case err != nil:
		return err
	}
	s.log.Info("dashboard member role changed", "org_id", u.OrgID, "by", u.ID, "user_id", target.ID, "from", target.Role, "to", to)
	return c.Redirect(http.StatusSeeOther, "/members?done=role")
}

// revokeInvite ends a pending invitation of the org. Only an owner may
// revoke an owner's invitation, as only an owner may create one. Its link
// then answers as an unknown one does; an invitation page opened before
// fails at accept time, where redemption re-checks it in its transaction.
func (s *Server) revokeInvite(c echo.Context) error {
	ctx := c.Request().Context()
	u := sess(c).User
	hash, ok := parseInviteID(c.Param("id"))
	if !ok {
		return controlplane.ErrNotFound
	}
	now := s.now()
	invs, err := s.store.Invites(ctx, u.OrgID, now)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(invs, func(inv controlplane.Invite) bool { return inv.Hash == hash })
	if i < 0 {
		return controlplane.ErrNotFound
	}
	if !mayGrant(u, invs[i].Role) {
		return errForbidden
	}
	if err := s.store.RevokeInvite(ctx, u.OrgID, hash, now); err != nil {
		return err
	}
	s.log.Info("dashboard invite revoked", "org_id", u.OrgID, "by", u.ID, "role", invs[i].Role, "invite", inviteID(hash)[:12])
	return c.Redirect(http.StatusSeeOther, "/members?done=invite-revoked")
}

type inviteData struct {
	Email string
	Org   string
	Role  controlplane.Role
	Token string
	Path  string
}

func inviteHash(tok string) ([32]byte, bool) {
	if !strings.HasPrefix(tok, InvitePrefix) || len(tok) != len(InvitePrefix)+43 {
		return [32]byte{}, false
	}
	return sha256.Sum256([]byte(tok)), true
}

var errBadInvite = &controlplane.Error{Kind: controlplane.KindNotFound, Message: "This invitation link is invalid, used or expired. Ask for a new one."}

func (s *Server) invitePage(c echo.Context) error {
	hash, ok := inviteHash(c.Param("token"))
	if !ok {
		return errBadInvite
	}
	inv, err := s.store.Invite(c.Request().Context(), hash, s.now())
	if errors.Is(err, controlplane.ErrNotFound) {
		return errBadInvite
	}
	if err != nil {
		return err
	}
	return s.renderInvite(c, http.StatusOK, inv, "")
}

func (s *Server) renderInvite(c echo.Context, status int, inv controlplane.Invite, msg string) error {
	org, err := s.store.Org(c.Request().Context(), inv.OrgID)
	if err != nil {
		return err
	}
	d := s.base(c, "Join "+org.Name)
	d.Error = msg
	d.Page = inviteData{Email: inv.Email, Org: org.Name, Role: inv.Role, Token: s.preToken(c), Path: "/invite/" + c.Param("token")}
	return s.render(c, status, "invite", d)
}

func (s *Server) acceptInvite(c echo.Context) error {
	ctx := c.Request().Context()
	hash, ok := inviteHash(c.Param("token"))
	if !ok {
		return errBadInvite
	}
	now := s.now()
	inv, err := s.store.Invite(ctx, hash, now)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errBadInvite
	}
	if err != nil {
		return err
	}
	pw := form(c, "password")
	if pw != form(c, "confirm") {
		return s.renderInvite(c, http.StatusBadRequest, inv, "The passwords do not match.")
	}
	if !s.hashing.enter(ctx) {
		c.Response().Header().Set("Retry-After", "1")
		return s.renderInvite(c, http.StatusTooManyRequests, inv, msgBusy)
	}
	defer s.hashing.leave()
	h, err := password.Hash(pw)
	if err != nil {
		return s.renderInvite(c, http.StatusBadRequest, inv, fmt.Sprintf("Choose a password of %d to %d characters.", password.MinLength, password.MaxLength))
	}
	u, err := s.store.RedeemInvite(ctx, hash, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: h})
	switch {
	case errors.Is(err, controlplane.ErrNotFound):
		return errBadInvite
	case errors.Is(err, controlplane.ErrConflict):
		return &controlplane.Error{Kind: controlplane.KindConflict, Message: "This email is already a member of the organization: sign in instead."}
	case err != nil:
		return err
	}
	s.log.Info("dashboard invite accepted", "org_id", u.OrgID, "user_id", u.ID)
	if err := s.startSession(c, u); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/overview")
}

type fleetData struct {
	Edges []controlplane.Edge
	// Instances is, per edge id, how many edge processes reported in the
	// last controlplane.InstanceWindow (instancesText).
	Instances map[string]string
	// InstanceWindow is controlplane.InstanceWindow, as the page says it.
	InstanceWindow string
	Tokens         []tokenRow
	NewToken       string
	TTLs           []ttlOpt
}

type tokenRow struct {
	ID        string // the first bytes of its hash: the token itself is gone
	CreatedAt time.Time
	ExpiresAt time.Time
	Status    string
	EdgeName  string
}

type ttlOpt struct {
	Value, Label string
}

var tokenTTLs = []ttlOpt{{"1h", "1 hour"}, {"24h", "24 hours"}, {"168h", "7 days"}, {"720h", "30 days"}}

func (s *Server) fleet(c echo.Context) (fleetData, error) {
	ctx := c.Request().Context()
	org := actor(c).OrgID
	f := fleetData{TTLs: tokenTTLs}
	var err error
	if f.Edges, err = s.store.Edges(ctx, org); err != nil {
		return f, err
	}
	now := s.now()
	inst, err := s.store.EdgeInstances(ctx, org, now.Add(-controlplane.InstanceWindow))
	if err != nil {
		return f, err
	}
	f.InstanceWindow = fmt.Sprintf("%d minutes", int(controlplane.InstanceWindow/time.Minute))
	f.Instances = make(map[string]string, len(f.Edges))
	names := map[string]string{}
	for _, e := range f.Edges {
		names[e.ID] = e.Name
		f.Instances[e.ID] = instancesText(inst[e.ID])
	}
	toks, err := s.store.EnrollTokens(ctx, org)
	if err != nil {
		return f, err
	}
	for _, t := range toks {
		r := tokenRow{ID: hex.EncodeToString(t.Hash[:4]), CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
		switch {
		case !t.UsedAt.IsZero():
			r.Status, r.EdgeName = "used", names[t.EdgeID]
		case !now.Before(t.ExpiresAt):
			r.Status = "expired"
		default:
			r.Status = "unused"
		}
		f.Tokens = append(f.Tokens, r)
	}
	return f, nil
}

// instancesText shows how many processes of an edge reported: replicas
// of a deployment share the edge id but each draws its own instance id.
// Batches of an edge too old to send one make the count unknown: "—"
// when no batch carried one, "N+" when only some did (at least N).
func instancesText(in controlplane.Instances) string {
	switch {
	case in.Unknown && in.Known == 0:
		return "—"
	case in.Unknown:
		return fmt.Sprintf("%d+", in.Known)
	}
	return fmt.Sprint(in.Known)
}

func (s *Server) fleetPage(c echo.Context) error {
	f, err := s.fleet(c)
	if err != nil {
		return err
	}
	d := s.base(c, "Edge fleet")
	d.Notice, d.Page = notice(c), f
	return s.render(c, http.StatusOK, "fleet", d)
}

func (s *Server) createToken(c echo.Context) error {
	u := sess(c).User
	var ttl time.Duration
	for _, o := range tokenTTLs {
		if o.Value == form(c, "ttl") {
			ttl, _ = time.ParseDuration(o.Value)
		}
	}
	if ttl == 0 {
		return &controlplane.Error{Kind: controlplane.KindInvalid, Message: "Choose how long the token stays valid."}
	}
	tok, err := s.enroll.CreateToken(c.Request().Context(), u.OrgID, ttl)
	if err != nil {
		return err
	}
	s.log.Info("dashboard enrollment token created", "org_id", u.OrgID, "by", u.ID, "ttl", ttl)
	f, err := s.fleet(c)
	if err != nil {
		return err
	}
	f.NewToken = tok
	d := s.base(c, "Edge fleet")
	d.Page = f
	return s.render(c, http.StatusOK, "fleet", d)
}

func (s *Server) revokeEdge(c echo.Context) error {
	u := sess(c).User
	if err := s.enroll.Revoke(c.Request().Context(), u.OrgID, c.Param("id")); err != nil {
		return err
	}
	s.log.Info("dashboard edge revoked", "org_id", u.OrgID, "by", u.ID, "edge_id", c.Param("id"))
	return c.Redirect(http.StatusSeeOther, "/fleet?done=revoked")
}
