package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	k := newRing(t, keyring.NewMemStore(), byokKey(t, testKey(1)), nil)
	sizes := []int{0, 1, 1024, 1 << 20}
	for _, p := range keyring.Purposes() {
		for _, n := range sizes {
			for _, org := range []string{"org_a", "org_b"} {
				pt := bytes.Repeat([]byte{byte(n)}, n)
				ct, err := k.Seal(context.Background(), org, p, "rec", pt)
				if err != nil {
					t.Fatal(err)
				}
				if len(ct) != len(pt)+keyring.Overhead {
					t.Errorf("len(ct) = %d, want %d", len(ct), len(pt)+keyring.Overhead)
				}
				got, err := k.Open(context.Background(), org, p, "rec", ct)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s/%s/%d: round trip failed: %v", org, p, n, err)
				}
			}
		}
	}
	// Two seals of the same input differ (fresh nonce).
	a, b := seal(t, k, "org_a", keyring.PurposeCache, "r", "x"), seal(t, k, "org_a", keyring.PurposeCache, "r", "x")
	if bytes.Equal(a, b) {
		t.Error("two seals produced the same ciphertext")
	}
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	k := newRing(t, keyring.NewMemStore(), byokKey(t, testKey(1)), nil)
	ctx := context.Background()
	tests := []struct {
		org string
		p   keyring.Purpose
	}{
		{"", keyring.PurposeCache},
		{"org", "caches"},
		{"org", ""},
	}
	for _, tt := range tests {
		if _, err := k.Seal(ctx, tt.org, tt.p, "r", nil); !errors.Is(err, keyring.ErrInvalidInput) {
			t.Errorf("Seal(%q, %q) = %v, want ErrInvalidInput", tt.org, tt.p, err)
		}
		if _, err := k.Open(ctx, tt.org, tt.p, "r", make([]byte, 64)); !errors.Is(err, keyring.ErrInvalidInput) {
			t.Errorf("Open(%q, %q) = %v, want ErrInvalidInput", tt.org, tt.p, err)
		}
	}
	if _, err := keyring.New(keyring.Options{Store: keyring.NewMemStore(), Master: byokKey(t, testKey(1)), Revalidate: time.Minute}); err == nil {
		t.Error("Revalidate above MaxRevalidate accepted")
	}
}

func TestTampering(t *testing.T) {
	t.Parallel()
	k := newRing(t, keyring.NewMemStore(), byokKey(t, testKey(1)), nil)
	ctx := context.Background()
	ct := seal(t, k, "org_a", keyring.PurposeCredential, "openai", "sk-secret")

	t.Run("every bit flipped", func(t *testing.T) {
		for i := range len(ct) * 8 {
			bad := bytes.Clone(ct)
			bad[i/8] ^= 1 << (i % 8)
			if _, err := k.Open(ctx, "org_a", keyring.PurposeCredential, "openai", bad); !errors.Is(err, keyring.ErrUnreadable) {
				t.Fatalf("bit %d flipped: err = %v, want ErrUnreadable", i, err)
			}
		}
	})
	t.Run("truncated or extended", func(t *testing.T) {
		for _, bad := range [][]byte{ct[:len(ct)-1], ct[:keyring.Overhead-1], append(bytes.Clone(ct), 0), nil} {
			mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "openai", bad)
		}
	})
	t.Run("moved", func(t *testing.T) {
		seal(t, k, "org_b", keyring.PurposeCredential, "openai", "other org's own key exists")
		mustUnreadable(t, k, "org_b", keyring.PurposeCredential, "openai", ct)    // other org
		mustUnreadable(t, k, "org_a", keyring.PurposeCache, "openai", ct)         // other purpose
		mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "anthropic", ct) // other record
		mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "openai\x00", ct)
		mustOpen(t, k, "org_a", keyring.PurposeCredential, "openai", ct, "sk-secret")
	})
	t.Run("swapped DEK id", func(t *testing.T) {
		old := seal(t, k, "org_a", keyring.PurposeMemory, "m1", "before rotate")
		if _, err := k.Rotate(ctx, "org_a"); err != nil {
			t.Fatal(err)
		}
		cur := seal(t, k, "org_a", keyring.PurposeMemory, "m1", "after rotate")
		if bytes.Equal(old[1:17], cur[1:17]) {
			t.Fatal("rotate did not change the DEK")
		}
		swapped := bytes.Clone(old)
		copy(swapped[1:17], cur[1:17])
		mustUnreadable(t, k, "org_a", keyring.PurposeMemory, "m1", swapped)
		swapped = bytes.Clone(cur)
		copy(swapped[1:17], old[1:17])
		mustUnreadable(t, k, "org_a", keyring.PurposeMemory, "m1", swapped)
	})
}

