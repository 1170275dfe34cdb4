// Package staffsql implements controlplane.StaffStore once for both SQL
// stores: staff accounts, break-glass requests and the hash-chained access
// log. Each store adapts its driver to DB and Tx (placeholders, times,
// row-level security settings, locks); the rules live here, so SQLite and
// Postgres cannot drift apart.
//
// Every change to a request and its access-log event are written in one
// transaction: a grant, an approval or a read is never without its row.
package staffsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/persiv/codex/controlplane"
)

// Tx is a write transaction.
type Tx interface {
	// Exec runs a statement written with ? placeholders and returns the
	// rows it affected. A unique violation is controlplane.ErrConflict,
	// a foreign key violation controlplane.ErrNotFound.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// QueryRow's Scan gives controlplane.ErrNotFound for no row.
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// Scope makes orgID's rows visible and writable from now on in the
	// transaction (Postgres: app.org_id).
	Scope(ctx context.Context, orgID string) error
	// ByName makes the orgs named name visible (Postgres: app.org_name).
	ByName(ctx context.Context, name string) error
	// LockChain serializes appends to one chain of the access log.
	LockChain(ctx context.Context, orgID string) error
}

// Row is a single-row result.
type Row interface{ Scan(dest ...any) error }

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// DB runs transactions.
type DB interface {
	// Tx runs fn in a write transaction acting for staffID (Postgres:
	// app.staff_id, which makes every org's requests visible; "" for
	// none) and scoped to orgID ("" for none). fn's error rolls back,
	// except a Keep, which commits and then returns its error.
	Tx(ctx context.Context, staffID, orgID string, fn func(Tx) error) error
}

// Keep is an error after which the transaction still commits: a refusal
// whose access-log event must stay.
type Keep struct{ Err error }

func (k Keep) Error() string { return k.Err.Error() }
func (k Keep) Unwrap() error { return k.Err }

// Dialect holds what differs between the stores besides the adapter.
type Dialect struct {
	// ForUpdate locks the rows a SELECT reads (Postgres); SQLite's
	// immediate transactions hold the write lock already.
	ForUpdate string
	// StaffOrgs selects id, name, created_at, plan, break_glass, edges,
	// sharing, revoked, last_seen of every org, by name.
	StaffOrgs string
}

// Store implements controlplane.StaffStore over a DB.
type Store struct {
	DB      DB
	Dialect Dialect
}

// system names the control plane itself, acting without a staff member
// (expiry, disabling from the command line).
const system = "system"

// Time scans a nullable timestamp stored as a time (Postgres) or Unix
// seconds (SQLite).
type Time struct{ T *time.Time }

// Scan implements sql.Scanner.
func (t Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*t.T = time.Time{}
	case int64:
		*t.T = time.Unix(x, 0).UTC()
	case time.Time:
		*t.T = x.UTC()
	default:
		return fmt.Errorf("scan time: unexpected %T", v)
	}
	return nil
}

// scanTime returns a destination for a time column.
func scanTime(t *time.Time) *Time { return &Time{T: t} }

var _ sql.Scanner = (*Time)(nil)

const orgCols = `id, name, created_at, plan, break_glass`

func scanOrg(r Row, o *controlplane.Org, extra ...any) error {
	var plan string
	var bg sql.NullBool
	err := r.Scan(append([]any{&o.ID, &o.Name, scanTime(&o.CreatedAt), &plan, &bg}, extra...)...)
	o.Plan = controlplane.Plan(plan)
	o.BreakGlass = nil
	if bg.Valid {
		v := bg.Bool
		o.BreakGlass = &v
	}
	return err
}

// OrgsByName lists the orgs of this name, oldest first.
func (s *Store) OrgsByName(ctx context.Context, name string) ([]controlplane.Org, error) {
	var out []controlplane.Org
	err := s.DB.Tx(ctx, "", "", func(tx Tx) error {
		if err := tx.ByName(ctx, name); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+orgCols+` FROM orgs WHERE name = ? ORDER BY created_at, id`, name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o controlplane.Org
			if err := scanOrg(rows, &o); err != nil {
				return err
			}
			out = append(out, o)
		}
		return rows.Err()
	})
	return out, wrap("orgs by name", err)
}

