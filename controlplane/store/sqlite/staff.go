package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/staffsql"
)

// staffDialect: immediate transactions already hold the write lock, so
// no row locks; fleet counts straight from the tables.
var staffDialect = staffsql.Dialect{
	StaffOrgs: `SELECT o.id, o.name, o.created_at, o.plan, o.break_glass,
		COALESCE(SUM(e.id IS NOT NULL AND e.revoked_at IS NULL), 0),
		COALESCE(SUM(e.revoked_at IS NULL AND e.sharing), 0),
		COALESCE(SUM(e.revoked_at IS NOT NULL), 0),
		MAX(e.last_seen)
		FROM orgs o LEFT JOIN edges e ON e.org_id = o.id
		GROUP BY o.id ORDER BY o.name, o.id`,
}

// staffDB adapts the database to staffsql.DB. SQLite has no row-level
// security: the staff and org scopes are the queries' own WHERE clauses.
type staffDB struct{ db *sql.DB }

func (d staffDB) Tx(ctx context.Context, _, _ string, fn func(staffsql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	err = fn(staffTx{tx})
	var keep staffsql.Keep
	if errors.As(err, &keep) {
		if cerr := tx.Commit(); cerr != nil {
			return cerr
		}
		return keep.Err
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

type staffTx struct{ tx *sql.Tx }

// args stores times as Unix seconds, as every table here does.
func args(in []any) []any {
	out := make([]any, len(in))
	for i, a := range in {
		if t, ok := a.(time.Time); ok {
			if t.IsZero() {
				out[i] = nil
				continue
			}
			a = t.Unix()
		}
		out[i] = a
	}
	return out
}

func mapStaffErr(err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return controlplane.ErrNotFound
	case isUnique(err):
		return fmt.Errorf("%w: %v", controlplane.ErrConflict, err)
	case isForeignKey(err):
		return fmt.Errorf("%w: %v", controlplane.ErrNotFound, err)
	}
	return err
}

func (t staffTx) Exec(ctx context.Context, q string, a ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, q, args(a)...)
	if err != nil {
		return 0, mapStaffErr(err)
	}
	return res.RowsAffected()
}

type staffRow struct{ r *sql.Row }

func (r staffRow) Scan(dest ...any) error { return mapStaffErr(r.r.Scan(dest...)) }

func (t staffTx) QueryRow(ctx context.Context, q string, a ...any) staffsql.Row {
	return staffRow{t.tx.QueryRowContext(ctx, q, args(a)...)}
}

type staffRows struct{ *sql.Rows }

func (r staffRows) Close() { r.Rows.Close() }

func (t staffTx) Query(ctx context.Context, q string, a ...any) (staffsql.Rows, error) {
	rows, err := t.tx.QueryContext(ctx, q, args(a)...)
	if err != nil {
		return nil, err
	}
	return staffRows{rows}, nil
}

func (staffTx) Scope(context.Context, string) error     { return nil }
func (staffTx) ByName(context.Context, string) error    { return nil }
func (staffTx) LockChain(context.Context, string) error { return nil }
