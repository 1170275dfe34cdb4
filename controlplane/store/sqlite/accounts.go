package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/controlplane"
)

const userCols = `id, org_id, email, role, password_hash, created_at, session_epoch`

func scanUser(sc interface{ Scan(...any) error }) (controlplane.User, error) {
	var u controlplane.User
	var role string
	var created int64
	err := sc.Scan(&u.ID, &u.OrgID, &u.Email, &role, &u.PasswordHash, &created, &u.SessionEpoch)
	u.Role, u.CreatedAt = controlplane.Role(role), time.Unix(created, 0).UTC()
	return u, err
}

func (s *Store) queryUsers(ctx context.Context, op, query string, args ...any) ([]controlplane.User, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	var out []controlplane.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// User returns a member of an org.
func (s *Store) User(ctx context.Context, orgID, id string) (controlplane.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE org_id = ? AND id = ?`, orgID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user: %w", controlplane.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("user: %w", err)
	}
	return u, nil
}

// UsersByEmail finds an email's accounts across orgs, oldest first.
func (s *Store) UsersByEmail(ctx context.Context, email string) ([]controlplane.User, error) {
	return s.queryUsers(ctx, "users by email", `SELECT `+userCols+` FROM users WHERE email = ? ORDER BY created_at, id`, email)
}

func (s *Store) updateOne(ctx context.Context, op, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s: %w", op, controlplane.ErrNotFound)
	}
	return nil
}

// SetPassword replaces the hash and ends the user's sessions.
func (s *Store) SetPassword(ctx context.Context, orgID, id, hash string) error {
	return s.updateOne(ctx, "set password", `UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1 WHERE org_id = ? AND id = ?`, hash, orgID, id)
}

// EndSessions bumps the user's session epoch.
func (s *Store) EndSessions(ctx context.Context, orgID, id string) error {
	return s.updateOne(ctx, "end sessions", `UPDATE users SET session_epoch = session_epoch + 1 WHERE org_id = ? AND id = ?`, orgID, id)
}

// RemoveUser deletes a member in an immediate transaction, so two
// concurrent removals cannot leave the org without an owner, nor a removal
// race a promotion.
func (s *Store) RemoveUser(ctx context.Context, orgID, id string, want controlplane.Role) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	defer tx.Rollback()
	role, err := memberRole(ctx, tx, orgID, id)
	if err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	if role != want {
		return fmt.Errorf("remove user: the member is %s now: %w", role, controlplane.ErrConflict)
	}
	if role == controlplane.RoleOwner {
		if err := notLastOwner(ctx, tx, orgID); err != nil {
			return fmt.Errorf("remove user: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE org_id = ? AND id = ?`, orgID, id); err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	return nil
}