func TestRotate(t *testing.T) {
	t.Parallel()
	c := newClock()
	k := newRing(t, keyring.NewMemStore(), byokKey(t, testKey(1)), c)
	ctx := context.Background()
	var cts [][]byte
	for i := range 3 {
		cts = append(cts, seal(t, k, "org_a", keyring.PurposeAudit, fmt.Sprint(i), fmt.Sprint("gen", i+1)))
		c.Advance(time.Hour)
		st, err := k.Rotate(ctx, "org_a")
		if err != nil {
			t.Fatal(err)
		}
		if st.Generation != i+2 || st.State != keyring.DEKActive {
			t.Fatalf("rotate %d: %+v", i, st)
		}
	}
	for i, ct := range cts {
		mustOpen(t, k, "org_a", keyring.PurposeAudit, fmt.Sprint(i), ct, fmt.Sprint("gen", i+1))
	}
	st, err := k.Status(ctx, "org_a")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 4 {
		t.Fatalf("status: %d keys, want 4", len(st))
	}
	for i, s := range st {
		wantState := keyring.DEKRetired
		if i == 0 {
			wantState = keyring.DEKActive
		}
		if s.Generation != 4-i || s.State != wantState || s.MasterRef != "byok" || s.MasterVersion == "" {
			t.Errorf("status[%d] = %+v", i, s)
		}
	}
	if st[3].Age != 3*time.Hour {
		t.Errorf("age of generation 1 = %s, want 3h", st[3].Age)
	}
	newest := seal(t, k, "org_a", keyring.PurposeAudit, "x", "y")
	if got, _ := keyring.ParseDEKID(st[0].DEKID.String()); !bytes.Equal(newest[1:17], got[:]) {
		t.Error("new writes do not use the newest generation")
	}
}

// After a new BYOK version is configured and rewrap has run, the old
// version can be removed and everything still reads; without the rewrap,
// removing it makes the data unreadable.
func TestRewrapNewBYOKVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k1, k2 := testKey(1), testKey(2)
	store := keyring.NewMemStore()
	before := newRing(t, store, byokKey(t, k1), nil)
	type rec struct {
		org string
		ct  []byte
		pt  string
	}
	var recs []rec
	for _, org := range []string{"org_a", "org_b", "org_c"} {
		recs = append(recs, rec{org, seal(t, before, org, keyring.PurposeSecret, "s", org+" gen1"), org + " gen1"})
		if _, err := before.Rotate(ctx, org); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec{org, seal(t, before, org, keyring.PurposeSecret, "s", org+" gen2"), org + " gen2"})
	}
	readAll := func(k *keyring.Keyring) {
		t.Helper()
		for _, r := range recs {
			mustOpen(t, k, r.org, keyring.PurposeSecret, "s", r.ct, r.pt)
		}
	}

	// Restart without the old version before any rewrap: unreadable.
	mustUnreadable(t, newRing(t, store, byokKey(t, k2), nil), "org_a", keyring.PurposeSecret, "s", recs[0].ct)

	// Restart with k2 current and k1 previous: everything reads.
	both := byokKey(t, k2, k1)
	during := newRing(t, store, both, nil)
	readAll(during)

	var events []keyring.RewrapEvent
	res, err := during.Rewrap(ctx, func(e keyring.RewrapEvent) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	if res != (keyring.RewrapResult{Total: 6, Rewrapped: 6}) || len(events) != 6 {
		t.Fatalf("rewrap = %+v, %d events", res, len(events))
	}
	for i, e := range events {
		if e.N != i+1 || e.Total != 6 || !e.Rewrapped || e.From.Version != both.Versions()[1] || e.To.Version != both.Versions()[0] || e.Err != nil || e.From.Blob != nil || e.To.Blob != nil {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	// A second run finds nothing to do.
	if res, err := during.Rewrap(ctx, nil); err != nil || res != (keyring.RewrapResult{Total: 6, Current: 6}) {
		t.Fatalf("second rewrap = %+v, %v", res, err)
	}

	// Restart with k2 only: everything still reads, and new writes work.
	after := newRing(t, store, byokKey(t, k2), nil)
	readAll(after)
	mustOpen(t, after, "org_b", keyring.PurposeCache, "n", seal(t, after, "org_b", keyring.PurposeCache, "n", "new"), "new")
	st, err := after.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.MasterVersion != both.Versions()[0] || s.RewrappedAt.IsZero() {
			t.Errorf("after rewrap: %+v", s)
		}
	}
}

// Removing a BYOK version makes data under it unreadable, but new writes
// (a credential set again) keep working under a new generation.
func TestBYOKVersionRemoved(t *testing.T) {
	t.Parallel()
	store := keyring.NewMemStore()
	old := newRing(t, store, byokKey(t, testKey(1)), nil)
	ct := seal(t, old, "org_a", keyring.PurposeCredential, "openai", "sk-1")
	other := seal(t, old, "org_b", keyring.PurposeCredential, "openai", "sk-b")

	m := &counting{MasterKey: byokKey(t, testKey(2))}
	k := newRing(t, store, m, nil)
	mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "openai", ct)
	mustUnreadable(t, k, "org_b", keyring.PurposeCredential, "openai", other)
	fresh := seal(t, k, "org_a", keyring.PurposeCredential, "openai", "sk-2")
	mustOpen(t, k, "org_a", keyring.PurposeCredential, "openai", fresh, "sk-2")
	mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "openai", ct)

	// Rewrap reports what it cannot rescue and leaves it alone.
	res, err := k.Rewrap(context.Background(), nil)
	if !errors.Is(err, keyring.ErrUnreadable) || res.Failed != 2 || res.Current != 1 {
		t.Fatalf("rewrap = %+v, %v", res, err)
	}
}

