// Package sqlite implements controlplane.Store on an embedded SQLite
// database (modernc.org/sqlite, no cgo): the control plane's zero-setup
// default. Times are stored as Unix seconds.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/staffsql"
	"github.com/persiv/codex/controlplane/store/usagesql"
	"github.com/persiv/codex/schemas"
	"github.com/persiv/codex/shared/wire"
)

// Store is a controlplane.Store backed by one SQLite file.
type Store struct {
	staffsql.Store
	db *sql.DB
	// stmts caches prepared upserts by table and row count: parsing the
	// statement otherwise takes as long as running it.
	stmts sync.Map // upsertKey → *sql.Stmt
}

type upsertKey struct {
	table string
	n     int
}

func (s *Store) upsert(ctx context.Context, table string, n int) (*sql.Stmt, error) {
	k := upsertKey{table, n}
	if v, ok := s.stmts.Load(k); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, upserts.Upsert(table, n))
	if err != nil {
		return nil, err
	}
	if v, loaded := s.stmts.LoadOrStore(k, st); loaded {
		_ = st.Close() //nolint:sqlclosecheck // the other goroutine's statement won; this one was never used
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

var _ controlplane.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and applies pending
// migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	// The file holds password hashes: owner-only. SQLite gives its -wal
	// and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	// WAL lets readers run beside the writer; immediate transactions take
	// the write lock up front, so two writers wait instead of deadlocking.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.SetMaxOpenConns(4)
	p, err := goose.NewProvider(goose.DialectSQLite3, db, schemas.ControlplaneSQLite())
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrate sqlite: %w", err)
	}
	return &Store{db: db, Store: staffsql.Store{DB: staffDB{db}, Dialect: staffDialect}}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	var errs []error
	s.stmts.Range(func(_, v any) bool {
		if err := v.(*sql.Stmt).Close(); err != nil {
			errs = append(errs, err)
		}
		return true
	})
	return errors.Join(append(errs, s.db.Close())...)
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func unix(t time.Time) int64 { return t.Unix() }

