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

// Provider answers of a revocable master key.
const (
	provAccepts int32 = iota
	provRefuses       // the key was disabled or our access removed
	provSilent        // no answer: network down, throttled
)

// revocable is a master key whose provider can be made to refuse, as a
// KMS key disabled out of band does, or to stop answering. It counts the
// calls that reach it (through counting) and the probes.
type revocable struct {
	counting
	state  atomic.Int32
	probes atomic.Int64
}

var _ keyring.Prober = (*revocable)(nil)

func newRevocable(t testing.TB, key []byte) *revocable {
	return &revocable{counting: counting{MasterKey: byokKey(t, key)}}
}

func (r *revocable) answer() error {
	switch r.state.Load() {
	case provRefuses:
		return fmt.Errorf("%w: DisabledException: key is disabled", keyring.ErrUnreadable)
	case provSilent:
		return errors.New("dial tcp: i/o timeout")
	}
	return nil
}

func (r *revocable) Probe(context.Context) error {
	r.probes.Add(1)
	return r.answer()
}

func (r *revocable) Unwrap(ctx context.Context, b keyring.Binding, w keyring.Wrap) ([]byte, error) {
	if err := r.answer(); err != nil {
		r.unwraps.Add(1)
		return nil, err
	}
	return r.counting.Unwrap(ctx, b, w)
}

func (r *revocable) Generate(ctx context.Context, b keyring.Binding) ([]byte, keyring.Wrap, error) {
	if err := r.answer(); err != nil {
		r.generates.Add(1)
		return nil, keyring.Wrap{}, err
	}
	return r.counting.Generate(ctx, b)
}

