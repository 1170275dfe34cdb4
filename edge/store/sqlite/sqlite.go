// Package sqlite is the embedded store of codex-edge: an edge.Store in one
// SQLite file inside the data directory, used when no Postgres database is
// configured.
//
// The CLI and `serve` open the same directory at the same time, so the
// store is built for several processes: WAL mode lets readers run beside
// one writer, every write transaction begins IMMEDIATE (it takes the write
// lock up front, waiting up to the busy timeout, instead of failing when a
// read lock cannot be upgraded), and within a process writes queue on a
// single connection instead of spinning on the lock.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store"
	"github.com/persiv/codex/schemas"
)

// FileName is the database file inside the data directory.
const FileName = "codex-edge.db"

// busyTimeout bounds how long a statement waits for another connection or
// process to release the database lock before failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// DB is the SQLite store. It is safe for concurrent use.
type DB struct {
	path  string
	write *sql.DB // one connection: writes queue here, not on the file lock
	read  *sql.DB // several connections: WAL readers do not block each other

	// INSERTs of requests by row count (insertSizes), prepared once on
	// the writer connection.
	insertRequests map[int]*sql.Stmt
	insertAudit    map[int]*sql.Stmt // the same for audit events
}

var _ edge.Store = (*DB)(nil)

// Open opens the store in dir, creating the directory (mode 0700) and the
// database file (mode 0600) if needed, and applies pending migrations.
func Open(ctx context.Context, dir string) (*DB, error) {
	if dir == "" {
		return nil, fmt.Errorf("open sqlite store: empty data directory: %w", edge.ErrInvalid)
	}
	if err := checkPath(dir); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// SQLite would create the file with 0644 less the umask; create it
	// first so that it, and the -wal and -shm files SQLite derives from its
	// mode, are readable by the owner only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := restrict(p); err != nil {
			return nil, fmt.Errorf("open sqlite store: %w", err)
		}
	}

	db := &DB{path: path}
	if db.write, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	if db.read, err = sql.Open("sqlite", dsn(path, true)); err != nil {
		_ = db.write.Close()
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.read.SetMaxOpenConns(n)
	db.read.SetMaxIdleConns(n)

	if err := db.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := db.prepareInserts(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite store: prepare: %w", err)
	}
	return db, nil
}

// dsn builds the connection string. Pragmas are per connection, so they go
// in the DSN, which the driver applies to every connection it opens.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_txlock", "immediate")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Deleted content (freed cells and pages) is overwritten with zeros, so
	// an old value does not linger in the database file. Until a checkpoint,
	// the WAL still holds page images from before the change.
	q.Add("_pragma", "secure_delete(1)")
	// Sorts and temporary indices stay in memory rather than in files
	// outside the data directory.
	q.Add("_pragma", "temp_store(MEMORY)")
	// FULL: a revoked key stays revoked after a power loss.
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	}
	// The driver takes everything before '?' as the file name verbatim.
	return path + "?" + q.Encode()
}

// migrate applies the embedded migrations, one transaction each. When two
// processes open a new directory at once, both may try the same migration;
// the loser's transaction fails (its table exists) and rolls back whole, so
// it retries and finds nothing pending.
func (db *DB) migrate(ctx context.Context) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, schemas.EdgeSQLite(),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var upErr error
	for attempt := range 10 {
		if attempt > 0 {
			t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("migrate: %w", ctx.Err())
			case <-t.C:
			}
		}
		if _, upErr = p.Up(ctx); upErr == nil {
			return nil
		}
		if pending, err := p.HasPending(ctx); err == nil && !pending {
			return nil
		}
	}
	return fmt.Errorf("migrate: %w", upErr)
}

// SchemaVersion returns the version of the last migration applied.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, schemas.EdgeSQLite(),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Ping checks that both connection pools reach the database.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite store: %w", err)
	}
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite store: %w", err)
	}
	return nil
}