func fromUnix(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(n.Int64, 0).UTC()
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func isForeignKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// CreateOrg stores a new org.
func (s *Store) CreateOrg(ctx context.Context, o controlplane.Org) error {
	if o.Plan == "" {
		o.Plan = controlplane.PlanFree
	}
	if !o.Plan.Valid() {
		return fmt.Errorf("create org: plan %q: %w", o.Plan, controlplane.ErrInvalid)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at, plan, break_glass) VALUES (?, ?, ?, ?, ?)`,
		o.ID, o.Name, unix(o.CreatedAt), string(o.Plan), o.BreakGlass)
	if isUnique(err) {
		return fmt.Errorf("create org: %w", controlplane.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	return nil
}

// Org returns an org by id.
func (s *Store) Org(ctx context.Context, id string) (controlplane.Org, error) {
	o := controlplane.Org{ID: id}
	var created int64
	var plan string
	var bg sql.NullBool
	err := s.db.QueryRowContext(ctx, `SELECT name, created_at, plan, break_glass FROM orgs WHERE id = ?`, id).Scan(&o.Name, &created, &plan, &bg)
	if errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("org: %w", controlplane.ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("org: %w", err)
	}
	o.CreatedAt, o.Plan = time.Unix(created, 0).UTC(), controlplane.Plan(plan)
	if bg.Valid {
		o.BreakGlass = &bg.Bool
	}
	return o, nil
}

// CreateUser stores a new user of an existing org.
func (s *Store) CreateUser(ctx context.Context, u controlplane.User) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (id, org_id, email, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		u.ID, u.OrgID, u.Email, string(u.Role), u.PasswordHash, unix(u.CreatedAt))
	switch {
	case isUnique(err):
		return fmt.Errorf("create user: %w", controlplane.ErrConflict)
	case isForeignKey(err):
		return fmt.Errorf("create user: org %w", controlplane.ErrNotFound)
	case err != nil:
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// Users lists an org's users by email.
func (s *Store) Users(ctx context.Context, orgID string) ([]controlplane.User, error) {
	return s.queryUsers(ctx, "users", `SELECT `+userCols+` FROM users WHERE org_id = ? ORDER BY email`, orgID)
}

// CreateEnrollToken stores a token's hash.
func (s *Store) CreateEnrollToken(ctx context.Context, t controlplane.EnrollToken) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO enroll_tokens (hash, org_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		t.Hash[:], t.OrgID, unix(t.CreatedAt), unix(t.ExpiresAt))
	switch {
	case isUnique(err):
		return fmt.Errorf("create enroll token: %w", controlplane.ErrConflict)
	case isForeignKey(err):
		return fmt.Errorf("create enroll token: org %w", controlplane.ErrNotFound)
	case err != nil:
		return fmt.Errorf("create enroll token: %w", err)
	}
	return nil
}

// RedeemEnrollToken marks the token used and creates the edge, in one
// immediate transaction: of two concurrent redemptions one finds the token
// used.
func (s *Store) RedeemEnrollToken(ctx context.Context, hash [32]byte, now time.Time, e controlplane.Edge) (controlplane.Edge, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return e, fmt.Errorf("redeem enroll token: %w", err)
	}
	defer tx.Rollback()
	var orgID string
	err = tx.QueryRowContext(ctx, `UPDATE enroll_tokens SET used_at = ?, edge_id = ?
		WHERE hash = ? AND used_at IS NULL AND expires_at > ? RETURNING org_id`,
		unix(now), e.ID, hash[:], unix(now)).Scan(&orgID)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("redeem enroll token: %w", controlplane.ErrUnauthorized)
	}
	if err != nil {
		return e, fmt.Errorf("redeem enroll token: %w", err)
	}
	e.OrgID, e.CreatedAt = orgID, now
	_, err = tx.ExecContext(ctx, `INSERT INTO edges (id, org_id, name, version, public_key, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		e.ID, e.OrgID, e.Name, e.Version, e.PublicKey, unix(now))
	if isUnique(err) {
		return e, fmt.Errorf("redeem enroll token: edge key already enrolled: %w", controlplane.ErrConflict)
	}
	if err != nil {
		return e, fmt.Errorf("redeem enroll token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return e, fmt.Errorf("redeem enroll token: %w", err)
	}
	return e, nil
}

const edgeCols = `id, org_id, name, version, public_key, created_at, last_seen, sharing, revoked_at, settings`

func scanEdge(sc interface{ Scan(...any) error }) (controlplane.Edge, error) {
	var e controlplane.Edge
	var created int64
	var seen, revoked sql.NullInt64
	var settings sql.NullString
	err := sc.Scan(&e.ID, &e.OrgID, &e.Name, &e.Version, &e.PublicKey, &created, &seen, &e.Sharing, &revoked, &settings)
	e.CreatedAt, e.LastSeen, e.RevokedAt = time.Unix(created, 0).UTC(), fromUnix(seen), fromUnix(revoked)
	if err == nil && settings.Valid {
		e.Settings, err = usagesql.ParseSettings(settings.String)
	}
	return e, err
}

// Edge returns an edge of an org.
func (s *Store) Edge(ctx context.Context, orgID, id string) (controlplane.Edge, error) {
	e, err := scanEdge(s.db.QueryRowContext(ctx, `SELECT `+edgeCols+` FROM edges WHERE org_id = ? AND id = ?`, orgID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("edge: %w", controlplane.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("edge: %w", err)
	}
	return e, nil
}

// Edges lists an org's edges by name.
func (s *Store) Edges(ctx context.Context, orgID string) ([]controlplane.Edge, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+edgeCols+` FROM edges WHERE org_id = ? ORDER BY name, id`, orgID)
	if err != nil {
		return nil, fmt.Errorf("edges: %w", err)
	}
	defer rows.Close()
	var out []controlplane.Edge
	for rows.Next() {
		e, err := scanEdge(rows)
		if err != nil {
			return nil, fmt.Errorf("edges: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EdgeInstances counts the instances of an org's edges since since.
func (s *Store) EdgeInstances(ctx context.Context, orgID string, since time.Time) (map[string]controlplane.Instances, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT edge_id, COUNT(DISTINCT instance), MAX(instance IS NULL)
		FROM usage_batches WHERE org_id = ? AND received_at >= ? GROUP BY edge_id`, orgID, unix(since))
	if err != nil {
		return nil, fmt.Errorf("edge instances: %w", err)
	}
	defer rows.Close()
	out := map[string]controlplane.Instances{}
	for rows.Next() {
		var id string
		var in controlplane.Instances
		if err := rows.Scan(&id, &in.Known, &in.Unknown); err != nil {
			return nil, fmt.Errorf("edge instances: %w", err)
		}
		out[id] = in
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("edge instances: %w", err)
	}
	return out, nil
}

// RevokeEdge marks an edge revoked; revoking twice keeps the first time.
func (s *Store) RevokeEdge(ctx context.Context, orgID, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE edges SET revoked_at = COALESCE(revoked_at, ?), sharing = FALSE WHERE org_id = ? AND id = ?`, unix(at), orgID, id)
	if err != nil {
		return fmt.Errorf("revoke edge: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("revoke edge: %w", controlplane.ErrNotFound)
	}
	return nil
}

func question(int) string { return "?" }

var (
	upserts      = usagesql.NewStatements(question)
	memoryUpsert = usagesql.MemoryUpsert(question)
	auditUpsert  = usagesql.AuditUpsert(question)
	memoryQuery  = usagesql.MemoryQuery(question)
	auditQuery   = usagesql.AuditQuery(question)
)

// IngestBatch stores a batch once, keyed by (edge_id, seq).
func (s *Store) IngestBatch(ctx context.Context, b *wire.UsageBatch, receivedAt time.Time) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("ingest batch: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO usage_batches (edge_id, seq, org_id, window_start, window_end, received_at, row_count, instance)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (edge_id, seq) DO NOTHING`,
		b.EdgeID, b.Seq, b.OrgID, unix(b.WindowStart), unix(b.WindowEnd), unix(receivedAt), len(b.Rows), usagesql.Instance(b))
	if err != nil {
		return false, fmt.Errorf("ingest batch: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil // stored before: a redelivery or a re-sent batch
	}
	for _, st := range []struct {
		table string
		ts    int64
	}{
		{"usage_minute", unix(b.WindowStart.Truncate(time.Minute))},
		{"usage_hour", unix(b.WindowStart.Truncate(time.Hour))},
		{"usage_day", unix(b.WindowStart.Truncate(controlplane.Day))},
	} {
		for lo := 0; lo < len(b.Rows); lo += usagesql.ChunkRows {
			hi := min(lo+usagesql.ChunkRows, len(b.Rows))
			args := make([]any, 0, (hi-lo)*(9+len(usagesql.MetricColumns)))
			for i := lo; i < hi; i++ {
				args = usagesql.RowArgs(args, b.OrgID, st.ts, b.EdgeID, &b.Rows[i])
			}
			stmt, err := s.upsert(ctx, st.table, hi-lo)
			if err != nil {
				return false, fmt.Errorf("ingest batch: %w", err)
			}
			//nolint:sqlclosecheck // a transaction's statement closes with the transaction
			if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
				return false, fmt.Errorf("ingest batch: %w", err)
			}
		}
	}
	for _, u := range b.Budgets {
		if _, err := tx.ExecContext(ctx, `INSERT INTO budget_use (org_id, workspace, key_ref, period, cap_nano_usd, spent_nano_usd, edge_id, as_of)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (org_id, workspace, key_ref, period) DO UPDATE SET
			  cap_nano_usd = excluded.cap_nano_usd, spent_nano_usd = excluded.spent_nano_usd, edge_id = excluded.edge_id, as_of = excluded.as_of
			WHERE budget_use.as_of <= excluded.as_of`,
			b.OrgID, u.Workspace, u.KeyRef, u.Period, u.CapNanoUSD, u.SpentNanoUSD, b.EdgeID, unix(b.WindowEnd)); err != nil {
			return false, fmt.Errorf("ingest batch: budgets: %w", err)
		}
	}
	hour := unix(b.WindowStart.Truncate(time.Hour))
	for _, m := range b.Memories {
		if _, err := tx.ExecContext(ctx, memoryUpsert, b.OrgID, hour, m.Workspace, m.KeyRef, m.Name, m.Version, m.Requests, m.Tokens, m.Estimated); err != nil {
			return false, fmt.Errorf("ingest batch: memories: %w", err)
		}
	}
	for _, a := range b.Audit {
		if _, err := tx.ExecContext(ctx, auditUpsert, b.OrgID, hour, a.Workspace, a.Level, a.Records); err != nil {
			return false, fmt.Errorf("ingest batch: audit counts: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE edges SET last_seen = MAX(COALESCE(last_seen, 0), ?), sharing = TRUE, settings = COALESCE(?, settings) WHERE org_id = ? AND id = ?`,
		unix(receivedAt), usagesql.SettingsJSON(b.Settings), b.OrgID, b.EdgeID); err != nil {
		return false, fmt.Errorf("ingest batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("ingest batch: %w", err)
	}
	return true, nil
}

// BudgetUses lists the org's budgets as its edges last reported them.
func (s *Store) BudgetUses(ctx context.Context, orgID string) ([]controlplane.BudgetUse, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT workspace, key_ref, period, cap_nano_usd, spent_nano_usd, edge_id, as_of
		FROM budget_use WHERE org_id = ? ORDER BY workspace, key_ref, period`, orgID)
	if err != nil {
		return nil, fmt.Errorf("budget uses: %w", err)
	}
	defer rows.Close()
	var out []controlplane.BudgetUse
	for rows.Next() {
		var (
			u  controlplane.BudgetUse
			at int64
		)
		if err := rows.Scan(&u.Workspace, &u.KeyRef, &u.Period, &u.CapNanoUSD, &u.SpentNanoUSD, &u.EdgeID, &at); err != nil {
			return nil, fmt.Errorf("budget uses: %w", err)
		}
		u.AsOf = time.Unix(at, 0).UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("budget uses: %w", err)
	}
	return out, nil
}

// MemoryUses sums the org's memory uses over [from, to).
func (s *Store) MemoryUses(ctx context.Context, orgID string, from, to time.Time) ([]wire.MemoryUse, error) {
	rows, err := s.db.QueryContext(ctx, memoryQuery, orgID, unix(from), unix(to))
	if err != nil {
		return nil, fmt.Errorf("memory uses: %w", err)
	}
	defer rows.Close()
	var out []wire.MemoryUse
	for rows.Next() {
		var m wire.MemoryUse
		if err := rows.Scan(&m.Workspace, &m.KeyRef, &m.Name, &m.Version, &m.Requests, &m.Tokens, &m.Estimated); err != nil {
			return nil, fmt.Errorf("memory uses: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("memory uses: %w", err)
	}
	return out, nil
}

// AuditCounts sums the org's audit counts over [from, to).
func (s *Store) AuditCounts(ctx context.Context, orgID string, from, to time.Time) ([]wire.AuditCount, error) {
	rows, err := s.db.QueryContext(ctx, auditQuery, orgID, unix(from), unix(to))
	if err != nil {
		return nil, fmt.Errorf("audit counts: %w", err)
	}
	defer rows.Close()
	var out []wire.AuditCount
	for rows.Next() {
		var a wire.AuditCount
		if err := rows.Scan(&a.Workspace, &a.Level, &a.Records); err != nil {
			return nil, fmt.Errorf("audit counts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit counts: %w", err)
	}
	return out, nil
}

// Usage answers a usage query from the table of its step.
func (s *Store) Usage(ctx context.Context, q controlplane.UsageQuery) ([]controlplane.UsageRow, error) {
	if q.Step == 0 {
		q.Step = controlplane.AutoStep(q.To.Sub(q.From))
	}
	table, err := usagesql.Table(int64(q.Step))
	if err != nil {
		return nil, err
	}
	built, err := usagesql.Build(q, table, "ts", unix(q.From), unix(q.To), question)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, built.SQL, built.Args...)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	defer rows.Close()
	var out []controlplane.UsageRow
	for rows.Next() {
		var r controlplane.UsageRow
		var ts int64
		dims := make([]string, len(built.Dims))
		dest := []any{&ts}
		for i := range dims {
			dest = append(dest, &dims[i])
		}
		dest = append(dest, usagesql.TotalsDest(&r.Totals)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
		r.Time = time.Unix(ts, 0).UTC()
		if len(dims) > 0 {
			r.Key = make(map[controlplane.Dimension]string, len(dims))
			for i, d := range built.Dims {
				r.Key[d] = dims[i]
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Prune deletes usage past its retention, forgets batch ids past the
// longest window an edge may still re-send, and marks edges silent for ten
// minutes as not sharing.
func (s *Store) Prune(ctx context.Context, r controlplane.Retention, now time.Time) error {
	for _, p := range []struct {
		table string
		keep  time.Duration
	}{{"usage_minute", r.Minute}, {"usage_hour", r.Hour}, {"usage_day", r.Day}, {"memory_use_hour", r.Hour}, {"audit_count_hour", r.Hour}} {
		//nolint:gosec // G202: p.table is one of the names above.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+p.table+` WHERE ts < ?`, unix(now.Add(-p.keep))); err != nil {
			return fmt.Errorf("prune %s: %w", p.table, err)
		}
	}
	// Batch ids are kept as long as day rows: a batch re-sent later than
	// that would find no row to double-count.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM usage_batches WHERE window_start < ?`, unix(now.Add(-r.Day))); err != nil {
		return fmt.Errorf("prune usage_batches: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE edges SET sharing = FALSE WHERE sharing AND last_seen < ?`, unix(now.Add(-10*time.Minute))); err != nil {
		return fmt.Errorf("prune edges: %w", err)
	}
	return nil
}
