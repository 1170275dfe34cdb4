package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
)

const memoryColumns = `org_id, key_id, name, version, sealed, bytes, tokens, updated_at`

// PutMemory stores m as the next version of its memory (see
// edge.Store.PutMemory).
func (db *DB) PutMemory(ctx context.Context, m edge.Memory) error {
	if err := m.Prepare(); err != nil {
		return fmt.Errorf("set memory: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, m.OrgID); err != nil {
			return err
		}
		if err := keyInOrg(ctx, tx, m.OrgID, m.KeyID); err != nil {
			return err
		}
		var stored int64
		err := tx.QueryRowContext(ctx, `SELECT version FROM memories WHERE org_id = ? AND key_id = ? AND name = ?`,
			m.OrgID, m.KeyID, m.Name).Scan(&stored)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if m.Version != stored+1 {
			return fmt.Errorf("version %d follows %d: %w", m.Version, stored, edge.ErrConflict)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO memories (`+memoryColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			 ON CONFLICT (org_id, key_id, name) DO UPDATE SET
			   version = excluded.version, sealed = excluded.sealed, bytes = excluded.bytes,
			   tokens = excluded.tokens, updated_at = excluded.updated_at`,
			m.OrgID, m.KeyID, m.Name, m.Version, m.Sealed, m.Bytes, m.Tokens, m.UpdatedAt.UnixNano())
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, m.OrgID, "memory", m.Name, m.UpdatedAt)
	})
	return wrap(fmt.Sprintf("set memory %q", m.Name), err)
}

// keyInOrg checks, inside tx, that keyID (empty: none) is a key of the org.
func keyInOrg(ctx context.Context, tx *sql.Tx, orgID, keyID string) error {
	if keyID == "" {
		return nil
	}
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_keys WHERE org_id = ? AND id = ?`, orgID, keyID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("key %q of org %q: %w", keyID, orgID, edge.ErrNotFound)
	}
	return err
}

// Memory returns the latest version of one memory, removed or not.
func (db *DB) Memory(ctx context.Context, orgID, keyID, name string) (edge.Memory, error) {
	m, err := scanMemory(db.read.QueryRowContext(ctx,
		`SELECT `+memoryColumns+` FROM memories WHERE org_id = ? AND key_id = ? AND name = ?`, orgID, keyID, name))
	if err != nil {
		return edge.Memory{}, wrap(fmt.Sprintf("memory %q", name), err)
	}
	return m, nil
}

// Memories returns the org's memories that are set, by key id, then name.
func (db *DB) Memories(ctx context.Context, orgID string) ([]edge.Memory, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT `+memoryColumns+` FROM memories WHERE org_id = ? AND sealed IS NOT NULL ORDER BY key_id, name`, orgID)
	if err != nil {
		return nil, wrap("list memories", err)
	}
	defer rows.Close()
	var out []edge.Memory
	for rows.Next() {
		m, err := scanMemory(rows)
		if err != nil {
			return nil, wrap("list memories", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list memories", err)
	}
	return out, nil
}

// RemoveMemory drops a memory's text and keeps its version.
func (db *DB) RemoveMemory(ctx context.Context, orgID, keyID, name string, at time.Time) error {
	at = nowIfZero(at)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE memories SET sealed = NULL, bytes = 0, tokens = 0, updated_at = ?
			 WHERE org_id = ? AND key_id = ? AND name = ? AND sealed IS NOT NULL`,
			at.UnixNano(), orgID, keyID, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return edge.ErrNotFound
		}
		return recordChange(ctx, tx, orgID, "memory", name, at)
	})
	return wrap(fmt.Sprintf("remove memory %q", name), err)
}

func scanMemory(row scanner) (edge.Memory, error) {
	var (
		m       edge.Memory
		updated sql.NullInt64
	)
	if err := row.Scan(&m.OrgID, &m.KeyID, &m.Name, &m.Version, &m.Sealed, &m.Bytes, &m.Tokens, &updated); err != nil {
		return edge.Memory{}, err
	}
	m.UpdatedAt = fromNanos(updated)
	return m, nil
}
