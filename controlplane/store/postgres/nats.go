package postgres

import (
	"context"
	"fmt"
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
	_, err := s.pool.Exec(ctx, `DELETE FROM nats_org_keys WHERE org = $1`, orgID)
	return mapErr(fmt.Sprintf("delete nats key of org %s", orgID), err)
}

// NATSAccount returns the stored JWT of an account and its version
// (controlplane.ErrNotFound when there is none).
func (s *Store) NATSAccount(ctx context.Context, account string) (string, int64, error) {
	var (
		j string
		v int64
	)
	// An empty JWT is the placeholder UpdateNATSAccount locks when there
	// is none yet.
	err := s.pool.QueryRow(ctx, `SELECT jwt, version FROM nats_accounts WHERE account = $1 AND jwt <> ''`, account).Scan(&j, &v)
	return j, v, mapErr(fmt.Sprintf("nats account %s", account), err)
}

// UpdateNATSAccount changes an account's JWT under its row's lock: a
// placeholder row is inserted when there is none, so that the first
// update is locked as much as any (concurrent inserts of the same key
// wait for one another).
func (s *Store) UpdateNATSAccount(ctx context.Context, account string, fn func(jwt string, version int64) (string, error)) (string, int64, error) {
	op := fmt.Sprintf("update nats account %s", account)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", 0, mapErr(op, err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op once committed
	if _, err := tx.Exec(ctx, `INSERT INTO nats_accounts (account, jwt, version) VALUES ($1, '', 0) ON CONFLICT (account) DO NOTHING`, account); err != nil {
		return "", 0, mapErr(op, err)
	}
	var (
		cur string
		v   int64
	)
	if err := tx.QueryRow(ctx, `SELECT jwt, version FROM nats_accounts WHERE account = $1 FOR UPDATE`, account).Scan(&cur, &v); err != nil {
		return "", 0, mapErr(op, err)
	}
	next, err := fn(cur, v)
	if err != nil {
		return "", 0, err
	}
	if next != cur {
		if next == "" {
			return "", 0, fmt.Errorf("%s: an empty jwt", op)
		}
		err := tx.QueryRow(ctx, `UPDATE nats_accounts SET jwt = $2, version = version + 1, updated_at = now() WHERE account = $1 RETURNING version`, account, next).Scan(&v)
		if err != nil {
			return "", 0, mapErr(op, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", 0, mapErr(op, err)
	}
	return next, v, nil
}
