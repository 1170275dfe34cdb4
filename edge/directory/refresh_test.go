package directory_test

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

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
)

// gated wraps the real store: every load of an org's state (it begins with
// the org's fingerprint secret) is counted and, while the test holds the
// gate, waits for the test to release it.
type gated struct {
	*counting
	*testutil.Gate
	loads atomic.Int64
}

func newGated(st *counting) *gated { return &gated{counting: st, Gate: testutil.NewGate()} }

func (g *gated) FingerprintSecret(ctx context.Context, orgID string) ([]byte, error) {
	g.loads.Add(1)
	if err := g.Pass(ctx); err != nil {
		return nil, err
	}
	return g.counting.FingerprintSecret(ctx, orgID)
}

// awaitLoad waits until an org load waits at the gate.
func (g *gated) awaitLoad(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.Waiting:
	case <-time.After(5 * time.Second):
		t.Fatalf("no org load began: %s", what)
	}
}

// run runs d's change-feed loop (and so its background reloads) for the
// rest of the test.
func run(t *testing.T, d *directory.Directory) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx, time.Hour, nil) }()
	t.Cleanup(func() { cancel(); <-done })
}

// resolveNow resolves h and fails unless the answer comes while org loads
// are held: it must not wait for one.
func resolveNow(t *testing.T, d *directory.Directory, h [32]byte) directory.Key {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	k, err := d.Resolve(ctx, h)
	if err != nil {
		t.Fatalf("Resolve waited for the org's reload: %v", err)
	}
	return k
}

// eventually polls cond until it holds or 5 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// sleepUntil sleeps until at, and fails if before has passed by then (the
// machine was too slow for the test's timing to mean anything).
func sleepUntil(t *testing.T, at, before time.Time) {
	t.Helper()
	time.Sleep(time.Until(at))
	if time.Now().After(before) {
		t.Fatalf("woke up at %s, past %s: too slow for this test", time.Now(), before)
	}
}

