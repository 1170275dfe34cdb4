package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane"
)

const userCols = `id, org_id, email, role, password_hash, created_at, session_epoch`

func scanUser(row pgx.Row) (controlplane.User, error) {
	var u controlplane.User
	var role string
	err := row.Scan(&u.ID, &u.OrgID, &u.Email, &role, &u.PasswordHash, &u.CreatedAt, &u.SessionEpoch)
	u.Role, u.CreatedAt = controlplane.Role(role), u.CreatedAt.UTC()
	return u, err
}

func queryUsers(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]controlplane.User, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []controlplane.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// User returns a member of an org.
func (s *Store) User(ctx context.Context, orgID, id string) (controlplane.User, error) {
	var u controlplane.User
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE org_id = $1 AND id = $2`, orgID, id))
		return err
	})
	return u, mapErr("user", err)
}

// UsersByEmail runs before the org is known: the transaction names the
// email in app.login_email, which the login policy lets it read, and no
// org.
func (s *Store) UsersByEmail(ctx context.Context, email string) ([]controlplane.User, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, mapErr("users by email", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.login_email', $1, true)`, email); err != nil {
		return nil, mapErr("users by email", err)
	}
	out, err := queryUsers(ctx, tx, `SELECT `+userCols+` FROM users WHERE email = $1 ORDER BY created_at, id`, email)
	if err != nil {
		return nil, mapErr("users by email", err)
	}
	return out, mapErr("users by email", tx.Commit(ctx))
}

func (s *Store) updateOne(ctx context.Context, op, orgID, query string, args ...any) error {
	return mapErr(op, s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, query, args...)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	}))
}

// SetPassword replaces the hash and ends the user's sessions.
func (s *Store) SetPassword(ctx context.Context, orgID, id, hash string) error {
	return s.updateOne(ctx, "set password", orgID, `UPDATE users SET password_hash = $1, session_epoch = session_epoch + 1 WHERE org_id = $2 AND id = $3`, hash, orgID, id)
}

// EndSessions bumps the user's session epoch.
func (s *Store) EndSessions(ctx context.Context, orgID, id string) error {
	return s.updateOne(ctx, "end sessions", orgID, `UPDATE users SET session_epoch = session_epoch + 1 WHERE org_id = $1 AND id = $2`, orgID, id)
}

// lockOwners locks the org's owner rows, in id order so that two
// transactions cannot each hold one and wait for the other, and returns
// their ids. A transaction that then demotes or deletes an owner has the
// count to itself: a concurrent one waits, then sees the change.
func lockOwners(ctx context.Context, tx pgx.Tx, orgID string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT id FROM users WHERE org_id = $1 AND role = 'owner' ORDER BY id FOR UPDATE`, orgID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RemoveUser deletes a member. It locks the org's owner rows first, then
// the member's, so two concurrent removals of the last two owners cannot
// both pass the check, nor a removal race a promotion.
func (s *Store) RemoveUser(ctx context.Context, orgID, id string, role controlplane.Role) error {
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		owners, err := lockOwners(ctx, tx, orgID)
		if err != nil {
			return err
		}
		var now string
		if err := tx.QueryRow(ctx, `SELECT role FROM users WHERE org_id = $1 AND id = $2 FOR UPDATE`, orgID, id).Scan(&now); err != nil {
			return err
		}
		if controlplane.Role(now) != role {
			return errRoleChanged
		}
		if slices.Contains(owners, id) && len(owners) <= 1 {
			return controlplane.ErrLastOwner
		}
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE org_id = $1 AND id = $2`, orgID, id)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
	if errors.Is(err, controlplane.ErrConflict) {
		return fmt.Errorf("remove user: %w", err)
	}
	return mapErr("remove user", err)
}

var errRoleChanged = fmt.Errorf("the member's role changed: %w", controlplane.ErrConflict)

// SetRole changes a member's role. Like RemoveUser it locks the owner rows
// first, then the member's, and checks the role and owner count under
// those locks.
func (s *Store) SetRole(ctx context.Context, orgID, id string, from, to controlplane.Role) error {
	if !from.Valid() || !to.Valid() {
		return fmt.Errorf("set role: role %q to %q: %w", from, to, controlplane.ErrInvalid)
	}
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		owners, err := lockOwners(ctx, tx, orgID)
		if err != nil {
			return err
		}
		var role string
		if err := tx.QueryRow(ctx, `SELECT role FROM users WHERE org_id = $1 AND id = $2 FOR UPDATE`, orgID, id).Scan(&role); err != nil {
			return err
		}
		switch {
		case controlplane.Role(role) != from:
			return errRoleChanged
		case from == to:
			return nil
		case from == controlplane.RoleOwner && len(owners) <= 1:
			return controlplane.ErrLastOwner
		}
		_, err = tx.Exec(ctx, `UPDATE users SET role = $1 WHERE org_id = $2 AND id = $3`, string(to), orgID, id)
		return err
	})
	if errors.Is(err, controlplane.ErrConflict) {
		return fmt.Errorf("set role: %w", err)
	}
	return mapErr("set role", err)
}

