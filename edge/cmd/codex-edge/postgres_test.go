package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

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
		c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
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
