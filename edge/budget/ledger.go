package budget

import (
	"context"
	"sync"
	"time"

	"github.com/persiv/codex/edge"
)

// Bucket is one budget in one period: what a reservation is held against.
type Bucket struct {
	OrgID  string
	KeyID  string // empty: the org's budget
	Period edge.Period
	Start  time.Time // the period's start
	Cap    int64     // nano-USD
}

// Refusal says why a reservation was refused: the bucket (an index into
// the buckets asked for) without room, and its state then.
type Refusal struct {
	Index           int
	SpentNanoUSD    int64
	ReservedNanoUSD int64
}

// Hold is a reservation made: settled to what the request cost, or
// released when no provider call happened. Either ends it; a hold neither
// settled nor released expires after the ledger's reservation TTL.
type Hold interface {
	Settle(ctx context.Context, actual int64) error
	Release(ctx context.Context) error
}

// Ledger holds budgets' settled spend and live reservations.
type Ledger interface {
	// Reserve reserves amount in every bucket of bs, all or none, under
	// the id of the request; a bucket whose spent, reserved and amount
	// together would pass its cap refuses it.
	Reserve(ctx context.Context, id string, bs []Bucket, amount int64) (Hold, *Refusal, error)
	// Use reads a bucket's spent and reserved amounts.
	Use(ctx context.Context, b Bucket) (spent, reserved int64, err error)
}

// Seeder returns the settled spend a ledger starts a bucket from: the
// store's, plus what this instance settled and has not written yet.
type Seeder func(ctx context.Context, b Bucket) (int64, error)

// Local is a Ledger in process memory, under one mutex. It serves a single
// instance (several instances without Redis each count on their own), and
// stands in for Redis while Redis cannot be reached.
type Local struct {
	seed Seeder
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	buckets map[bucketKey]*localBucket
}

type bucketKey struct {
	org, key string
	period   edge.Period
	start    int64
}

func keyOf(b Bucket) bucketKey { return bucketKey{b.OrgID, b.KeyID, b.Period, b.Start.Unix()} }

type localBucket struct {
	spent, reserved int64
	holds           map[string]localHold
	end             time.Time // the period's end: the bucket is dropped after it
}

type localHold struct {
	amount  int64
	expires time.Time
}

// NewLocal returns an in-process Ledger that starts each bucket from seed
// and lets a reservation expire after ttl.
func NewLocal(seed Seeder, ttl time.Duration) *Local {
	return &Local{seed: seed, ttl: ttl, now: time.Now, buckets: make(map[bucketKey]*localBucket)}
}

// load makes sure every bucket of bs is held, seeding those that are not
// outside the lock (the seed reads the store).
func (l *Local) load(ctx context.Context, bs []Bucket) error {
	for _, b := range bs {
		l.mu.Lock()
		_, ok := l.buckets[keyOf(b)]
		l.mu.Unlock()
		if ok {
			continue
		}
		spent, err := l.seed(ctx, b)
		if err != nil {
			return err
		}
		l.mu.Lock()
		if _, ok := l.buckets[keyOf(b)]; !ok {
			l.buckets[keyOf(b)] = &localBucket{spent: spent, holds: map[string]localHold{}, end: b.Period.End(b.Start)}
		}
		l.mu.Unlock()
	}
	return nil
}

// expire drops b's holds past their time. Called with mu held.
func (b *localBucket) expire(now time.Time) {
	for id, h := range b.holds {
		if !now.Before(h.expires) {
			b.reserved -= h.amount
			delete(b.holds, id)
		}
	}
}

// Reserve implements Ledger.
func (l *Local) Reserve(ctx context.Context, id string, bs []Bucket, amount int64) (Hold, *Refusal, error) {
	if err := l.load(ctx, bs); err != nil {
		return nil, nil, err
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	for i, b := range bs {
		lb := l.buckets[keyOf(b)]
		lb.expire(now)
		if lb.spent+lb.reserved+amount > b.Cap || amount > b.Cap {
			return nil, &Refusal{Index: i, SpentNanoUSD: lb.spent, ReservedNanoUSD: lb.reserved}, nil
		}
	}
	for _, b := range bs {
		lb := l.buckets[keyOf(b)]
		lb.reserved += amount
		lb.holds[id] = localHold{amount: amount, expires: now.Add(l.ttl)}
	}
	return &localHoldRef{l: l, id: id, bs: bs}, nil, nil
}

// prune drops buckets whose period ended. Called with mu held.
func (l *Local) prune(now time.Time) {
	for k, b := range l.buckets {
		if !now.Before(b.end) && len(b.holds) == 0 {
			delete(l.buckets, k)
		}
	}
}

type localHoldRef struct {
	l  *Local
	id string
	bs []Bucket
}

func (h *localHoldRef) end(actual int64) {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	for _, b := range h.bs {
		lb := h.l.buckets[keyOf(b)]
		if lb == nil {
			continue // pruned: its period ended
		}
		if hd, ok := lb.holds[h.id]; ok {
			lb.reserved -= hd.amount
			delete(lb.holds, h.id)
		}
		lb.spent += actual
	}
}

func (h *localHoldRef) Settle(_ context.Context, actual int64) error { h.end(actual); return nil }
func (h *localHoldRef) Release(context.Context) error                { h.end(0); return nil }

// Use implements Ledger.
func (l *Local) Use(ctx context.Context, b Bucket) (int64, int64, error) {
	if err := l.load(ctx, []Bucket{b}); err != nil {
		return 0, 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lb := l.buckets[keyOf(b)]
	lb.expire(l.now())
	return lb.spent, lb.reserved, nil
}

// Forget drops every bucket without a reservation in progress, so each is
// seeded again from the store on its next use.
func (l *Local) Forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if len(b.holds) == 0 {
			delete(l.buckets, k)
		}
	}
}
