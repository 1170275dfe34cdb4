package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Local is a Counter in process memory: one GCRA (golang.org/x/time/rate's
// token bucket, which admits exactly what a GCRA of the same rate and
// burst admits) per counter key. It serves a single instance, and stands
// in for Redis while Redis cannot be reached.
type Local struct {
	mu   sync.Mutex
	lims map[string]*localLimit
}

type localLimit struct {
	perMinute int64
	lim       *rate.Limiter
}

// NewLocal returns an empty in-process Counter.
func NewLocal() *Local { return &Local{lims: make(map[string]*localLimit)} }

// limiter returns key's limiter at perMinute, adjusting a held one whose
// limit changed (the tokens it holds carry over). Called with mu held.
func (l *Local) limiter(key string, perMinute int64, now time.Time) *rate.Limiter {
	e := l.lims[key]
	if e == nil {
		e = &localLimit{perMinute: perMinute, lim: rate.NewLimiter(perSecond(perMinute), int(perMinute))}
		l.lims[key] = e
	} else if e.perMinute != perMinute {
		e.lim.SetLimitAt(now, perSecond(perMinute))
		e.lim.SetBurstAt(now, int(perMinute))
		e.perMinute = perMinute
	}
	return e.lim
}

func perSecond(perMinute int64) rate.Limit { return rate.Limit(float64(perMinute) / 60) }

// Take implements Counter.
func (l *Local) Take(_ context.Context, key string, perMinute, n int64) (State, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limiter(key, perMinute, now)
	tokens := lim.TokensAt(now)
	need := float64(max(n, 1))
	if tokens < need {
		return State{Remaining: 0, RetryAfter: wait(need-tokens, perMinute), Reset: wait(float64(perMinute)-tokens, perMinute)}, nil
	}
	if n > 0 {
		lim.AllowN(now, int(n))
		tokens -= float64(n)
	}
	return State{Allowed: true, Remaining: int64(math.Floor(tokens)), Reset: wait(float64(perMinute)-tokens, perMinute)}, nil
}

// Charge implements Counter: it takes n whatever the room, in steps of at
// most the burst (the most x/time/rate reserves at once), so a request
// that used more than the room left delays the ones after it.
func (l *Local) Charge(_ context.Context, key string, perMinute, n int64) error {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limiter(key, perMinute, now)
	for n > 0 {
		k := min(n, perMinute)
		lim.ReserveN(now, int(k))
		n -= k
	}
	return nil
}

// wait is how long perMinute takes to earn units.
func wait(units float64, perMinute int64) time.Duration {
	if units <= 0 {
		return 0
	}
	return time.Duration(units / float64(perMinute) * float64(time.Minute))
}
