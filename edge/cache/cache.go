// Package cache is the edge's exact-match response cache (DESIGN §3–§5):
// answers stored under org:{org_id}:cache:{fingerprint}, sealed by the
// org's data key (purpose cache, record key = the fingerprint) before they
// leave the process, in a Backend: in-process (package cache/memory) or
// shared by several edge instances (package cache/redis).
//
// An entry holds one answer as it was produced (see Entry): status, the
// provider's Content-Type (no other provider header: never credentials,
// request ids or rate-limit state), the JSON body or the raw SSE events,
// and the model, usage and cost. Render serves it in the other form
// (stream ↔ JSON) for chat completions, responses and messages; an answer
// that cannot be rendered faithfully (logprobs, audio, reasoning items,
// thinking blocks...) makes the other form keep its own entry, under the
// record key "{fingerprint}/stream" or "{fingerprint}/json".
//
// A Backend in trouble never fails a request: Get and Set report the error,
// the caller answers without the cache ("bypass"), and the failure is
// counted. An entry that does not open (shredded org, revoked master key,
// a ciphertext copied under another org's key) is a miss.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persiv/codex/edge/keyring"
)

// ErrMiss is returned by Backend.Get and Cache.Get when there is no usable
// entry. Every other error is backend trouble.
var ErrMiss = errors.New("cache: miss")

// Backend stores opaque (already sealed) values with a lifetime. It must
// be safe for concurrent use, must not keep val after Set returns unless it
// copied it, and must not block longer than its own short timeouts.
type Backend interface {
	// Get returns the value under key, or ErrMiss. The caller does not
	// modify the returned bytes.
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	// DeletePrefix deletes every entry whose key begins with prefix and
	// returns how many it deleted (for a shred: one org's entries).
	DeletePrefix(ctx context.Context, prefix string) (int64, error)
	Close() error
}

// Local is implemented by backends that never block (in-process): the
// cache then spares them a deadline per call.
type Local interface {
	Local() bool
}

func isLocal(b Backend) bool {
	l, ok := b.(Local)
	return ok && l.Local()
}

// Sealer seals and opens an org's records (the keyring).
type Sealer interface {
	Seal(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, ciphertext []byte) ([]byte, error)
}

// Key is the backend key of an org's record: org:{org_id}:cache:{record}.
func Key(orgID, record string) string { return OrgPrefix(orgID) + record }

// OrgPrefix is the start of every backend key of the org's records.
func OrgPrefix(orgID string) string { return "org:" + orgID + ":cache:" }

// Cache seals entries and keeps them in a Backend.
type Cache struct {
	b       Backend
	keys    Sealer
	timeout time.Duration
	remote  bool // the backend does I/O: bound each call by timeout
	bufs    sync.Pool

	// Stores made off the request path; Close waits for them.
	mu      sync.RWMutex
	closed  bool
	pending sync.WaitGroup

	lookups  *prometheus.CounterVec
	errs     *prometheus.CounterVec
	unread   prometheus.Counter
	stored   prometheus.Counter
	storeErr prometheus.Counter
	shredded prometheus.Counter
}

// Options configure a Cache.
type Options struct {
	// Timeout bounds one backend call (default: DefaultOptions). Backends
	// have their own (shorter) timeouts; this one protects against a
	// backend without.
	Timeout time.Duration
	// Registerer receives the cache's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// New returns a cache over b whose entries keys seals.
func New(b Backend, keys Sealer, o Options) *Cache {
	if o.Timeout <= 0 {
		o.Timeout = DefaultOptions().Timeout
	}
	c := &Cache{
		b: b, keys: keys, timeout: o.Timeout, remote: !isLocal(b),
		bufs: sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }},
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_cache_lookups_total",
			Help: "Cache lookups by result: hit, miss, unreadable (did not open: a miss), error (backend trouble: the request bypassed the cache).",
		}, []string{"result"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_cache_backend_errors_total",
			Help: "Cache backend calls that failed (down, slow, full), by operation; each such request bypassed the cache.",
		}, []string{"op"}),
		unread: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codex_edge_cache_unreadable_total",
			Help: "Cache entries that failed to open (shredded org, revoked key, moved ciphertext), counted as misses.",
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codex_edge_cache_stores_total", Help: "Answers stored in the cache.",
		}),
		storeErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codex_edge_cache_store_errors_total", Help: "Answers that could not be stored (seal or backend failure).",
		}),
		shredded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codex_edge_cache_shred_deleted_total", Help: "Cache entries deleted because their org was shredded.",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(c.lookups, c.errs, c.unread, c.stored, c.storeErr, c.shredded)
	}
	return c
}

