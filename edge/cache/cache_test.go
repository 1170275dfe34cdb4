package cache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/cache/memory"
	cacheredis "github.com/persiv/codex/edge/cache/redis"
	"github.com/persiv/codex/edge/internal/testutil"
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
func (down) DeletePrefix(context.Context, string) (int64, error)      { return 0, errDown }
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

// TestDeleteOrg: a shred deletes every entry of the org, in process and in
// Redis (over more than one SCAN step), and none of another org's, even
// one whose id has the shredded org's id as its prefix or that the org's
// id matches as a glob pattern.
func TestDeleteOrg(t *testing.T) {
	ctx := context.Background()
	backends := map[string]func(t *testing.T) cache.Backend{
		"memory": func(t *testing.T) cache.Backend {
			b, err := memory.New(64 << 20)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		"redis": func(t *testing.T) cache.Backend {
			b, err := cacheredis.Open(testutil.RedisURL(t), cacheredis.Options{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			c := cache.New(b, testRing(t), cache.Options{Timeout: 10 * time.Second})
			defer c.Close()
			// "?" matches any one character in a SCAN pattern: unescaped,
			// the shred of "o?..." would take "oX..." too.
			id := apikey.NewID("org_")
			org := "o?" + id
			others := []string{org + "x", "oX" + id, "o*" + id}
			entries := 2*cacheredis.DeleteBatch + 7
			e := &cache.Entry{Status: 200, ContentType: "application/json", Body: []byte(`{"a":1}`)}
			for i := range entries {
				if err := c.Set(ctx, org, fmt.Sprint("fp", i), e, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range others {
				if err := c.Set(ctx, o, "fp0", e, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			n, err := c.DeleteOrg(ctx, org)
			if err != nil || n != int64(entries) {
				t.Fatalf("DeleteOrg = %d, %v; want %d", n, err, entries)
			}
			for i := range entries {
				if _, err := b.Get(ctx, cache.Key(org, fmt.Sprint("fp", i))); !errors.Is(err, cache.ErrMiss) {
					t.Fatalf("entry %d after DeleteOrg: %v", i, err)
				}
			}
			for _, o := range others {
				if _, err := c.Get(ctx, o, "fp0"); err != nil {
					t.Errorf("org %q after shredding %q: %v", o, org, err)
				}
			}
		})
	}
}
