// Package pgtest gives tests real PostgreSQL servers: the shared throw-away
// server of scripts/dev-postgres.sh (a fresh, migrated database per test),
// or a private cluster a test may stop, restart and scan.
//
// Tests never skip for want of Postgres: when CODEX_TEST_POSTGRES_URL is
// unset, Server starts the dev server itself, and fails the test if it
// cannot.
package pgtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge/store/postgres"
)

// AppRole is the application role both the dev script and Cluster create.
const AppRole = "codex_app"

var (
	serverOnce             sync.Once
	serverOwner, serverApp string
	serverErr              error
)

// Server returns the owner and application URLs of the shared dev server,
// from CODEX_TEST_POSTGRES_URL and CODEX_TEST_POSTGRES_APP_URL, or by
// running scripts/dev-postgres.sh start when they are unset.
func Server(tb testing.TB) (owner, app string) {
	tb.Helper()
	serverOnce.Do(func() {
		serverOwner, serverApp = os.Getenv("CODEX_TEST_POSTGRES_URL"), os.Getenv("CODEX_TEST_POSTGRES_APP_URL")
		if serverOwner != "" && serverApp != "" {
			return
		}
		root, err := repoRoot()
		if err != nil {
			serverErr = err
			return
		}
		out, err := runToFile(exec.Command(filepath.Join(root, "scripts", "dev-postgres.sh"), "start"), os.TempDir())
		if err != nil {
			serverErr = fmt.Errorf("CODEX_TEST_POSTGRES_URL is unset and scripts/dev-postgres.sh start failed: %w\n%s", err, out)
			return
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
			v = strings.Trim(v, "'")
			switch k {
			case "CODEX_TEST_POSTGRES_URL":
				serverOwner = v
			case "CODEX_TEST_POSTGRES_APP_URL":
				serverApp = v
			}
		}
		if serverOwner == "" || serverApp == "" {
			serverErr = fmt.Errorf("scripts/dev-postgres.sh start printed no URLs")
		}
	})
	if serverErr != nil {
		tb.Fatalf("postgres for tests: %v", serverErr)
	}
	return serverOwner, serverApp
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// WithDB returns raw with its database name replaced.
func WithDB(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + db
	return u.String()
}

// FreshDB creates a migrated database on the shared server for one test,
// dropped when it ends, and returns its owner and application URLs.
func FreshDB(tb testing.TB) (owner, app string) {
	tb.Helper()
	o, a := Server(tb)
	return freshDB(tb, o, a)
}

// EmptyDB creates a database on the shared server that no migration has
// touched, dropped when the test ends, and returns its owner and
// application URLs.
func EmptyDB(tb testing.TB) (owner, app string) {
	tb.Helper()
	o, a := Server(tb)
	return emptyDB(tb, o, a)
}

func freshDB(tb testing.TB, ownerURL, appURL string) (owner, app string) {
	tb.Helper()
	owner, app = emptyDB(tb, ownerURL, appURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := postgres.Migrate(ctx, owner, AppRole); err != nil {
		tb.Fatalf("migrate test database: %v", err)
	}
	return owner, app
}

func emptyDB(tb testing.TB, ownerURL, appURL string) (owner, app string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b [6]byte
	rand.Read(b[:])
	name := "edge_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		tb.Fatalf("connect as the owner role: %v", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, ownerURL)
		if err != nil {
			return // the server is gone; nothing to drop
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
	})
	return WithDB(ownerURL, name), WithDB(appURL, name)
}

// Open opens the store on url, closed when the test ends.
func Open(tb testing.TB, url string) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), url, postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// Cluster is a private PostgreSQL server in a temporary directory, for
// tests that stop it or read its files.
type Cluster struct {
	DataDir  string
	OwnerURL string // owner role, database codex
	AppURL   string // application role, database codex

	tb   testing.TB
	bin  string
	base string
	sock string
	port int
}

