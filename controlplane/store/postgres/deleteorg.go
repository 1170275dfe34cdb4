package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane"
)

// DeleteOrg implements controlplane.Store through codex_delete_org, which
// runs with the owner's rights (the access log is append-only for the
// application role).
func (s *Store) DeleteOrg(ctx context.Context, d controlplane.OrgDeletion) (controlplane.OrgDeletion, error) {
	if d.OrgID == "" {
		return d, fmt.Errorf("delete org: %w: no org", controlplane.ErrInvalid)
	}
	d.Time = d.Time.UTC()
	d.Rows = map[string]int64{}
	err := s.inOrg(ctx, d.OrgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT table_name, deleted FROM codex_delete_org($1)`, d.OrgID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				table string
				n     int64
			)
			if err := rows.Scan(&table, &n); err != nil {
				rows.Close()
				return err
			}
			d.Rows[table] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if d.Rows["orgs"] != 1 {
			return pgx.ErrNoRows
		}
		counts, err := json.Marshal(d.Rows)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO org_deletions (deleted_org_id, at, by_user_id, rows) VALUES ($1, $2, $3, $4)`,
			d.OrgID, d.Time, d.UserID, counts)
		return err
	})
	if err != nil {
		return controlplane.OrgDeletion{}, mapErr("delete org", err)
	}
	return d, nil
}

// OrgDeletions implements controlplane.Store.
func (s *Store) OrgDeletions(ctx context.Context) ([]controlplane.OrgDeletion, error) {
	rows, err := s.pool.Query(ctx, `SELECT deleted_org_id, at, by_user_id, rows FROM org_deletions ORDER BY at, deleted_org_id`)
	if err != nil {
		return nil, mapErr("org deletions", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (controlplane.OrgDeletion, error) {
		var (
			d      controlplane.OrgDeletion
			counts []byte
		)
		if err := r.Scan(&d.OrgID, &d.Time, &d.UserID, &counts); err != nil {
			return d, err
		}
		d.Time = d.Time.UTC()
		return d, json.Unmarshal(counts, &d.Rows)
	})
	return out, mapErr("org deletions", err)
}