// Past three quarters of Lifetime and before Lifetime, an org's state is
// served at once while one background reload replaces it; a change-feed
// entry applied during that reload wins over its result.
func TestRefreshAhead(t *testing.T) {
	t.Parallel()
	const lifetime = 1500 * time.Millisecond
	for _, tc := range []struct {
		name string
		// change, if set, applies a change-feed entry for the org while
		// the background reload is held.
		change func(t *testing.T, st *counting, d *directory.Directory, orgID string)
	}{
		{name: "reload replaces the state"},
		{name: "change during reload wins", change: func(t *testing.T, st *counting, d *directory.Directory, orgID string) {
			ctx := context.Background()
			if err := st.SetProvider(ctx, edge.ProviderConfig{OrgID: orgID, Provider: edge.OpenAI, APIKeyEnv: "OPENAI_KEY"}); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, _, orgID := setup(t)
			g := newGated(st)
			env := map[string]string{"OPENAI_KEY": "sk-one"}
			d := directory.New(g, directory.Options{Keys: st.kr, Lifetime: lifetime, Getenv: func(k string) string { return env[k] }})
			if err := d.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			run(t, d)
			_, h1 := newKey(t, st, orgID)
			_, h2 := newKey(t, st, orgID)
			start := time.Now()
			k1 := resolveNow(t, d, h1)
			loaded := time.Now() // the state was loaded between start and this
			k2 := resolveNow(t, d, h2)
			first := k1.Org
			if k2.Org != first || g.loads.Load() != 1 {
				t.Fatalf("first use: %d loads, keys share the state: %v", g.loads.Load(), k2.Org == first)
			}

			release := g.Hold()
			defer release()
			// Past the refresh point, well before Lifetime.
			sleepUntil(t, loaded.Add(lifetime*3/4+20*time.Millisecond), start.Add(lifetime-200*time.Millisecond))
			if k := resolveNow(t, d, h1); k.Org != first {
				t.Fatal("a stale state was replaced before its reload")
			}
			g.awaitLoad(t, "past the refresh point, a request queues a background reload")
			// While the reload waits, requests keep being answered from
			// the stale state, and queue no second reload.
			for range 20 {
				for _, h := range [][32]byte{h1, h2} {
					if k := resolveNow(t, d, h); k.Org != first {
						t.Fatal("a key left its org's state while the reload waits")
					}
				}
			}
			if _, err := d.Org(context.Background(), orgID); err != nil {
				t.Fatal(err)
			}
			if n := g.loads.Load(); n != 2 {
				t.Fatalf("%d org loads, want 2 (the first, one background reload)", n)
			}
			if time.Now().After(start.Add(lifetime)) {
				t.Fatal("too slow: the state expired during the test")
			}

			if tc.change != nil {
				tc.change(t, st, d, orgID)
				release()
				eventually(t, "the background reload ends", func() bool { return d.Stats().Refreshes == 1 })
				// The reload read the store before the change was applied:
				// its result is not cached; the next request loads again.
				k := resolveNow(t, d, h1)
				if k.Org == first {
					t.Fatal("the key kept the state the change replaced")
				}
				if n := g.loads.Load(); n != 3 {
					t.Fatalf("%d org loads, want 3: the background reload's result was cached over the change", n)
				}
				if u, ok := k.Org.Upstream(edge.OpenAI); !ok || u.Credential != "sk-one" {
					t.Fatalf("the change is not seen: %+v %v", u, ok)
				}
				return
			}

			release()
			eventually(t, "the background reload replaces the state", func() bool {
				o, err := d.Org(context.Background(), orgID)
				return err == nil && o != first
			})
			for _, h := range [][32]byte{h1, h2} {
				if k := resolveNow(t, d, h); k.Org == first {
					t.Fatal("a key still holds the replaced state")
				}
				if k, ok := d.Cached(h); !ok || k.Org == first {
					t.Fatal("a key is not served from memory with the reloaded state")
				}
			}
			if n, l := st.lookups.Load(), g.loads.Load(); n != 2 || l != 2 {
				t.Fatalf("%d key lookups and %d org loads, want 2 (keys kept) and 2", n, l)
			}
			if s := d.Stats(); s.Refreshes != 1 || s.RefreshFailures != 0 {
				t.Fatalf("stats %+v, want one refresh", s)
			}
		})
	}
}

