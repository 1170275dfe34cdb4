// Package postgres implements controlplane.Store on PostgreSQL (pgx v5
// pool) under forced row-level security: every transaction sets
// app.org_id with set_config(..., true) right after BEGIN, so a pooled
// connection never carries one org's setting into another's work, and a
// transaction that set none sees nothing.
//
// Open connects as the application role and refuses a role that is a
// superuser, may bypass RLS or owns a table, or is a member of a role that
// is or does. Migrate runs as the owner.
package postgres

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/pressly/goose/v3"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/staffsql"
	"github.com/persiv/codex/controlplane/store/usagesql"
	"github.com/persiv/codex/schemas"
	"github.com/persiv/codex/shared/wire"
)

// TenantTables are the tables under forced row-level security.
var TenantTables = []string{"orgs", "users", "enroll_tokens", "edges", "usage_batches", "usage_minute", "usage_hour", "usage_day", "invites",
	"access_requests", "access_approvals", "access_log", "budget_use", "memory_use_hour", "audit_count_hour"}

// Migrate applies the migrations as the owner (ownerURL) and grants the
// application role row access to the tenant tables, the prune and staff
// functions, and only reading and appending to the access log.
func Migrate(ctx context.Context, ownerURL, appRole string) error {
	db, err := sql.Open("pgx", ownerURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = db.Close() }() // used only to migrate
	p, err := goose.NewProvider(goose.DialectPostgres, db, schemas.ControlplanePostgres())
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate postgres: %w", err)
	}
	role := pgx.Identifier{appRole}.Sanitize()
	for _, stmt := range []string{
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON orgs, users, enroll_tokens, edges, usage_batches, usage_minute, usage_hour, usage_day, invites, budget_use, memory_use_hour, audit_count_hour TO " + role,
		"GRANT EXECUTE ON FUNCTION codex_prune(timestamptz, interval, interval, interval) TO " + role,
		// Staff accounts are records: never deleted, only disabled.
		"GRANT SELECT, INSERT, UPDATE ON staff, access_requests TO " + role,
		"GRANT SELECT, INSERT ON access_approvals TO " + role,
		// The access log is append-only: no UPDATE, DELETE or TRUNCATE,
		// besides the trigger that refuses them to every role.
		"REVOKE ALL ON access_log FROM " + role,
		"GRANT SELECT, INSERT ON access_log TO " + role,
		"GRANT EXECUTE ON FUNCTION codex_staff_orgs() TO " + role,
		// Deployment secrets are written once and never changed.
		"GRANT SELECT, INSERT ON deployment_secrets TO " + role,
		// An org's NATS key is deleted with the org; account JWTs change
		// in place under a row lock (which needs UPDATE).
		"GRANT SELECT, INSERT, DELETE ON nats_org_keys TO " + role,
		"GRANT SELECT, INSERT, UPDATE ON nats_accounts TO " + role,
		// Deleting an org whole goes through codex_delete_org, the one
		// way the access log's rows are removed; the record of it stays.
		"GRANT EXECUTE ON FUNCTION codex_delete_org(text) TO " + role,
		"GRANT SELECT, INSERT ON org_deletions TO " + role,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate: grant to %s: %w", appRole, err)
		}
	}
	return nil
}

// Store is a controlplane.Store on a pgx pool.
type Store struct {
	staffsql.Store
	pool *pgxpool.Pool
}

var _ controlplane.Store = (*Store)(nil)

// Open connects as the application role and checks that the role cannot
// get around row-level security (see checkRole).
func Open(ctx context.Context, url string) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := checkRole(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &Store{pool: pool, Store: staffsql.Store{DB: staffDB{pool}, Dialect: staffDialect}}, nil
}

