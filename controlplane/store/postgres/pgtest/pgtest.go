// Package pgtest gives the control plane's tests databases on the dev
// PostgreSQL server of scripts/dev-postgres.sh: its URLs come from
// CODEX_TEST_POSTGRES_URL and CODEX_TEST_POSTGRES_APP_URL, or from running
// the script when they are unset. Tests never skip for want of Postgres.
package pgtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane/store/postgres"
)

var (
	serverOnce             sync.Once
	serverOwner, serverApp string
	serverErr              error
)

// Server returns the owner and application URLs of the dev server.
func Server(tb testing.TB) (owner, app string) {
	tb.Helper()
	serverOnce.Do(func() {
		serverOwner, serverApp = os.Getenv("CODEX_TEST_POSTGRES_URL"), os.Getenv("CODEX_TEST_POSTGRES_APP_URL")
		if serverOwner != "" && serverApp != "" {
			return
		}
		script, err := devScript()
		if err != nil {
			serverErr = err
			return
		}
		out, err := exec.Command(script, "start").Output()
		if err != nil {
			serverErr = fmt.Errorf("CODEX_TEST_POSTGRES_URL is unset and %s start failed: %w", script, err)
			return
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
			switch v = strings.Trim(v, "'"); k {
			case "CODEX_TEST_POSTGRES_URL":
				serverOwner = v
			case "CODEX_TEST_POSTGRES_APP_URL":
				serverApp = v
			}
		}
		if serverOwner == "" || serverApp == "" {
			serverErr = fmt.Errorf("%s start printed no URLs", script)
		}
	})
	if serverErr != nil {
		tb.Fatalf("postgres for tests: %v", serverErr)
	}
	return serverOwner, serverApp
}

// devScript finds scripts/dev-postgres.sh beside the go.work above the
// working directory.
func devScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return filepath.Join(dir, "scripts", "dev-postgres.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// WithDB returns raw with its database name replaced.
func WithDB(tb testing.TB, raw, db string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("postgres URL: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

// EmptyDB creates a database named prefix plus random hex on the dev
// server, dropped when the test ends, and returns its owner and
// application URLs.
func EmptyDB(tb testing.TB, prefix string) (owner, app string) {
	tb.Helper()
	ownerURL, appURL := Server(tb)
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), ownerURL)
		if err != nil {
			return // the server is gone; nothing to drop
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
	})
	return WithDB(tb, ownerURL, name), WithDB(tb, appURL, name)
}

// FreshDB is EmptyDB, migrated, granting the application role of the
// dev server's application URL.
func FreshDB(tb testing.TB) (owner, app string) {
	tb.Helper()
	owner, app = EmptyDB(tb, "cp_test_")
	u, err := url.Parse(app)
	if err != nil {
		tb.Fatal(err)
	}
	if err := postgres.Migrate(context.Background(), owner, u.User.Username()); err != nil {
		tb.Fatal(err)
	}
	return owner, app
}

// Open returns a store on a fresh database of the dev server, as the
// application role, closed when the test ends.
func Open(tb testing.TB) *postgres.Store {
	tb.Helper()
	_, app := FreshDB(tb)
	s, err := postgres.Open(context.Background(), app)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
