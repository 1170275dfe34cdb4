package postgres

import "github.com/persiv/codex/edge"

// MarkUncertain records recs as a batch whose commit went unanswered, as a
// dropped connection during COMMIT would.
func (db *DB) MarkUncertain(recs []edge.RequestRecord) { db.markUncertain(recs) }
