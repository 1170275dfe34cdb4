package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
)

// CreateDEK stores a new active data key and retires the org's others, in
// one transaction, and records the change so other instances re-read the
// org's keys. A generation the org has already is edge.ErrConflict.
func (db *DB) CreateDEK(ctx context.Context, d keyring.WrappedDEK) error {
	d.CreatedAt = nowIfZero(d.CreatedAt)
	err := db.inOrg(ctx, d.OrgID, func(tx pgx.Tx) error {
		if err := orgExists(ctx, tx, d.OrgID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE data_keys SET state = 'retired' WHERE org_id = $1`, d.OrgID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO data_keys (org_id, id, generation, state, master_ref, master_version, wrapped, created_at, seals)
			 VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8)`,
			d.OrgID, d.ID.String(), d.Generation, d.MasterRef, d.MasterVersion, d.Wrapped, d.CreatedAt, d.Seals)
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, d.OrgID, "dek", d.ID.String(), d.CreatedAt)
	})
	return wrap(fmt.Sprintf("create data key of org %q", d.OrgID), err)
}

// DEKs returns the org's data keys, highest generation first.
func (db *DB) DEKs(ctx context.Context, orgID string) ([]keyring.WrappedDEK, error) {
	var out []keyring.WrappedDEK
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT id, generation, state, master_ref, master_version, wrapped, created_at, rewrapped_at, seals
			 FROM data_keys WHERE org_id = $1 ORDER BY generation DESC`, orgID)
		if err != nil {
			return err
		}
		out, err = scanDEKs(rows, orgID)
		return err
	})
	if err != nil {
		return nil, wrap("list data keys", err)
	}
	return out, nil
}

// scanDEKs reads rows of (id, generation, state, master_ref,
// master_version, wrapped, created_at, rewrapped_at, seals), the data keys
// of orgID, and closes them.
func scanDEKs(rows pgx.Rows, orgID string) ([]keyring.WrappedDEK, error) {
	defer rows.Close()
	var out []keyring.WrappedDEK
	for rows.Next() {
		var (
			d         keyring.WrappedDEK
			id, state string
			rewrapped *time.Time
		)
		err := rows.Scan(&id, &d.Generation, &state, &d.MasterRef, &d.MasterVersion, &d.Wrapped, &d.CreatedAt, &rewrapped, &d.Seals)
		if err != nil {
			return nil, err
		}
		if d.ID, err = keyring.ParseDEKID(id); err != nil {
			return nil, fmt.Errorf("stored id %q: %w", id, err)
		}
		d.OrgID, d.State = orgID, keyring.DEKState(state)
		d.CreatedAt, d.RewrappedAt = d.CreatedAt.UTC(), fromTS(rewrapped)
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateWrapped replaces one data key's wrapped form after a rewrap.
func (db *DB) UpdateWrapped(ctx context.Context, orgID string, id keyring.DEKID, w keyring.Wrap, at time.Time) error {
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE data_keys SET master_ref = $1, master_version = $2, wrapped = $3, rewrapped_at = $4
			 WHERE org_id = $5 AND id = $6`,
			w.Ref, w.Version, w.Blob, at, orgID, id.String())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return edge.ErrNotFound
		}
		return recordChange(ctx, tx, orgID, "dek", id.String(), at)
	})
	return wrap(fmt.Sprintf("rewrap data key %s", id), err)
}

// AddSeals reserves n more seals under one data key and returns the
// count reserved so far (one atomic UPDATE, so concurrent instances each
// get their own block). It records no change: other instances need not
// re-read the org's keys for it.
func (db *DB) AddSeals(ctx context.Context, orgID string, id keyring.DEKID, n int64) (int64, error) {
	var total int64
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`UPDATE data_keys SET seals = seals + $1 WHERE org_id = $2 AND id = $3 RETURNING seals`,
			n, orgID, id.String()).Scan(&total)
		if errors.Is(err, pgx.ErrNoRows) {
			return edge.ErrNotFound
		}
		return err
	})
	return total, wrap(fmt.Sprintf("reserve seals under data key %s", id), err)
}

// DeleteDEKs destroys every data key of the org: crypto-shred.
func (db *DB) DeleteDEKs(ctx context.Context, orgID string) (int, error) {
	var n int64
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM data_keys WHERE org_id = $1`, orgID)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return recordChange(ctx, tx, orgID, "dek", "*", time.Now())
	})
	return int(n), wrap(fmt.Sprintf("delete data keys of org %q", orgID), err)
}

// DEKOrgs lists the orgs that have data keys (for rewrap and status),
// through codex_dek_orgs.
func (db *DB) DEKOrgs(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT org_id FROM codex_dek_orgs() ORDER BY org_id COLLATE "C"`)
	if err != nil {
		return nil, wrap("list orgs with data keys", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("list orgs with data keys", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