// checkRole refuses a connection role that could get around row-level
// security: a superuser or BYPASSRLS role ignores the policies even when
// forced, and a role that owns the tables can switch them off. Being a
// member of such a role is as good as being it, with or without INHERIT:
// the member can SET ROLE to it. The ownership check is the edge's
// (edge/store/postgres CheckServeRole).
func checkRole(ctx context.Context, pool *pgxpool.Pool) error {
	var (
		user                            string
		super, bypass, owns, privMember bool
	)
	err := pool.QueryRow(ctx, `
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
		return fmt.Errorf("role %q is a superuser, which bypasses row-level security: serve with the application role (CODEX_DATABASE_APP_ROLE)", user)
	case bypass:
		return fmt.Errorf("role %q has BYPASSRLS and so ignores row-level security: serve with a role without it (ALTER ROLE %s NOBYPASSRLS)", user, user)
	case privMember:
		return fmt.Errorf("role %q is a member of a superuser or BYPASSRLS role, so it could SET ROLE to it and ignore row-level security: serve with the application role (CODEX_DATABASE_APP_ROLE)", user)
	case owns:
		return fmt.Errorf("role %q owns tables (or is a member of their owner) and could turn row-level security off: serve with the application role (CODEX_DATABASE_APP_ROLE), which owns nothing; the owner role is for migrate only", user)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error { s.pool.Close(); return nil }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// inOrg runs fn in a transaction scoped to orgID.
func (s *Store) inOrg(ctx context.Context, orgID string, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgID); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s: %w", op, controlplane.ErrNotFound)
	case pgCode(err) == "23505":
		return fmt.Errorf("%s: %w", op, controlplane.ErrConflict)
	case pgCode(err) == "23503":
		return fmt.Errorf("%s: org %w", op, controlplane.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// CreateOrg stores a new org.
func (s *Store) CreateOrg(ctx context.Context, o controlplane.Org) error {
	if o.Plan == "" {
		o.Plan = controlplane.PlanFree
	}
	if !o.Plan.Valid() {
		return fmt.Errorf("create org: plan %q: %w", o.Plan, controlplane.ErrInvalid)
	}
	return mapErr("create org", s.inOrg(ctx, o.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO orgs (id, name, created_at, plan, break_glass) VALUES ($1, $2, $3, $4, $5)`, o.ID, o.Name, o.CreatedAt, string(o.Plan), o.BreakGlass)
		return err
	}))
}

// Org returns an org by id.
func (s *Store) Org(ctx context.Context, id string) (controlplane.Org, error) {
	o := controlplane.Org{ID: id}
	var plan string
	err := s.inOrg(ctx, id, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT name, created_at, plan, break_glass FROM orgs WHERE id = $1`, id).Scan(&o.Name, &o.CreatedAt, &plan, &o.BreakGlass)
	})
	o.CreatedAt, o.Plan = o.CreatedAt.UTC(), controlplane.Plan(plan)
	return o, mapErr("org", err)
}

// CreateUser stores a new user of an existing org.
func (s *Store) CreateUser(ctx context.Context, u controlplane.User) error {
	return mapErr("create user", s.inOrg(ctx, u.OrgID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (id, org_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			u.ID, u.OrgID, u.Email, string(u.Role), u.PasswordHash, u.CreatedAt)
		return err
	}))
}

// Users lists an org's users by email.
func (s *Store) Users(ctx context.Context, orgID string) ([]controlplane.User, error) {
	var out []controlplane.User
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		var err error
		out, err = queryUsers(ctx, tx, `SELECT `+userCols+` FROM users WHERE org_id = $1 ORDER BY email`, orgID)
		return err
	})
	return out, mapErr("users", err)
}

// CreateEnrollToken stores a token's hash.
func (s *Store) CreateEnrollToken(ctx context.Context, t controlplane.EnrollToken) error {
	return mapErr("create enroll token", s.inOrg(ctx, t.OrgID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO enroll_tokens (hash, org_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			t.Hash[:], t.OrgID, t.CreatedAt, t.ExpiresAt)
		return err
	}))
}

// RedeemEnrollToken runs before the org is known: the transaction names
// the token's hash in app.enroll_hash, which makes that one row visible,
// marks it used (a concurrent redemption waits on the row lock and then
// finds it used), then scopes itself to the token's org to create the edge.
func (s *Store) RedeemEnrollToken(ctx context.Context, hash [32]byte, now time.Time, e controlplane.Edge) (controlplane.Edge, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return e, mapErr("redeem enroll token", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.enroll_hash', $1, true)`, hex.EncodeToString(hash[:])); err != nil {
		return e, mapErr("redeem enroll token", err)
	}
	var orgID string
	err = tx.QueryRow(ctx, `UPDATE enroll_tokens SET used_at = $1, edge_id = $2
		WHERE hash = $3 AND used_at IS NULL AND expires_at > $1 RETURNING org_id`, now, e.ID, hash[:]).Scan(&orgID)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, fmt.Errorf("redeem enroll token: %w", controlplane.ErrUnauthorized)
	}
	if err != nil {
		return e, mapErr("redeem enroll token", err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('app.enroll_hash', '', true), set_config('app.org_id', $1, true)`, orgID); err != nil {
		return e, mapErr("redeem enroll token", err)
	}
	e.OrgID, e.CreatedAt = orgID, now
	if _, err := tx.Exec(ctx, `INSERT INTO edges (id, org_id, name, version, public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.ID, e.OrgID, e.Name, e.Version, e.PublicKey, now); err != nil {
		return e, mapErr("redeem enroll token: edge", err)
	}
	return e, mapErr("redeem enroll token", tx.Commit(ctx))
}

const edgeCols = `id, org_id, name, version, public_key, created_at, last_seen, sharing, revoked_at, settings`

func scanEdge(row pgx.Row) (controlplane.Edge, error) {
	var e controlplane.Edge
	var seen, revoked *time.Time
	var settings *string
	err := row.Scan(&e.ID, &e.OrgID, &e.Name, &e.Version, &e.PublicKey, &e.CreatedAt, &seen, &e.Sharing, &revoked, &settings)
	e.CreatedAt, e.LastSeen, e.RevokedAt = e.CreatedAt.UTC(), fromNull(seen), fromNull(revoked)
	if err == nil && settings != nil {
		e.Settings, err = usagesql.ParseSettings(*settings)
	}
	return e, err
}

// Edge returns an edge of an org.
func (s *Store) Edge(ctx context.Context, orgID, id string) (controlplane.Edge, error) {
	var e controlplane.Edge
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		var err error
		e, err = scanEdge(tx.QueryRow(ctx, `SELECT `+edgeCols+` FROM edges WHERE org_id = $1 AND id = $2`, orgID, id))
		return err
	})
	return e, mapErr("edge", err)
}

