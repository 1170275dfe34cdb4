package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/controlplane"
)

// NATSOrgKey returns the sealed signing key seed of an org
// (controlplane.ErrNotFound when there is none).
func (s *Store) NATSOrgKey(ctx context.Context, orgID string) ([]byte, error) {
	return s.sealed(ctx, natsOrgKeys, orgID)
}

// AddNATSOrgKey stores sealed as the org's key unless one is stored
// already, and returns the one stored.
func (s *Store) AddNATSOrgKey(ctx context.Context, orgID string, sealed []byte) ([]byte, error) {
	return s.addSealed(ctx, natsOrgKeys, orgID, sealed)
}

// DeleteNATSOrgKey deletes the org's key, if any.
func (s *Store) DeleteNATSOrgKey(ctx context.Context, orgID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM nats_org_keys WHERE org = ?`, orgID); err != nil {
		return fmt.Errorf("delete nats key of org %s: %w", orgID, err)
	}
	return nil
}

// NATSAccount returns the stored JWT of an account and its version
// (controlplane.ErrNotFound when there is none).
func (s *Store) NATSAccount(ctx context.Context, account string) (string, int64, error) {
	var (
		j string
		v int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT jwt, version FROM nats_accounts WHERE account = ?`, account).Scan(&j, &v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, fmt.Errorf("nats account %s: %w", account, controlplane.ErrNotFound)
	}
	if err != nil {
		return "", 0, fmt.Errorf("nats account %s: %w", account, err)
	}
	return j, v, nil
}

// UpdateNATSAccount changes an account's JWT in an immediate transaction
// (the DSN's _txlock): it takes the database's write lock before reading,
// so no other connection or process changes the account in between.
func (s *Store) UpdateNATSAccount(ctx context.Context, account string, fn func(jwt string, version int64) (string, error)) (string, int64, error) {
	op := fmt.Sprintf("update nats account %s", account)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", op, err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	var (
		cur string
		v   int64
	)
	err = tx.QueryRowContext(ctx, `SELECT jwt, version FROM nats_accounts WHERE account = ?`, account).Scan(&cur, &v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", 0, fmt.Errorf("%s: %w", op, err)
	}
	next, err := fn(cur, v)
	if err != nil {
		return "", 0, err
	}
	if next != cur {
		if next == "" {
			return "", 0, fmt.Errorf("%s: an empty jwt", op)
		}
		v++
		_, err := tx.ExecContext(ctx, `INSERT INTO nats_accounts (account, jwt, version, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (account) DO UPDATE SET jwt = excluded.jwt, version = excluded.version, updated_at = excluded.updated_at`,
			account, next, v, time.Now().UnixNano())
		if err != nil {
			return "", 0, fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return "", 0, fmt.Errorf("%s: %w", op, err)
	}
	return next, v, nil
}