// StaffOrgs lists every org with its fleet's health.
func (s *Store) StaffOrgs(ctx context.Context) ([]controlplane.OrgHealth, error) {
	var out []controlplane.OrgHealth
	err := s.DB.Tx(ctx, system, "", func(tx Tx) error {
		rows, err := tx.Query(ctx, s.Dialect.StaffOrgs)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h controlplane.OrgHealth
			var edges, sharing, revoked int64
			if err := scanOrg(rows, &h.Org, &edges, &sharing, &revoked, scanTime(&h.LastSeen)); err != nil {
				return err
			}
			h.Edges, h.Sharing, h.Revoked = int(edges), int(sharing), int(revoked)
			out = append(out, h)
		}
		return rows.Err()
	})
	return out, wrap("staff orgs", err)
}

// SetPlan sets an org's plan and logs it.
func (s *Store) SetPlan(ctx context.Context, orgID string, plan controlplane.Plan, by controlplane.Staff, now time.Time) error {
	if !plan.Valid() {
		return fmt.Errorf("set plan: plan %q: %w", plan, controlplane.ErrInvalid)
	}
	return wrap("set plan", s.DB.Tx(ctx, by.ID, orgID, func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE orgs SET plan = ? WHERE id = ?`, string(plan), orgID)
		if err != nil {
			return err
		}
		if n == 0 {
			return controlplane.ErrNotFound
		}
		return appendEvent(ctx, tx, controlplane.AccessEvent{OrgID: orgID, At: now, Kind: controlplane.EventPlan,
			StaffID: by.ID, StaffEmail: by.Email, Detail: "plan set to " + string(plan)})
	}))
}

// SetBreakGlass records the owner's choice; off ends the org's open
// requests and grants.
func (s *Store) SetBreakGlass(ctx context.Context, orgID string, on bool, now time.Time) error {
	return wrap("set break-glass", s.DB.Tx(ctx, "", orgID, func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE orgs SET break_glass = ? WHERE id = ?`, on, orgID)
		if err != nil {
			return err
		}
		if n == 0 {
			return controlplane.ErrNotFound
		}
		if on {
			return nil
		}
		open, err := queryRequests(ctx, tx, `WHERE r.org_id = ? AND r.state IN ('pending', 'active')`, orgID)
		if err != nil {
			return err
		}
		for _, r := range open {
			to := controlplane.AccessRevoked
			if r.State == controlplane.AccessPending {
				to = controlplane.AccessDenied
			}
			if err := end(ctx, tx, r, to, now, controlplane.Staff{},
				"the organization switched break-glass access off"); err != nil {
				return err
			}
		}
		return nil
	}))
}

const staffCols = `id, email, password_hash, totp_secret, totp_step, session_epoch, created_at, disabled_at`

func scanStaff(r Row) (controlplane.Staff, error) {
	var st controlplane.Staff
	err := r.Scan(&st.ID, &st.Email, &st.PasswordHash, &st.TOTPSecret, &st.TOTPStep, &st.SessionEpoch,
		scanTime(&st.CreatedAt), scanTime(&st.DisabledAt))
	return st, err
}