func TestShred(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := keyring.NewMemStore()
	k := newRing(t, store, byokKey(t, testKey(1)), nil)
	a1 := seal(t, k, "org_a", keyring.PurposeCredential, "openai", "sk-a")
	if _, err := k.Rotate(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	a2 := seal(t, k, "org_a", keyring.PurposeCache, "fp", "cached answer")
	b := seal(t, k, "org_b", keyring.PurposeCredential, "openai", "sk-b")
	cachedBefore := k.Stats().CachedKeys

	n, err := k.Shred(ctx, "org_a")
	if err != nil || n != 2 {
		t.Fatalf("shred = %d, %v", n, err)
	}
	mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "openai", a1)
	mustUnreadable(t, k, "org_a", keyring.PurposeCache, "fp", a2)
	mustOpen(t, k, "org_b", keyring.PurposeCredential, "openai", b, "sk-b")
	if got := k.Stats().CachedKeys; got != cachedBefore-2 {
		t.Errorf("cached keys after shred = %d, want %d", got, cachedBefore-2)
	}
	if st, _ := k.Status(ctx, "org_a"); len(st) != 0 {
		t.Errorf("status after shred: %+v", st)
	}
	// The org keeps working with a new key; the old data stays unreadable.
	fresh := seal(t, k, "org_a", keyring.PurposeCredential, "openai", "sk-a2")
	mustOpen(t, k, "org_a", keyring.PurposeCredential, "openai", fresh, "sk-a2")
	mustUnreadable(t, k, "org_a", keyring.PurposeCredential, "openai", a1)
	// Another instance that never saw the org cannot read the old data either.
	mustUnreadable(t, newRing(t, store, byokKey(t, testKey(1)), nil), "org_a", keyring.PurposeCredential, "openai", a1)
}

// A shred on one instance takes effect on another within Revalidate, or at
// once after Invalidate.
func TestShredPropagates(t *testing.T) {
	t.Parallel()
	for _, invalidate := range []bool{false, true} {
		t.Run(fmt.Sprint("invalidate=", invalidate), func(t *testing.T) {
			ctx := context.Background()
			store, c := keyring.NewMemStore(), newClock()
			m := byokKey(t, testKey(1))
			a, b := newRing(t, store, m, c), newRing(t, store, m, c)
			ct := seal(t, a, "org_a", keyring.PurposeCache, "fp", "x")
			mustOpen(t, b, "org_a", keyring.PurposeCache, "fp", ct, "x") // b's cache warm
			if _, err := a.Shred(ctx, "org_a"); err != nil {
				t.Fatal(err)
			}
			mustUnreadable(t, a, "org_a", keyring.PurposeCache, "fp", ct)
			if invalidate {
				b.Invalidate("org_a")
			} else {
				c.Advance(keyring.DefaultRevalidate - time.Millisecond)
				mustOpen(t, b, "org_a", keyring.PurposeCache, "fp", ct, "x") // still within the bound
				c.Advance(time.Millisecond)
			}
			mustUnreadable(t, b, "org_a", keyring.PurposeCache, "fp", ct)
		})
	}
}

