// Package memory is the in-process cache.Backend of the embedded edge: a
// ristretto cache bounded by bytes, not entries, with per-entry lifetimes.
// Values are the sealed entries, so even process memory holds no plaintext
// answers between requests.
package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/persiv/codex/edge/cache"
)

// DefaultBudget is the byte budget when none is given: 32 MiB, which keeps
// an edge with a full cache and a thousand open streams under 200 MiB
// (DESIGN §9) without the collector running flat out.
const DefaultBudget = 32 << 20

// entryOverhead is what an entry costs beyond its key and value bytes (the
// cache's map slot, item and expiry records), measured at about 140 bytes:
// counted in the budget so that the budget bounds the memory really held.
const entryOverhead = 160

// Backend is an in-process, byte-budgeted cache.Backend.
type Backend struct {
	c *ristretto.Cache[string, []byte]
}

// New returns a backend holding at most budget bytes of keys, values and
// their bookkeeping (0: DefaultBudget).
func New(budget int64) (*Backend, error) {
	if budget <= 0 {
		budget = DefaultBudget
	}
	// Ristretto wants ~10 counters per expected entry; answers are a few
	// KiB, so budget/1KiB entries is a generous guess, bounded both ways.
	counters := min(max(budget/1024*10, 1<<12), 1<<24)
	c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        counters,
		MaxCost:            budget,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("memory cache: %w", err)
	}
	return &Backend{c: c}, nil
}

// Get implements cache.Backend.
func (b *Backend) Get(_ context.Context, key string) ([]byte, error) {
	if v, ok := b.c.Get(key); ok {
		return v, nil
	}
	return nil, cache.ErrMiss
}

// Set implements cache.Backend. It copies nothing: cache.Cache hands over
// a freshly sealed value. It waits until the entry is visible, so a Get
// after Set sees it (Set runs off the request path).
func (b *Backend) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	if !b.c.SetWithTTL(key, val, int64(len(key)+len(val)+entryOverhead), ttl) {
		return nil // refused by the admission policy: not an error, a future miss
	}
	b.c.Wait()
	return nil
}

// Delete implements cache.Backend.
func (b *Backend) Delete(_ context.Context, key string) error {
	b.c.Del(key)
	return nil
}

// Local reports that the backend never blocks (cache.Local).
func (b *Backend) Local() bool { return true }

// Close implements cache.Backend.
func (b *Backend) Close() error {
	b.c.Close()
	return nil
}