// CreateStaff stores a new staff account.
func (s *Store) CreateStaff(ctx context.Context, st controlplane.Staff) error {
	if st.ID == "" || st.Email == "" || st.PasswordHash == "" || len(st.TOTPSecret) == 0 {
		return fmt.Errorf("create staff: id, email, password hash and TOTP secret are required: %w", controlplane.ErrInvalid)
	}
	return wrap("create staff", s.DB.Tx(ctx, system, "", func(tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO staff (id, email, password_hash, totp_secret, created_at) VALUES (?, ?, ?, ?, ?)`,
			st.ID, st.Email, st.PasswordHash, st.TOTPSecret, st.CreatedAt.UTC())
		return err
	}))
}

func (s *Store) staffWhere(ctx context.Context, op, where string, arg any) (controlplane.Staff, error) {
	var st controlplane.Staff
	err := s.DB.Tx(ctx, system, "", func(tx Tx) error {
		var err error
		st, err = scanStaff(tx.QueryRow(ctx, `SELECT `+staffCols+` FROM staff WHERE `+where, arg))
		return err
	})
	return st, wrap(op, err)
}

// StaffByEmail finds a staff account by email.
func (s *Store) StaffByEmail(ctx context.Context, email string) (controlplane.Staff, error) {
	return s.staffWhere(ctx, "staff by email", "email = ?", email)
}

// StaffMember finds a staff account by id.
func (s *Store) StaffMember(ctx context.Context, id string) (controlplane.Staff, error) {
	return s.staffWhere(ctx, "staff member", "id = ?", id)
}

// UseTOTPStep records the last used time step, refusing an earlier one:
// the comparison is in the UPDATE, so of two sign-ins racing with one
// code only one succeeds.
func (s *Store) UseTOTPStep(ctx context.Context, id string, step int64) error {
	return wrap("use totp step", s.DB.Tx(ctx, system, "", func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE staff SET totp_step = ? WHERE id = ? AND totp_step < ? AND disabled_at IS NULL`, step, id, step)
		if err != nil || n > 0 {
			return err
		}
		st, err := scanStaff(tx.QueryRow(ctx, `SELECT `+staffCols+` FROM staff WHERE id = ?`, id))
		switch {
		case err != nil:
			return err
		case st.Disabled():
			return controlplane.ErrStaffDisabled
		}
		return controlplane.ErrCodeUsed
	}))
}

// EndStaffSessions bumps the session epoch.
func (s *Store) EndStaffSessions(ctx context.Context, id string) error {
	return wrap("end staff sessions", s.DB.Tx(ctx, system, "", func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE staff SET session_epoch = session_epoch + 1 WHERE id = ?`, id)
		if err == nil && n == 0 {
			return controlplane.ErrNotFound
		}
		return err
	}))
}

// DisableStaff disables the account, ends its sessions and revokes its
// open requests and grants, in one transaction.
func (s *Store) DisableStaff(ctx context.Context, id string, now time.Time) error {
	return wrap("disable staff", s.DB.Tx(ctx, system, "", func(tx Tx) error {
		st, err := scanStaff(tx.QueryRow(ctx, `SELECT `+staffCols+` FROM staff WHERE id = ?`+s.Dialect.ForUpdate, id))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE staff SET disabled_at = COALESCE(disabled_at, ?), session_epoch = session_epoch + 1 WHERE id = ?`, now.UTC(), id); err != nil {
			return err
		}
		open, err := queryRequests(ctx, tx, `WHERE r.staff_id = ? AND r.state IN ('pending', 'active')`, id)
		if err != nil {
			return err
		}
		for _, r := range open {
			if err := end(ctx, tx, r, controlplane.AccessRevoked, now, controlplane.Staff{}, "the staff account was disabled"); err != nil {
				return err
			}
		}
		if err := tx.Scope(ctx, ""); err != nil {
			return err
		}
		return appendEvent(ctx, tx, controlplane.AccessEvent{At: now, Kind: controlplane.EventStaffDisabled, StaffID: st.ID, StaffEmail: st.Email})
	}))
}

// activeStaff reads an enabled staff account in tx.
func activeStaff(ctx context.Context, tx Tx, id string) (controlplane.Staff, error) {
	st, err := scanStaff(tx.QueryRow(ctx, `SELECT `+staffCols+` FROM staff WHERE id = ?`, id))
	if errors.Is(err, controlplane.ErrNotFound) || err == nil && st.Disabled() {
		return st, controlplane.ErrStaffDisabled
	}
	return st, err
}

