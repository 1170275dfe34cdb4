package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
)

// keyInOrg checks, inside tx, that the org exists and that keyID (when not
// empty) is one of its keys: a key of another org is not found.
func keyInOrg(ctx context.Context, tx *sql.Tx, orgID, keyID string) error {
	if err := orgExists(ctx, tx, orgID); err != nil {
		return err
	}
	if keyID == "" {
		return nil
	}
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_keys WHERE org_id = ? AND id = ?`, orgID, keyID).Scan(&one); err != nil {
		return fmt.Errorf("key %q: %w", keyID, err)
	}
	return nil
}

// SetLimit creates, replaces or removes the rate limit of an org or key.
func (db *DB) SetLimit(ctx context.Context, l edge.Limit) error {
	if err := l.Prepare(); err != nil {
		return fmt.Errorf("set limit: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := keyInOrg(ctx, tx, l.OrgID, l.KeyID); err != nil {
			return err
		}
		var err error
		if l.None() {
			_, err = tx.ExecContext(ctx, `DELETE FROM limits WHERE org_id = ? AND key_id = ?`, l.OrgID, l.KeyID)
		} else {
			_, err = tx.ExecContext(ctx,
				`INSERT INTO limits (org_id, key_id, rpm, tpm, updated_at) VALUES (?, ?, ?, ?, ?)
				 ON CONFLICT (org_id, key_id) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm, updated_at = excluded.updated_at`,
				l.OrgID, l.KeyID, l.RPM, l.TPM, l.UpdatedAt.UnixNano())
		}
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, l.OrgID, "limit", l.KeyID, l.UpdatedAt)
	})
	return wrap("set limit", err)
}

// Limits returns the org's limits, its own first, then by key id.
func (db *DB) Limits(ctx context.Context, orgID string) ([]edge.Limit, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT org_id, key_id, rpm, tpm, updated_at FROM limits WHERE org_id = ? ORDER BY key_id`, orgID)
	if err != nil {
		return nil, wrap("list limits", err)
	}
	defer rows.Close()
	var out []edge.Limit
	for rows.Next() {
		var (
			l       edge.Limit
			updated sql.NullInt64
		)
		if err := rows.Scan(&l.OrgID, &l.KeyID, &l.RPM, &l.TPM, &updated); err != nil {
			return nil, wrap("list limits", err)
		}
		l.UpdatedAt = fromNanos(updated)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list limits", err)
	}
	return out, nil
}

// SetBudget creates, replaces or removes the budget of an org or key for
// one period.
func (db *DB) SetBudget(ctx context.Context, b edge.Budget) error {
	if err := b.Prepare(); err != nil {
		return fmt.Errorf("set budget: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := keyInOrg(ctx, tx, b.OrgID, b.KeyID); err != nil {
			return err
		}
		var err error
		if b.CapNanoUSD == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM budgets WHERE org_id = ? AND key_id = ? AND period = ?`, b.OrgID, b.KeyID, string(b.Period))
		} else {
			_, err = tx.ExecContext(ctx,
				`INSERT INTO budgets (org_id, key_id, period, cap_nano_usd, updated_at) VALUES (?, ?, ?, ?, ?)
				 ON CONFLICT (org_id, key_id, period) DO UPDATE SET cap_nano_usd = excluded.cap_nano_usd, updated_at = excluded.updated_at`,
				b.OrgID, b.KeyID, string(b.Period), b.CapNanoUSD, b.UpdatedAt.UnixNano())
		}
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, b.OrgID, "budget", b.KeyID, b.UpdatedAt)
	})
	return wrap("set budget", err)
}

// Budgets returns the org's budgets, its own first, then by key id, day
// before month.
func (db *DB) Budgets(ctx context.Context, orgID string) ([]edge.Budget, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT org_id, key_id, period, cap_nano_usd, updated_at FROM budgets WHERE org_id = ? ORDER BY key_id, period`, orgID)
	if err != nil {
		return nil, wrap("list budgets", err)
	}
	defer rows.Close()
	var out []edge.Budget
	for rows.Next() {
		var (
			b       edge.Budget
			p       string
			updated sql.NullInt64
		)
		if err := rows.Scan(&b.OrgID, &b.KeyID, &p, &b.CapNanoUSD, &updated); err != nil {
			return nil, wrap("list budgets", err)
		}
		b.Period, b.UpdatedAt = edge.Period(p), fromNanos(updated)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list budgets", err)
	}
	return out, nil
}

// AddSpend adds the amounts in one transaction.
func (db *DB) AddSpend(ctx context.Context, spends []edge.Spend) error {
	for _, s := range spends {
		if err := s.Check(); err != nil {
			return fmt.Errorf("add spend: %w", err)
		}
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for _, s := range spends {
			_, err := tx.ExecContext(ctx,
				`INSERT INTO spend (org_id, key_id, period, period_start, nano_usd) VALUES (?, ?, ?, ?, ?)
				 ON CONFLICT (org_id, key_id, period, period_start) DO UPDATE SET nano_usd = spend.nano_usd + excluded.nano_usd`,
				s.OrgID, s.KeyID, string(s.Period), s.Start.UnixNano(), s.NanoUSD)
			if err != nil {
				return err
			}
		}
		return nil
	})
	return wrap("add spend", err)
}

// Spent returns the settled spend of an org or key in a period.
func (db *DB) Spent(ctx context.Context, orgID, keyID string, p edge.Period, start time.Time) (int64, error) {
	var n int64
	err := db.read.QueryRowContext(ctx,
		`SELECT COALESCE(sum(nano_usd), 0) FROM spend WHERE org_id = ? AND key_id = ? AND period = ? AND period_start = ?`,
		orgID, keyID, string(p), p.Start(start).UnixNano()).Scan(&n)
	if err != nil {
		return 0, wrap("spent", err)
	}
	return n, nil
}