// SetRole changes a member's role in an immediate transaction: the write
// lock is taken at BEGIN, so the role and owner count it checks cannot
// change before its update.
func (s *Store) SetRole(ctx context.Context, orgID, id string, from, to controlplane.Role) error {
	if !from.Valid() || !to.Valid() {
		return fmt.Errorf("set role: role %q to %q: %w", from, to, controlplane.ErrInvalid)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	defer tx.Rollback()
	role, err := memberRole(ctx, tx, orgID, id)
	if err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	if role != from {
		return fmt.Errorf("set role: the member is %s now: %w", role, controlplane.ErrConflict)
	}
	if from == to {
		return nil
	}
	if from == controlplane.RoleOwner {
		if err := notLastOwner(ctx, tx, orgID); err != nil {
			return fmt.Errorf("set role: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE org_id = ? AND id = ?`, string(to), orgID, id); err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	return nil
}

func memberRole(ctx context.Context, tx *sql.Tx, orgID, id string) (controlplane.Role, error) {
	var role string
	err := tx.QueryRowContext(ctx, `SELECT role FROM users WHERE org_id = ? AND id = ?`, orgID, id).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", controlplane.ErrNotFound
	}
	return controlplane.Role(role), err
}

// notLastOwner gives ErrLastOwner unless the org has another owner
// besides the one about to go.
func notLastOwner(ctx context.Context, tx *sql.Tx, orgID string) error {
	var owners int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE org_id = ? AND role = 'owner'`, orgID).Scan(&owners); err != nil {
		return err
	}
	if owners <= 1 {
		return controlplane.ErrLastOwner
	}
	return nil
}

// CreateInvite stores an invitation's hash.
func (s *Store) CreateInvite(ctx context.Context, inv controlplane.Invite) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO invites (hash, org_id, email, role, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		inv.Hash[:], inv.OrgID, inv.Email, string(inv.Role), inv.CreatedBy, unix(inv.CreatedAt), unix(inv.ExpiresAt))
	switch {
	case isUnique(err):
		return fmt.Errorf("create invite: %w", controlplane.ErrConflict)
	case isForeignKey(err):
		return fmt.Errorf("create invite: org %w", controlplane.ErrNotFound)
	case err != nil:
		return fmt.Errorf("create invite: %w", err)
	}
	return nil
}

const inviteCols = `hash, org_id, email, role, created_by, created_at, expires_at`

func scanInvite(sc interface{ Scan(...any) error }) (controlplane.Invite, error) {
	var inv controlplane.Invite
	var hash []byte
	var role string
	var created, expires int64
	err := sc.Scan(&hash, &inv.OrgID, &inv.Email, &role, &inv.CreatedBy, &created, &expires)
	copy(inv.Hash[:], hash)
	inv.Role, inv.CreatedAt, inv.ExpiresAt = controlplane.Role(role), time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC()
	return inv, err
}

// Invites lists an org's pending invitations, newest first.
func (s *Store) Invites(ctx context.Context, orgID string, now time.Time) ([]controlplane.Invite, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+inviteCols+` FROM invites WHERE org_id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at DESC`, orgID, unix(now))
	if err != nil {
		return nil, fmt.Errorf("invites: %w", err)
	}
	defer rows.Close()
	var out []controlplane.Invite
	for rows.Next() {
		inv, err := scanInvite(rows)
		if err != nil {
			return nil, fmt.Errorf("invites: %w", err)
		}
		out = append(out, inv)
	}
	return out, rows.Err()
}

// Invite returns a pending invitation by hash.
func (s *Store) Invite(ctx context.Context, hash [32]byte, now time.Time) (controlplane.Invite, error) {
	inv, err := scanInvite(s.db.QueryRowContext(ctx, `SELECT `+inviteCols+` FROM invites WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`, hash[:], unix(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return inv, fmt.Errorf("invite: %w", controlplane.ErrNotFound)
	}
	if err != nil {
		return inv, fmt.Errorf("invite: %w", err)
	}
	return inv, nil
}

// RevokeInvite marks a pending invitation revoked. Writers are serialized
// (immediate transactions), and both this update and redemption's require
// the row unused and unrevoked, so only the first of the two applies.
func (s *Store) RevokeInvite(ctx context.Context, orgID string, hash [32]byte, now time.Time) error {
	return s.updateOne(ctx, "revoke invite", `UPDATE invites SET revoked_at = ? WHERE org_id = ? AND hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
		unix(now), orgID, hash[:], unix(now))
}

// RedeemInvite marks the invitation used and creates the member.
func (s *Store) RedeemInvite(ctx context.Context, hash [32]byte, now time.Time, u controlplane.User) (controlplane.User, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return u, fmt.Errorf("redeem invite: %w", err)
	}
	defer tx.Rollback()
	var role string
	err = tx.QueryRowContext(ctx, `UPDATE invites SET used_at = ? WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? RETURNING org_id, email, role`,
		unix(now), hash[:], unix(now)).Scan(&u.OrgID, &u.Email, &role)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("redeem invite: %w", controlplane.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("redeem invite: %w", err)
	}
	u.Role, u.CreatedAt = controlplane.Role(role), now
	_, err = tx.ExecContext(ctx, `INSERT INTO users (id, org_id, email, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		u.ID, u.OrgID, u.Email, role, u.PasswordHash, unix(now))
	if isUnique(err) {
		return u, fmt.Errorf("redeem invite: already a member: %w", controlplane.ErrConflict)
	}
	if err != nil {
		return u, fmt.Errorf("redeem invite: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return u, fmt.Errorf("redeem invite: %w", err)
	}
	return u, nil
}

// EnrollTokens lists an org's enrollment tokens, newest first.
func (s *Store) EnrollTokens(ctx context.Context, orgID string) ([]controlplane.EnrollToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash, created_at, expires_at, used_at, COALESCE(edge_id, '') FROM enroll_tokens WHERE org_id = ? ORDER BY created_at DESC, hash`, orgID)
	if err != nil {
		return nil, fmt.Errorf("enroll tokens: %w", err)
	}
	defer rows.Close()
	var out []controlplane.EnrollToken
	for rows.Next() {
		t := controlplane.EnrollToken{OrgID: orgID}
		var hash []byte
		var created, expires int64
		var used sql.NullInt64
		if err := rows.Scan(&hash, &created, &expires, &used, &t.EdgeID); err != nil {
			return nil, fmt.Errorf("enroll tokens: %w", err)
		}
		copy(t.Hash[:], hash)
		t.CreatedAt, t.ExpiresAt, t.UsedAt = time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC(), fromUnix(used)
		out = append(out, t)
	}
	return out, rows.Err()
}
