// Package redis is the cache.Backend shared by several edge instances:
// Redis through go-redis v9 (CODEX_REDIS_URL). It holds only sealed
// entries.
//
// Redis in trouble never fails a request: every call has short timeouts
// and no retries, and after a connection failure the backend answers at
// once with ErrUnavailable for a cool-down period instead of making every
// request wait for a timeout; the first call after the cool-down tries
// Redis again, so the edge recovers by itself.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge/cache"
)

// ErrUnavailable is returned while the backend cools down after a failure.
var ErrUnavailable = errors.New("redis cache: unavailable (cooling down after a failure)")

// Options configure a Backend. Zero values take DefaultOptions'.
type Options struct {
	DialTimeout time.Duration
	Timeout     time.Duration // one read or write
	Cooldown    time.Duration // after a connection failure
	PoolSize    int           // 0: go-redis's (10 per CPU)
}

// DefaultOptions returns the defaults Open fills in for zero fields:
// short timeouts (250ms to connect, 100ms a call), since a request waiting
// on the cache is better off bypassing it, and a 1s cooldown after a
// failure.
func DefaultOptions() Options {
	return Options{DialTimeout: 250 * time.Millisecond, Timeout: 100 * time.Millisecond, Cooldown: time.Second}
}

// Backend is a Redis cache.Backend.
type Backend struct {
	c        *goredis.Client
	cooldown time.Duration
	downTill atomic.Int64 // unix nanos; 0 when up
}

// Open parses url (redis://[:password@]host:port/db, rediss:// for TLS)
// and returns a backend. It does not connect: Redis may come up later.
func Open(url string, o Options) (*Backend, error) {
	c, err := NewClient(url, o)
	if err != nil {
		return nil, err
	}
	if o.Cooldown <= 0 {
		o.Cooldown = DefaultOptions().Cooldown
	}
	return &Backend{c: c, cooldown: o.Cooldown}, nil
}

// NewClient returns a go-redis client for url with o's timeouts and no
// retries, as the edge's other Redis users (rate limits, budgets) want it
// too: a call that fails is better answered from local state at once than
// retried. It does not connect.
func NewClient(url string, o Options) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("CODEX_REDIS_URL: %w", err)
	}
	def := DefaultOptions()
	if o.DialTimeout <= 0 {
		o.DialTimeout = def.DialTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = def.Timeout
	}
	opt.DialTimeout = o.DialTimeout
	opt.ReadTimeout = o.Timeout
	opt.WriteTimeout = o.Timeout
	opt.PoolTimeout = o.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // a retry would double the wait; the request bypasses instead
	opt.DisableIdentity = true
	if o.PoolSize > 0 {
		opt.PoolSize = o.PoolSize
	}
	return goredis.NewClient(opt), nil
}

func (b *Backend) available() error {
	if t := b.downTill.Load(); t != 0 && time.Now().UnixNano() < t {
		return ErrUnavailable
	}
	return nil
}

// observe starts a cool-down after a connection-level failure. A reply
// error (full: OOM, a read-only replica) is Redis answering: no cool-down.
func (b *Backend) observe(err error) error {
	var re goredis.Error
	switch {
	case err == nil:
		b.downTill.Store(0)
	case errors.Is(err, goredis.Nil):
	case errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded):
	default:
		b.downTill.Store(time.Now().Add(b.cooldown).UnixNano())
	}
	return err
}

// Get implements cache.Backend.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := b.available(); err != nil {
		return nil, err
	}
	v, err := b.c.Get(ctx, key).Bytes()
	if errors.Is(b.observe(err), goredis.Nil) {
		return nil, cache.ErrMiss
	}
	if err != nil {
		return nil, fmt.Errorf("redis get: %w", err)
	}
	return v, nil
}

// Set implements cache.Backend.
func (b *Backend) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := b.available(); err != nil {
		return err
	}
	if err := b.observe(b.c.Set(ctx, key, val, ttl).Err()); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// Delete implements cache.Backend.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.available(); err != nil {
		return err
	}
	if err := b.observe(b.c.Del(ctx, key).Err()); err != nil {
		return fmt.Errorf("redis del: %w", err)
	}
	return nil
}

// DeleteBatch is how many keys one SCAN step asks for and one UNLINK
// deletes when DeletePrefix removes an org's entries.
const DeleteBatch = 500

// DeletePrefix implements cache.Backend: SCAN with a MATCH pattern, in
// steps of DeleteBatch, each step's keys removed by one UNLINK (Redis frees
// their memory off its main thread). It never uses KEYS, which blocks Redis
// for the whole key space. Keys set while it runs may survive it.
func (b *Backend) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	if err := b.available(); err != nil {
		return 0, err
	}
	return DeleteMatching(ctx, b.c, prefix)
}

// DeleteMatching deletes the keys of c that begin with prefix as
// DeletePrefix does, and returns how many it deleted.
func DeleteMatching(ctx context.Context, c goredis.UniversalClient, prefix string) (int64, error) {
	pattern := globEscape(prefix) + "*"
	var (
		cursor uint64
		n      int64
	)
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, DeleteBatch).Result()
		if err != nil {
			return n, fmt.Errorf("redis scan %s: %w", pattern, err)
		}
		if len(keys) > 0 {
			d, err := c.Unlink(ctx, keys...).Result()
			if err != nil {
				return n, fmt.Errorf("redis unlink: %w", err)
			}
			n += d
		}
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}

// globEscape quotes the characters SCAN's MATCH pattern treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Ping reports whether Redis answers (for readiness).
func (b *Backend) Ping(ctx context.Context) error {
	return b.observe(b.c.Ping(ctx).Err())
}

// Client exposes the go-redis client (for tests and administration).
func (b *Backend) Client() *goredis.Client { return b.c }

// Close implements cache.Backend.
func (b *Backend) Close() error { return b.c.Close() }