// Data written right after another instance rotated opens here without
// waiting for Revalidate.
func TestRotatePropagates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, c := keyring.NewMemStore(), newClock()
	m := byokKey(t, testKey(1))
	a, b := newRing(t, store, m, c), newRing(t, store, m, c)
	mustOpen(t, b, "org_a", keyring.PurposeCache, "1", seal(t, a, "org_a", keyring.PurposeCache, "1", "x"), "x")
	if _, err := a.Rotate(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	ct := seal(t, a, "org_a", keyring.PurposeCache, "2", "y")
	c.Advance(time.Second)
	mustOpen(t, b, "org_a", keyring.PurposeCache, "2", ct, "y")
	// And b writes with the new generation after Revalidate.
	c.Advance(keyring.DefaultRevalidate)
	if got := seal(t, b, "org_a", keyring.PurposeCache, "3", "z"); !bytes.Equal(got[1:17], ct[1:17]) {
		t.Error("b still writes with the retired generation")
	}
}

// Once an org's key is warm, sealing and opening make no master-key call,
// even across store re-validations.
func TestSteadyStateNoMasterCalls(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := &counting{MasterKey: byokKey(t, testKey(1))}
	k := newRing(t, keyring.NewMemStore(), m, c)
	orgs := []string{"org_a", "org_b", "org_c"}
	cts := map[string][]byte{}
	for _, org := range orgs {
		cts[org] = seal(t, k, org, keyring.PurposeCache, "warm", "w")
	}
	if got := m.generates.Load(); got != 3 {
		t.Fatalf("warm-up: %d generate calls, want 3", got)
	}
	base := m.calls()
	for i := range 3000 {
		org := orgs[i%len(orgs)]
		ct := seal(t, k, org, keyring.PurposeCache, fmt.Sprint(i), "v")
		mustOpen(t, k, org, keyring.PurposeCache, fmt.Sprint(i), ct, "v")
		mustOpen(t, k, org, keyring.PurposeCache, "warm", cts[org], "w")
		c.Advance(10 * time.Millisecond) // 30 s in all: several re-validations
	}
	if got := m.calls() - base; got != 0 {
		t.Fatalf("%d master-key calls in steady state, want 0", got)
	}
	if st := k.Stats(); st.Reloads < 6 || st.CacheHits == 0 {
		t.Errorf("stats = %+v: expected re-validations and cache hits", st)
	}
}

// A DEK is unwrapped again after KeyLifetime.
func TestKeyLifetime(t *testing.T) {
	t.Parallel()
	store := keyring.NewMemStore()
	m := &counting{MasterKey: byokKey(t, testKey(1))}
	k := newRing(t, store, m, nil, func(o *keyring.Options) { o.KeyLifetime = 50 * time.Millisecond })
	ct := seal(t, k, "org_a", keyring.PurposeCache, "r", "v")
	testutil.Eventually(t, 5*time.Second, "the DEK to expire from the cache", func() bool {
		mustOpen(t, k, "org_a", keyring.PurposeCache, "r", ct, "v")
		return m.unwraps.Load() != 0
	})
}

// Concurrent first use on two instances creates exactly one DEK.
func TestConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	store := keyring.NewMemStore()
	m := byokKey(t, testKey(1))
	rings := []*keyring.Keyring{newRing(t, store, m, nil), newRing(t, store, m, nil)}
	var wg sync.WaitGroup
	cts := make([][]byte, 32)
	errs := make([]error, 32)
	for i := range cts {
		wg.Go(func() {
			cts[i], errs[i] = rings[i%2].Seal(context.Background(), "org_new", keyring.PurposeCache, "r", []byte("v"))
		})
	}
	wg.Wait()
	for i := range cts {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for _, k := range rings {
			mustOpen(t, k, "org_new", keyring.PurposeCache, "r", cts[i], "v")
		}
	}
	if deks, _ := store.DEKs(context.Background(), "org_new"); len(deks) != 1 {
		t.Fatalf("%d DEKs after concurrent first use, want 1", len(deks))
	}
}

