package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane/store/postgres"
)

// TestOpenRefusesRolesThatCanBypassRLS: serve refuses a role that is a
// superuser, has BYPASSRLS, owns the tables, or is a member of a role that
// is or does: a member can SET ROLE to it, INHERIT or not, and then turn
// row-level security off or ignore it. The roles are cluster-wide, so the
// test makes them in a private cluster, never on the shared dev server.
func TestOpenRefusesRolesThatCanBypassRLS(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	su, err := pgx.Connect(ctx, c.superuser)
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(context.Background())
	for _, q := range []string{
		`CREATE ROLE codex_owner LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'pw'`,
		`CREATE ROLE codex_app LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'pw'`,
		`CREATE DATABASE codex OWNER codex_owner`,
	} {
		if _, err := su.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	url := func(role string) string { return c.url(role, "codex") }
	if err := postgres.Migrate(ctx, url("codex_owner"), "codex_app"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE ROLE super_role LOGIN SUPERUSER PASSWORD 'pw'`,
		`CREATE ROLE bypass_role LOGIN BYPASSRLS PASSWORD 'pw'`,
		// Members of the table owner: directly, without inheriting its
		// rights, and through a group.
		`CREATE ROLE owner_member LOGIN PASSWORD 'pw' IN ROLE codex_owner`,
		`CREATE ROLE owner_member_noinherit LOGIN NOINHERIT PASSWORD 'pw' IN ROLE codex_owner`,
		`CREATE ROLE owner_group NOLOGIN IN ROLE codex_owner`,
		`CREATE ROLE owner_group_member LOGIN PASSWORD 'pw' IN ROLE owner_group`,
		// Members of a superuser and of a BYPASSRLS role.
		`CREATE ROLE super_group NOLOGIN SUPERUSER`,
		`CREATE ROLE super_member LOGIN PASSWORD 'pw' IN ROLE super_group`,
		`CREATE ROLE bypass_group NOLOGIN BYPASSRLS`,
		`CREATE ROLE bypass_member LOGIN PASSWORD 'pw' IN ROLE bypass_group`,
		`GRANT codex_app TO owner_member, owner_member_noinherit, owner_group_member, super_member, bypass_member`,
	} {
		if _, err := su.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// What a member of the owner could do: take the owner's role and turn
	// the policies off.
	m, err := pgx.Connect(ctx, url("owner_member_noinherit"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Exec(ctx, `SET ROLE codex_owner; ALTER TABLE orgs NO FORCE ROW LEVEL SECURITY; ALTER TABLE orgs FORCE ROW LEVEL SECURITY`); err != nil {
		t.Fatalf("a NOINHERIT member of the owner could not turn RLS off (the threat is gone?): %v", err)
	}
	m.Close(ctx)

	for _, tc := range []struct{ role, want string }{
		{"super_role", "superuser"},
		{"bypass_role", "BYPASSRLS"},
		{"codex_owner", "owns tables"},
		{"owner_member", "member of their owner"},
		{"owner_member_noinherit", "member of their owner"},
		{"owner_group_member", "member of their owner"},
		{"super_member", "member of a superuser or BYPASSRLS role"},
		{"bypass_member", "member of a superuser or BYPASSRLS role"},
	} {
		s, err := postgres.Open(ctx, url(tc.role))
		if err == nil {
			s.Close()
			t.Errorf("Open as %s succeeded", tc.role)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open as %s = %v, want a refusal saying %q", tc.role, err, tc.want)
		}
	}
	s, err := postgres.Open(ctx, url("codex_app"))
	if err != nil {
		t.Fatalf("Open as the application role: %v", err)
	}
	s.Close()
}

// cluster is a private PostgreSQL server in a temporary directory, as the
// edge's pgtest.NewCluster makes: the superuser is reachable over its
// socket only, every other role over loopback TCP with a password.
type cluster struct {
	superuser string
	port      int
}

func (c *cluster) url(role, db string) string {
	return fmt.Sprintf("postgres://%s:pw@127.0.0.1:%d/%s?sslmode=disable", role, c.port, db)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		t.Fatalf("postgres binaries: %v (install the Debian package postgresql, or run scripts/dev-postgres.sh start once)", err)
	}
	base, err := os.MkdirTemp("", "codex-cp-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	data, sock := filepath.Join(base, "data"), filepath.Join(base, "sock")
	run := func(tool string, args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(bin, tool), args...)
		if os.Getuid() == 0 {
			// PostgreSQL refuses to run as root.
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, tool)}, args...)...)
		}
		// Output to a file, not a pipe: the server pg_ctl starts inherits
		// it and would hold a pipe open for its whole life.
		out, err := os.CreateTemp(base, "out-")
		if err != nil {
			return nil, err
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		b, _ := os.ReadFile(out.Name())
		return b, err
	}
	t.Cleanup(func() {
		if out, err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Logf("pg_ctl stop: %v\n%s", err, out)
		}
		if err := os.RemoveAll(base); err != nil {
			t.Logf("remove the cluster: %v", err)
		}
	})
	for _, d := range []string{data, sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{base, data, sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off", port, sock)
	if out, err := run("pg_ctl", "-D", data, "-l", filepath.Join(base, "server.log"), "-w", "-t", "30", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(base, "server.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return &cluster{superuser: fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=30", sock, port), port: port}
}

func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(r), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", errors.New("initdb not found")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}
