package postgres

import (
	"context"

	"github.com/persiv/codex/edge"
)

// MarkUncertain records recs as a batch whose commit went unanswered, as a
// dropped connection during COMMIT would.
func (db *DB) MarkUncertain(recs []edge.RequestRecord) { db.markUncertain(recs) }

// MigrateTo applies the migrations up to version to, as Migrate applies
// them all.
func MigrateTo(ctx context.Context, ownerURL, appRole string, to int64) error {
	return migrate(ctx, ownerURL, appRole, to)
}
