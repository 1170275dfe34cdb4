package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/byok"
)

// counting wraps a master key and counts every call that reaches it: the
// instrumented provider of the "no master-key call in steady state" tests.
type counting struct {
	keyring.MasterKey
	generates, unwraps, wraps atomic.Int64
}

func (c *counting) Generate(ctx context.Context, b keyring.Binding) ([]byte, keyring.Wrap, error) {
	c.generates.Add(1)
	return c.MasterKey.Generate(ctx, b)
}

func (c *counting) Unwrap(ctx context.Context, b keyring.Binding, w keyring.Wrap) ([]byte, error) {
	c.unwraps.Add(1)
	return c.MasterKey.Unwrap(ctx, b, w)
}

func (c *counting) Wrap(ctx context.Context, b keyring.Binding, dek []byte) (keyring.Wrap, error) {
	c.wraps.Add(1)
	return c.MasterKey.Wrap(ctx, b, dek)
}

func (c *counting) calls() int64 { return c.generates.Load() + c.unwraps.Load() + c.wraps.Load() }

// clock is a fake clock shared by the instances of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func byokKey(t testing.TB, cur []byte, prev ...[]byte) *byok.MasterKey {
	t.Helper()
	m, err := byok.New(cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type ringOpt func(*keyring.Options)

func newRing(t testing.TB, s keyring.Store, m keyring.MasterKey, c *clock, opts ...ringOpt) *keyring.Keyring {
	t.Helper()
	o := keyring.Options{Store: s, Master: m, Logger: slog.New(slog.DiscardHandler)}
	if c != nil {
		o.Now = c.Now
	}
	for _, f := range opts {
		f(&o)
	}
	k, err := keyring.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t testing.TB, k *keyring.Keyring, org string, p keyring.Purpose, rec, pt string) []byte {
	t.Helper()
	ct, err := k.Seal(context.Background(), org, p, rec, []byte(pt))
	if err != nil {
		t.Fatalf("seal %s/%s/%s: %v", org, p, rec, err)
	}
	return ct
}

func mustOpen(t testing.TB, k *keyring.Keyring, org string, p keyring.Purpose, rec string, ct []byte, want string) {
	t.Helper()
	pt, err := k.Open(context.Background(), org, p, rec, ct)
	if err != nil {
		t.Fatalf("open %s/%s/%s: %v", org, p, rec, err)
	}
	if string(pt) != want {
		t.Fatalf("open %s/%s/%s = %q, want %q", org, p, rec, pt, want)
	}
}

func mustUnreadable(t testing.TB, k *keyring.Keyring, org string, p keyring.Purpose, rec string, ct []byte) {
	t.Helper()
	pt, err := k.Open(context.Background(), org, p, rec, ct)
	if !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("open %s/%s/%s = %q, %v; want ErrUnreadable", org, p, rec, pt, err)
	}
}

// failing is a Store whose every call fails, as when the database is down.
type failing struct{ keyring.Store }

var errDown = errors.New("database down")

func (failing) CreateDEK(context.Context, keyring.WrappedDEK) error { return errDown }
func (failing) DEKs(context.Context, string) ([]keyring.WrappedDEK, error) {
	return nil, errDown
}
func (failing) DeleteDEKs(context.Context, string) (int, error) { return 0, errDown }
func (failing) DEKOrgs(context.Context) ([]string, error)       { return nil, errDown }
func (failing) AddSeals(context.Context, string, keyring.DEKID, int64) (int64, error) {
	return 0, errDown
}
func (failing) UpdateWrapped(context.Context, string, keyring.DEKID, keyring.Wrap, time.Time) error {
	return errDown
}