// Edges lists an org's edges by name.
func (s *Store) Edges(ctx context.Context, orgID string) ([]controlplane.Edge, error) {
	var out []controlplane.Edge
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+edgeCols+` FROM edges WHERE org_id = $1 ORDER BY name, id`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEdge(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, mapErr("edges", err)
}

// EdgeInstances counts the instances of an org's edges since since.
func (s *Store) EdgeInstances(ctx context.Context, orgID string, since time.Time) (map[string]controlplane.Instances, error) {
	out := map[string]controlplane.Instances{}
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT edge_id, COUNT(DISTINCT instance), bool_or(instance IS NULL)
			FROM usage_batches WHERE org_id = $1 AND received_at >= $2 GROUP BY edge_id`, orgID, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var in controlplane.Instances
			if err := rows.Scan(&id, &in.Known, &in.Unknown); err != nil {
				return err
			}
			out[id] = in
		}
		return rows.Err()
	})
	return out, mapErr("edge instances", err)
}

// RevokeEdge marks an edge revoked; revoking twice keeps the first time.
func (s *Store) RevokeEdge(ctx context.Context, orgID, id string, at time.Time) error {
	return mapErr("revoke edge", s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE edges SET revoked_at = COALESCE(revoked_at, $1), sharing = FALSE WHERE org_id = $2 AND id = $3`, at, orgID, id)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	}))
}

func dollar(i int) string { return fmt.Sprintf("$%d", i) }

var (
	upserts      = usagesql.NewStatements(dollar)
	memoryUpsert = usagesql.MemoryUpsert(dollar)
	auditUpsert  = usagesql.AuditUpsert(dollar)
	memoryQuery  = usagesql.MemoryQuery(dollar)
	auditQuery   = usagesql.AuditQuery(dollar)
)

