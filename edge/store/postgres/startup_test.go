package postgres_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
)

// syncBuffer is a bytes.Buffer safe to write from WaitServe while the test
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

// TestCheckServe: serve's start-up check migrates only when allowed and
// given the owner's URL, and refuses an unmigrated schema and the owner
// role.
func TestCheckServe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		migrated   bool // migrated before the check
		asOwner    bool // connect as the owner role instead of the application role
		migrate    bool
		giveOwner  bool // pass the owner's URL
		wantErr    string
		wantSchema bool // the schema is current afterwards
	}{
		{name: "unmigrated", wantErr: "codex-edge migrate"},
		{name: "migrated", migrated: true, wantSchema: true},
		{name: "migrate without the owner's URL", migrate: true, wantErr: "CODEX_DATABASE_OWNER_URL"},
		{name: "migrate as the owner", migrate: true, giveOwner: true, wantSchema: true},
		{name: "migrate when migrated already", migrated: true, migrate: true, giveOwner: true, wantSchema: true},
		{name: "owner role", migrated: true, asOwner: true, wantErr: "owns tables", wantSchema: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			owner, app := pgtest.EmptyDB(t)
			if tc.migrated {
				if err := postgres.Migrate(t.Context(), owner, pgtest.AppRole); err != nil {
					t.Fatal(err)
				}
			}
			conn := app
			if tc.asOwner {
				conn = owner
			}
			o := postgres.ServeOptions{AppRole: pgtest.AppRole, Migrate: tc.migrate}
			if tc.giveOwner {
				o.OwnerURL = owner
			}
			db := pgtest.Open(t, conn)
			err := db.CheckServe(t.Context(), o)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("CheckServe = %v, want an error naming %q", err, tc.wantErr)
			}
			if schema := db.CheckSchema(t.Context()); (schema == nil) != tc.wantSchema {
				t.Fatalf("CheckSchema afterwards = %v, want current: %v", schema, tc.wantSchema)
			}
		})
	}
}

// TestWaitServeWaitsForPostgres: with Postgres down, WaitServe keeps
// trying (and says what to check) instead of failing; it stops when told
// to.
func TestWaitServeWaitsForPostgres(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	db := pgtest.Open(t, "postgres://codex_app:secret-password@"+closed+"/codex?sslmode=disable&connect_timeout=2")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error)
	go func() {
		done <- db.WaitServe(ctx, postgres.ServeOptions{
			AppRole: pgtest.AppRole, RetryFirst: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logs.String(), "Postgres unreachable") < 3 {
		select {
		case err := <-done:
			t.Fatalf("WaitServe returned (%v) instead of waiting for Postgres: %s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retries logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stopped while waiting") {
		t.Fatalf("WaitServe stopped while waiting = %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "CODEX_DATABASE_URL") || strings.Contains(l, "secret-password") {
		t.Fatalf("logs lack the hint or show the password: %s", l)
	}
}

// TestWaitServeRefusalIsNotRetried: a refusal (here: bad credentials)
// stops start-up at once instead of being waited out.
func TestWaitServeRefusalIsNotRetried(t *testing.T) {
	t.Parallel()
	_, app := pgtest.FreshDB(t)
	u, err := url.Parse(app)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong-password")
	var logs syncBuffer
	// Were the refusal taken for an outage, WaitServe would retry until
	// this deadline and say it stopped while waiting.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = pgtest.Open(t, u.String()).WaitServe(ctx, postgres.ServeOptions{
		AppRole: pgtest.AppRole, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err == nil || strings.Contains(err.Error(), "stopped while waiting") || strings.Contains(logs.String(), "Postgres unreachable") {
		t.Fatalf("WaitServe with a wrong password = %v, logs %s", err, logs.String())
	}
}
