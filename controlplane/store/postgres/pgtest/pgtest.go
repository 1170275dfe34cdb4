// Package pgtest gives control plane tests a fresh, migrated database on
// the shared dev PostgreSQL server (scripts/dev-postgres.sh), reached
// through CODEX_TEST_POSTGRES_URL (owner) and CODEX_TEST_POSTGRES_APP_URL
// (application role). Tests never skip for want of it: unset URLs fail.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane/store/postgres"
)

// URLs returns the dev server's owner and application URLs.
func URLs(tb testing.TB) (owner, app string) {
	tb.Helper()
	owner, app = os.Getenv("CODEX_TEST_POSTGRES_URL"), os.Getenv("CODEX_TEST_POSTGRES_APP_URL")
	if owner == "" || app == "" {
		tb.Fatal(`set CODEX_TEST_POSTGRES_URL and CODEX_TEST_POSTGRES_APP_URL: eval "$(scripts/dev-postgres.sh start)"`)
	}
	return owner, app
}

func withDB(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + db
	return u.String()
}

// FreshDB creates a database migrated for the application role of
// appURL, dropped when the test ends, and returns its owner and
// application URLs.
func FreshDB(tb testing.TB, ownerURL, appURL string) (owner, app string) {
	tb.Helper()
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	name := "cp_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
		admin.Close(context.Background())
	})
	owner, app = withDB(ownerURL, name), withDB(appURL, name)
	role, err := url.Parse(appURL)
	if err != nil {
		tb.Fatal(err)
	}
	if err := postgres.Migrate(ctx, owner, role.User.Username()); err != nil {
		tb.Fatal(err)
	}
	return owner, app
}

// Open returns a store on a fresh database of the dev server, as the
// application role, closed when the test ends.
func Open(tb testing.TB) *postgres.Store {
	tb.Helper()
	owner, app := URLs(tb)
	_, app = FreshDB(tb, owner, app)
	s, err := postgres.Open(context.Background(), app)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