// Get returns the org's entry under record. It returns ErrMiss when there
// is none or it does not open; any other error means the backend is in
// trouble and the caller should bypass the cache.
func (c *Cache) Get(ctx context.Context, orgID, record string) (*Entry, error) {
	if c.remote {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	key := Key(orgID, record)
	sealed, err := c.b.Get(ctx, key)
	if errors.Is(err, ErrMiss) {
		c.lookups.WithLabelValues("miss").Inc()
		return nil, ErrMiss
	}
	if err != nil {
		c.lookups.WithLabelValues("error").Inc()
		c.errs.WithLabelValues("get").Inc()
		return nil, fmt.Errorf("cache get: %w", err)
	}
	pt, err := c.keys.Open(ctx, orgID, keyring.PurposeCache, record, sealed)
	if errors.Is(err, keyring.ErrUnreadable) {
		c.lookups.WithLabelValues("unreadable").Inc()
		c.unread.Inc()
		// Unreadable for good: drop it so it stops costing lookups.
		_ = c.b.Delete(ctx, key)
		return nil, ErrMiss
	}
	if err != nil {
		// Keyring trouble (store or KMS unreachable): not the entry's fault.
		c.lookups.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("cache open: %w", err)
	}
	e := new(Entry)
	if err := e.UnmarshalBinary(pt); err != nil {
		c.lookups.WithLabelValues("unreadable").Inc()
		c.unread.Inc()
		return nil, ErrMiss
	}
	c.lookups.WithLabelValues("hit").Inc()
	return e, nil
}

// Set seals e for the org under record and stores it for ttl.
func (c *Cache) Set(ctx context.Context, orgID, record string, e *Entry, ttl time.Duration) error {
	bp := c.bufs.Get().(*[]byte)
	pt := e.AppendBinary((*bp)[:0])
	sealed, err := c.keys.Seal(ctx, orgID, keyring.PurposeCache, record, pt)
	clear(pt) // plaintext answers do not linger in pooled memory
	if cap(pt) <= 1<<20 {
		*bp = pt[:0]
		c.bufs.Put(bp)
	}
	if err != nil {
		c.storeErr.Inc()
		return fmt.Errorf("cache seal: %w", err)
	}
	if c.remote {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := c.b.Set(ctx, Key(orgID, record), sealed, ttl); err != nil {
		c.storeErr.Inc()
		c.errs.WithLabelValues("set").Inc()
		return fmt.Errorf("cache set: %w", err)
	}
	c.stored.Inc()
	return nil
}

// DeleteOrg deletes every entry of the org (crypto shred) and returns how
// many it deleted. Entries are unreadable once the org's data keys are
// gone; this removes their bytes too. It is not bounded by the per-call
// timeout: a shared backend may hold many entries of the org.
func (c *Cache) DeleteOrg(ctx context.Context, orgID string) (int64, error) {
	if orgID == "" {
		return 0, fmt.Errorf("cache: delete org: empty org id")
	}
	n, err := c.b.DeletePrefix(ctx, OrgPrefix(orgID))
	c.shredded.Add(float64(n))
	if err != nil {
		return n, fmt.Errorf("cache: delete entries of org %s: %w", orgID, err)
	}
	return n, nil
}

// Timeout is the longest one backend call may take.
func (c *Cache) Timeout() time.Duration { return c.timeout }

// Background runs fn (a store off the request path) unless the cache is
// closing, and reports whether it did; Close waits for it to finish.
func (c *Cache) Background(fn func()) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return false
	}
	c.pending.Add(1)
	go func() {
		defer c.pending.Done()
		fn()
	}()
	return true
}

// Close waits for background stores, then closes the backend.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.pending.Wait()
	return c.b.Close()
}
