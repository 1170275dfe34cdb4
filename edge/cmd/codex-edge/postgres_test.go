package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge/store/postgres/pgtest"
)

// TestPostgresCLI: migrate as the owner, manage orgs and keys as the
// application role, and serve refuses the owner role and an unmigrated
// database.
func TestPostgresCLI(t *testing.T) {
	owner, app := pgtest.EmptyDB(t)
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

// TestServeWaitsForPostgres: with Postgres down, serve waits for it
// (postgres.DB.WaitServe, tested there) instead of exiting, and stops when
// told to.
func TestServeWaitsForPostgres(t *testing.T) {
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
	for !strings.Contains(stderr.String(), "Postgres unreachable") {
		select {
		case code := <-done:
			t.Fatalf("serve exited (%d) instead of waiting for Postgres: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wait logged: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code == 0 {
		t.Fatal("serve exited 0 after being stopped while waiting")
	}
}
