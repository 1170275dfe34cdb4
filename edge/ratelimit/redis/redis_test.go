package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/ratelimit"
	ratelimitredis "github.com/persiv/codex/edge/ratelimit/redis"
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

func randomKey() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "{org_test}:key:" + hex.EncodeToString(b)
}

// TestCounters runs the same sequence on the in-process and the Redis
// counter: they admit and refuse alike.
func TestCounters(t *testing.T) {
	for name, c := range map[string]ratelimit.Counter{
		"local": ratelimit.NewLocal(),
		"redis": ratelimitredis.New(client(t)),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// rpm 3: three requests pass, the fourth waits about 20s.
			key := randomKey()
			for i := range 3 {
				st, err := c.Take(ctx, key, 3, 1)
				if err != nil || !st.Allowed || st.Remaining != int64(2-i) {
					t.Fatalf("request %d: %+v, %v", i, st, err)
				}
			}
			st, err := c.Take(ctx, key, 3, 1)
			if err != nil || st.Allowed || st.RetryAfter < 15*time.Second || st.RetryAfter > 20*time.Second {
				t.Fatalf("fourth request: %+v, %v; want refused, retry in about 20s", st, err)
			}
			if st.Reset < 55*time.Second || st.Reset > time.Minute {
				t.Errorf("reset after three of three: %s", st.Reset)
			}

			// tpm 1000: admitted while one token is left; a charge past
			// the room puts the limit in debt, which refuses until repaid.
			key = randomKey()
			if st, err := c.Take(ctx, key, 1000, 0); err != nil || !st.Allowed || st.Remaining != 1000 {
				t.Fatalf("fresh tpm: %+v, %v", st, err)
			}
			if err := c.Charge(ctx, key, 1000, 900); err != nil {
				t.Fatal(err)
			}
			if st, _ := c.Take(ctx, key, 1000, 0); !st.Allowed || st.Remaining < 99 || st.Remaining > 101 {
				t.Fatalf("after 900 of 1000: %+v", st)
			}
			if err := c.Charge(ctx, key, 1000, 1600); err != nil { // 1,500 past the limit
				t.Fatal(err)
			}
			st, _ = c.Take(ctx, key, 1000, 0)
			if st.Allowed || st.RetryAfter < 85*time.Second || st.RetryAfter > 91*time.Second {
				t.Fatalf("in debt of 1,500 tokens at 1,000/min: %+v; want refused for about 90s", st)
			}
			// Charging nothing changes nothing.
			if err := c.Charge(ctx, key, 1000, 0); err != nil {
				t.Fatal(err)
			}
			// A charge too small for the clock's resolution on a huge
			// limit is no error.
			if err := c.Charge(ctx, randomKey(), 1<<40, 1); err != nil {
				t.Fatalf("charging 1 of 2^40: %v", err)
			}
		})
	}
}

// TestChargeSharesRedisRateState: Charge writes the state redis_rate
// reads (key and time base), so a charge shows in redis_rate's own answer.
func TestChargeSharesRedisRateState(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	key := randomKey()
	if err := ratelimitredis.New(rdb).Charge(ctx, key, 600, 150); err != nil {
		t.Fatal(err)
	}
	res, err := redis_rate.NewLimiter(rdb).AllowN(ctx, key, redis_rate.Limit{Rate: 600, Burst: 600, Period: time.Minute}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Remaining < 449 || res.Remaining > 451 || res.ResetAfter < 14*time.Second || res.ResetAfter > 15*time.Second {
		t.Fatalf("redis_rate after a charge of 150 of 600: remaining %d, reset %s; want 450, 15s", res.Remaining, res.ResetAfter)
	}
}

// benchCounter is one limited request's work on a counter: the rpm
// charge, the tpm check, the tpm charge.
func benchCounter(b *testing.B, c ratelimit.Counter) {
	ctx := context.Background()
	key := randomKey()
	b.ReportAllocs()
	for b.Loop() {
		if st, err := c.Take(ctx, key+":rpm", 1<<30, 1); err != nil || !st.Allowed {
			b.Fatal(st, err)
		}
		if st, err := c.Take(ctx, key+":tpm", 1<<40, 0); err != nil || !st.Allowed {
			b.Fatal(st, err)
		}
		if err := c.Charge(ctx, key+":tpm", 1<<40, 120); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCounterLocal(b *testing.B) { benchCounter(b, ratelimit.NewLocal()) }

func BenchmarkCounterRedis(b *testing.B) {
	u := testutil.RedisURL(b)
	opt, _ := goredis.ParseURL(u)
	c := goredis.NewClient(opt)
	defer c.Close()
	benchCounter(b, ratelimitredis.New(c))
}

// TestTakeAll: one TakeAll (one round trip) admits and refuses as the same
// takes one by one do, on the same state (what Take and Charge keep), and
// stops at the first limit without room.
func TestTakeAll(t *testing.T) {
	ctx := context.Background()
	c := ratelimitredis.New(client(t))
	seq, batch := [3]string{randomKey(), randomKey(), randomKey()}, [3]string{randomKey(), randomKey(), randomKey()}
	takes := func(k [3]string) []ratelimit.Take {
		// the org's rpm 3, the key's rpm 5, the org's tpm 100 (room asked)
		return []ratelimit.Take{{Key: k[0], PerMinute: 3, N: 1}, {Key: k[1], PerMinute: 5, N: 1}, {Key: k[2], PerMinute: 100, N: 0}}
	}
	one := func(k [3]string) []ratelimit.State {
		var out []ratelimit.State
		for _, tk := range takes(k) {
			st, err := c.Take(ctx, tk.Key, tk.PerMinute, tk.N)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st)
			if !st.Allowed {
				break
			}
		}
		return out
	}
	all := func(k [3]string) []ratelimit.State {
		states := make([]ratelimit.State, 3)
		n, err := c.TakeAll(ctx, takes(k), states)
		if err != nil {
			t.Fatal(err)
		}
		return states[:n]
	}
	same := func(step string) {
		t.Helper()
		a, b := one(seq), all(batch)
		if len(a) != len(b) {
			t.Fatalf("%s: one by one made %d takes, TakeAll %d", step, len(a), len(b))
		}
		for i := range a {
			if a[i].Allowed != b[i].Allowed || a[i].Remaining != b[i].Remaining || (a[i].RetryAfter-b[i].RetryAfter).Abs() > time.Second {
				t.Fatalf("%s, take %d: one by one %+v, TakeAll %+v", step, i, a[i], b[i])
			}
		}
	}
	for i := range 3 {
		same("request " + string(rune('1'+i)))
	}
	same("the org's rpm spent") // refused at the first take
	// A fresh org rpm, and the tpm spent by a charge: refused at the third.
	seq[0], batch[0] = randomKey(), randomKey()
	for _, k := range []string{seq[2], batch[2]} {
		if err := c.Charge(ctx, k, 100, 100); err != nil {
			t.Fatal(err)
		}
	}
	same("the tpm spent")
	if st := all(batch); len(st) != 3 || st[2].Allowed || st[2].RetryAfter <= 0 {
		t.Fatalf("with the tpm spent: %+v", st)
	}
}
