package keyring_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge/keyring"
)

// dekOf is the id of the DEK a ciphertext was sealed under (format v1:
// version byte, then the id).
func dekOf(ct []byte) keyring.DEKID { return keyring.DEKID(ct[1:17]) }

func limits(maxSeals, lease int64, maxAge time.Duration) ringOpt {
	return func(o *keyring.Options) { o.MaxSeals, o.SealLease, o.MaxAge = maxSeals, lease, maxAge }
}

// refusing refuses to generate data keys while refuse is set, as a KMS
// that is unreachable or has the key disabled.
type refusing struct {
	keyring.MasterKey
	refuse    atomic.Bool
	generates atomic.Int64
}

func (r *refusing) Generate(ctx context.Context, b keyring.Binding) ([]byte, keyring.Wrap, error) {
	r.generates.Add(1)
	if r.refuse.Load() {
		return nil, keyring.Wrap{}, fmt.Errorf("%w: key disabled", keyring.ErrUnreadable)
	}
	return r.MasterKey.Generate(ctx, b)
}

// Issue 13, finding 12: after MaxSeals seals new writes use a new
// generation, and what the old ones sealed still opens.
func TestRotatesAtMaxSeals(t *testing.T) {
	t.Parallel()
	st := keyring.NewMemStore()
	// A lease that does not divide the limit: the last block is cut short.
	k := newRing(t, st, byokKey(t, testKey(1)), newClock(), limits(10, 3, 0))
	var cts [][]byte
	perDEK := map[keyring.DEKID]int{}
	var order []keyring.DEKID
	for i := range 25 {
		ct := seal(t, k, "org_a", keyring.PurposeCache, fmt.Sprint("r", i), fmt.Sprint("v", i))
		cts = append(cts, ct)
		id := dekOf(ct)
		if perDEK[id] == 0 {
			order = append(order, id)
		}
		perDEK[id]++
	}
	if len(order) != 3 || perDEK[order[0]] != 10 || perDEK[order[1]] != 10 || perDEK[order[2]] != 5 {
		t.Fatalf("seals per data key in order of use: %d keys, %v", len(order), perDEK)
	}
	for i, ct := range cts {
		mustOpen(t, k, "org_a", keyring.PurposeCache, fmt.Sprint("r", i), ct, fmt.Sprint("v", i))
	}
	status, err := k.Status(context.Background(), "org_a")
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 3 || status[0].Generation != 3 || status[0].State != keyring.DEKActive || status[0].DEKID != order[2] {
		t.Fatalf("status: %+v", status)
	}
	for _, s := range status {
		if s.Seals < int64(perDEK[s.DEKID]) {
			t.Errorf("generation %d: %d seals recorded, %d made", s.Generation, s.Seals, perDEK[s.DEKID])
		}
	}
	if st := k.Stats(); st.SealLimitRotations != 2 || st.AgeRotations != 0 {
		t.Fatalf("stats: %+v", st)
	}
	// The store is written once per block, not once per seal.
	if n := k.Stats().SealReservations; n > 12 {
		t.Fatalf("%d seal reservations for 25 seals with blocks of 3", n)
	}
}

// Seals are reserved before they are made, so no data key is used more
// than MaxSeals times whatever the instances and restarts.
func TestSealLimitAcrossInstancesAndRestarts(t *testing.T) {
	t.Parallel()
	st := keyring.NewMemStore()
	m := byokKey(t, testKey(1))
	const maxSeals = 40
	var mu sync.Mutex
	var cts [][]byte
	run := func(k *keyring.Keyring, workers, each int) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					ct, err := k.Seal(context.Background(), "org_a", keyring.PurposeCache, "rec", fmt.Appendf(nil, "%d/%d", w, i))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					cts = append(cts, ct)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	a := newRing(t, st, m, nil, limits(maxSeals, 7, 0))
	b := newRing(t, st, m, nil, limits(maxSeals, 7, 0))
	var wg sync.WaitGroup
	wg.Go(func() { run(a, 4, 50) })
	wg.Go(func() { run(b, 4, 50) })
	wg.Wait()
	// Restarts: new instances on the same store, the old ones gone with
	// whatever they had reserved.
	for range 3 {
		run(newRing(t, st, m, nil, limits(maxSeals, 7, 0)), 2, 5)
	}
	perDEK := map[keyring.DEKID]int{}
	for _, ct := range cts {
		perDEK[dekOf(ct)]++
	}
	status, err := a.Status(context.Background(), "org_a")
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[keyring.DEKID]int64{}
	for _, s := range status {
		recorded[s.DEKID] = s.Seals
	}
	for id, n := range perDEK {
		if n > maxSeals {
			t.Errorf("data key %s sealed %d records, limit %d", id, n, maxSeals)
		}
		if recorded[id] < int64(n) {
			t.Errorf("data key %s: %d seals recorded, %d made", id, recorded[id], n)
		}
	}
	if len(cts) != 430 || len(perDEK) < 430/maxSeals+1 {
		t.Fatalf("%d ciphertexts under %d data keys", len(cts), len(perDEK))
	}
	c := newRing(t, st, m, nil)
	for _, ct := range cts {
		if _, err := c.Open(context.Background(), "org_a", keyring.PurposeCache, "rec", ct); err != nil {
			t.Fatalf("an old generation no longer opens: %v", err)
		}
	}
}

