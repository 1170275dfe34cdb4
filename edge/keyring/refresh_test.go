package keyring_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
)

// gatedMaster is a revocable master key whose unwraps are counted as they
// arrive and, while the test holds the gate, wait for it: a request that
// had to unwrap would wait too, so a request answered meanwhile made no
// master-key call.
type gatedMaster struct {
	*revocable
	*testutil.Gate
	calls atomic.Int64 // unwraps begun
}

func newGatedMaster(t *testing.T) *gatedMaster {
	return &gatedMaster{revocable: newRevocable(t, testKey(7)), Gate: testutil.NewGate()}
}

func (g *gatedMaster) Unwrap(ctx context.Context, b keyring.Binding, w keyring.Wrap) ([]byte, error) {
	g.calls.Add(1)
	if err := g.Pass(ctx); err != nil {
		return nil, err
	}
	return g.revocable.Unwrap(ctx, b, w)
}

// refreshing runs k's Refresh for the rest of the test.
func refreshing(t *testing.T, k *keyring.Keyring) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Refresh(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// openNow opens ct and fails unless it opens at once: with the master key
// held, an Open that had to unwrap would time out.
func openNow(t *testing.T, k *keyring.Keyring, org string, ct []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pt, err := k.Open(ctx, org, keyring.PurposeCache, "r", ct)
	if err != nil || string(pt) != "x" {
		t.Fatalf("Open on the request path = %q, %v: it waited for the master key", pt, err)
	}
}

// useUntil opens ct every few milliseconds, each at once, until done
// reports true or 5 s have passed.
func useUntil(t *testing.T, k *keyring.Keyring, org string, ct []byte, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(3 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		openNow(t, k, org, ct)
	}
}

func waited(ch <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// A DEK used without pause past KeyLifetime is re-unwrapped once, in the
// background, from three quarters of its lifetime on, and no request
// waits for the master key.
func TestRefreshKeepsAKeyInUseWarm(t *testing.T) {
	t.Parallel()
	const lifetime = 400 * time.Millisecond
	m := newGatedMaster(t)
	k := newRing(t, keyring.NewMemStore(), m, nil, func(o *keyring.Options) { o.KeyLifetime = lifetime })
	refreshing(t, k)
	start := time.Now()
	ct := seal(t, k, "org_a", keyring.PurposeCache, "r", "x") // the DEK is made and cached
	if m.generates.Load() != 1 || m.calls.Load() != 0 {
		t.Fatalf("%d generates and %d unwraps to seal, want 1 and 0", m.generates.Load(), m.calls.Load())
	}

	release := m.Hold()
	defer release()
	useUntil(t, k, "org_a", ct, "a background unwrap", waited(m.Waiting))
	if since := time.Since(start); since < lifetime*3/4 {
		t.Fatalf("background unwrap %s after the DEK was made, before three quarters of its lifetime", since)
	}
	// While it waits, uses go on with the cached key and queue no other.
	for range 50 {
		openNow(t, k, "org_a", ct)
	}
	if n := m.calls.Load(); n != 1 {
		t.Fatalf("%d unwraps while the background one waits, want 1", n)
	}
	release()
	useUntil(t, k, "org_a", ct, "the background unwrap ends", func() bool { return k.Stats().Refreshes == 1 })
	// Past the lifetime the DEK was made with: it was renewed, so no use
	// unwraps it.
	useUntil(t, k, "org_a", ct, "past the first lifetime", func() bool { return time.Since(start) > lifetime*6/5 })
	if n, s := m.calls.Load(), k.Stats(); n != 1 || s.Unwraps != 1 || s.Refreshes != 1 {
		t.Fatalf("%d unwraps (stats %+v), want exactly the one background unwrap", n, s)
	}
}

// A background unwrap the master key refuses drops the DEK, as a refused
// probe does, and one during which the org is shredded caches nothing.
func TestRefreshRefusedOrShredded(t *testing.T) {
	t.Parallel()
	const lifetime = 400 * time.Millisecond
	for _, tc := range []struct {
		name   string
		during func(t *testing.T, k *keyring.Keyring, m *gatedMaster)
		// what Stats counts for the background unwrap
		refreshes, refusals uint64
		purged              bool // OnPurge is told about the org
	}{
		{
			name:     "refused",
			during:   func(t *testing.T, k *keyring.Keyring, m *gatedMaster) { m.state.Store(provRefuses) },
			refusals: 1, purged: true,
		},
		{
			name: "shredded",
			during: func(t *testing.T, k *keyring.Keyring, m *gatedMaster) {
				if _, err := k.Shred(context.Background(), "org_a"); err != nil {
					t.Fatal(err)
				}
			},
			// The master key unwrapped it; the shred keeps it out of the
			// cache.
			refreshes: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newGatedMaster(t)
			var mu sync.Mutex
			var purged []string
			k := newRing(t, keyring.NewMemStore(), m, nil, func(o *keyring.Options) {
				o.KeyLifetime = lifetime
				o.OnPurge = func(orgs []string) { mu.Lock(); purged = append(purged, orgs...); mu.Unlock() }
			})
			refreshing(t, k)
			start := time.Now()
			ct := seal(t, k, "org_a", keyring.PurposeCache, "r", "x")

			release := m.Hold()
			defer release()
			useUntil(t, k, "org_a", ct, "a background unwrap", waited(m.Waiting))
			tc.during(t, k, m)
			release()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(3 * time.Millisecond) {
				if s := k.Stats(); s.Refreshes+s.RefreshRefusals+s.RefreshErrors > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the background unwrap did not end")
				}
			}
			if s := k.Stats(); s.Refreshes != tc.refreshes || s.RefreshRefusals != tc.refusals || s.RefreshErrors != 0 {
				t.Fatalf("stats %+v, want %d refreshes and %d refusals", s, tc.refreshes, tc.refusals)
			}
			if n := k.Stats().CachedKeys; n != 0 {
				t.Fatalf("%d DEKs cached after the background unwrap, want 0", n)
			}
			if time.Since(start) >= lifetime {
				t.Fatal("too slow: the DEK's lifetime ended during the test, so its absence proves nothing")
			}
			mustUnreadable(t, k, "org_a", keyring.PurposeCache, "r", ct)
			mu.Lock()
			got := slices.Clone(purged)
			mu.Unlock()
			if want := tc.purged; want != slices.Equal(got, []string{"org_a"}) || !want && len(got) > 0 {
				t.Fatalf("OnPurge told about %v, want org_a: %v", got, want)
			}
		})
	}
}

// A background unwrap that cannot tell (the provider does not answer)
// keeps the cached DEK until it expires: an outage is no revocation.
func TestRefreshErrorKeepsTheKey(t *testing.T) {
	t.Parallel()
	const lifetime = 400 * time.Millisecond
	m := newGatedMaster(t)
	k := newRing(t, keyring.NewMemStore(), m, nil, func(o *keyring.Options) { o.KeyLifetime = lifetime })
	refreshing(t, k)
	start := time.Now()
	ct := seal(t, k, "org_a", keyring.PurposeCache, "r", "x")
	m.state.Store(provSilent)
	useUntil(t, k, "org_a", ct, "a failed background unwrap", func() bool { return k.Stats().RefreshErrors == 1 })
	openNow(t, k, "org_a", ct)
	if s := k.Stats(); s.CachedKeys != 1 || s.RefreshRefusals != 0 || s.Refreshes != 0 {
		t.Fatalf("stats %+v: want the DEK kept, one error", s)
	}
	if time.Since(start) >= lifetime {
		t.Fatal("too slow: the DEK's lifetime ended during the test")
	}
}
