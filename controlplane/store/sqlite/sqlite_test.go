package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/store/storetest"
)

func open(tb testing.TB) controlplane.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "cp.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) { storetest.Run(t, open) }

func BenchmarkIngest(b *testing.B) { storetest.BenchIngest(b, open) }

func BenchmarkUsage30Days(b *testing.B) { storetest.BenchUsage30Days(b, open) }

func TestDatabaseFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v, want 0600", fi.Mode().Perm())
	}
}
