package proxy_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/budget"
	budgetredis "github.com/persiv/codex/edge/budget/redis"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/ratelimit"
	ratelimitredis "github.com/persiv/codex/edge/ratelimit/redis"
	"github.com/persiv/codex/edge/settings"
	"github.com/persiv/codex/edge/store/sqlite"
)

// governed puts a rate limit (rpm and tpm) and a budget on the key, far
// above what the benchmark uses, with the counters in process or, with
// a Redis client, in Redis: every request takes both stages' full path
// (rpm charge, tpm check and charge, reservation and settlement).
func governed(b *testing.B, rdb *goredis.Client) func(o *proxy.Options, db *sqlite.DB, orgID, keyID string) {
	return func(o *proxy.Options, db *sqlite.DB, orgID, keyID string) {
		ctx := context.Background()
		if err := db.SetLimit(ctx, edge.Limit{OrgID: orgID, KeyID: keyID, RPM: 1 << 30, TPM: 1 << 40}); err != nil {
			b.Fatal(err)
		}
		if err := db.SetBudget(ctx, edge.Budget{OrgID: orgID, KeyID: keyID, Period: edge.Month, CapNanoUSD: edge.MaxBudgetNanoUSD}); err != nil {
			b.Fatal(err)
		}
		prices, _ := pricing.Load(nil)
		spend := budget.NewRecorder(db, time.Hour, nil)
		var (
			counter ratelimit.Counter = ratelimit.NewLocal()
			ledger  budget.Ledger     = budget.NewLocal(spend.Seed, time.Hour)
		)
		if rdb != nil {
			counter = ratelimitredis.New(rdb)
			ledger = budgetredis.New(rdb, spend.Seed, time.Hour)
		}
		o.RateLimit = ratelimit.Options{Limits: settings.New(ratelimit.Load(db.Limits)).Get, Counter: counter}
		o.Budget = budget.Options{Budgets: settings.New(db.Budgets).Get, Ledger: ledger, Prices: prices, Spend: spend}
	}
}

func benchRedis(b *testing.B) *goredis.Client {
	u := testutil.RedisURL(b)
	opt, err := goredis.ParseURL(u)
	if err != nil {
		b.Fatal(err)
	}
	c := goredis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkChatThroughEdgeGoverned is BenchmarkChatThroughEdge with a rate
// limit and a budget on the key, counted in process: the difference is
// the two stages' cost per request.
func BenchmarkChatThroughEdgeGoverned(b *testing.B) {
	h, key, _ := setupBenchWith(b, "", governed(b, nil))
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, key, benchChat)
	}
}

// BenchmarkChatThroughEdgeGovernedRedis counts them in Redis: four Redis
// round trips a request (rpm and tpm together, reserve; then tpm charge
// and settle).
func BenchmarkChatThroughEdgeGovernedRedis(b *testing.B) {
	h, key, _ := setupBenchWith(b, "", governed(b, benchRedis(b)))
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, key, benchChat)
	}
}

// BenchmarkChatThroughEdgeDesign9 is the edge as DESIGN §9 measures it: a
// 1 KiB memory, audit level hash (events written in the background, in
// batches, to the same SQLite store), and a rate limit and a budget on the
// key, counted in process.
func BenchmarkChatThroughEdgeDesign9(b *testing.B) {
	h, key, _ := setupBenchWith(b, benchMemory, func(o *proxy.Options, db *sqlite.DB, orgID, keyID string) {
		governed(b, nil)(o, db, orgID, keyID)
		if err := db.SetAuditLevel(context.Background(), edge.AuditSetting{OrgID: orgID, Level: edge.AuditHash}); err != nil {
			b.Fatal(err)
		}
		w := audit.NewWriter(db, audit.WriterOptions{})
		b.Cleanup(func() {
			if err := w.Close(context.Background()); err != nil {
				b.Error(err)
			}
		})
		o.Audit = audit.Options{Writer: w}
	})
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, key, benchChat)
	}
}
