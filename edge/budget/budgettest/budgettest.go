// Package budgettest is the contract test suite of budget.Ledger: the
// in-process and the Redis ledger run the same Run, so they reserve,
// settle, release and expire alike, and the same property test: no
// sequence of reservations, settlements, releases and expiries leaves a
// reservation behind or lets reservations pass a cap.
package budgettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/budget"
)

// New returns a fresh ledger that seeds buckets with seed and lets a
// reservation expire after ttl.
type New func(t *testing.T, seed budget.Seeder, ttl time.Duration) budget.Ledger

// Run runs the contract suite.
func Run(t *testing.T, newLedger New) {
	for name, fn := range map[string]func(*testing.T, New){
		"ReserveSettleRelease": testReserveSettleRelease,
		"AllOrNone":            testAllOrNone,
		"Seed":                 testSeed,
		"Expiry":               testExpiry,
		"Periods":              testPeriods,
		"Concurrent":           testConcurrent,
		"Property":             testProperty,
	} {
		t.Run(name, func(t *testing.T) { fn(t, newLedger) })
	}
}

func randomID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func zero(context.Context, budget.Bucket) (int64, error) { return 0, nil }

// bucket is a fresh day bucket of a fresh org.
func bucket(cap int64) budget.Bucket {
	return budget.Bucket{OrgID: randomID("org_"), Period: edge.Day, Start: edge.Day.Start(time.Now()), Cap: cap}
}

