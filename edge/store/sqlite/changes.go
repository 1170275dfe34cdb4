package sqlite

import (
	"context"

	"github.com/persiv/codex/edge"
)

// changesPage bounds one read of the change feed; a poller that passes the
// last seq it received reads the rest on its next call.
const changesPage = 1000

// Changes returns up to 1000 change-feed entries after seq, oldest first.
func (db *DB) Changes(ctx context.Context, after int64) ([]edge.Change, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT seq, org_id, kind, ref FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`,
		after, changesPage)
	if err != nil {
		return nil, wrap("list changes", err)
	}
	defer rows.Close()
	var out []edge.Change
	for rows.Next() {
		var c edge.Change
		if err := rows.Scan(&c.Seq, &c.OrgID, &c.Kind, &c.Ref); err != nil {
			return nil, wrap("list changes", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list changes", err)
	}
	return out, nil
}