// A state past its Lifetime is not served: the request waits for the
// reload, background reloads or not (the revocation bound).
func TestExpiredStateWaitsForReload(t *testing.T) {
	t.Parallel()
	const lifetime = 300 * time.Millisecond
	st, _, orgID := setup(t)
	g := newGated(st)
	d := directory.New(g, directory.Options{Keys: st.kr, Lifetime: lifetime})
	run(t, d)
	_, h := newKey(t, st, orgID)
	first := resolveNow(t, d, h).Org
	release := g.Hold()
	defer release()
	time.Sleep(lifetime + 50*time.Millisecond) // no request meanwhile
	got := make(chan directory.Key, 1)
	go func() {
		k, err := d.Resolve(context.Background(), h)
		if err != nil {
			t.Error(err)
		}
		got <- k
	}()
	g.awaitLoad(t, "an expired state is loaded again")
	select {
	case <-got:
		t.Fatal("a request was answered from an expired state")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if k := <-got; k.Org == first {
		t.Fatal("the expired state was served")
	}
}

// refusing is a sealer whose opens of provider credentials are refused
// while refuse is set, as with a revoked master key.
type refusing struct {
	directory.Sealer
	refuse atomic.Bool
}

func (r *refusing) Open(ctx context.Context, orgID string, p keyring.Purpose, rec string, ct []byte) ([]byte, error) {
	if p == keyring.PurposeCredential && r.refuse.Load() {
		return nil, fmt.Errorf("%w: master key revoked", keyring.ErrUnreadable)
	}
	return r.Sealer.Open(ctx, orgID, p, rec, ct)
}

// An org whose credential does not open is served its unreadable state at
// once while it is loaded again in the background every UnreadableRetry;
// once the master key accepts again, the credential is back without a
// request waiting for it.
func TestUnreadableStateRetriedInBackground(t *testing.T) {
	t.Parallel()
	const retry = 200 * time.Millisecond
	st, _, orgID := setup(t)
	ctx := context.Background()
	sealed, err := st.kr.Seal(ctx, orgID, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), []byte("sk-sealed"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetProvider(ctx, edge.ProviderConfig{OrgID: orgID, Provider: edge.OpenAI, SealedKey: sealed}); err != nil {
		t.Fatal(err)
	}
	g := newGated(st)
	r := &refusing{Sealer: st.kr}
	r.refuse.Store(true)
	d := directory.New(g, directory.Options{Keys: r, Lifetime: time.Minute, UnreadableRetry: retry})
	run(t, d)
	_, h := newKey(t, st, orgID)
	cred := func(k directory.Key) string { u, _ := k.Org.Upstream(edge.OpenAI); return u.Credential }
	if c := cred(resolveNow(t, d, h)); c != "" {
		t.Fatalf("credential %q opened while refused", c)
	}

	// Background retries, each answered unreadable, while requests are
	// answered at once, even while a retry waits.
	eventually(t, "two background retries", func() bool {
		if c := cred(resolveNow(t, d, h)); c != "" {
			t.Fatalf("credential %q opened while refused", c)
		}
		return g.loads.Load() >= 3
	})
	release := g.Hold()
	defer release()
	// A request past the retry point queues the retry, which waits.
	eventually(t, "a background retry", func() bool {
		if c := cred(resolveNow(t, d, h)); c != "" {
			t.Fatalf("credential %q opened while refused", c)
		}
		select {
		case <-g.Waiting:
			return true
		default:
			return false
		}
	})
	for range 20 {
		if c := cred(resolveNow(t, d, h)); c != "" {
			t.Fatalf("credential %q opened while refused", c)
		}
	}

	// The master key accepts again: the retry waiting now opens it.
	r.refuse.Store(false)
	release()
	eventually(t, "the credential opens again", func() bool { return cred(resolveNow(t, d, h)) == "sk-sealed" })
	if s := d.Stats(); s.RefreshFailures != 0 {
		t.Fatalf("stats %+v: an unreadable credential is no failure", s)
	}
}

// downStore fails every org load while down is set, as a database that
// cannot be reached does.
type downStore struct {
	*counting
	down atomic.Bool
}

func (s *downStore) Providers(ctx context.Context, orgID string) ([]edge.ProviderConfig, error) {
	if s.down.Load() {
		return nil, errors.New("database down")
	}
	return s.counting.Providers(ctx, orgID)
}

// A background reload that fails leaves the state served until it
// expires, is tried again after UnreadableRetry, and is logged once per
// failure streak.
func TestRefreshFailureKeepsTheState(t *testing.T) {
	t.Parallel()
	const lifetime, retry = 2 * time.Second, 50 * time.Millisecond
	st, _, orgID := setup(t)
	ds := &downStore{counting: st}
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
	d := directory.New(ds, directory.Options{Keys: st.kr, Lifetime: lifetime, UnreadableRetry: retry, Logger: logger})
	run(t, d)
	_, h := newKey(t, st, orgID)
	start := time.Now()
	first := resolveNow(t, d, h).Org
	ds.down.Store(true)
	time.Sleep(time.Until(start.Add(lifetime * 3 / 4)))
	eventually(t, "three failed background reloads", func() bool {
		if k := resolveNow(t, d, h); k.Org != first {
			t.Fatal("the state changed while the store is down")
		}
		return d.Stats().RefreshFailures >= 3
	})
	if time.Now().After(start.Add(lifetime)) {
		t.Fatal("too slow: the state expired during the test")
	}
	ds.down.Store(false)
	eventually(t, "the state is reloaded once the store is back", func() bool { return resolveNow(t, d, h).Org != first })
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "background reload of an org failed"); n != 1 {
		t.Fatalf("failure logged %d times in one streak, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "background reload of an org succeeds again") {
		t.Fatalf("recovery not logged:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
