// Package postgres is the production store of codex-edge: an edge.Store and
// keyring.Store on PostgreSQL (14 or later) through a pgx connection pool,
// selected by CODEX_DATABASE_URL. Several edge instances share one database.
//
// Tenant isolation has two layers. Every query filters by org id, and every
// tenant table is under forced row-level security keyed on the setting
// app.org_id, which each tenant transaction sets with
// set_config('app.org_id', $1, true) right after BEGIN: a transaction-local
// setting, so a pooled connection never carries one org's setting to the
// next user. The few lookups that run before the org is known (a key by its
// hash or id, the org list, the change feed, the orgs with data keys) call
// narrow SECURITY DEFINER functions (schemas/edge/postgres).
//
// Roles: migrations run as the owner role (Migrate, `codex-edge migrate`);
// serve connects as the application role, which CheckServeRole verifies
// owns no tables and is neither superuser nor BYPASSRLS.
//
// Other instances learn of changes through the change feed; a change also
// sends a notification on the channel codex_edge_changes at commit, which
// ChangeNotify turns into an immediate read of the feed.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/store"
	"github.com/persiv/codex/schemas"
)

// NotifyChannel is the LISTEN/NOTIFY channel a change-feed insert notifies.
const NotifyChannel = "codex_edge_changes"

// changeLock is the advisory lock key change-feed writers serialise on
// ("codex" in ASCII).
const changeLock = 0x636f646578

// changesPage bounds one read of the change feed, as in the SQLite store.
const changesPage = 1000

// DB is the Postgres store. It is safe for concurrent use.
type DB struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	// uncertain holds the ids of request batches whose COMMIT got no
	// answer (the connection dropped): they may be stored. See
	// InsertRequests.
	uncertainMu sync.Mutex
	uncertain   map[string][]string // first record id → every id

	notifyOnce sync.Once
	notify     chan struct{}
	stop       context.CancelFunc
	listenDone chan struct{}
}

var (
	_ edge.Store    = (*DB)(nil)
	_ keyring.Store = (*DB)(nil)
)

// Options tune Open.
type Options struct {
	Logger *slog.Logger // default: discard
}

// Open connects to the database at url (a postgres:// URL or key=value
// string; pool settings such as pool_max_conns may be added to it). It
// neither migrates nor checks the role: see Migrate and CheckServeRole.
// Open does not fail when the database is unreachable at the moment; the
// pool connects on first use.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, fmt.Errorf("open postgres store: CODEX_DATABASE_URL is not a valid connection string: %w", edge.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return &DB{pool: pool, log: opts.Logger, notify: make(chan struct{}, 1)}, nil
}

// Unreachable reports whether err means the server could not be reached
// or is not accepting connections yet (starting up, shutting down), which
// waiting may cure, as opposed to a refusal (a wrong password, a missing
// database, a role not allowed) that it will not.
func Unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 57P: operator intervention (admin shutdown, crash
		// shutdown, cannot connect now).
		return strings.HasPrefix(pe.Code, "57P")
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Migrate applies the embedded migrations to the database at ownerURL as
// its (owner) role, granting appRole the row privileges the store needs.
// Concurrent migrators serialise on goose's session lock.
func Migrate(ctx context.Context, ownerURL, appRole string) error {
	if err := migrate(ctx, ownerURL, appRole, 0); err != nil {
		return fmt.Errorf("migrate the Postgres database (as its owner role, granting %s): %w", appRole, err)
	}
	return nil
}

// migrate applies the migrations up to version to, or all of them when to
// is 0.
func migrate(ctx context.Context, ownerURL, appRole string, to int64) error {
	if appRole == "" {
		return fmt.Errorf("empty application role: %w", edge.ErrInvalid)
	}
	cc, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		// The parse error may quote the URL, password included.
		return fmt.Errorf("the owner URL is not a valid connection string: %w", edge.ErrInvalid)
	}
	// The migrations read the role to grant from this session setting.
	cc.RuntimeParams["codex.app_role"] = appRole
	sqlDB := stdlib.OpenDB(*cc)
	defer func() { _ = sqlDB.Close() }() // one connection, used only here
	p, err := newProvider(sqlDB)
	if err != nil {
		return err
	}
	if to > 0 {
		_, err = p.UpTo(ctx, to)
		return err
	}
	_, err = p.Up(ctx)
	return err
}

func newProvider(sqlDB *sql.DB) (*goose.Provider, error) {
	// Two instances started with CODEX_DATABASE_MIGRATE=true at once take
	// turns on an advisory lock instead of racing.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, sqlDB, schemas.EdgePostgres(),
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
}

