// Package settings holds per-org settings read from the store (an org's
// limits, its budgets) in memory, so the request path reads the store at
// most once per org until a change is announced: the store's change feed
// on every instance, and the admin API at once on the instance that made
// the change.
package settings

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Cache holds one value of type T per org, loaded on first use.
type Cache[T any] struct {
	load  func(ctx context.Context, orgID string) (T, error)
	group singleflight.Group

	mu   sync.RWMutex
	orgs map[string]T
	// gen counts Forgets: a load that straddles one may have read what
	// the change replaced, so its result serves the request that made it
	// but is not kept.
	gen uint64
}

// New returns an empty cache that loads an org's value with load.
func New[T any](load func(ctx context.Context, orgID string) (T, error)) *Cache[T] {
	return &Cache[T]{load: load, orgs: make(map[string]T)}
}

// Get returns the org's value, loading it when it is not held;
// concurrent first uses share one load.
func (c *Cache[T]) Get(ctx context.Context, orgID string) (T, error) {
	c.mu.RLock()
	v, ok := c.orgs[orgID]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	r, err, _ := c.group.Do(orgID, func() (any, error) {
		v, err := c.load(ctx, orgID)
		if err != nil {
			return nil, fmt.Errorf("load settings of org %s: %w", orgID, err)
		}
		c.mu.Lock()
		if c.gen == gen {
			c.orgs[orgID] = v
		}
		c.mu.Unlock()
		return v, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return r.(T), nil
}

// Forget drops the org's value: the next Get loads it again.
func (c *Cache[T]) Forget(orgID string) {
	c.mu.Lock()
	c.gen++
	delete(c.orgs, orgID)
	c.mu.Unlock()
}
