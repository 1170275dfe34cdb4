package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/cache/memory"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
)

func testRing(t *testing.T) *keyring.Keyring {
	t.Helper()
	master, _, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: keyring.NewMemStore(), Master: master})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// down is a backend that always fails, as Redis does when it is gone.
type down struct{}

var errDown = errors.New("connection refused")

func (down) Get(context.Context, string) ([]byte, error)              { return nil, errDown }
func (down) Set(context.Context, string, []byte, time.Duration) error { return errDown }
func (down) Delete(context.Context, string) error                     { return errDown }
func (down) Close() error                                             { return nil }

func TestCacheSealsAndBinds(t *testing.T) {
	ctx := context.Background()
	kr := testRing(t)
	b, err := memory.New(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(b, kr, cache.Options{})
	e := sampleEntries()[0]
	if err := c.Set(ctx, "org_a", "fp1", e, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "org_a", "fp1")
	if err != nil || string(got.Body) != string(e.Body) || got.Usage != e.Usage || got.CostNanoUSD != e.CostNanoUSD {
		t.Fatalf("get: %+v %v", got, err)
	}
	// What the backend holds is sealed: no plaintext of the answer.
	sealed, _ := b.Get(ctx, cache.Key("org_a", "fp1"))
	if len(sealed) == 0 || containsAny(sealed, e.Body, []byte(e.Model)) {
		t.Fatal("the backend holds plaintext")
	}
	// Moved to another org or another record: it does not open, is a
	// miss, and is dropped.
	for _, k := range []struct{ org, rec string }{{"org_b", "fp1"}, {"org_a", "fp2"}} {
		if err := b.Set(ctx, cache.Key(k.org, k.rec), sealed, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, k.org, k.rec); !errors.Is(err, cache.ErrMiss) {
			t.Fatalf("moved to %v: %v", k, err)
		}
		if _, err := b.Get(ctx, cache.Key(k.org, k.rec)); !errors.Is(err, cache.ErrMiss) {
			t.Fatalf("unreadable entry under %v not dropped", k)
		}
	}
	// Shredded: a miss.
	if _, err := kr.Shred(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "org_a", "fp1"); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("after shred: %v", err)
	}
}

func TestCacheBackendDown(t *testing.T) {
	c := cache.New(down{}, testRing(t), cache.Options{})
	ctx := context.Background()
	if _, err := c.Get(ctx, "org_a", "fp"); err == nil || errors.Is(err, cache.ErrMiss) {
		t.Fatalf("get on a failed backend: %v (must be an error, not a miss)", err)
	}
	if err := c.Set(ctx, "org_a", "fp", sampleEntries()[0], time.Minute); err == nil {
		t.Fatal("set on a failed backend succeeded")
	}
}

func containsAny(b []byte, subs ...[]byte) bool {
	for _, s := range subs {
		if len(s) > 0 && bytesContains(b, s) {
			return true
		}
	}
	return false
}

func bytesContains(b, s []byte) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == string(s) {
			return true
		}
	}
	return false
}