// SchemaVersion returns the version of the last migration applied.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.pool.QueryRow(ctx,
		`SELECT COALESCE(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// CheckSchema fails unless every embedded migration has been applied, so
// that serve does not run against a database `codex-edge migrate` has not
// brought up to date.
func (db *DB) CheckSchema(ctx context.Context) error {
	want, err := LatestVersion()
	if err != nil {
		return err
	}
	have, err := db.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("%w (has codex-edge migrate run on this database?)", err)
	}
	if have < want {
		return fmt.Errorf("the database schema is at version %d, this build needs %d: run codex-edge migrate with the owner role's URL", have, want)
	}
	return nil
}

// LatestVersion is the version of the newest embedded migration.
func LatestVersion() (int64, error) {
	entries, err := fs.Glob(schemas.EdgePostgres(), "*.sql")
	if err != nil {
		return 0, err
	}
	var latest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e)
		if err != nil {
			return 0, fmt.Errorf("migration %s: %w", e, err)
		}
		latest = max(latest, v)
	}
	return latest, nil
}

// CheckServeRole refuses a connection role that could get around row-level
// security, or that is not the application role the migrations granted
// (appRole): a superuser or BYPASSRLS role ignores the policies even when
// forced, a member of such a role can SET ROLE to it (the attributes are
// not inherited, the role is), and a role that owns (or is a member of a
// role that owns) the tables can switch them off.
func (db *DB) CheckServeRole(ctx context.Context, appRole string) error {
	var (
		user                            string
		super, bypass, owns, privMember bool
	)
	err := db.pool.QueryRow(ctx, `
		SELECT r.rolname, r.rolsuper, r.rolbypassrls,
		       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		               WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
		                 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		                 AND n.nspname NOT LIKE 'pg_toast%'
		                 AND pg_has_role(r.oid, c.relowner, 'MEMBER')),
		       EXISTS (SELECT 1 FROM pg_roles o
		               WHERE (o.rolsuper OR o.rolbypassrls) AND o.oid <> r.oid
		                 AND pg_has_role(r.oid, o.oid, 'MEMBER'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&user, &super, &bypass, &owns, &privMember)
	if err != nil {
		return fmt.Errorf("check the database role: %w", err)
	}
	switch {
	case super:
		return fmt.Errorf("CODEX_DATABASE_URL connects as %q, a superuser, which bypasses row-level security: connect as the application role %q (the owner role is for codex-edge migrate only)", user, appRole)
	case bypass:
		return fmt.Errorf("CODEX_DATABASE_URL connects as %q, which has BYPASSRLS and so ignores row-level security: connect as a role without it (ALTER ROLE %s NOBYPASSRLS)", user, user)
	case privMember:
		return fmt.Errorf("CODEX_DATABASE_URL connects as %q, a member of a superuser or BYPASSRLS role, so it could SET ROLE to it and ignore row-level security: connect as the application role %q with no such membership (REVOKE the role from %s)", user, appRole, user)
	case owns:
		return fmt.Errorf("CODEX_DATABASE_URL connects as %q, which owns tables (or is a member of their owner) and could turn row-level security off: serve must connect as the application role %q, which owns nothing; the owner role is for codex-edge migrate only", user, appRole)
	case user != appRole:
		return fmt.Errorf("CODEX_DATABASE_URL connects as %q, but CODEX_DATABASE_APP_ROLE is %q, the role the migrations granted access to", user, appRole)
	}
	return nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres store: %w", err)
	}
	return nil
}

// Close stops the listener and closes the pool.
func (db *DB) Close() error {
	if db.stop != nil {
		db.stop()
		<-db.listenDone
	}
	db.pool.Close()
	return nil
}

// Pool exposes the connection pool (for tests and measurements).
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// inOrg runs fn in one transaction whose row-level security org is orgID,
// committing if fn returns nil.
func (db *DB) inOrg(ctx context.Context, orgID string, fn func(tx pgx.Tx) error) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		if err := setOrg(ctx, tx, orgID); err != nil {
			return err
		}
		return fn(tx)
	})
}

// inTx runs fn in one transaction, committing if it returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx)) // the error that matters is fn's
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			// No answer from the server: the commit may have happened.
			return fmt.Errorf("commit: %w: %w", errCommitUncertain, err)
		}
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// errCommitUncertain marks a COMMIT whose outcome is unknown.
var errCommitUncertain = errors.New("outcome unknown")

// setOrg makes orgID the transaction's tenant. It is transaction-local
// (is_local true): a session-level SET would outlive the transaction on a
// pooled connection.
func setOrg(ctx context.Context, tx pgx.Tx, orgID string) error {
	if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgID); err != nil {
		return fmt.Errorf("set org: %w", err)
	}
	return nil
}

// recordChange appends to the change feed inside the caller's transaction.
// The advisory lock, held to commit, orders seqs by commit (see the
// migration); the insert notifies other instances at commit.
func recordChange(ctx context.Context, tx pgx.Tx, orgID, kind, ref string, at time.Time) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(changeLock)); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	if _, err := tx.Exec(ctx,
		`INSERT INTO changes (org_id, kind, ref, at) VALUES ($1, $2, $3, $4)`,
		orgID, kind, ref, at); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}

// orgExists reports whether the org exists, inside a transaction of that org.
func orgExists(ctx context.Context, tx pgx.Tx, orgID string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM orgs WHERE id = $1`, orgID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("org %q: %w", orgID, edge.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("org %q: %w", orgID, err)
	}
	return nil
}

// kindOf maps a driver error to the edge error kind it stands for, or nil.
func kindOf(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return edge.ErrNotFound
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch pe.Code {
	case "23505", "23503": // unique_violation, foreign_key_violation
		return edge.ErrConflict
	case "23514", "23502", "22P02", "22001": // check, not null, invalid text, too long
		return edge.ErrInvalid
	}
	return nil
}

// wrap adds the operation to err, and the edge error kind the driver's
// error means (see store.Wrap).
func wrap(op string, err error) error { return store.Wrap(op, err, kindOf(err)) }

// nowIfZero fills in a time the caller left unset.
func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// tsOrNil stores the zero time as NULL.
func tsOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromTS is the inverse of tsOrNil, in UTC as the SQLite store returns.
func fromTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
