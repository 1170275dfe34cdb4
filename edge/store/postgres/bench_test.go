package postgres_test

import (
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/storetest"
)

// BenchmarkInsertRequests measures the metadata writer's path on Postgres,
// as the application role under row-level security: one unnest insert per
// org in each batch's transaction.
func BenchmarkInsertRequests(b *testing.B) {
	storetest.BenchInsertRequests(b, func(b *testing.B) edge.Store {
		_, app := pgtest.FreshDB(b)
		return pgtest.Open(b, app)
	})
}