// Close closes the store. Closing the last connection checkpoints the WAL
// into the database file.
func (db *DB) Close() error {
	var errs []error
	for _, stmts := range []map[int]*sql.Stmt{db.insertRequests, db.insertAudit} {
		for _, stmt := range stmts {
			errs = append(errs, stmt.Close())
		}
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite store: %w", err)
	}
	return nil
}

// inTx runs fn in one write transaction, committing if it returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// recordChange appends to the change feed inside the caller's transaction,
// so the feed never mentions a change that was rolled back, nor misses one
// that was committed.
func recordChange(ctx context.Context, tx *sql.Tx, orgID, kind, ref string, at time.Time) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO changes (org_id, kind, ref, at) VALUES (?, ?, ?, ?)`,
		orgID, kind, ref, at.UnixNano())
	if err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}

// orgExists reports whether the org exists, inside tx.
func orgExists(ctx context.Context, tx *sql.Tx, orgID string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM orgs WHERE id = ?`, orgID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("org %q: %w", orgID, edge.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("org %q: %w", orgID, err)
	}
	return nil
}

// kindOf maps a driver error to the edge error kind it stands for, or nil.
func kindOf(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return edge.ErrNotFound
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return edge.ErrInvalid
	}
	if se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT {
		return edge.ErrConflict
	}
	return nil
}

// wrap adds the operation to err, and the edge error kind the driver's
// error means (see store.Wrap).
func wrap(op string, err error) error { return store.Wrap(op, err, kindOf(err)) }

// nanos stores a time; the zero time is stored as NULL.
func nanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// fromNanos is the inverse of nanos.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// nowIfZero fills in a time the caller left unset.
func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// restrict makes an existing file readable by its owner only: a file left
// by an older version, or created under a lax umask, is tightened.
func restrict(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return os.Chmod(path, 0o600)
}

// checkPath rejects a data directory the driver would misread: it takes
// everything up to the first '?' as the file name.
func checkPath(dir string) error {
	if strings.ContainsRune(dir, '?') {
		return fmt.Errorf("data directory %q contains '?': %w", dir, edge.ErrInvalid)
	}
	return nil
}

// Compact retries: a checkpoint cannot truncate the WAL while another
// connection (another process's, such as a running edge's) reads from it;
// reads are short, so Compact waits compactWait between attempts, at most
// compactAttempts times, before it gives up and says so.
const (
	compactAttempts = 50
	compactWait     = 100 * time.Millisecond
)

// Compact removes from the database file and its WAL the bytes of data
// already deleted: it checkpoints the WAL into the file and truncates it,
// rebuilds the file with VACUUM so that no freed page is left, and
// truncates the WAL again (VACUUM wrote the whole file through it). A
// crypto shred runs it so that none of the org's earlier ciphertext remains
// on disk.
func (db *DB) Compact(ctx context.Context) error {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("compact sqlite store: %w", err)
	}
	defer func() { _ = conn.Close() }() // hands the connection back to the pool
	if err := checkpoint(ctx, conn); err != nil {
		return fmt.Errorf("compact sqlite store: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("compact sqlite store: vacuum: %w", err)
	}
	if err := checkpoint(ctx, conn); err != nil {
		return fmt.Errorf("compact sqlite store: %w", err)
	}
	return nil
}

// checkpoint copies the WAL into the database file and truncates it to
// zero bytes, retrying while another connection's read holds it.
func checkpoint(ctx context.Context, conn *sql.Conn) error {
	for attempt := 1; ; attempt++ {
		var busy, log, done int
		if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if busy == 0 {
			return nil
		}
		if attempt == compactAttempts {
			return fmt.Errorf("checkpoint: the WAL is still in use by another connection after %d attempts; run it again", attempt)
		}
		t := time.NewTimer(compactWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("checkpoint: %w", ctx.Err())
		case <-t.C:
		}
	}
}
