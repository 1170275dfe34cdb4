package postgres

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
)

// keyInOrg checks, inside a transaction of the org, that keyID (when not
// empty) is a key of it: a key of another org is not visible, so it is
// not found.
func keyInOrg(ctx context.Context, tx pgx.Tx, orgID, keyID string) error {
	if err := orgExists(ctx, tx, orgID); err != nil {
		return err
	}
	if keyID == "" {
		return nil
	}
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2`, orgID, keyID).Scan(&one)
	if err != nil {
		return fmt.Errorf("key %q: %w", keyID, err)
	}
	return nil
}

// SetLimit creates, replaces or removes the rate limit of an org or key.
func (db *DB) SetLimit(ctx context.Context, l edge.Limit) error {
	if err := l.Prepare(); err != nil {
		return fmt.Errorf("set limit: %w", err)
	}
	err := db.inOrg(ctx, l.OrgID, func(tx pgx.Tx) error {
		if err := keyInOrg(ctx, tx, l.OrgID, l.KeyID); err != nil {
			return err
		}
		var err error
		if l.None() {
			_, err = tx.Exec(ctx, `DELETE FROM limits WHERE org_id = $1 AND key_id = $2`, l.OrgID, l.KeyID)
		} else {
			_, err = tx.Exec(ctx,
				`INSERT INTO limits (org_id, key_id, rpm, tpm, updated_at) VALUES ($1, $2, $3, $4, $5)
				 ON CONFLICT (org_id, key_id) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm, updated_at = excluded.updated_at`,
				l.OrgID, l.KeyID, l.RPM, l.TPM, l.UpdatedAt)
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
	var out []edge.Limit
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT org_id, key_id, rpm, tpm, updated_at FROM limits WHERE org_id = $1 ORDER BY key_id`, orgID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge.Limit, error) {
			var l edge.Limit
			err := r.Scan(&l.OrgID, &l.KeyID, &l.RPM, &l.TPM, &l.UpdatedAt)
			l.UpdatedAt = l.UpdatedAt.UTC()
			return l, err
		})
		return err
	})
	if err != nil {
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
	err := db.inOrg(ctx, b.OrgID, func(tx pgx.Tx) error {
		if err := keyInOrg(ctx, tx, b.OrgID, b.KeyID); err != nil {
			return err
		}
		var err error
		if b.CapNanoUSD == 0 {
			_, err = tx.Exec(ctx, `DELETE FROM budgets WHERE org_id = $1 AND key_id = $2 AND period = $3`, b.OrgID, b.KeyID, string(b.Period))
		} else {
			_, err = tx.Exec(ctx,
				`INSERT INTO budgets (org_id, key_id, period, cap_nano_usd, updated_at) VALUES ($1, $2, $3, $4, $5)
				 ON CONFLICT (org_id, key_id, period) DO UPDATE SET cap_nano_usd = excluded.cap_nano_usd, updated_at = excluded.updated_at`,
				b.OrgID, b.KeyID, string(b.Period), b.CapNanoUSD, b.UpdatedAt)
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
	var out []edge.Budget
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT org_id, key_id, period, cap_nano_usd, updated_at FROM budgets WHERE org_id = $1 ORDER BY key_id, period`, orgID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge.Budget, error) {
			var b edge.Budget
			var p string
			err := r.Scan(&b.OrgID, &b.KeyID, &p, &b.CapNanoUSD, &b.UpdatedAt)
			b.Period, b.UpdatedAt = edge.Period(p), b.UpdatedAt.UTC()
			return b, err
		})
		return err
	})
	if err != nil {
		return nil, wrap("list budgets", err)
	}
	return out, nil
}

// AddSpend adds the amounts, one transaction per org (each under its own
// row-level security setting), orgs in order. Amounts of an org are added
// atomically; an error may leave earlier orgs' amounts added.
func (db *DB) AddSpend(ctx context.Context, spends []edge.Spend) error {
	byOrg := map[string][]edge.Spend{}
	for _, s := range spends {
		if err := s.Check(); err != nil {
			return fmt.Errorf("add spend: %w", err)
		}
		byOrg[s.OrgID] = append(byOrg[s.OrgID], s)
	}
	orgs := make([]string, 0, len(byOrg))
	for o := range byOrg {
		orgs = append(orgs, o)
	}
	sort.Strings(orgs)
	for _, org := range orgs {
		err := db.inOrg(ctx, org, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			for _, s := range byOrg[org] {
				b.Queue(`INSERT INTO spend (org_id, key_id, period, period_start, nano_usd) VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (org_id, key_id, period, period_start) DO UPDATE SET nano_usd = spend.nano_usd + excluded.nano_usd`,
					s.OrgID, s.KeyID, string(s.Period), s.Start.UTC(), s.NanoUSD)
			}
			return tx.SendBatch(ctx, b).Close()
		})
		if err != nil {
			return wrap("add spend", err)
		}
	}
	return nil
}

// Spent returns the settled spend of an org or key in a period.
func (db *DB) Spent(ctx context.Context, orgID, keyID string, p edge.Period, start time.Time) (int64, error) {
	var n int64
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`SELECT COALESCE(sum(nano_usd), 0) FROM spend WHERE org_id = $1 AND key_id = $2 AND period = $3 AND period_start = $4`,
			orgID, keyID, string(p), p.Start(start)).Scan(&n)
		return err
	})
	if err != nil {
		return 0, wrap("spent", err)
	}
	return n, nil
}
