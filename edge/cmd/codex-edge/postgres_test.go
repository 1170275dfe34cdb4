package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge/store/postgres/pgtest"
)

// emptyDB creates an unmigrated database on the shared test server.
func emptyDB(t *testing.T) (owner, app string) {
	t.Helper()
	o, a := pgtest.Server(t)
	c, err := pgx.Connect(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "edge_cli_" + hex.EncodeToString(b)
	if _, err := c.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
		c.Close(context.Background())
	})
	return pgtest.WithDB(o, name), pgtest.WithDB(a, name)
}

// TestPostgresCLI: migrate as the owner, manage orgs and keys as the
// application role, and serve refuses the owner role and an unmigrated
// database.
func TestPostgresCLI(t *testing.T) {
	owner, app := emptyDB(t)
	c := newCLI(t)
	c.env["CODEX_LISTEN"], c.env["CODEX_ADMIN_LISTEN"] = "127.0.0.1:0", "127.0.0.1:0"

	// Before migrating, serve refuses with a hint.
	c.env["CODEX_DATABASE_URL"] = app
	if code, _, errs := c.run("", "serve"); code != 1 || !strings.Contains(errs, "codex-edge migrate") {
		t.Fatalf("serve on an unmigrated database: exit %d %q", code, errs)
	}

	c.env["CODEX_DATABASE_URL"] = owner
	if out := c.ok("migrate"); !strings.Contains(out, "migrations applied") {
		t.Fatalf("migrate: %q", out)
	}
	c.ok("migrate") // again: nothing to do

	// serve as the owner role is refused.
	if code, _, errs := c.run("", "serve"); code != 1 || !strings.Contains(errs, "owns tables") {
		t.Fatalf("serve as the owner: exit %d %q", code, errs)
	}

	c.env["CODEX_DATABASE_URL"] = app
	id := strings.TrimSpace(c.ok("orgs", "create", "acme"))
	if !strings.HasPrefix(id, "org_") {
		t.Fatalf("orgs create: %q", id)
	}
	key := strings.TrimSpace(c.ok("keys", "create", "--org", "acme", "--name", "alice"))
	if list := c.ok("keys", "list", "--org", id, "--json"); !strings.Contains(list, `"state":"active"`) {
		t.Fatalf("keys list: %s", list)
	}
	if out := c.ok("keys", "revoke", key); !strings.HasPrefix(out, "revoked key_") {
		t.Fatalf("keys revoke: %q", out)
	}
	if out := c.ok("orgs", "list"); !strings.Contains(out, "acme") {
		t.Fatalf("orgs list: %q", out)
	}
	c.ok("providers", "set", "--org", "acme", "openai", "--api-key-env", "OPENAI_API_KEY")

	// CODEX_DATABASE_MIGRATE=true without the owner's URL is a clear error.
	c.env["CODEX_DATABASE_MIGRATE"] = "true"
	if code, _, errs := c.run("", "serve"); code != 1 || !strings.Contains(errs, "CODEX_DATABASE_OWNER_URL") {
		t.Fatalf("serve with CODEX_DATABASE_MIGRATE=true and no owner URL: exit %d %q", code, errs)
	}
}

// syncBuffer is a bytes.Buffer safe to write from serve while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeWaitsForPostgres: with Postgres down, serve keeps trying (and
// says what to check) instead of exiting; it stops when told to.
func TestServeWaitsForPostgres(t *testing.T) {
	defer func(first, max time.Duration) { postgresRetryFirst, postgresRetryMax = first, max }(postgresRetryFirst, postgresRetryMax)
	postgresRetryFirst, postgresRetryMax = 10*time.Millisecond, 20*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	env := map[string]string{
		"CODEX_DATA_DIR": t.TempDir(), "CODEX_LISTEN": "127.0.0.1:0", "CODEX_ADMIN_LISTEN": "127.0.0.1:0",
		"CODEX_DATABASE_URL": "postgres://codex_app:secret-password@" + closed + "/codex?sslmode=disable&connect_timeout=2",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, &stderr, func(k string) string { return env[k] })
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(stderr.String(), "Postgres unreachable") < 3 {
		select {
		case code := <-done:
			t.Fatalf("serve exited (%d) instead of waiting for Postgres: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retries logged: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code == 0 {
		t.Fatal("serve exited 0 after being stopped while waiting")
	}
	logs := stderr.String()
	if !strings.Contains(logs, "CODEX_DATABASE_URL") || strings.Contains(logs, "secret-password") {
		t.Fatalf("logs lack the hint or show the password: %s", logs)
	}
}

// TestServeRefusalIsNotRetried: a refusal (here: bad credentials) stops
// start-up at once instead of being waited out.
func TestServeRefusalIsNotRetried(t *testing.T) {
	_, app := emptyDB(t)
	u, err := url.Parse(app)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong-password")
	c := newCLI(t)
	c.env["CODEX_LISTEN"], c.env["CODEX_ADMIN_LISTEN"] = "127.0.0.1:0", "127.0.0.1:0"
	c.env["CODEX_DATABASE_URL"] = u.String()
	code, _, errs := c.run("", "serve")
	if code != 1 || strings.Contains(errs, "Postgres unreachable") {
		t.Fatalf("serve with a wrong password: exit %d, %s", code, errs)
	}
}
