package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
)

const memoryColumns = `org_id, key_id, name, version, sealed, bytes, tokens, updated_at`

// PutMemory stores m as the next version of its memory (see
// edge.Store.PutMemory). The row lock (FOR UPDATE) makes two sets at once
// agree: one gets the version, the other ErrConflict.
func (db *DB) PutMemory(ctx context.Context, m edge.Memory) error {
	if err := m.Prepare(); err != nil {
		return fmt.Errorf("set memory: %w", err)
	}
	err := db.inOrg(ctx, m.OrgID, func(tx pgx.Tx) error {
		if err := orgExists(ctx, tx, m.OrgID); err != nil {
			return err
		}
		if err := keyInOrg(ctx, tx, m.OrgID, m.KeyID); err != nil {
			return err
		}
		var stored int64
		err := tx.QueryRow(ctx, `SELECT version FROM memories WHERE org_id = $1 AND key_id = $2 AND name = $3 FOR UPDATE`,
			m.OrgID, m.KeyID, m.Name).Scan(&stored)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if m.Version != stored+1 {
			return fmt.Errorf("version %d follows %d: %w", m.Version, stored, edge.ErrConflict)
		}
		// A first set racing another first set finds the other's row at
		// the insert, and updates nothing: ErrConflict too.
		tag, err := tx.Exec(ctx,
			`INSERT INTO memories (`+memoryColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			 ON CONFLICT (org_id, key_id, name) DO UPDATE SET
			   version = excluded.version, sealed = excluded.sealed, bytes = excluded.bytes,
			   tokens = excluded.tokens, updated_at = excluded.updated_at
			 WHERE memories.version = excluded.version - 1`,
			m.OrgID, m.KeyID, m.Name, m.Version, m.Sealed, m.Bytes, m.Tokens, m.UpdatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("version %d was set meanwhile: %w", m.Version, edge.ErrConflict)
		}
		return recordChange(ctx, tx, m.OrgID, "memory", m.Name, m.UpdatedAt)
	})
	return wrap(fmt.Sprintf("set memory %q", m.Name), err)
}

// keyInOrg checks, inside a transaction of the org, that keyID (empty:
// none) is one of its keys.
func keyInOrg(ctx context.Context, tx pgx.Tx, orgID, keyID string) error {
	if keyID == "" {
		return nil
	}
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2`, orgID, keyID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("key %q of org %q: %w", keyID, orgID, edge.ErrNotFound)
	}
	return err
}

// Memory returns the latest version of one memory, removed or not.
func (db *DB) Memory(ctx context.Context, orgID, keyID, name string) (edge.Memory, error) {
	var m edge.Memory
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		var err error
		m, err = scanMemory(tx.QueryRow(ctx,
			`SELECT `+memoryColumns+` FROM memories WHERE org_id = $1 AND key_id = $2 AND name = $3`, orgID, keyID, name))
		return err
	})
	if err != nil {
		return edge.Memory{}, wrap(fmt.Sprintf("memory %q", name), err)
	}
	return m, nil
}

// Memories returns the org's memories that are set, by key id, then name.
func (db *DB) Memories(ctx context.Context, orgID string) ([]edge.Memory, error) {
	var out []edge.Memory
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT `+memoryColumns+` FROM memories WHERE org_id = $1 AND sealed IS NOT NULL ORDER BY key_id, name`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMemory(rows)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list memories", err)
	}
	return out, nil
}

// RemoveMemory drops a memory's text and keeps its version.
func (db *DB) RemoveMemory(ctx context.Context, orgID, keyID, name string, at time.Time) error {
	at = nowIfZero(at)
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE memories SET sealed = NULL, bytes = 0, tokens = 0, updated_at = $1
			 WHERE org_id = $2 AND key_id = $3 AND name = $4 AND sealed IS NOT NULL`,
			at, orgID, keyID, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return edge.ErrNotFound
		}
		return recordChange(ctx, tx, orgID, "memory", name, at)
	})
	return wrap(fmt.Sprintf("remove memory %q", name), err)
}

func scanMemory(row pgx.Row) (edge.Memory, error) {
	var m edge.Memory
	if err := row.Scan(&m.OrgID, &m.KeyID, &m.Name, &m.Version, &m.Sealed, &m.Bytes, &m.Tokens, &m.UpdatedAt); err != nil {
		return edge.Memory{}, err
	}
	m.UpdatedAt = m.UpdatedAt.UTC()
	return m, nil
}
