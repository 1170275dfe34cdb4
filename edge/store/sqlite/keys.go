package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
)

const keyColumns = `id, org_id, name, prefix, hash, state, created_at, revoked_at`

// CreateKey stores a new gateway key of an existing org. A zero CreatedAt
// is set to the current time; an empty State means active. A taken id or
// hash is edge.ErrConflict; an unknown org is edge.ErrNotFound.
func (db *DB) CreateKey(ctx context.Context, k edge.APIKey) error {
	if err := k.Prepare(); err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, k.OrgID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO api_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.OrgID, k.Name, k.Prefix, k.Hash[:], string(k.State),
			k.CreatedAt.UnixNano(), nanos(k.RevokedAt))
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, k.OrgID, "key", k.ID, k.CreatedAt)
	})
	return wrap(fmt.Sprintf("create key %q", k.ID), err)
}

// KeyByHash returns the key whose secret hashes to hash, in any org: it is
// the lookup that finds the org of an incoming request.
func (db *DB) KeyByHash(ctx context.Context, hash [32]byte) (edge.APIKey, error) {
	row := db.read.QueryRowContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys WHERE hash = ?`, hash[:])
	k, err := scanKey(row)
	if err != nil {
		// The hash is not a secret, but there is no reason to log it.
		return edge.APIKey{}, wrap("key by hash", err)
	}
	return k, nil
}

// KeyByID returns the key with the given id, in any org.
func (db *DB) KeyByID(ctx context.Context, id string) (edge.APIKey, error) {
	row := db.read.QueryRowContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id)
	k, err := scanKey(row)
	if err != nil {
		return edge.APIKey{}, wrap(fmt.Sprintf("key %q", id), err)
	}
	return k, nil
}

// Keys returns the org's keys, oldest first.
func (db *DB) Keys(ctx context.Context, orgID string) ([]edge.APIKey, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys WHERE org_id = ? ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, wrap("list keys", err)
	}
	defer rows.Close()
	var keys []edge.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap("list keys", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list keys", err)
	}
	return keys, nil
}

// RevokeKey revokes the org's key at the given time. A key of another org
// is edge.ErrNotFound. Revoking a revoked key succeeds and keeps the first
// revocation time.
func (db *DB) RevokeKey(ctx context.Context, orgID, id string, at time.Time) error {
	at = nowIfZero(at)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE api_keys SET state = ?, revoked_at = ?
			 WHERE org_id = ? AND id = ? AND state = ?`,
			string(edge.KeyRevoked), at.UnixNano(), orgID, id, string(edge.KeyActive))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			// Not active: revoked already (success) or not this org's.
			var one int
			err := tx.QueryRowContext(ctx,
				`SELECT 1 FROM api_keys WHERE org_id = ? AND id = ?`, orgID, id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return edge.ErrNotFound
			}
			return err
		}
		return recordChange(ctx, tx, orgID, "key", id, at)
	})
	return wrap(fmt.Sprintf("revoke key %q", id), err)
}

type scanner interface{ Scan(dest ...any) error }

func scanKey(s scanner) (edge.APIKey, error) {
	var (
		k                edge.APIKey
		hash             []byte
		state            string
		created, revoked sql.NullInt64
	)
	if err := s.Scan(&k.ID, &k.OrgID, &k.Name, &k.Prefix, &hash, &state, &created, &revoked); err != nil {
		return edge.APIKey{}, err
	}
	if len(hash) != len(k.Hash) {
		return edge.APIKey{}, fmt.Errorf("key %q: stored hash has %d bytes", k.ID, len(hash))
	}
	copy(k.Hash[:], hash)
	k.State = edge.KeyState(state)
	k.CreatedAt = fromNanos(created)
	k.RevokedAt = fromNanos(revoked)
	return k, nil
}
