package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
)

var _ keyring.Store = (*DB)(nil)

// CreateDEK stores a new active data key and retires the org's others, in
// one transaction, and records the change so other instances re-read the
// org's keys.
func (db *DB) CreateDEK(ctx context.Context, d keyring.WrappedDEK) error {
	d.CreatedAt = nowIfZero(d.CreatedAt)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, d.OrgID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE data_keys SET state = 'retired' WHERE org_id = ?`, d.OrgID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO data_keys (org_id, id, generation, state, master_ref, master_version, wrapped, created_at, seals)
			 VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?)`,
			d.OrgID, d.ID.String(), d.Generation, d.MasterRef, d.MasterVersion, d.Wrapped, d.CreatedAt.UnixNano(), d.Seals)
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, d.OrgID, "dek", d.ID.String(), d.CreatedAt)
	})
	return wrap(fmt.Sprintf("create data key of org %q", d.OrgID), err)
}

// DEKs returns the org's data keys, highest generation first.
func (db *DB) DEKs(ctx context.Context, orgID string) ([]keyring.WrappedDEK, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT id, generation, state, master_ref, master_version, wrapped, created_at, rewrapped_at, seals
		 FROM data_keys WHERE org_id = ? ORDER BY generation DESC`, orgID)
	if err != nil {
		return nil, wrap("list data keys", err)
	}
	defer rows.Close()
	var out []keyring.WrappedDEK
	for rows.Next() {
		var (
			d                  keyring.WrappedDEK
			id, state          string
			created, rewrapped sql.NullInt64
		)
		if err := rows.Scan(&id, &d.Generation, &state, &d.MasterRef, &d.MasterVersion, &d.Wrapped, &created, &rewrapped, &d.Seals); err != nil {
			return nil, wrap("list data keys", err)
		}
		if d.ID, err = keyring.ParseDEKID(id); err != nil {
			return nil, fmt.Errorf("list data keys: stored id %q: %w", id, err)
		}
		d.OrgID, d.State = orgID, keyring.DEKState(state)
		d.CreatedAt, d.RewrappedAt = fromNanos(created), fromNanos(rewrapped)
		out = append(out, d)
	}
	return out, wrap("list data keys", rows.Err())
}

// UpdateWrapped replaces one data key's wrapped form after a rewrap.
func (db *DB) UpdateWrapped(ctx context.Context, orgID string, id keyring.DEKID, w keyring.Wrap, at time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE data_keys SET master_ref = ?, master_version = ?, wrapped = ?, rewrapped_at = ?
			 WHERE org_id = ? AND id = ?`,
			w.Ref, w.Version, w.Blob, at.UnixNano(), orgID, id.String())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return edge.ErrNotFound
		}
		return recordChange(ctx, tx, orgID, "dek", id.String(), at)
	})
	return wrap(fmt.Sprintf("rewrap data key %s", id), err)
}

// AddSeals reserves n more seals under one data key and returns the
// count reserved so far. It records no change: other instances need not
// re-read the org's keys for it.
func (db *DB) AddSeals(ctx context.Context, orgID string, id keyring.DEKID, n int64) (int64, error) {
	var total int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx,
			`UPDATE data_keys SET seals = seals + ? WHERE org_id = ? AND id = ? RETURNING seals`,
			n, orgID, id.String()).Scan(&total)
		if errors.Is(err, sql.ErrNoRows) {
			return edge.ErrNotFound
		}
		return err
	})
	return total, wrap(fmt.Sprintf("reserve seals under data key %s", id), err)
}

// DeleteDEKs destroys every data key of the org: crypto-shred.
func (db *DB) DeleteDEKs(ctx context.Context, orgID string) (int, error) {
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM data_keys WHERE org_id = ?`, orgID)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return recordChange(ctx, tx, orgID, "dek", "*", time.Now())
	})
	return int(n), wrap(fmt.Sprintf("delete data keys of org %q", orgID), err)
}

// DEKOrgs lists the orgs that have data keys (for rewrap and status).
func (db *DB) DEKOrgs(ctx context.Context) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT DISTINCT org_id FROM data_keys ORDER BY org_id`)
	if err != nil {
		return nil, wrap("list orgs with data keys", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap("list orgs with data keys", err)
		}
		out = append(out, id)
	}
	return out, wrap("list orgs with data keys", rows.Err())
}
