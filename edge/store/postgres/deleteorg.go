package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
)

// DeleteOrg implements edge.Store: codex_delete_org removes the rows and
// records the deletion (the application role may neither delete audit
// events nor write that record itself), and this transaction records the
// key changes.
func (db *DB) DeleteOrg(ctx context.Context, d edge.OrgDeletion) (edge.OrgDeletion, error) {
	if d.OrgID == "" {
		return d, fmt.Errorf("delete org: no org: %w", edge.ErrInvalid)
	}
	d.Time = nowIfZero(d.Time).UTC()
	d.Rows = map[string]int64{}
	err := db.inOrg(ctx, d.OrgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM api_keys WHERE org_id = $1 ORDER BY id`, d.OrgID)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		// The function records the deletion itself (org_deletions): the
		// application role cannot remove an org without that record.
		rows, err = tx.Query(ctx, `SELECT table_name, deleted FROM codex_delete_org($1, $2, $3, $4)`, d.OrgID, d.Actor, d.Via, d.Time)
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
			return fmt.Errorf("org %q: %w", d.OrgID, edge.ErrNotFound)
		}
		// The shred recorded the destruction of the org's data keys, but
		// the deletion just removed the org's entries from the feed: an
		// edge that had not read them yet would keep the org's unwrapped
		// data keys and cache entries. Record it again.
		if err := recordChange(ctx, tx, d.OrgID, "dek", "*", d.Time); err != nil {
			return err
		}
		// The key entries name no org: the org is gone.
		if err := setOrg(ctx, tx, ""); err != nil {
			return err
		}
		for _, k := range keys {
			if err := recordChange(ctx, tx, "", "key", k, d.Time); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return edge.OrgDeletion{}, wrap("delete org", err)
	}
	return d, nil
}

// OrgDeletions implements edge.Store.
func (db *DB) OrgDeletions(ctx context.Context) ([]edge.OrgDeletion, error) {
	rows, err := db.pool.Query(ctx, `SELECT deleted_org_id, at, actor, via, rows FROM org_deletions ORDER BY at, deleted_org_id`)
	if err != nil {
		return nil, wrap("list org deletions", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge.OrgDeletion, error) {
		var (
			d      edge.OrgDeletion
			counts []byte
			at     time.Time
		)
		if err := r.Scan(&d.OrgID, &at, &d.Actor, &d.Via, &counts); err != nil {
			return d, err
		}
		d.Time = at.UTC()
		return d, json.Unmarshal(counts, &d.Rows)
	})
	if err != nil {
		return nil, wrap("list org deletions", err)
	}
	return out, nil
}
