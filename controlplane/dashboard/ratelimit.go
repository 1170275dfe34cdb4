package dashboard

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Login limits that are not configuration: they protect accounts and
// bound one client, whatever the size of the deployment. Each is charged
// before any password is checked.
const (
	// LoginsPerEmail is how many attempts an email gets per minute, and at
	// once.
	LoginsPerEmail = 5
	// LoginsPerAddress is how many attempts one TCP peer address gets per
	// minute; LoginAddressBurst of them at once. The burst is what one
	// address can make hash at the same time, so it is kept small.
	LoginsPerAddress  = 30
	LoginAddressBurst = 10
)

// limiter keeps one token bucket per key (an email or an address) and
// forgets buckets idle long enough to be full again.
type limiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(every time.Duration, burst int) *limiter {
	return &limiter{every: rate.Every(every), burst: burst, buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket.
func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		// A bucket idle for burst/rate has refilled: dropping it changes
		// nothing.
		full := time.Duration(float64(l.burst)/float64(l.every)*float64(time.Second)) + time.Second
		for k, b := range l.buckets {
			if now.Sub(b.seen) > full {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// gate bounds how many password hashes run at once. Each argon2id hash
// holds its whole memory cost (64 MiB, see package password) until it
// ends, so the number running, not the rate of requests, is what bounds
// the memory a flood of logins can take.
type gate struct {
	slots chan struct{}
	wait  time.Duration
}

func newGate(n int, wait time.Duration) *gate {
	return &gate{slots: make(chan struct{}, n), wait: wait}
}

// enter takes a slot, waiting for one at most g.wait or until ctx ends;
// it reports whether it got one. A caller that got one calls leave.
func (g *gate) enter(ctx context.Context) bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (g *gate) leave() { <-g.slots }
