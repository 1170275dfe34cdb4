package cache

import "time"

// DefaultOptions returns the defaults New fills in for zero fields: a
// backend call is given up after 100ms, and the request bypasses the cache.
func DefaultOptions() Options {
	return Options{Timeout: 100 * time.Millisecond}
}