func use(t *testing.T, l budget.Ledger, b budget.Bucket) (int64, int64) {
	t.Helper()
	s, r, err := l.Use(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

func reserve(t *testing.T, l budget.Ledger, id string, bs []budget.Bucket, n int64) (budget.Hold, *budget.Refusal) {
	t.Helper()
	h, r, err := l.Reserve(context.Background(), id, bs, n)
	if err != nil {
		t.Fatal(err)
	}
	if (h == nil) == (r == nil) {
		t.Fatalf("Reserve returned hold %v and refusal %v: want exactly one", h, r)
	}
	return h, r
}

func testReserveSettleRelease(t *testing.T, newLedger New) {
	ctx := context.Background()
	l := newLedger(t, zero, time.Hour)
	b := bucket(100)
	bs := []budget.Bucket{b}
	h1, _ := reserve(t, l, "r1", bs, 60)
	if _, r := reserve(t, l, "r2", bs, 41); r == nil || r.Index != 0 || r.ReservedNanoUSD != 60 || r.SpentNanoUSD != 0 {
		t.Fatalf("61+41 > 100 reserved, or refusal %+v", r)
	}
	h2, _ := reserve(t, l, "r3", bs, 40)
	if s, r := use(t, l, b); s != 0 || r != 100 {
		t.Fatalf("use = %d spent %d reserved, want 0, 100", s, r)
	}
	if err := h1.Settle(ctx, 25); err != nil {
		t.Fatal(err)
	}
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if s, r := use(t, l, b); s != 25 || r != 0 {
		t.Fatalf("after settle 25 and release: %d spent %d reserved", s, r)
	}
	// Ending a hold twice changes nothing more than the spend added.
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if s, r := use(t, l, b); s != 25 || r != 0 {
		t.Fatalf("after a second release: %d, %d", s, r)
	}
	// The worst case alone beyond the cap is refused.
	if _, r := reserve(t, l, "r4", bs, 76); r == nil || r.SpentNanoUSD != 25 {
		t.Fatalf("76 on 25 of 100: refusal %+v", r)
	}
	h, _ := reserve(t, l, "r5", bs, 75)
	// A settlement above the reservation counts what was spent.
	if err := h.Settle(ctx, 80); err != nil {
		t.Fatal(err)
	}
	if s, r := use(t, l, b); s != 105 || r != 0 {
		t.Fatalf("after settling 80 for 75 reserved: %d, %d", s, r)
	}
	if _, r := reserve(t, l, "r6", bs, 0); r == nil {
		t.Fatal("a bucket past its cap takes a reservation of 0")
	}
}

func testAllOrNone(t *testing.T, newLedger New) {
	ctx := context.Background()
	l := newLedger(t, zero, time.Hour)
	org := bucket(100)
	key := org
	key.KeyID, key.Cap = randomID("key_"), 10
	bs := []budget.Bucket{org, key}
	if _, r := reserve(t, l, "a", bs, 11); r == nil || r.Index != 1 {
		t.Fatalf("11 against a key cap of 10: refusal %+v", r)
	}
	if _, r := use(t, l, org); r != 0 {
		t.Fatalf("a refused reservation left %d in the org's bucket", r)
	}
	h, _ := reserve(t, l, "b", bs, 10)
	if _, r := use(t, l, org); r != 10 {
		t.Fatalf("org reserved %d, want 10", r)
	}
	if err := h.Settle(ctx, 7); err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if s, r := use(t, l, b); s != 7 || r != 0 {
			t.Fatalf("bucket %q after settling 7: %d, %d", b.KeyID, s, r)
		}
	}
}

func testSeed(t *testing.T, newLedger New) {
	b := bucket(100)
	seeded := 0
	l := newLedger(t, func(_ context.Context, got budget.Bucket) (int64, error) {
		if got.OrgID == b.OrgID {
			seeded++
		}
		return 90, nil
	}, time.Hour)
	if _, r := reserve(t, l, "x", []budget.Bucket{b}, 11); r == nil || r.SpentNanoUSD != 90 {
		t.Fatalf("11 on a seed of 90 of 100: refusal %+v", r)
	}
	reserve(t, l, "y", []budget.Bucket{b}, 10)
	if seeded != 1 {
		t.Errorf("seeded %d times, want once", seeded)
	}
}

func testExpiry(t *testing.T, newLedger New) {
	ctx := context.Background()
	l := newLedger(t, zero, 50*time.Millisecond)
	b := bucket(100)
	h, _ := reserve(t, l, "lost", []budget.Bucket{b}, 100)
	// Its request never ends it (the instance died): after the TTL it is
	// gone.
	time.Sleep(120 * time.Millisecond)
	if _, r := use(t, l, b); r != 0 {
		t.Fatalf("an expired reservation still holds %d", r)
	}
	reserve(t, l, "next", []budget.Bucket{b}, 100)
	// A late settlement adds what was spent, and removes nothing else.
	if err := h.Settle(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if s, r := use(t, l, b); s != 5 || r != 100 {
		t.Fatalf("after a late settlement: %d spent, %d reserved; want 5, 100", s, r)
	}
}

func testPeriods(t *testing.T, newLedger New) {
	ctx := context.Background()
	l := newLedger(t, zero, time.Hour)
	b := bucket(100)
	h, _ := reserve(t, l, "d1", []budget.Bucket{b}, 100)
	if err := h.Settle(ctx, 100); err != nil {
		t.Fatal(err)
	}
	next := b
	next.Start = b.Period.End(b.Start)
	if _, r := reserve(t, l, "d2", []budget.Bucket{next}, 100); r != nil {
		t.Fatalf("the next day starts from nothing: refusal %+v", r)
	}
}

// testConcurrent: many reservations at once never pass the cap.
func testConcurrent(t *testing.T, newLedger New) {
	l := newLedger(t, zero, time.Hour)
	b := bucket(1000)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		holds   []budget.Hold
		refused int
	)
	for i := range 60 {
		wg.Go(func() {
			h, r, err := l.Reserve(context.Background(), randomID("c"), []budget.Bucket{b}, 50)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if r != nil {
				refused++
			} else {
				holds = append(holds, h)
			}
			_ = i
		})
	}
	wg.Wait()
	if len(holds) != 20 || refused != 40 {
		t.Fatalf("%d reserved and %d refused of 60 × 50 against 1000, want 20 and 40", len(holds), refused)
	}
	for _, h := range holds {
		if err := h.Settle(context.Background(), 50); err != nil {
			t.Fatal(err)
		}
	}
	if s, r := use(t, l, b); s != 1000 || r != 0 {
		t.Fatalf("after settling: %d, %d", s, r)
	}
}

// testProperty runs random sequences of reserve, settle, release and
// abandon (a request whose instance died: its hold is never ended) on two
// buckets, concurrently. While they run, no bucket's spent and reserved
// together ever pass its cap (settlements never exceed their
// reservation here); once they end, each bucket holds exactly what the
// abandoned holds reserved, and has spent exactly what was settled.
// Abandoned holds expiring is testExpiry's part.
func testProperty(t *testing.T, newLedger New) {
	l := newLedger(t, zero, time.Hour)
	org := bucket(5000)
	key := org
	key.KeyID, key.Cap = randomID("key_"), 2000
	var (
		wg                      sync.WaitGroup
		mu                      sync.Mutex
		settled, settledKey     int64
		abandoned, abandonedKey int64
	)
	rnd := func(n int64) int64 {
		v, _ := rand.Int(rand.Reader, big.NewInt(n))
		return v.Int64()
	}
	check := func() {
		for _, b := range []budget.Bucket{org, key} {
			s, r, err := l.Use(context.Background(), b)
			if err != nil {
				t.Error(err)
				return
			}
			if s+r > b.Cap || r < 0 || s < 0 {
				t.Errorf("bucket %q: spent %d + reserved %d past its cap %d", b.KeyID, s, r, b.Cap)
			}
		}
	}
	for range 8 {
		wg.Go(func() {
			for range 50 {
				bs := []budget.Bucket{org}
				withKey := rnd(2) == 0
				if withKey {
					bs = append(bs, key)
				}
				amount := rnd(300)
				h, r, err := l.Reserve(context.Background(), randomID("p"), bs, amount)
				if err != nil {
					t.Error(err)
					return
				}
				if rnd(8) == 0 {
					check()
				}
				if r != nil {
					continue
				}
				var add, hold int64
				switch rnd(5) {
				case 0:
					if err := h.Release(context.Background()); err != nil {
						t.Fatal(err)
					}
				case 1:
					hold = amount
				default:
					add = rnd(amount + 1)
					if err := h.Settle(context.Background(), add); err != nil {
						t.Fatal(err)
					}
				}
				mu.Lock()
				settled += add
				abandoned += hold
				if withKey {
					settledKey += add
					abandonedKey += hold
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	check()
	if s, r := use(t, l, org); r != abandoned || s != settled {
		t.Fatalf("org bucket: spent %d reserved %d; want spent %d, reserved %d (the abandoned holds)", s, r, settled, abandoned)
	}
	if s, r := use(t, l, key); r != abandonedKey || s != settledKey {
		t.Fatalf("key bucket: spent %d reserved %d; want spent %d, reserved %d", s, r, settledKey, abandonedKey)
	}
}
