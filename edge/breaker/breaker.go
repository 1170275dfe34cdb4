// Package breaker remembers that a shared backend (Redis) failed, so that
// for a cooldown its callers go straight to their local fallback instead
// of each request waiting for the backend's timeout; and tells them when
// it went down or came back, so each switch is logged once.
package breaker

import (
	"sync/atomic"
	"time"
)

// DefaultCooldown is how long the backend is left alone after it failed.
const DefaultCooldown = time.Second

// Breaker is the backend's state; the zero value is up. Safe for
// concurrent use.
type Breaker struct {
	downTill atomic.Int64 // unix nanos; 0: up
	down     atomic.Bool
}

// Use reports whether the backend should be tried: it is up, or its
// cooldown is over.
func (b *Breaker) Use() bool {
	t := b.downTill.Load()
	return t == 0 || time.Now().UnixNano() >= t
}

// Fail records a failure: the backend rests for cooldown (0:
// DefaultCooldown). It reports whether the backend was up until now.
func (b *Breaker) Fail(cooldown time.Duration) bool {
	if cooldown <= 0 {
		cooldown = DefaultCooldown
	}
	b.downTill.Store(time.Now().Add(cooldown).UnixNano())
	return b.down.CompareAndSwap(false, true)
}

// OK records a success. It reports whether the backend was down until
// now.
func (b *Breaker) OK() bool {
	if !b.down.Load() {
		return false
	}
	b.downTill.Store(0)
	return b.down.CompareAndSwap(true, false)
}
