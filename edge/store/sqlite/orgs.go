package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/persiv/codex/edge"
)

// CreateOrg stores a new org with its fingerprint secret. A zero CreatedAt
// is set to the current time. A taken id or name is edge.ErrConflict.
func (db *DB) CreateOrg(ctx context.Context, o edge.Org, fingerprintSecret []byte) error {
	if o.ID == "" || o.Name == "" || len(fingerprintSecret) == 0 {
		return fmt.Errorf("create org: id, name and fingerprint secret are required: %w", edge.ErrInvalid)
	}
	o.CreatedAt = nowIfZero(o.CreatedAt)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO orgs (id, name, created_at, fingerprint_secret) VALUES (?, ?, ?, ?)`,
			o.ID, o.Name, o.CreatedAt.UnixNano(), fingerprintSecret)
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
		`SELECT id, name, created_at FROM orgs WHERE id = ?`, id).
		Scan(&o.ID, &o.Name, &created)
	if err != nil {
		return edge.Org{}, wrap(fmt.Sprintf("org %q", id), err)
	}
	o.CreatedAt = fromNanos(created)
	return o, nil
}

// Orgs returns every org, by name.
func (db *DB) Orgs(ctx context.Context) ([]edge.Org, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT id, name, created_at FROM orgs ORDER BY name, id`)
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
		if err := rows.Scan(&o.ID, &o.Name, &created); err != nil {
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

// FingerprintSecret returns the org's request-fingerprint secret.
func (db *DB) FingerprintSecret(ctx context.Context, orgID string) ([]byte, error) {
	var secret []byte
	err := db.read.QueryRowContext(ctx,
		`SELECT fingerprint_secret FROM orgs WHERE id = ?`, orgID).Scan(&secret)
	if err != nil {
		return nil, wrap(fmt.Sprintf("fingerprint secret of org %q", orgID), err)
	}
	return secret, nil
}
