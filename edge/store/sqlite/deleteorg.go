package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
)

// DeleteOrg implements edge.Store. Foreign keys are checked at commit, so
// the tables may be emptied in any order.
func (db *DB) DeleteOrg(ctx context.Context, d edge.OrgDeletion) (edge.OrgDeletion, error) {
	if d.OrgID == "" {
		return d, fmt.Errorf("delete org: no org: %w", edge.ErrInvalid)
	}
	d.Time = nowIfZero(d.Time).UTC()
	d.Rows = map[string]int64{}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, d.OrgID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
			return err
		}
		keys, err := queryStrings(ctx, tx, `SELECT id FROM api_keys WHERE org_id = ? ORDER BY id`, d.OrgID)
		if err != nil {
			return err
		}
		tables, err := queryStrings(ctx, tx, `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
			WHERE m.type = 'table' AND p.name = 'org_id' ORDER BY m.name`)
		if err != nil {
			return err
		}
		for _, t := range append(tables, "orgs") {
			col := "org_id"
			if t == "orgs" {
				col = "id"
			}
			res, err := tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %q WHERE %s = ?`, t, col), d.OrgID)
			if err != nil {
				return fmt.Errorf("table %s: %w", t, err)
			}
			if d.Rows[t], err = res.RowsAffected(); err != nil {
				return err
			}
		}
		if err := recordDeletion(ctx, tx, d, keys); err != nil {
			return err
		}
		counts, err := json.Marshal(d.Rows)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO org_deletions (deleted_org_id, at, actor, via, rows) VALUES (?, ?, ?, ?, ?)`,
			d.OrgID, d.Time.UnixNano(), d.Actor, d.Via, string(counts))
		return err
	})
	if err != nil {
		return edge.OrgDeletion{}, wrap("delete org", err)
	}
	return d, nil
}

// recordDeletion writes the change-feed entries that tell running edges
// the org is gone: its keys (entries naming no org) and, again, the
// destruction of its data keys. The shred that preceded recorded that too,
// but the deletion just removed the org's entries from the feed, and an
// edge that had not read them yet would keep the org's unwrapped data keys
// and cache entries.
func recordDeletion(ctx context.Context, tx *sql.Tx, d edge.OrgDeletion, keys []string) error {
	for _, k := range keys {
		if err := recordChange(ctx, tx, "", "key", k, d.Time); err != nil {
			return err
		}
	}
	return recordChange(ctx, tx, d.OrgID, "dek", "*", d.Time)
}

// queryStrings runs a query of one text column.
func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// OrgDeletions implements edge.Store.
func (db *DB) OrgDeletions(ctx context.Context) ([]edge.OrgDeletion, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT deleted_org_id, at, actor, via, rows FROM org_deletions ORDER BY at, deleted_org_id`)
	if err != nil {
		return nil, wrap("list org deletions", err)
	}
	defer rows.Close()
	var out []edge.OrgDeletion
	for rows.Next() {
		var (
			d      edge.OrgDeletion
			at     int64
			counts string
		)
		if err := rows.Scan(&d.OrgID, &at, &d.Actor, &d.Via, &counts); err != nil {
			return nil, wrap("list org deletions", err)
		}
		d.Time = time.Unix(0, at).UTC()
		if err := json.Unmarshal([]byte(counts), &d.Rows); err != nil {
			return nil, fmt.Errorf("list org deletions: %w", err)
		}
		out = append(out, d)
	}
	return out, wrap("list org deletions", rows.Err())
}
