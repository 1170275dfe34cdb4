package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/persiv/codex/controlplane"
)

// DeleteOrg implements controlplane.Store. Foreign keys are checked at
// commit, so the org goes first: the access log's trigger lets only the
// rows of an org that no longer exists be deleted.
func (s *Store) DeleteOrg(ctx context.Context, d controlplane.OrgDeletion) (controlplane.OrgDeletion, error) {
	if d.OrgID == "" {
		return d, fmt.Errorf("delete org: %w: no org", controlplane.ErrInvalid)
	}
	d.Time = d.Time.UTC()
	d.Rows = map[string]int64{}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	del := func(table, col string) error {
		res, err := tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %q WHERE %s = ?`, table, col), d.OrgID)
		if err != nil {
			return fmt.Errorf("delete org: table %s: %w", table, err)
		}
		d.Rows[table], err = res.RowsAffected()
		return err
	}
	if err := del("orgs", "id"); err != nil {
		return controlplane.OrgDeletion{}, err
	}
	if d.Rows["orgs"] != 1 {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", controlplane.ErrNotFound)
	}
	tables, err := orgTables(ctx, tx)
	if err != nil {
		return controlplane.OrgDeletion{}, err
	}
	for _, t := range tables {
		if err := del(t, "org_id"); err != nil {
			return controlplane.OrgDeletion{}, err
		}
	}
	counts, err := json.Marshal(d.Rows)
	if err != nil {
		return controlplane.OrgDeletion{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO org_deletions (deleted_org_id, at, by_user_id, rows) VALUES (?, ?, ?, ?)`,
		d.OrgID, d.Time.UnixNano(), d.UserID, string(counts)); err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	return d, nil
}

// orgTables lists the tables with an org_id column.
func orgTables(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND p.name = 'org_id' ORDER BY m.name`)
	if err != nil {
		return nil, fmt.Errorf("delete org: list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("delete org: list tables: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// OrgDeletions implements controlplane.Store.
func (s *Store) OrgDeletions(ctx context.Context) ([]controlplane.OrgDeletion, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT deleted_org_id, at, by_user_id, rows FROM org_deletions ORDER BY at, deleted_org_id`)
	if err != nil {
		return nil, fmt.Errorf("org deletions: %w", err)
	}
	defer rows.Close()
	var out []controlplane.OrgDeletion
	for rows.Next() {
		var (
			d      controlplane.OrgDeletion
			at     int64
			counts string
		)
		if err := rows.Scan(&d.OrgID, &at, &d.UserID, &counts); err != nil {
			return nil, fmt.Errorf("org deletions: %w", err)
		}
		d.Time = time.Unix(0, at).UTC()
		if err := json.Unmarshal([]byte(counts), &d.Rows); err != nil {
			return nil, fmt.Errorf("org deletions: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