// A store outage is an infrastructure error, never ErrUnreadable: callers
// must not conclude the data is gone.
func TestStoreDownIsNotUnreadable(t *testing.T) {
	t.Parallel()
	good := keyring.NewMemStore()
	m := byokKey(t, testKey(1))
	ct := seal(t, newRing(t, good, m, nil), "org_a", keyring.PurposeCache, "r", "v")
	k := newRing(t, failing{}, m, nil)
	ctx := context.Background()
	if _, err := k.Seal(ctx, "org_a", keyring.PurposeCache, "r", []byte("v")); err == nil || errors.Is(err, keyring.ErrUnreadable) || !errors.Is(err, errDown) {
		t.Errorf("Seal with store down: %v", err)
	}
	if _, err := k.Open(ctx, "org_a", keyring.PurposeCache, "r", ct); err == nil || errors.Is(err, keyring.ErrUnreadable) || !errors.Is(err, errDown) {
		t.Errorf("Open with store down: %v", err)
	}
	if _, err := k.Shred(ctx, "org_a"); !errors.Is(err, errDown) {
		t.Errorf("Shred with store down: %v", err)
	}
}

// Logs, status and errors carry ids only, never keys or plaintext.
func TestNoSecretsInLogsOrStatus(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	master := testKey(7)
	m := byokKey(t, master)
	k := newRing(t, keyring.NewMemStore(), m, nil, func(o *keyring.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	ct := seal(t, k, "org_a", keyring.PurposeCredential, "openai", "sk-canary-123")
	if _, err := k.Rotate(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	_, err := k.Open(ctx, "org_a", keyring.PurposeCredential, "anthropic", ct)
	st, _ := k.Status(ctx, "")
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("master", "key", m)
	text := logs.String() + fmt.Sprintf("%+v %v %v", st, err, m)
	for _, secret := range []string{"sk-canary-123", string(master), fmt.Sprintf("%x", master), "BwcHBwcH"} {
		if strings.Contains(text, secret) {
			t.Errorf("output contains secret %q:\n%s", secret, text)
		}
	}
	if !strings.Contains(logs.String(), m.Versions()[0]) {
		t.Errorf("log of the master key should show its version:\n%s", logs.String())
	}
}

// After a restart, the first Open of each org needs one master-key call per
// DEK; concurrent readers share it.
func TestColdStartSharesUnwrap(t *testing.T) {
	t.Parallel()
	store := keyring.NewMemStore()
	ct := seal(t, newRing(t, store, byokKey(t, testKey(1)), nil), "org_a", keyring.PurposeCache, "r", "v")
	m := &counting{MasterKey: byokKey(t, testKey(1))}
	k := newRing(t, store, m, nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { mustOpen(t, k, "org_a", keyring.PurposeCache, "r", ct, "v") })
	}
	wg.Wait()
	if got := m.unwraps.Load(); got < 1 || got > 2 {
		t.Errorf("%d unwraps for 16 concurrent cold opens", got)
	}
}

// gated is a Store whose DEKs reads, then waits for release: a slow read
// that straddles another operation.
type gated struct {
	keyring.Store
	armed   chan struct{} // receives once a gated read has its result
	release chan struct{}
	on      atomic.Bool
}

func (g *gated) DEKs(ctx context.Context, org string) ([]keyring.WrappedDEK, error) {
	list, err := g.Store.DEKs(ctx, org)
	if g.on.CompareAndSwap(true, false) {
		g.armed <- struct{}{}
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return list, err
}

// A DEK list read before a shred and returned after it must not be cached:
// otherwise the shredding instance would read the org for another
// Revalidate.
func TestShredDuringSlowReload(t *testing.T) {
	t.Parallel()
	g := &gated{Store: keyring.NewMemStore(), armed: make(chan struct{}), release: make(chan struct{})}
	c := newClock()
	k := newRing(t, g, byokKey(t, testKey(1)), c)
	ct := seal(t, k, "org_a", keyring.PurposeCache, "r", "v")
	c.Advance(keyring.DefaultRevalidate)
	g.on.Store(true)
	done := make(chan error)
	go func() {
		_, err := k.Open(context.Background(), "org_a", keyring.PurposeCache, "r", ct)
		done <- err
	}()
	<-g.armed // the reload has read the pre-shred list
	if _, err := k.Shred(context.Background(), "org_a"); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	// Either outcome is fine: that read was linearized before the shred.
	t.Logf("the racing read answered %v", <-done)
	mustUnreadable(t, k, "org_a", keyring.PurposeCache, "r", ct)
}

// A caller whose context ends stops waiting on a shared slow read, with a
// context error, not ErrUnreadable.
func TestCallerCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	g := &gated{Store: keyring.NewMemStore(), armed: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(g.release)
	k := newRing(t, g, byokKey(t, testKey(1)), nil)
	g.on.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := k.Seal(ctx, "org_a", keyring.PurposeCache, "r", []byte("v"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

// An org whose own master key has not been supplied since start-up stays
// unreadable, gets nothing sealed under the default key, and recovers when
// its key is supplied; other orgs are unaffected.
func TestOrgMasterNotSupplied(t *testing.T) {
	t.Parallel()
	store := keyring.NewMemStore()
	def, own := byokKey(t, testKey(1)), byokKey(t, testKey(9))
	var supplied atomic.Bool
	supplied.Store(true)
	orgMaster := func(org string) keyring.MasterKey {
		if org != "org_own" {
			return nil
		}
		if supplied.Load() {
			return own
		}
		return keyring.Unavailable("byok")
	}
	opt := func(o *keyring.Options) { o.OrgMaster = orgMaster }
	k := newRing(t, store, def, nil, opt)
	ct := seal(t, k, "org_own", keyring.PurposeCredential, "openai", "sk-own")
	other := seal(t, k, "org_x", keyring.PurposeCredential, "openai", "sk-x")
	st, _ := k.Status(context.Background(), "org_own")
	if len(st) != 1 || st[0].MasterVersion != own.Versions()[0] {
		t.Fatalf("org_own's DEK not under its own key: %+v", st)
	}

	supplied.Store(false) // a restart before the org supplies its key again
	cold := newRing(t, store, def, nil, opt)
	mustUnreadable(t, cold, "org_own", keyring.PurposeCredential, "openai", ct)
	if _, err := cold.Seal(context.Background(), "org_own", keyring.PurposeCache, "r", []byte("v")); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("seal without the org's key: %v, want ErrUnreadable", err)
	}
	if st, _ := cold.Status(context.Background(), "org_own"); len(st) != 1 {
		t.Fatalf("a DEK was created without the org's key: %+v", st)
	}
	mustOpen(t, cold, "org_x", keyring.PurposeCredential, "openai", other, "sk-x")

	supplied.Store(true)
	cold.Invalidate("org_own") // what supplying the key does
	mustOpen(t, cold, "org_own", keyring.PurposeCredential, "openai", ct, "sk-own")
}

// An org given its own master key by another process after this keyring
// read the list gets its first data key under that key, not the default
// one: ReloadOrgMasters runs before every data key is made, and a failure
// to reload makes none.
func TestReloadOrgMastersBeforeCreate(t *testing.T) {
	t.Parallel()
	def, own := byokKey(t, testKey(1)), byokKey(t, testKey(9))
	var (
		stored atomic.Bool // what the store says: org_new has its own key
		loaded atomic.Bool // what this process read from it
		down   atomic.Bool
	)
	opt := func(o *keyring.Options) {
		o.OrgMaster = func(org string) keyring.MasterKey {
			if org == "org_new" && loaded.Load() {
				return own
			}
			return nil
		}
		o.ReloadOrgMasters = func(context.Context) error {
			if down.Load() {
				return errors.New("store down")
			}
			loaded.Store(stored.Load())
			return nil
		}
	}
	k := newRing(t, keyring.NewMemStore(), def, nil, opt)
	stored.Store(true) // orgs create org_new --kek ..., in another process
	seal(t, k, "org_new", keyring.PurposeCredential, "openai", "sk-new")
	if st, _ := k.Status(context.Background(), "org_new"); len(st) != 1 || st[0].MasterVersion != own.Versions()[0] {
		t.Fatalf("org_new's first data key is not under its own key: %+v", st)
	}
	down.Store(true)
	if _, err := k.Seal(context.Background(), "org_other", keyring.PurposeCache, "r", []byte("v")); err == nil {
		t.Fatal("a data key was made while the orgs' master keys could not be read")
	}
}
