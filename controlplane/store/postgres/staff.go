package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/staffsql"
)

// staffDialect locks the rows it changes and reads fleet counts through
// codex_staff_orgs, the one path across orgs' edges.
var staffDialect = staffsql.Dialect{
	ForUpdate: ` FOR UPDATE`,
	StaffOrgs: `SELECT id, name, created_at, plan, break_glass, edges, sharing, revoked, last_seen FROM codex_staff_orgs()`,
}

// staffDB adapts the pool to staffsql.DB: each transaction names the
// acting staff member in app.staff_id (the staff policies' key) and its
// org in app.org_id, right after BEGIN.
type staffDB struct{ pool *pgxpool.Pool }

func (d staffDB) Tx(ctx context.Context, staffID, orgID string, fn func(staffsql.Tx) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.staff_id', $1, true), set_config('app.org_id', $2, true)`, staffID, orgID); err != nil {
		return err
	}
	err = fn(staffTx{tx})
	var keep staffsql.Keep
	if errors.As(err, &keep) {
		if cerr := tx.Commit(ctx); cerr != nil {
			return cerr
		}
		return keep.Err
	}
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

type staffTx struct{ tx pgx.Tx }

func mapStaffErr(err error) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return controlplane.ErrNotFound
	case pgCode(err) == "23505":
		return fmt.Errorf("%w: %v", controlplane.ErrConflict, err)
	case pgCode(err) == "23503":
		return fmt.Errorf("%w: %v", controlplane.ErrNotFound, err)
	}
	return err
}

func (t staffTx) Exec(ctx context.Context, q string, a ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, staffsql.Rebind(q), a...)
	if err != nil {
		return 0, mapStaffErr(err)
	}
	return tag.RowsAffected(), nil
}

type staffRow struct{ r pgx.Row }

func (r staffRow) Scan(dest ...any) error { return mapStaffErr(r.r.Scan(dest...)) }

func (t staffTx) QueryRow(ctx context.Context, q string, a ...any) staffsql.Row {
	return staffRow{t.tx.QueryRow(ctx, staffsql.Rebind(q), a...)}
}

func (t staffTx) Query(ctx context.Context, q string, a ...any) (staffsql.Rows, error) {
	return t.tx.Query(ctx, staffsql.Rebind(q), a...) //nolint:sqlclosecheck // the caller closes the rows it is handed
}

func (t staffTx) Scope(ctx context.Context, orgID string) error {
	_, err := t.tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgID)
	return err
}

func (t staffTx) ByName(ctx context.Context, name string) error {
	_, err := t.tx.Exec(ctx, `SELECT set_config('app.org_name', $1, true)`, name)
	return err
}

// LockChain takes a transaction-level advisory lock on the chain, so two
// appends cannot both read the same last event.
func (t staffTx) LockChain(ctx context.Context, orgID string) error {
	_, err := t.tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('codex.access_log/' || $1, 0))`, orgID)
	return err
}
