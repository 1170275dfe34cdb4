package redis_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/budget"
	"github.com/persiv/codex/edge/budget/budgettest"
	budgetredis "github.com/persiv/codex/edge/budget/redis"
	"github.com/persiv/codex/edge/internal/testutil"
)

func client(t *testing.T) *goredis.Client {
	t.Helper()
	u := testutil.RedisURL(t)
	opt, err := goredis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisLedger(t *testing.T) {
	c := client(t)
	budgettest.Run(t, func(t *testing.T, seed budget.Seeder, ttl time.Duration) budget.Ledger {
		return budgetredis.New(c, seed, ttl)
	})
}

// TestRedisLedgerReseeds: a bucket lost to a flush is rebuilt from the
// store's spend (the seeder) before the next reservation.
func TestRedisLedgerReseeds(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	stored := int64(0)
	l := budgetredis.New(c, func(context.Context, budget.Bucket) (int64, error) { return stored, nil }, time.Hour)
	b := budget.Bucket{OrgID: "org_reseed" + time.Now().Format("150405.000000"), Period: edge.Month, Start: edge.Month.Start(time.Now()), Cap: 100}
	h, r, err := l.Reserve(ctx, "a", []budget.Bucket{b}, 60)
	if err != nil || r != nil {
		t.Fatal(err, r)
	}
	if err := h.Settle(ctx, 60); err != nil {
		t.Fatal(err)
	}
	stored = 60 // what the Recorder wrote
	if err := l.Forget(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, r, _ := l.Reserve(ctx, "b", []budget.Bucket{b}, 41); r == nil || r.SpentNanoUSD != 60 {
		t.Fatalf("after the flush: refusal %+v, want spent 60 from the store", r)
	}
}

// TestRedisLedgerLargeAmounts: amounts past 2^53 nano-USD (9 million USD)
// and in Lua's exponent range stay exact.
func TestRedisLedgerLargeAmounts(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	l := budgetredis.New(c, func(context.Context, budget.Bucket) (int64, error) { return 0, nil }, time.Hour)
	b := budget.Bucket{OrgID: "org_large" + time.Now().Format("150405.000000"), Period: edge.Day, Start: edge.Day.Start(time.Now()), Cap: edge.MaxBudgetNanoUSD}
	const amount = 123_456_789_012_345_678
	h, r, err := l.Reserve(ctx, "big", []budget.Bucket{b}, amount)
	if err != nil || r != nil {
		t.Fatal(err, r)
	}
	if _, res, _ := l.Use(ctx, b); res != amount {
		t.Fatalf("reserved %d, want %d", res, amount)
	}
	if err := h.Settle(ctx, amount-1); err != nil {
		t.Fatal(err)
	}
	if s, res, _ := l.Use(ctx, b); s != amount-1 || res != 0 {
		t.Fatalf("after settling: %d, %d", s, res)
	}
}

// benchLedger is one budgeted request's work on a ledger: a reservation
// in the org's and the key's budget, then its settlement.
func benchLedger(b *testing.B, l budget.Ledger) {
	ctx := context.Background()
	org := budget.Bucket{OrgID: "org_bench" + time.Now().Format("150405.000000"), Period: edge.Month, Start: edge.Month.Start(time.Now()), Cap: edge.MaxBudgetNanoUSD}
	key := org
	key.KeyID = "key_bench"
	bs := []budget.Bucket{org, key}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		h, r, err := l.Reserve(ctx, "req_"+strconv.Itoa(i), bs, 1_000_000)
		if err != nil || r != nil {
			b.Fatal(err, r)
		}
		if err := h.Settle(ctx, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

func zeroSeed(context.Context, budget.Bucket) (int64, error) { return 0, nil }

func BenchmarkLedgerLocal(b *testing.B) { benchLedger(b, budget.NewLocal(zeroSeed, time.Hour)) }

func BenchmarkLedgerRedis(b *testing.B) {
	u := testutil.RedisURL(b)
	opt, _ := goredis.ParseURL(u)
	c := goredis.NewClient(opt)
	defer c.Close()
	benchLedger(b, budgetredis.New(c, zeroSeed, time.Hour))
}