// RequestAccess stores a pending request, or logs its refusal.
func (s *Store) RequestAccess(ctx context.Context, r controlplane.AccessRequest) error {
	if err := controlplane.ValidateRequest(&r); err != nil {
		return err
	}
	return wrap("request access", s.DB.Tx(ctx, r.StaffID, r.OrgID, func(tx Tx) error {
		st, err := activeStaff(ctx, tx, r.StaffID)
		if err != nil {
			return err
		}
		var o controlplane.Org
		if err := scanOrg(tx.QueryRow(ctx, `SELECT `+orgCols+` FROM orgs WHERE id = ?`, r.OrgID), &o); err != nil {
			return err
		}
		ev := controlplane.AccessEvent{OrgID: r.OrgID, At: r.RequestedAt, StaffID: st.ID, StaffEmail: st.Email, RequestID: r.ID}
		if !o.BreakGlassAllowed() {
			ev.Kind, ev.Detail = controlplane.EventDeny, "request refused: the organization has break-glass access switched off. Reason given: "+r.Reason
			if err := appendEvent(ctx, tx, ev); err != nil {
				return err
			}
			return Keep{controlplane.ErrBreakGlassOff}
		}
		var open int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM access_requests WHERE org_id = ? AND staff_id = ? AND state IN ('pending', 'active')`,
			r.OrgID, r.StaffID).Scan(&open); err != nil {
			return err
		}
		if open > 0 {
			return fmt.Errorf("%w: an open request for this organization exists already", controlplane.ErrConflict)
		}
		// The unique index on open requests settles two racing here.
		if _, err := tx.Exec(ctx, `INSERT INTO access_requests (id, org_id, staff_id, reason, duration_s, state, requested_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)`,
			r.ID, r.OrgID, r.StaffID, r.Reason, int64(r.Duration/time.Second), r.RequestedAt.UTC()); err != nil {
			return err
		}
		ev.Kind, ev.Detail = controlplane.EventRequest, fmt.Sprintf("read-only access for %s requested. Reason: %s", r.Duration, r.Reason)
		return appendEvent(ctx, tx, ev)
	}))
}

const requestCols = `r.id, r.org_id, r.staff_id, s.email, r.reason, r.duration_s, r.state, r.requested_at, r.granted_at, r.expires_at, r.ended_at`

// queryRequests reads requests (r) with their requester (s) and
// approvals; where filters them.
func queryRequests(ctx context.Context, tx Tx, where string, args ...any) ([]controlplane.AccessRequest, error) {
	rows, err := tx.Query(ctx, `SELECT `+requestCols+` FROM access_requests r JOIN staff s ON s.id = r.staff_id `+where+` ORDER BY r.requested_at DESC, r.id`, args...)
	if err != nil {
		return nil, err
	}
	var out []controlplane.AccessRequest
	for rows.Next() {
		var r controlplane.AccessRequest
		var secs int64
		var state string
		if err := rows.Scan(&r.ID, &r.OrgID, &r.StaffID, &r.StaffEmail, &r.Reason, &secs, &state,
			scanTime(&r.RequestedAt), scanTime(&r.GrantedAt), scanTime(&r.ExpiresAt), scanTime(&r.EndedAt)); err != nil {
			rows.Close()
			return nil, err
		}
		r.Duration, r.State = time.Duration(secs)*time.Second, controlplane.AccessState(state)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Approvals, err = approvals(ctx, tx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func approvals(ctx context.Context, tx Tx, requestID string) ([]controlplane.Approval, error) {
	rows, err := tx.Query(ctx, `SELECT a.staff_id, s.email, a.at FROM access_approvals a JOIN staff s ON s.id = a.staff_id
		WHERE a.request_id = ? ORDER BY a.at, a.staff_id`, requestID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []controlplane.Approval
	for rows.Next() {
		var a controlplane.Approval
		if err := rows.Scan(&a.StaffID, &a.StaffEmail, scanTime(&a.At)); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// lockRequest reads one request for change and scopes tx to its org.
func (s *Store) lockRequest(ctx context.Context, tx Tx, id string) (controlplane.AccessRequest, error) {
	var orgID string
	if err := tx.QueryRow(ctx, `SELECT org_id FROM access_requests WHERE id = ?`+s.Dialect.ForUpdate, id).Scan(&orgID); err != nil {
		return controlplane.AccessRequest{}, err
	}
	if err := tx.Scope(ctx, orgID); err != nil {
		return controlplane.AccessRequest{}, err
	}
	rs, err := queryRequests(ctx, tx, `WHERE r.id = ?`, id)
	if err != nil {
		return controlplane.AccessRequest{}, err
	}
	if len(rs) == 0 {
		return controlplane.AccessRequest{}, controlplane.ErrNotFound
	}
	return rs[0], nil
}

// end moves an open request to state to, logging why; by is who ended
// it (zero: the control plane itself).
func end(ctx context.Context, tx Tx, r controlplane.AccessRequest, to controlplane.AccessState, at time.Time, by controlplane.Staff, why string) error {
	if err := tx.Scope(ctx, r.OrgID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE access_requests SET state = ?, ended_at = ? WHERE id = ?`, string(to), at.UTC(), r.ID); err != nil {
		return err
	}
	kind := map[controlplane.AccessState]controlplane.AccessKind{
		controlplane.AccessDenied: controlplane.EventDeny, controlplane.AccessRevoked: controlplane.EventRevoke, controlplane.AccessExpired: controlplane.EventExpire,
	}[to]
	what := "request"
	if r.State == controlplane.AccessActive {
		what = "grant"
	}
	detail := fmt.Sprintf("%s of %s %s", what, r.StaffEmail, map[controlplane.AccessState]string{
		controlplane.AccessDenied: "denied", controlplane.AccessRevoked: "revoked", controlplane.AccessExpired: "expired",
	}[to])
	if why != "" {
		detail += ": " + why
	}
	id, email := by.ID, by.Email
	if id == "" {
		id, email = system, ""
	}
	return appendEvent(ctx, tx, controlplane.AccessEvent{OrgID: r.OrgID, At: at, Kind: kind, StaffID: id, StaffEmail: email, RequestID: r.ID, Detail: detail})
}

// expireIfDue ends r when its time ran out by now: a grant at its expiry,
// a pending request after RequestTTL. It reports whether it did.
func expireIfDue(ctx context.Context, tx Tx, r controlplane.AccessRequest, now time.Time) (bool, error) {
	var at time.Time
	switch {
	case r.State == controlplane.AccessActive && !now.Before(r.ExpiresAt):
		at = r.ExpiresAt
	case r.State == controlplane.AccessPending && !now.Before(r.RequestedAt.Add(controlplane.RequestTTL)):
		at = r.RequestedAt.Add(controlplane.RequestTTL)
	default:
		return false, nil
	}
	return true, end(ctx, tx, r, controlplane.AccessExpired, at, controlplane.Staff{}, "")
}

// openRequest is what acting on an access request starts with: the acting
// staff member (active), the request (locked), and the request expired now
// if its time is up, which is then reported as expired (kept: the expiry
// is committed).
func (s *Store) openRequest(ctx context.Context, tx Tx, id, staffID string, now time.Time, expired error) (controlplane.Staff, controlplane.AccessRequest, error) {
	st, err := activeStaff(ctx, tx, staffID)
	if err != nil {
		return st, controlplane.AccessRequest{}, err
	}
	r, err := s.lockRequest(ctx, tx, id)
	if err != nil {
		return st, r, err
	}
	if done, err := expireIfDue(ctx, tx, r, now); err != nil || done {
		if err == nil {
			err = Keep{expired}
		}
		return st, r, err
	}
	return st, r, nil
}

var errNotPending = fmt.Errorf("%w: the request is no longer pending", controlplane.ErrConflict)

// ApproveAccess adds an approval; the last one needed grants access.
func (s *Store) ApproveAccess(ctx context.Context, id, staffID string, now time.Time) (controlplane.AccessRequest, error) {
	var out controlplane.AccessRequest
	err := s.DB.Tx(ctx, staffID, "", func(tx Tx) error {
		st, r, err := s.openRequest(ctx, tx, id, staffID, now, errNotPending)
		if err != nil {
			return err
		}
		ev := controlplane.AccessEvent{OrgID: r.OrgID, At: now, StaffID: st.ID, StaffEmail: st.Email, RequestID: r.ID}
		switch {
		case r.State != controlplane.AccessPending:
			return errNotPending
		case r.StaffID == st.ID:
			ev.Kind, ev.Detail = controlplane.EventApprovalRefused, "self-approval refused: approvals must come from other staff"
			if err := appendEvent(ctx, tx, ev); err != nil {
				return err
			}
			return Keep{controlplane.ErrSelfApproval}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO access_approvals (request_id, org_id, staff_id, at) VALUES (?, ?, ?, ?)`, r.ID, r.OrgID, st.ID, now.UTC()); err != nil {
			if errors.Is(err, controlplane.ErrConflict) {
				return fmt.Errorf("%w: you approved this request already", controlplane.ErrConflict)
			}
			return err
		}
		ev.Kind, ev.Detail = controlplane.EventApprove, "approved the request of "+r.StaffEmail
		if err := appendEvent(ctx, tx, ev); err != nil {
			return err
		}
		// Approvals by accounts disabled since do not count.
		var n int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM access_approvals a JOIN staff s ON s.id = a.staff_id
			WHERE a.request_id = ? AND a.staff_id <> ? AND s.disabled_at IS NULL`, r.ID, r.StaffID).Scan(&n); err != nil {
			return err
		}
		if n >= controlplane.ApprovalsRequired {
			exp := now.Add(r.Duration)
			if _, err := tx.Exec(ctx, `UPDATE access_requests SET state = 'active', granted_at = ?, expires_at = ? WHERE id = ?`, now.UTC(), exp.UTC(), r.ID); err != nil {
				return err
			}
			if err := appendEvent(ctx, tx, controlplane.AccessEvent{OrgID: r.OrgID, At: now, Kind: controlplane.EventGrant, StaffID: r.StaffID, StaffEmail: r.StaffEmail,
				RequestID: r.ID, Detail: fmt.Sprintf("read-only access granted after %d approvals, until %s", n, exp.UTC().Format(time.RFC3339))}); err != nil {
				return err
			}
		}
		out, err = s.lockRequest(ctx, tx, id)
		return err
	})
	return out, wrap("approve access", err)
}

// DenyAccess denies a pending request of another staff member.
func (s *Store) DenyAccess(ctx context.Context, id, staffID string, now time.Time) error {
	return wrap("deny access", s.DB.Tx(ctx, staffID, "", func(tx Tx) error {
		st, r, err := s.openRequest(ctx, tx, id, staffID, now, errNotPending)
		if err != nil {
			return err
		}
		switch {
		case r.State != controlplane.AccessPending:
			return errNotPending
		case r.StaffID == st.ID:
			return fmt.Errorf("%w: withdraw your own request instead of denying it", controlplane.ErrConflict)
		}
		return end(ctx, tx, r, controlplane.AccessDenied, now, st, "")
	}))
}

// RevokeAccess ends a pending request or an active grant.
func (s *Store) RevokeAccess(ctx context.Context, id, staffID string, now time.Time) error {
	return wrap("revoke access", s.DB.Tx(ctx, staffID, "", func(tx Tx) error {
		st, r, err := s.openRequest(ctx, tx, id, staffID, now, fmt.Errorf("%w: the request has expired", controlplane.ErrConflict))
		if err != nil {
			return err
		}
		if !r.State.Open() {
			return fmt.Errorf("%w: the request has ended already", controlplane.ErrConflict)
		}
		return end(ctx, tx, r, controlplane.AccessRevoked, now, st, "")
	}))
}

// AccessRequests lists the open requests, newest first.
func (s *Store) AccessRequests(ctx context.Context) ([]controlplane.AccessRequest, error) {
	var out []controlplane.AccessRequest
	err := s.DB.Tx(ctx, system, "", func(tx Tx) error {
		var err error
		out, err = queryRequests(ctx, tx, `WHERE r.state IN ('pending', 'active')`)
		return err
	})
	return out, wrap("access requests", err)
}

// UseGrant checks staffID's grant to orgID and logs the read.
func (s *Store) UseGrant(ctx context.Context, staffID, orgID, what string, now time.Time) (controlplane.AccessRequest, error) {
	var out controlplane.AccessRequest
	err := s.DB.Tx(ctx, staffID, orgID, func(tx Tx) error {
		st, err := activeStaff(ctx, tx, staffID)
		if err != nil {
			return err
		}
		rs, err := queryRequests(ctx, tx, `WHERE r.org_id = ? AND r.staff_id = ? AND r.state = 'active'`, orgID, staffID)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return controlplane.ErrNotFound
		}
		if expired, err := expireIfDue(ctx, tx, rs[0], now); err != nil || expired {
			if err == nil {
				err = Keep{controlplane.ErrNotFound}
			}
			return err
		}
		out = rs[0]
		return appendEvent(ctx, tx, controlplane.AccessEvent{OrgID: orgID, At: now, Kind: controlplane.EventUse,
			StaffID: st.ID, StaffEmail: st.Email, RequestID: out.ID, Detail: what})
	})
	return out, wrap("use grant", err)
}

// ExpireAccess ends what ran out by now.
func (s *Store) ExpireAccess(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.DB.Tx(ctx, system, "", func(tx Tx) error {
		open, err := queryRequests(ctx, tx, `WHERE r.state IN ('pending', 'active')`)
		if err != nil {
			return err
		}
		for _, r := range open {
			expired, err := expireIfDue(ctx, tx, r, now)
			if err != nil {
				return err
			}
			if expired {
				n++
			}
		}
		return nil
	})
	return n, wrap("expire access", err)
}

// AppendAccessEvent appends e to its chain.
func (s *Store) AppendAccessEvent(ctx context.Context, e controlplane.AccessEvent) error {
	staffID := e.StaffID
	if staffID == "" {
		staffID = system
	}
	return wrap("append access event", s.DB.Tx(ctx, staffID, e.OrgID, func(tx Tx) error {
		return appendEvent(ctx, tx, e)
	}))
}

// appendEvent chains e after the last event of its org and inserts it.
// The caller's transaction is scoped to e.OrgID (or acts for staff, for
// the chain of OrgID "").
func appendEvent(ctx context.Context, tx Tx, e controlplane.AccessEvent) error {
	if err := tx.LockChain(ctx, e.OrgID); err != nil {
		return err
	}
	var last controlplane.AccessEvent
	var hash []byte
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM access_log WHERE org_id = ? ORDER BY seq DESC LIMIT 1`, e.OrgID).Scan(&last.Seq, &hash)
	switch {
	case errors.Is(err, controlplane.ErrNotFound):
		e.Chain(nil)
	case err != nil:
		return err
	default:
		copy(last.Hash[:], hash)
		e.Chain(&last)
	}
	_, err = tx.Exec(ctx, `INSERT INTO access_log (org_id, seq, at, kind, staff_id, staff_email, request_id, detail, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.OrgID, e.Seq, e.At, string(e.Kind), e.StaffID, e.StaffEmail, e.RequestID, e.Detail, e.Prev[:], e.Hash[:])
	return err
}

// AccessLog returns an org's chain, oldest first.
func (s *Store) AccessLog(ctx context.Context, orgID string) ([]controlplane.AccessEvent, error) {
	staffID := ""
	if orgID == "" {
		staffID = system
	}
	var out []controlplane.AccessEvent
	err := s.DB.Tx(ctx, staffID, orgID, func(tx Tx) error {
		rows, err := tx.Query(ctx, `SELECT org_id, seq, at, kind, staff_id, staff_email, request_id, detail, prev_hash, hash
			FROM access_log WHERE org_id = ? ORDER BY seq`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e controlplane.AccessEvent
			var kind string
			var prev, hash []byte
			if err := rows.Scan(&e.OrgID, &e.Seq, scanTime(&e.At), &kind, &e.StaffID, &e.StaffEmail, &e.RequestID, &e.Detail, &prev, &hash); err != nil {
				return err
			}
			e.Kind = controlplane.AccessKind(kind)
			copy(e.Prev[:], prev)
			copy(e.Hash[:], hash)
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, wrap("access log", err)
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Rebind turns ? placeholders into $1, $2, … (Postgres). The queries of
// this package hold no ? inside literals.
func Rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
