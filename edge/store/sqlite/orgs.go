package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
)

// CreateOrg stores a new org. A zero CreatedAt is set to the current time.
// A taken id or name is edge.ErrConflict.
func (db *DB) CreateOrg(ctx context.Context, o edge.Org) error {
	if err := o.Prepare(); err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO orgs (id, name, created_at, master_key) VALUES (?, ?, ?, ?)`,
			o.ID, o.Name, o.CreatedAt.UnixNano(), o.MasterKey)
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, o.ID, "org", o.ID, o.CreatedAt)
	})
	return wrap(fmt.Sprintf("create org %q", o.ID), err)
}

// Org returns the org with the given id.
func (db *DB) Org(ctx context.Context, id string) (edge.Org, error) {
	var (
		o       edge.Org
		created sql.NullInt64
	)
	err := db.read.QueryRowContext(ctx,
		`SELECT id, name, created_at, master_key FROM orgs WHERE id = ?`, id).
		Scan(&o.ID, &o.Name, &created, &o.MasterKey)
	if err != nil {
		return edge.Org{}, wrap(fmt.Sprintf("org %q", id), err)
	}
	o.CreatedAt = fromNanos(created)
	return o, nil
}

// Orgs returns every org, by name.
func (db *DB) Orgs(ctx context.Context) ([]edge.Org, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT id, name, created_at, master_key FROM orgs ORDER BY name, id`)
	if err != nil {
		return nil, wrap("list orgs", err)
	}
	defer rows.Close()
	var orgs []edge.Org
	for rows.Next() {
		var (
			o       edge.Org
			created sql.NullInt64
		)
		if err := rows.Scan(&o.ID, &o.Name, &created, &o.MasterKey); err != nil {
			return nil, wrap("list orgs", err)
		}
		o.CreatedAt = fromNanos(created)
		orgs = append(orgs, o)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list orgs", err)
	}
	return orgs, nil
}

// FingerprintSecret returns the org's sealed fingerprint secret, nil when
// none is set.
func (db *DB) FingerprintSecret(ctx context.Context, orgID string) ([]byte, error) {
	var secret []byte
	err := db.read.QueryRowContext(ctx,
		`SELECT fingerprint_secret FROM orgs WHERE id = ?`, orgID).Scan(&secret)
	if err != nil {
		return nil, wrap(fmt.Sprintf("fingerprint secret of org %q", orgID), err)
	}
	return secret, nil
}

// SwapFingerprintSecret sets the org's sealed fingerprint secret to next if
// it still equals prev, and returns the secret stored afterwards.
func (db *DB) SwapFingerprintSecret(ctx context.Context, orgID string, prev, next []byte) ([]byte, error) {
	var stored []byte
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT fingerprint_secret FROM orgs WHERE id = ?`, orgID).Scan(&stored); err != nil {
			return err
		}
		if !bytes.Equal(stored, prev) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orgs SET fingerprint_secret = ? WHERE id = ?`, next, orgID); err != nil {
			return err
		}
		stored = next
		return nil
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("swap fingerprint secret of org %q", orgID), err)
	}
	return stored, nil
}

// SetOrgMasterKey sets the org's own master key reference ("" for the
// edge's default).
func (db *DB) SetOrgMasterKey(ctx context.Context, orgID, ref string) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE orgs SET master_key = ? WHERE id = ?`, ref, orgID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		return recordChange(ctx, tx, orgID, "org", orgID, time.Now().UTC())
	})
	return wrap(fmt.Sprintf("set master key of org %q", orgID), err)
}

// OrgMasterKeys returns every org's own master key reference, by org id.
func (db *DB) OrgMasterKeys(ctx context.Context) (map[string]string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT id, master_key FROM orgs WHERE master_key <> ''`)
	if err != nil {
		return nil, wrap("list org master keys", err)
	}
	defer rows.Close()
	m := make(map[string]string)
	for rows.Next() {
		var id, ref string
		if err := rows.Scan(&id, &ref); err != nil {
			return nil, wrap("list org master keys", err)
		}
		m[id] = ref
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list org master keys", err)
	}
	return m, nil
}

// ShredSealed implements edge.Store. With secure_delete on, the freed
// cells are zeroed in the pages written; Compact then removes the WAL's
// older page images.
func (db *DB) ShredSealed(ctx context.Context, orgID string, at time.Time) (edge.Shredded, error) {
	at = nowIfZero(at)
	var out edge.Shredded
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, orgID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE provider_configs SET sealed_key = NULL, api_key_env = '', updated_at = ?
			 WHERE org_id = ? AND sealed_key IS NOT NULL`, at.UnixNano(), orgID)
		if err != nil {
			return err
		}
		if out.Credentials, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx,
			`UPDATE orgs SET fingerprint_secret = NULL WHERE id = ? AND fingerprint_secret IS NOT NULL`, orgID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		out.FingerprintSecret = n > 0
		res, err = tx.ExecContext(ctx,
			`UPDATE memories SET sealed = NULL, bytes = 0, tokens = 0, updated_at = ?
			 WHERE org_id = ? AND sealed IS NOT NULL`, at.UnixNano(), orgID)
		if err != nil {
			return err
		}
		if out.Memories, err = res.RowsAffected(); err != nil {
			return err
		}
		return recordChange(ctx, tx, orgID, "provider", "*", at)
	})
	return out, wrap(fmt.Sprintf("shred sealed values of org %q", orgID), err)
}
