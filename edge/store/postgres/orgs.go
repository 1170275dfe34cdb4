package postgres

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
)

// CreateOrg stores a new org. A zero CreatedAt is set to the current time.
// A taken id or name is edge.ErrConflict.
func (db *DB) CreateOrg(ctx context.Context, o edge.Org) error {
	if err := o.Prepare(); err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	err := db.inOrg(ctx, o.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO orgs (id, name, created_at, master_key) VALUES ($1, $2, $3, $4)`,
			o.ID, o.Name, o.CreatedAt, o.MasterKey)
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, o.ID, "org", o.ID, o.CreatedAt)
	})
	return wrap(fmt.Sprintf("create org %q", o.ID), err)
}

// Org returns the org with the given id. It runs as that org, so row-level
// security lets it see that row only.
func (db *DB) Org(ctx context.Context, id string) (edge.Org, error) {
	var o edge.Org
	err := db.inOrg(ctx, id, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, name, created_at, master_key FROM orgs WHERE id = $1`, id).
			Scan(&o.ID, &o.Name, &o.CreatedAt, &o.MasterKey)
	})
	if err != nil {
		return edge.Org{}, wrap(fmt.Sprintf("org %q", id), err)
	}
	o.CreatedAt = o.CreatedAt.UTC()
	return o, nil
}

// Orgs returns every org, by name, through codex_orgs (it runs before any
// org is chosen).
func (db *DB) Orgs(ctx context.Context) ([]edge.Org, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, name, created_at FROM codex_orgs() ORDER BY name COLLATE "C", id COLLATE "C"`)
	if err != nil {
		return nil, wrap("list orgs", err)
	}
	orgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge.Org, error) {
		var o edge.Org
		err := r.Scan(&o.ID, &o.Name, &o.CreatedAt)
		o.CreatedAt = o.CreatedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, wrap("list orgs", err)
	}
	if len(orgs) == 0 {
		return nil, nil
	}
	return orgs, nil
}

// FingerprintSecret returns the org's sealed fingerprint secret, nil when
// none is set.
func (db *DB) FingerprintSecret(ctx context.Context, orgID string) ([]byte, error) {
	var secret []byte
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT fingerprint_secret FROM orgs WHERE id = $1`, orgID).Scan(&secret)
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("fingerprint secret of org %q", orgID), err)
	}
	return secret, nil
}

// SwapFingerprintSecret sets the org's sealed fingerprint secret to next if
// it still equals prev, and returns the secret stored afterwards. The row
// lock (FOR UPDATE) makes two instances swapping at once agree.
func (db *DB) SwapFingerprintSecret(ctx context.Context, orgID string, prev, next []byte) ([]byte, error) {
	var stored []byte
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT fingerprint_secret FROM orgs WHERE id = $1 FOR UPDATE`, orgID).Scan(&stored); err != nil {
			return err
		}
		if !bytes.Equal(stored, prev) {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE orgs SET fingerprint_secret = $1 WHERE id = $2`, next, orgID); err != nil {
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
// edge's default). It runs as that org.
func (db *DB) SetOrgMasterKey(ctx context.Context, orgID, ref string) error {
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE orgs SET master_key = $1 WHERE id = $2`, ref, orgID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return recordChange(ctx, tx, orgID, "org", orgID, time.Now().UTC())
	})
	return wrap(fmt.Sprintf("set master key of org %q", orgID), err)
}

// OrgMasterKeys returns every org's own master key reference, by org id,
// through codex_org_master_keys (it runs before any org is chosen).
func (db *DB) OrgMasterKeys(ctx context.Context) (map[string]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT org_id, master_key FROM codex_org_master_keys()`)
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

// ShredSealed implements edge.Store. Postgres keeps the old row versions
// until a vacuum reuses their space: the values are unreadable without the
// org's data keys, and with the org's own master key scheduled for
// deletion no backup opens them either.
func (db *DB) ShredSealed(ctx context.Context, orgID string, at time.Time) (edge.Shredded, error) {
	at = nowIfZero(at)
	var out edge.Shredded
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		if err := orgExists(ctx, tx, orgID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`UPDATE provider_configs SET sealed_key = NULL, api_key_env = '', updated_at = $1
			 WHERE org_id = $2 AND sealed_key IS NOT NULL`, at, orgID)
		if err != nil {
			return err
		}
		out.Credentials = tag.RowsAffected()
		tag, err = tx.Exec(ctx,
			`UPDATE orgs SET fingerprint_secret = NULL WHERE id = $1 AND fingerprint_secret IS NOT NULL`, orgID)
		if err != nil {
			return err
		}
		out.FingerprintSecret = tag.RowsAffected() > 0
		tag, err = tx.Exec(ctx,
			`UPDATE memories SET sealed = NULL, bytes = 0, tokens = 0, updated_at = $1
			 WHERE org_id = $2 AND sealed IS NOT NULL`, at, orgID)
		if err != nil {
			return err
		}
		out.Memories = tag.RowsAffected()
		return recordChange(ctx, tx, orgID, "provider", "*", at)
	})
	return out, wrap(fmt.Sprintf("shred sealed values of org %q", orgID), err)
}
