package budget

import (
	"context"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
)

// FuzzLocalLedger drives the in-process ledger with any sequence of
// reservations, settlements, releases and clock jumps past the TTL, on an
// org and a key budget, and checks after every step: reserved is exactly
// what the unexpired, unended holds hold; spent is exactly what was
// settled; spent and reserved together never pass a cap (settlements here
// never exceed their reservation) by more than what holds settled after
// their TTL brought (an expired hold no longer protects the cap: the
// documented bound of CODEX_BUDGET_RESERVATION_TTL); and once the clock
// has passed every hold's TTL nothing is reserved.
func FuzzLocalLedger(f *testing.F) {
	f.Add([]byte{0, 10, 0, 20, 1, 0, 5, 2, 1, 3, 0, 50})
	f.Add([]byte{0, 255, 0, 255, 0, 255, 3, 1, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		ctx := context.Background()
		const ttl = time.Minute
		now := time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)
		l := NewLocal(func(context.Context, Bucket) (int64, error) { return 0, nil }, ttl)
		l.now = func() time.Time { return now }
		org := Bucket{OrgID: "org_f", Period: edge.Month, Start: edge.Month.Start(now), Cap: 1000}
		key := org
		key.KeyID, key.Cap = "key_f", 400
		type open struct {
			h        Hold
			amount   int64
			withKey  bool
			deadline time.Time
		}
		var (
			holds                  []open
			settledOrg, settledKey int64
			lateOrg, lateKey       int64 // settled after the hold's TTL
		)
		check := func(step int) {
			var wantOrg, wantKey int64
			for _, o := range holds {
				if now.Before(o.deadline) {
					wantOrg += o.amount
					if o.withKey {
						wantKey += o.amount
					}
				}
			}
			so, ro, _ := l.Use(ctx, org)
			sk, rk, _ := l.Use(ctx, key)
			if ro != wantOrg || rk != wantKey || so != settledOrg || sk != settledKey {
				t.Fatalf("step %d: org %d spent %d reserved, key %d spent %d reserved; want %d %d, %d %d",
					step, so, ro, sk, rk, settledOrg, wantOrg, settledKey, wantKey)
			}
			if so+ro > org.Cap+lateOrg || sk+rk > key.Cap+lateKey {
				t.Fatalf("step %d: past a cap: org %d+%d, key %d+%d", step, so, ro, sk, rk)
			}
		}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%4, int64(ops[i+1])
			switch op {
			case 0: // reserve arg in the org's budget, and the key's when odd
				bs := []Bucket{org}
				withKey := arg%2 == 1
				if withKey {
					bs = append(bs, key)
				}
				h, r, err := l.Reserve(ctx, "r"+string(rune('a'+i)), bs, arg)
				if err != nil {
					t.Fatal(err)
				}
				if r == nil {
					holds = append(holds, open{h: h, amount: arg, withKey: withKey, deadline: now.Add(ttl)})
				}
			case 1, 2: // settle (1) or release (2) hold arg
				if len(holds) == 0 {
					continue
				}
				j := int(arg) % len(holds)
				o := holds[j]
				holds = append(holds[:j], holds[j+1:]...)
				if op == 2 {
					if err := o.h.Release(ctx); err != nil {
						t.Fatal(err)
					}
					continue
				}
				actual := o.amount / 2
				if err := o.h.Settle(ctx, actual); err != nil {
					t.Fatal(err)
				}
				late := !now.Before(o.deadline)
				settledOrg += actual
				if late {
					lateOrg += actual
				}
				if o.withKey {
					settledKey += actual
					if late {
						lateKey += actual
					}
				}
			case 3: // the clock moves on, arg seconds (past the TTL from 60)
				now = now.Add(time.Duration(arg) * time.Second)
				if !now.Before(org.Period.End(org.Start)) {
					return // the period rolled over: a new bucket, checked elsewhere
				}
			}
			check(i)
		}
		now = now.Add(ttl)
		if !now.Before(org.Period.End(org.Start)) {
			return
		}
		check(len(ops))
	})
}
