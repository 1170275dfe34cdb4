// Package memory is the in-process cache.Backend of the embedded edge: a
// ristretto cache bounded by bytes, not entries, with per-entry lifetimes.
// Values are the sealed entries, so even process memory holds no plaintext
// answers between requests.
package memory

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/persiv/codex/edge/cache"
)

// DefaultBudget is the byte budget when none is given: 32 MiB, which keeps
// an edge with a full cache and a thousand open streams under 200 MiB
// (DESIGN §9) without the collector running flat out.
const DefaultBudget = 32 << 20

// entryOverhead is what an entry costs beyond its key and value bytes (the
// cache's map slot and item record), measured at about 140 bytes:
// counted in the budget so that the budget bounds the memory really held.
const entryOverhead = 160

// Backend is an in-process, byte-budgeted cache.Backend.
//
// Lifetimes are kept with the values and checked on Get, not given to
// ristretto: its expiry index has a Go map per 5 s of expiry times, and a
// map keeps its size after deletes, so that index grows with every store
// until its bucket expires (an hour later by default), whatever the budget.
// An expired entry here stays until it is read or evicted, within the
// budget.
type Backend struct {
	c *ristretto.Cache[string, item]
}

// item is a stored value, its key (ristretto keeps only the key's hash;
// DeletePrefix needs the key) and when it expires (Unix nanoseconds).
type item struct {
	key     string
	val     []byte
	expires int64
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
	c, err := ristretto.NewCache(&ristretto.Config[string, item]{
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
	it, ok := b.c.Get(key)
	if !ok {
		return nil, cache.ErrMiss
	}
	if it.expires <= time.Now().UnixNano() {
		b.c.Del(key)
		return nil, cache.ErrMiss
	}
	return it.val, nil
}

// Set implements cache.Backend. It copies nothing: cache.Cache hands over
// a freshly sealed value. It waits until the entry is visible, so a Get
// after Set sees it (Set runs off the request path).
func (b *Backend) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	it := item{key: key, val: val, expires: math.MaxInt64} // no lifetime: until evicted
	if ttl > 0 {
		it.expires = time.Now().Add(ttl).UnixNano()
	}
	if !b.c.Set(key, it, int64(len(key)+len(val)+entryOverhead)) {
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

// DeletePrefix implements cache.Backend. It visits every entry once, so it
// costs time in proportion to the cache, not to the org's share of it;
// it is for a shred, not for the request path.
func (b *Backend) DeletePrefix(_ context.Context, prefix string) (int64, error) {
	// Collected first: Del during the visit would wait on the lock the
	// visit holds.
	var keys []string
	b.c.IterValues(func(it item) bool {
		if strings.HasPrefix(it.key, prefix) {
			keys = append(keys, it.key)
		}
		return false
	})
	for _, k := range keys {
		b.c.Del(k)
	}
	return int64(len(keys)), nil
}

// Local reports that the backend never blocks (cache.Local).
func (b *Backend) Local() bool { return true }

// Close implements cache.Backend.
func (b *Backend) Close() error {
	b.c.Close()
	return nil
}