// logBuf collects log lines from concurrent goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// A master key revoked out of band stops working as soon as one probe is
// refused, although its DEKs were cached for KeyLifetime; a probe that
// cannot tell keeps the keys; the steady state makes no master-key call
// while the probe runs; an org with its own master key is not affected.
func TestWatchRevocation(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := newRevocable(t, testKey(1))
	own := &counting{MasterKey: byokKey(t, testKey(2))}
	logs := &logBuf{}
	var (
		purgedMu sync.Mutex
		purged   = map[string]bool{}
	)
	k := newRing(t, keyring.NewMemStore(), m, c, func(o *keyring.Options) {
		o.OnPurge = func(orgs []string) {
			purgedMu.Lock()
			defer purgedMu.Unlock()
			for _, org := range orgs {
				purged[org] = true
			}
		}
		o.ProbeInterval = 5 * time.Millisecond
		o.KeyLifetime = time.Hour // only the probe can end a DEK's life here
		o.OrgMaster = func(org string) keyring.MasterKey {
			if org == "org_own" {
				return own
			}
			return nil
		}
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	p := keyring.PurposeCredential
	cts := map[string][]byte{}
	for _, org := range []string{"org_a", "org_b", "org_own"} {
		cts[org] = seal(t, k, org, p, "openai", "sk-"+org)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Steady state with the probe running: no unwrap, no generate.
	base := m.calls()
	use := func() {
		for _, org := range []string{"org_a", "org_b", "org_own"} {
			ct := seal(t, k, org, p, "r", "v")
			mustOpen(t, k, org, p, "r", ct, "v")
			mustOpen(t, k, org, p, "openai", cts[org], "sk-"+org)
		}
	}
	testutil.Eventually(t, 10*time.Second, "5 probes", func() bool { use(); return k.Stats().Probes >= 5 })
	if got := m.calls() - base; got != 0 {
		t.Fatalf("%d master-key calls in steady state while probing, want 0", got)
	}

	// The provider stops answering: keys kept, one warning, counted.
	m.state.Store(provSilent)
	errs := k.Stats().ProbeErrors
	testutil.Eventually(t, 10*time.Second, "5 failed probes", func() bool { use(); return k.Stats().ProbeErrors >= errs+5 })
	if got := m.calls() - base; got != 0 {
		t.Fatalf("%d master-key calls while the probe failed, want 0", got)
	}
	if st := k.Stats(); st.ProbeRefusals != 0 || st.ProbePurged != 0 || st.CachedKeys != 3 {
		t.Fatalf("stats after failed probes = %+v: want no refusal, no purge, 3 keys", st)
	}
	if n := logs.count("probe failed; cached data keys kept"); n != 1 {
		t.Errorf("%d warnings for failed probes within a minute, want 1 (rate-limited)", n)
	}

	// Revoked: as soon as a refusal is counted, the default master key's
	// orgs are unreadable, to read and to write; the org's own key is not.
	m.state.Store(provRefuses)
	testutil.Eventually(t, 10*time.Second, "a refused probe", func() bool { return k.Stats().ProbeRefusals >= 1 })
	for _, org := range []string{"org_a", "org_b"} {
		mustUnreadable(t, k, org, p, "openai", cts[org])
		if _, err := k.Seal(context.Background(), org, p, "r", []byte("v")); !errors.Is(err, keyring.ErrUnreadable) {
			t.Fatalf("seal for %s after revocation: %v, want ErrUnreadable", org, err)
		}
	}
	mustOpen(t, k, "org_own", p, "openai", cts["org_own"], "sk-org_own")
	if st := k.Stats(); st.ProbePurged < 2 {
		t.Errorf("stats = %+v: want the 2 default-master DEKs purged", st)
	}
	purgedMu.Lock()
	if !purged["org_a"] || !purged["org_b"] || purged["org_own"] {
		t.Errorf("OnPurge told of %v, want org_a and org_b (what their keys opened must go too)", purged)
	}
	purgedMu.Unlock()
	refusals := k.Stats().ProbeRefusals
	testutil.Eventually(t, 10*time.Second, "more refused probes", func() bool { return k.Stats().ProbeRefusals >= refusals+3 })
	if n := logs.count("master key refused by its provider"); n != 1 {
		t.Errorf("%d revocation warnings, want 1", n)
	}

	// Enabled again: the next use unwraps again, once the brief memory of
	// the refusal (Revalidate) has passed.
	m.state.Store(provAccepts)
	testutil.Eventually(t, 10*time.Second, "a successful probe", func() bool { return logs.count("master key accepts again") == 1 })
	c.Advance(keyring.DefaultRevalidate)
	mustOpen(t, k, "org_a", p, "openai", cts["org_a"], "sk-org_a")
	mustOpen(t, k, "org_b", p, "openai", cts["org_b"], "sk-org_b")

	if out := logs.count("sk-"); out != 0 {
		t.Errorf("logs mention secrets %d times", out)
	}
}

// A master key that cannot be probed is not watched: Watch returns at once.
func TestWatchWithoutProber(t *testing.T) {
	t.Parallel()
	k := newRing(t, keyring.NewMemStore(), byokKey(t, testKey(1)), nil)
	done := make(chan struct{})
	go func() { defer close(done); k.Watch(context.Background()) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch of a master key without Probe did not return")
	}
	if st := k.Stats(); st.Probes != 0 {
		t.Errorf("stats = %+v: want no probe", st)
	}
}

// Watch stops with its context.
func TestWatchStops(t *testing.T) {
	t.Parallel()
	m := newRevocable(t, testKey(1))
	k := newRing(t, keyring.NewMemStore(), m, nil, func(o *keyring.Options) { o.ProbeInterval = time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Watch(ctx) }()
	testutil.Eventually(t, 10*time.Second, "a probe", func() bool { return m.probes.Load() > 0 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not stop with its context")
	}
	n := m.probes.Load()
	time.Sleep(20 * time.Millisecond) // would be 20 more probes if it still ran
	if got := m.probes.Load(); got != n {
		t.Errorf("%d probes after Watch returned", got-n)
	}
}

// A probe interval above MaxProbeInterval would break the 10 s promise.
func TestProbeIntervalBound(t *testing.T) {
	t.Parallel()
	o := keyring.Options{Store: keyring.NewMemStore(), Master: byokKey(t, testKey(1)), ProbeInterval: keyring.MaxProbeInterval + time.Millisecond}
	if _, err := keyring.New(o); err == nil {
		t.Error("ProbeInterval above MaxProbeInterval accepted")
	}
	o.ProbeInterval = keyring.MaxProbeInterval
	if _, err := keyring.New(o); err != nil {
		t.Errorf("ProbeInterval = MaxProbeInterval: %v", err)
	}
}