// CreateInvite stores an invitation's hash.
func (s *Store) CreateInvite(ctx context.Context, inv controlplane.Invite) error {
	return mapErr("create invite", s.inOrg(ctx, inv.OrgID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO invites (hash, org_id, email, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			inv.Hash[:], inv.OrgID, inv.Email, string(inv.Role), inv.CreatedBy, inv.CreatedAt, inv.ExpiresAt)
		return err
	}))
}

const inviteCols = `hash, org_id, email, role, created_by, created_at, expires_at`

func scanInvite(row pgx.Row) (controlplane.Invite, error) {
	var inv controlplane.Invite
	var hash []byte
	var role string
	err := row.Scan(&hash, &inv.OrgID, &inv.Email, &role, &inv.CreatedBy, &inv.CreatedAt, &inv.ExpiresAt)
	copy(inv.Hash[:], hash)
	inv.Role, inv.CreatedAt, inv.ExpiresAt = controlplane.Role(role), inv.CreatedAt.UTC(), inv.ExpiresAt.UTC()
	return inv, err
}

// Invites lists an org's pending invitations, newest first.
func (s *Store) Invites(ctx context.Context, orgID string, now time.Time) ([]controlplane.Invite, error) {
	var out []controlplane.Invite
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+inviteCols+` FROM invites WHERE org_id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC`, orgID, now)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			inv, err := scanInvite(rows)
			if err != nil {
				return err
			}
			out = append(out, inv)
		}
		return rows.Err()
	})
	return out, mapErr("invites", err)
}

// byInviteHash runs fn in a transaction that can see only the invitation
// whose hash it names, as enrollment does.
func (s *Store) byInviteHash(ctx context.Context, hash [32]byte, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.invite_hash', $1, true)`, hex.EncodeToString(hash[:])); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Invite returns a pending invitation by hash.
func (s *Store) Invite(ctx context.Context, hash [32]byte, now time.Time) (controlplane.Invite, error) {
	var inv controlplane.Invite
	err := s.byInviteHash(ctx, hash, func(tx pgx.Tx) error {
		var err error
		inv, err = scanInvite(tx.QueryRow(ctx, `SELECT `+inviteCols+` FROM invites WHERE hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2`, hash[:], now))
		return err
	})
	return inv, mapErr("invite", err)
}

// RevokeInvite marks a pending invitation of the org revoked. Redemption
// updates the same row under the same conditions: whichever comes second
// waits on the row lock, then finds the row no longer pending.
func (s *Store) RevokeInvite(ctx context.Context, orgID string, hash [32]byte, now time.Time) error {
	return s.updateOne(ctx, "revoke invite", orgID, `UPDATE invites SET revoked_at = $1 WHERE org_id = $2 AND hash = $3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1`,
		now, orgID, hash[:])
}

// RedeemInvite marks the invitation used (a concurrent redemption waits on
// the row lock, then finds it used), then scopes the transaction to the
// invitation's org to create the member.
func (s *Store) RedeemInvite(ctx context.Context, hash [32]byte, now time.Time, u controlplane.User) (controlplane.User, error) {
	err := s.byInviteHash(ctx, hash, func(tx pgx.Tx) error {
		var role string
		err := tx.QueryRow(ctx, `UPDATE invites SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 RETURNING org_id, email, role`,
			now, hash[:]).Scan(&u.OrgID, &u.Email, &role)
		if err != nil {
			return err
		}
		u.Role, u.CreatedAt = controlplane.Role(role), now
		if _, err := tx.Exec(ctx, `SELECT set_config('app.invite_hash', '', true), set_config('app.org_id', $1, true)`, u.OrgID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO users (id, org_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			u.ID, u.OrgID, u.Email, role, u.PasswordHash, now)
		return err
	})
	return u, mapErr("redeem invite", err)
}

// EnrollTokens lists an org's enrollment tokens, newest first.
func (s *Store) EnrollTokens(ctx context.Context, orgID string) ([]controlplane.EnrollToken, error) {
	var out []controlplane.EnrollToken
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT hash, created_at, expires_at, used_at, COALESCE(edge_id, '') FROM enroll_tokens WHERE org_id = $1 ORDER BY created_at DESC, hash`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t := controlplane.EnrollToken{OrgID: orgID}
			var hash []byte
			var used *time.Time
			if err := rows.Scan(&hash, &t.CreatedAt, &t.ExpiresAt, &used, &t.EdgeID); err != nil {
				return err
			}
			copy(t.Hash[:], hash)
			t.CreatedAt, t.ExpiresAt, t.UsedAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC(), fromNull(used)
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, mapErr("enroll tokens", err)
}