// NewCluster initialises and starts a private cluster on a free loopback
// port with the dev script's roles; it is stopped and deleted when the test
// ends.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin, err := binDir()
	if err != nil {
		// The dev script installs the Debian package when it is missing.
		Server(tb)
		bin, err = binDir()
	}
	if err != nil {
		tb.Fatalf("postgres binaries: %v (install the Debian package postgresql, or run scripts/dev-postgres.sh start once)", err)
	}
	base, err := os.MkdirTemp("", "codex-pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{tb: tb, bin: bin, base: base, DataDir: filepath.Join(base, "data"), sock: filepath.Join(base, "sock")}
	tb.Cleanup(func() {
		if out, err := c.run("pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "stop"); err != nil {
			tb.Logf("pg_ctl stop: %v\n%s", err, out)
		}
		if err := os.RemoveAll(base); err != nil {
			tb.Logf("remove the cluster: %v", err)
		}
	})
	for _, d := range []string{c.DataDir, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	if os.Getuid() == 0 {
		// PostgreSQL refuses to run as root: hand the directory to postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{base, c.DataDir, c.sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if out, err := c.run("initdb", "-D", c.DataDir, "-U", "postgres", "--auth-local=trust",
		"--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale"); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	c.port = freePort(tb)
	c.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	su, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.sock, c.port))
	if err != nil {
		tb.Fatalf("connect as postgres: %v", err)
	}
	defer su.Close(ctx)
	for _, q := range []string{
		`CREATE ROLE codex_owner LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS PASSWORD 'owner_pw'`,
		`CREATE ROLE codex_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD 'app_pw'`,
		`CREATE DATABASE codex OWNER codex_owner`,
	} {
		if _, err := su.Exec(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	c.OwnerURL = fmt.Sprintf("postgres://codex_owner:owner_pw@127.0.0.1:%d/codex?sslmode=disable", c.port)
	c.AppURL = fmt.Sprintf("postgres://codex_app:app_pw@127.0.0.1:%d/codex?sslmode=disable", c.port)
	return c
}

// FreshDB creates a migrated database in the cluster, as FreshDB does on
// the shared server.
func (c *Cluster) FreshDB(tb testing.TB) (owner, app string) {
	tb.Helper()
	return freshDB(tb, c.OwnerURL, c.AppURL)
}

// Start starts the (stopped) cluster on its port and waits until it
// accepts connections.
func (c *Cluster) Start() {
	c.tb.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=100", c.port, c.sock)
	if out, err := c.run("pg_ctl", "-D", c.DataDir, "-l", filepath.Join(c.base, "server.log"), "-w", "-t", "30", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.base, "server.log"))
		c.tb.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// Stop stops the cluster (fast shutdown: sessions are ended, open
// transactions rolled back).
func (c *Cluster) Stop() {
	c.tb.Helper()
	if out, err := c.run("pg_ctl", "-D", c.DataDir, "-m", "fast", "-w", "stop"); err != nil {
		c.tb.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Checkpoint writes every dirty page and the WAL to the data directory, so
// a scan of the files sees everything the server holds.
func (c *Cluster) Checkpoint() {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	su, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.sock, c.port))
	if err != nil {
		c.tb.Fatalf("connect as postgres: %v", err)
	}
	defer su.Close(ctx)
	for _, q := range []string{"CHECKPOINT", "SELECT pg_switch_wal()"} {
		if _, err := su.Exec(ctx, q); err != nil {
			c.tb.Fatalf("%s: %v", q, err)
		}
	}
}

func (c *Cluster) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, tool), args...)
	if os.Getuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(c.bin, tool)}, args...)...)
	}
	return runToFile(cmd, c.base)
}

// runToFile runs cmd with its output in a file, not a pipe: a server that
// cmd starts inherits the output and would hold a pipe open for its whole
// life, so waiting for the pipe to close would never end. The dev script
// prints its variables on stdout and progress on stderr; both are returned.
func runToFile(cmd *exec.Cmd, dir string) ([]byte, error) {
	out, err := os.CreateTemp(dir, "pgtest-out-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(out.Name()) }()
	defer func() { _ = out.Close() }() // read back by name below
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return b, err
}

func binDir() (string, error) {
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

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// SuperuserURL connects as the cluster's superuser, over its socket.
func (c *Cluster) SuperuserURL() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.sock, c.port)
}
