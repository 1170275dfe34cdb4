package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/budget"
	budgetredis "github.com/persiv/codex/edge/budget/redis"
	cacheredis "github.com/persiv/codex/edge/cache/redis"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
)

// timeNow is the time settings are stamped with.
func timeNow() time.Time { return time.Now().UTC() }

func (e *env) budgetsSet(args []string) error {
	f := newFlags("budgets set", false)
	org := f.String("org", "", "org id or name")
	key := f.String("key", "", "key id: a budget of this key alone (default: the org, all its keys together)")
	usd := f.String("usd", "", "the cap in USD per period, e.g. 25 or 12.50; 0 removes the budget")
	period := f.String("period", "", "day or month (UTC)")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *usd == "" {
		return usagef("--usd is required (0 removes the budget)")
	}
	p := edge.Period(*period)
	if !p.Valid() {
		return usagef("--period must be day or month")
	}
	capNano, err := edge.ParseUSD(*usd)
	if err != nil {
		return usagef("--usd: %v", err)
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		b := edge.Budget{OrgID: o.ID, KeyID: *key, Period: p, CapNanoUSD: capNano, UpdatedAt: timeNow()}
		if err := st.SetBudget(e.ctx, b); err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.BudgetSet(b)); err != nil {
			return err
		}
		if capNano == 0 {
			fmt.Fprintf(e.stdout, "%s budget of %s removed\n", p, subject(o, *key))
			return nil
		}
		fmt.Fprintf(e.stdout, "%s budget of %s: %s USD\n", p, subject(o, *key), edge.FormatUSD(capNano))
		return nil
	})
}

func (e *env) budgetsList(args []string) error {
	f := newFlags("budgets list", true)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		uses, err := e.budgetUses(cfg, st, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, u := range uses {
				if err := enc.Encode(u.JSON()); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tPERIOD\tCAP USD\tSPENT USD\tRESERVED USD\tPERIOD END")
		for _, u := range uses {
			j := u.JSON()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(u.KeyID, "(org)"), u.Period, j.CapUSD, j.SpentUSD, j.ReservedUSD, j.PeriodEnd.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

// budgetUses reads the org's budgets and their use in the current period:
// from Redis when CODEX_REDIS_URL is set (live, with the reservations of
// requests in progress on every instance), else from the store (settled
// spend written so far; nothing reserved is visible from here).
func (e *env) budgetUses(cfg config.Config, st server.Store, orgID string) ([]edge.BudgetUse, error) {
	bs, err := st.Budgets(e.ctx, orgID)
	if err != nil {
		return nil, err
	}
	storeSpent := func(ctx context.Context, b budget.Bucket) (int64, error) {
		return st.Spent(ctx, b.OrgID, b.KeyID, b.Period, b.Start)
	}
	use := func(ctx context.Context, b budget.Bucket) (int64, int64, error) {
		n, err := storeSpent(ctx, b)
		return n, 0, err
	}
	if cfg.RedisURL != "" {
		c, err := cacheredis.NewClient(cfg.RedisURL, cacheredis.Options{Timeout: 2 * time.Second, DialTimeout: 2 * time.Second})
		if err != nil {
			return nil, err
		}
		defer func() { _ = c.Close() }() // a read-only listing: nothing to lose
		use = budgetredis.New(c, storeSpent, budget.DefaultReservationTTL).Use
	}
	now := time.Now()
	out := make([]edge.BudgetUse, 0, len(bs))
	for _, b := range bs {
		start := b.Period.Start(now)
		spent, reserved, err := use(e.ctx, budget.Bucket{OrgID: orgID, KeyID: b.KeyID, Period: b.Period, Start: start, Cap: b.CapNanoUSD})
		if err != nil {
			return nil, err
		}
		out = append(out, edge.BudgetUse{Budget: b, Start: start, SpentNanoUSD: spent, ReservedNanoUSD: reserved})
	}
	return out, nil
}
