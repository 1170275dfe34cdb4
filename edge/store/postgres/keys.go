package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
	err := db.inOrg(ctx, k.OrgID, func(tx pgx.Tx) error {
		if err := orgExists(ctx, tx, k.OrgID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO api_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			k.ID, k.OrgID, k.Name, k.Prefix, k.Hash[:], string(k.State), k.CreatedAt, tsOrNil(k.RevokedAt))
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, k.OrgID, "key", k.ID, k.CreatedAt)
	})
	return wrap(fmt.Sprintf("create key %q", k.ID), err)
}

// KeyByHash returns the key whose secret hashes to hash, in any org, through
// codex_key_by_hash: it is the lookup that finds the org of a request.
func (db *DB) KeyByHash(ctx context.Context, hash [32]byte) (edge.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM codex_key_by_hash($1)`, hash[:]))
	if err != nil {
		// The hash is not a secret, but there is no reason to log it.
		return edge.APIKey{}, wrap("key by hash", err)
	}
	return k, nil
}

// KeyByID returns the key with the given id, in any org, through
// codex_key_by_id.
func (db *DB) KeyByID(ctx context.Context, id string) (edge.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM codex_key_by_id($1)`, id))
	if err != nil {
		return edge.APIKey{}, wrap(fmt.Sprintf("key %q", id), err)
	}
	return k, nil
}

// Keys returns the org's keys, oldest first, then by id.
func (db *DB) Keys(ctx context.Context, orgID string) ([]edge.APIKey, error) {
	var keys []edge.APIKey
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT `+keyColumns+` FROM api_keys WHERE org_id = $1 ORDER BY created_at, id`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list keys", err)
	}
	return keys, nil
}

// RevokeKey revokes the org's key at the given time. A key of another org
// is edge.ErrNotFound. Revoking a revoked key succeeds and keeps the first
// revocation time.
func (db *DB) RevokeKey(ctx context.Context, orgID, id string, at time.Time) error {
	at = nowIfZero(at)
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE api_keys SET state = $1, revoked_at = $2
			 WHERE org_id = $3 AND id = $4 AND state = $5`,
			string(edge.KeyRevoked), at, orgID, id, string(edge.KeyActive))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// Not active: revoked already (success) or not this org's.
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2`, orgID, id).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return edge.ErrNotFound
			}
			return err
		}
		return recordChange(ctx, tx, orgID, "key", id, at)
	})
	return wrap(fmt.Sprintf("revoke key %q", id), err)
}

func scanKey(row pgx.Row) (edge.APIKey, error) {
	var (
		k       edge.APIKey
		hash    []byte
		state   string
		revoked *time.Time
	)
	if err := row.Scan(&k.ID, &k.OrgID, &k.Name, &k.Prefix, &hash, &state, &k.CreatedAt, &revoked); err != nil {
		return edge.APIKey{}, err
	}
	if len(hash) != len(k.Hash) {
		return edge.APIKey{}, fmt.Errorf("key %q: stored hash has %d bytes", k.ID, len(hash))
	}
	copy(k.Hash[:], hash)
	k.State = edge.KeyState(state)
	k.CreatedAt = k.CreatedAt.UTC()
	k.RevokedAt = fromTS(revoked)
	return k, nil
}