// IngestBatch stores a batch once, keyed by (edge_id, seq).
func (s *Store) IngestBatch(ctx context.Context, b *wire.UsageBatch, receivedAt time.Time) (bool, error) {
	stored := false
	err := s.inOrg(ctx, b.OrgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO usage_batches (edge_id, seq, org_id, window_start, window_end, received_at, row_count, instance)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (edge_id, seq) DO NOTHING`,
			b.EdgeID, b.Seq, b.OrgID, b.WindowStart, b.WindowEnd, receivedAt, len(b.Rows), usagesql.Instance(b))
		if err != nil || tag.RowsAffected() == 0 {
			return err // a duplicate commits nothing new
		}
		var batch pgx.Batch
		for _, st := range []struct {
			table string
			ts    time.Time
		}{
			{"usage_minute", b.WindowStart.Truncate(time.Minute)},
			{"usage_hour", b.WindowStart.Truncate(time.Hour)},
			{"usage_day", b.WindowStart.Truncate(controlplane.Day)},
		} {
			for lo := 0; lo < len(b.Rows); lo += usagesql.ChunkRows {
				hi := min(lo+usagesql.ChunkRows, len(b.Rows))
				args := make([]any, 0, (hi-lo)*(9+len(usagesql.MetricColumns)))
				for i := lo; i < hi; i++ {
					args = usagesql.RowArgs(args, b.OrgID, st.ts, b.EdgeID, &b.Rows[i])
				}
				batch.Queue(upserts.Upsert(st.table, hi-lo), args...)
			}
		}
		for _, u := range b.Budgets {
			batch.Queue(`INSERT INTO budget_use (org_id, workspace, key_ref, period, cap_nano_usd, spent_nano_usd, edge_id, as_of)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (org_id, workspace, key_ref, period) DO UPDATE SET
				  cap_nano_usd = excluded.cap_nano_usd, spent_nano_usd = excluded.spent_nano_usd, edge_id = excluded.edge_id, as_of = excluded.as_of
				WHERE budget_use.as_of <= excluded.as_of`,
				b.OrgID, u.Workspace, u.KeyRef, u.Period, u.CapNanoUSD, u.SpentNanoUSD, b.EdgeID, b.WindowEnd)
		}
		hour := b.WindowStart.Truncate(time.Hour)
		for _, m := range b.Memories {
			batch.Queue(memoryUpsert, b.OrgID, hour, m.Workspace, m.KeyRef, m.Name, m.Version, m.Requests, m.Tokens, m.Estimated)
		}
		for _, a := range b.Audit {
			batch.Queue(auditUpsert, b.OrgID, hour, a.Workspace, a.Level, a.Records)
		}
		batch.Queue(`UPDATE edges SET last_seen = GREATEST(last_seen, $1), sharing = TRUE, settings = COALESCE($4, settings) WHERE org_id = $2 AND id = $3`,
			receivedAt, b.OrgID, b.EdgeID, usagesql.SettingsJSON(b.Settings))
		if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
			return err
		}
		stored = true
		return nil
	})
	if err != nil {
		return false, mapErr("ingest batch", err)
	}
	return stored, nil
}

// BudgetUses lists the org's budgets as its edges last reported them.
func (s *Store) BudgetUses(ctx context.Context, orgID string) ([]controlplane.BudgetUse, error) {
	var out []controlplane.BudgetUse
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT workspace, key_ref, period, cap_nano_usd, spent_nano_usd, edge_id, as_of
			FROM budget_use WHERE org_id = $1 ORDER BY workspace, key_ref, period`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u controlplane.BudgetUse
			if err := rows.Scan(&u.Workspace, &u.KeyRef, &u.Period, &u.CapNanoUSD, &u.SpentNanoUSD, &u.EdgeID, &u.AsOf); err != nil {
				return err
			}
			u.AsOf = u.AsOf.UTC()
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, mapErr("budget uses", err)
}

// MemoryUses sums the org's memory uses over [from, to).
func (s *Store) MemoryUses(ctx context.Context, orgID string, from, to time.Time) ([]wire.MemoryUse, error) {
	var out []wire.MemoryUse
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, memoryQuery, orgID, from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m wire.MemoryUse
			if err := rows.Scan(&m.Workspace, &m.KeyRef, &m.Name, &m.Version, &m.Requests, &m.Tokens, &m.Estimated); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, mapErr("memory uses", err)
}

// AuditCounts sums the org's audit counts over [from, to).
func (s *Store) AuditCounts(ctx context.Context, orgID string, from, to time.Time) ([]wire.AuditCount, error) {
	var out []wire.AuditCount
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, auditQuery, orgID, from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a wire.AuditCount
			if err := rows.Scan(&a.Workspace, &a.Level, &a.Records); err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, mapErr("audit counts", err)
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
	built, err := usagesql.Build(q, table, "ts", q.From, q.To, dollar)
	if err != nil {
		return nil, err
	}
	var out []controlplane.UsageRow
	err = s.inOrg(ctx, q.OrgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, built.SQL, built.Args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r controlplane.UsageRow
			dims := make([]string, len(built.Dims))
			dest := []any{&r.Time}
			for i := range dims {
				dest = append(dest, &dims[i])
			}
			dest = append(dest, usagesql.TotalsDest(&r.Totals)...)
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			r.Time = r.Time.UTC()
			if len(dims) > 0 {
				r.Key = make(map[controlplane.Dimension]string, len(dims))
				for i, d := range built.Dims {
					r.Key[d] = dims[i]
				}
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, mapErr("usage", err)
}

// Prune applies retention across orgs through codex_prune, the one
// maintenance path.
func (s *Store) Prune(ctx context.Context, r controlplane.Retention, now time.Time) error {
	iv := func(d time.Duration) string { return fmt.Sprintf("%d microseconds", d.Microseconds()) }
	_, err := s.pool.Exec(ctx, `SELECT codex_prune($1, $2::interval, $3::interval, $4::interval)`, now, iv(r.Minute), iv(r.Hour), iv(r.Day))
	return mapErr("prune", err)
}
