package sqlite

import (
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store/storetest"
)

// BenchmarkInsertRequests measures the metadata writer's path on SQLite
// (synchronous=FULL, on the test's file system).
func BenchmarkInsertRequests(b *testing.B) {
	storetest.BenchInsertRequests(b, func(b *testing.B) edge.Store { return mustOpen(b, b.TempDir()) })
}