// Issue 13, finding 12: a data key older than MaxAge is replaced for new
// writes; what it sealed still opens.
func TestRotatesAtMaxAge(t *testing.T) {
	t.Parallel()
	st := keyring.NewMemStore()
	clk := newClock()
	m := byokKey(t, testKey(1))
	k := newRing(t, st, m, clk, limits(0, 0, 24*time.Hour))
	other := newRing(t, st, m, clk, limits(0, 0, 24*time.Hour)) // a second instance
	first := seal(t, k, "org_a", keyring.PurposeCredential, "provider/openai", "sk-1")
	clk.Advance(23 * time.Hour)
	if ct := seal(t, k, "org_a", keyring.PurposeCache, "c1", "x"); dekOf(ct) != dekOf(first) {
		t.Fatal("replaced before MaxAge")
	}
	clk.Advance(time.Hour)
	second := seal(t, k, "org_a", keyring.PurposeCache, "c2", "y")
	if dekOf(second) == dekOf(first) {
		t.Fatal("a data key MaxAge old still seals new records")
	}
	// The other instance moves to the same new generation, not a third.
	if ct := seal(t, other, "org_a", keyring.PurposeCache, "c3", "z"); dekOf(ct) != dekOf(second) {
		t.Fatal("the other instance sealed under another data key")
	}
	mustOpen(t, k, "org_a", keyring.PurposeCredential, "provider/openai", first, "sk-1")
	mustOpen(t, other, "org_a", keyring.PurposeCredential, "provider/openai", first, "sk-1")
	status, _ := k.Status(context.Background(), "org_a")
	if len(status) != 2 || status[0].Generation != 2 {
		t.Fatalf("status: %+v", status)
	}
	if n := k.Stats().AgeRotations + other.Stats().AgeRotations; n != 1 {
		t.Fatalf("%d age rotations, want 1", n)
	}
}

// The age limit is a policy: a master key that cannot make a new data key
// does not stop writes, and is not asked on every write. The seal limit is
// a cryptographic bound and is never exceeded.
func TestLimitsWhenMasterKeyCannotGenerate(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := &refusing{MasterKey: byokKey(t, testKey(1))}
	k := newRing(t, keyring.NewMemStore(), m, clk, limits(5, 2, 24*time.Hour))
	first := seal(t, k, "org_a", keyring.PurposeCache, "a", "1")
	clk.Advance(25 * time.Hour)
	m.refuse.Store(true)
	before := m.generates.Load()
	for range 3 {
		if ct := seal(t, k, "org_a", keyring.PurposeCache, "b", "2"); dekOf(ct) != dekOf(first) {
			t.Fatal("sealed under another key though none could be made")
		}
	}
	if n := m.generates.Load() - before; n != 1 {
		t.Fatalf("%d generate calls for 3 writes past MaxAge, want 1 per Revalidate", n)
	}
	// 4 seals made of 5: one more, then refused.
	seal(t, k, "org_a", keyring.PurposeCache, "c", "3")
	if _, err := k.Seal(context.Background(), "org_a", keyring.PurposeCache, "d", []byte("4")); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("seal past MaxSeals with no new key possible: %v", err)
	}
	m.refuse.Store(false)
	clk.Advance(keyring.DefaultRevalidate)
	if ct := seal(t, k, "org_a", keyring.PurposeCache, "e", "5"); dekOf(ct) == dekOf(first) {
		t.Fatal("not replaced once the master key could generate again")
	}
}

func TestMaxSealsBounded(t *testing.T) {
	t.Parallel()
	_, err := keyring.New(keyring.Options{Store: keyring.NewMemStore(), Master: byokKey(t, testKey(1)), MaxSeals: keyring.DefaultMaxSeals + 1})
	if err == nil {
		t.Fatal("MaxSeals above 2^30 accepted")
	}
}
