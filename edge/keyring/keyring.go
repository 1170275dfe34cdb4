// Package keyring is the edge's envelope encryption: every org has 256-bit
// data keys (DEKs), created by a master key provider (packages awskms,
// byok, local) and persisted only wrapped. Seal and Open encrypt records
// with AES-256-GCM under the org's active DEK, binding org, purpose and
// record key as associated data; the format is in schemas/crypto/ciphertext.md.
//
// Unwrapped DEKs live in a bounded, expiring in-memory cache, so the
// request path makes no master-key call once an org's key is warm. A
// cached DEK is dropped Options.KeyLifetime (default 10 min) after the
// master key last unwrapped it. Refresh, run for the life of the keyring,
// keeps DEKs in use warm: once one is RefreshAt (three quarters) of
// KeyLifetime old, its next use queues one re-unwrap through the master
// key in the background and carries on with the cached key, so a busy org
// never waits for the master key. A re-unwrap the master key refuses
// drops the DEK (and tells Options.OnPurge), as a refused probe does; one
// that fails otherwise leaves the DEK to expire at KeyLifetime, after
// which the next use unwraps it on the request path, as it does without
// Refresh.
//
// Each instance re-reads an org's DEK list from the store when its view
// is older than Options.Revalidate (default 5 s), so a shred or rotation
// done by another instance takes effect here within that interval;
// Invalidate makes it immediate when wired to the store's change feed.
//
// A cached DEK is used for up to KeyLifetime without the master key
// accepting it again, so on its own a master key revoked out of band (a
// KMS key disabled or scheduled for deletion, our access to it removed)
// would keep working that long on a running instance. Watch
// closes that gap for master keys that implement Prober: it probes the
// master key every Options.ProbeInterval (default 5 s, at most 10 s) in
// the background and drops every DEK it unwrapped as soon as the provider
// refuses, so the revocation takes effect within that interval, still
// with no master-key call on the request path.
//
// A DEK is used for new writes for a bounded number of seals and a bounded
// time: Seal moves an org to a new generation once its active DEK has had
// Options.MaxSeals seals (default 2^30, a quarter of AES-GCM's 2^32 limit
// for random nonces) or is Options.MaxAge old (default 90 days). Seals are
// counted with an atomic counter and reserved in the store a block of
// Options.SealLease at a time, before they are made, so the count in the
// store never falls behind, across restarts and instances, at the cost of
// one store write per block. Older generations keep opening what they
// sealed.
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/persiv/codex/edge"
)

// Defaults of Options.
const (
	DefaultCacheSize   = 10000
	DefaultKeyLifetime = 10 * time.Minute
	DefaultRevalidate  = 5 * time.Second
	// MaxRevalidate is the longest Revalidate accepted: a shred on one
	// instance must take effect on every other within 10 s.
	MaxRevalidate = 10 * time.Second
	// DefaultProbeInterval and MaxProbeInterval bound how often Watch
	// probes the master key: a revocation of the master key must take
	// effect on every running instance within 10 s.
	DefaultProbeInterval = 5 * time.Second
	MaxProbeInterval     = 10 * time.Second
	// DefaultMaxSeals is how many seals a DEK makes before new writes move
	// to a new generation. AES-GCM with random 96-bit nonces must stay
	// well below 2^32 messages per key (NIST SP 800-38D, section 8.3);
	// 2^30 keeps the chance of a repeated nonce below 2^-37. It is also
	// the largest MaxSeals accepted.
	DefaultMaxSeals = 1 << 30
	// DefaultSealLease is how many seals an instance reserves in the store
	// at a time (one store write per block, never one per seal). Seals
	// reserved and not made (an instance stopping, a key replaced) count
	// as made: they only bring the next generation earlier.
	DefaultSealLease = 1 << 16
	// DefaultMaxAge is how old a DEK may get before new writes move to a
	// new generation.
	DefaultMaxAge = 90 * 24 * time.Hour
	// RefreshAt is the fraction of KeyLifetime after which the next use of
	// a cached DEK queues its re-unwrap in the background (Refresh).
	RefreshAt = 0.75
	// RefreshWorkers is how many DEKs Refresh re-unwraps at once.
	RefreshWorkers = 2
	// RefreshQueue is how many DEKs may wait for a re-unwrap; a DEK that
	// does not fit is queued by its next use.
	RefreshQueue = 1024
)

// Options configures a Keyring.
type Options struct {
	// Store persists wrapped DEKs. Required.
	Store Store
	// Master is the edge's default master key (CODEX_KEK). Required.
	Master MasterKey
	// OrgMaster returns the master key an org brought itself (cloud mode),
	// or nil for Master. For an org whose own key has not been supplied
	// since start-up it must return Unavailable(ref), not nil, or the
	// org's new DEKs would be created under Master. It is consulted on
	// every DEK creation, unwrap and rewrap, so it must be cheap. Optional.
	OrgMaster func(orgID string) MasterKey
	// OrgMasters returns every distinct master key OrgMaster can return,
	// for Watch to probe. Optional.
	OrgMasters func() []MasterKey
	// ReloadOrgMasters, when set, runs before every DEK creation and
	// re-reads what OrgMaster answers from the store: an org created or
	// moved to its own key by another process since OrgMaster's list was
	// last read would otherwise get its DEK under Master (the change
	// feed reaches this process only within its poll interval). An error
	// fails the creation rather than risk the wrong master key. DEKs are
	// created once per org and generation, so this costs one store read
	// each time. Optional.
	ReloadOrgMasters func(ctx context.Context) error
	// OnPurge, when set, is told by Watch which orgs' data keys it dropped
	// because their master key was refused (an org may be named more than
	// once): whoever holds what those keys opened (the key directory's
	// credentials and memories) drops it too, so the revocation takes
	// effect there within the probe interval as well. Optional.
	OnPurge func(orgIDs []string)
	// CacheSize bounds the number of unwrapped DEKs held in memory (and of
	// orgs whose DEK list is cached). Default DefaultCacheSize.
	CacheSize int
	// KeyLifetime bounds how long an unwrapped DEK stays in memory after
	// the master key last unwrapped it; after it the next use unwraps it
	// again through the master key. Refresh re-unwraps a DEK in use in the
	// background before then (at RefreshAt of it). It is also how long a
	// removed BYOK version, or a disabled KMS key when Watch is not
	// running, keeps working on a running instance. Default
	// DefaultKeyLifetime.
	KeyLifetime time.Duration
	// Revalidate is how old an org's cached DEK list may get before the
	// next use re-reads it from the store (one cheap read, no master-key
	// call). Default DefaultRevalidate, at most MaxRevalidate.
	Revalidate time.Duration
	// ProbeInterval is how often Watch probes the master key (one cheap
	// provider call, off the request path). Default DefaultProbeInterval,
	// at most MaxProbeInterval.
	ProbeInterval time.Duration
	// MaxSeals is how many seals one DEK makes, over every instance, before
	// Seal creates a new generation. Default and at most DefaultMaxSeals.
	MaxSeals int64
	// SealLease is how many seals an instance reserves in the store at a
	// time. Default DefaultSealLease; at most MaxSeals.
	SealLease int64
	// MaxAge is how old the active DEK may get before Seal creates a new
	// generation. If the master key cannot make one then, writes continue
	// under the old DEK (logged) and it is tried again after Revalidate;
	// MaxSeals, by contrast, is never exceeded. Default DefaultMaxAge.
	MaxAge time.Duration
	// Logger receives key life-cycle events (ids and counts only).
	// Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Keyring seals and opens records with per-org data keys. It is safe for
// concurrent use.
type Keyring struct {
	store      Store
	master     MasterKey
	orgMaster  func(string) MasterKey
	orgMasters func() []MasterKey
	reloadOrgs func(context.Context) error
	onPurge    func([]string)
	revalidate time.Duration
	minReload  time.Duration
	probeEvery time.Duration
	maxSeals   int64
	sealLease  int64
	maxAge     time.Duration
	refreshIn  time.Duration // RefreshAt of KeyLifetime
	log        *slog.Logger
	now        func() time.Time

	// refreshes queues cached DEKs for a background re-unwrap; refreshing
	// says Refresh takes them. refreshFailing holds the orgs whose last
	// re-unwrap failed (not refused), so a failure streak is logged once.
	refreshes      chan *dekKey
	refreshing     atomic.Bool
	refreshFailing sync.Map // org id → struct{}

	// leases holds, per org, the seals this instance reserved under the
	// org's active DEK: a lock-free read on every Seal.
	leases sync.Map // org id → *sealLease

	views   *lru.Cache[string, *orgView]   // org → its DEK list
	keys    *expirable.LRU[DEKID, *dekKey] // unwrapped DEKs
	refused *lru.Cache[DEKID, refusal]     // DEKs the master key refused, briefly
	noGen   *lru.Cache[string, refusal]    // orgs whose master key refused to generate, briefly
	flight  singleflight.Group             // one store read / unwrap / create at a time per org or DEK
	epoch   atomic.Uint64                  // bumped by purge; a load that straddles one is not cached

	stats struct {
		hits, misses, unwraps, generates, unreadable, reloads atomic.Uint64
		probes, probeRefusals, probeErrors, probePurged       atomic.Uint64
		probesSkipped                                         atomic.Uint64
		sealRotations, ageRotations, sealReservations         atomic.Uint64
		refreshes, refreshRefusals, refreshErrors             atomic.Uint64
	}
}

// sealLease is what this instance may seal under one DEK: granted seals
// reserved in the store, of which used were taken.
type sealLease struct {
	id        DEKID
	gen       int
	used      atomic.Int64 // seals taken (a refused attempt counts too)
	granted   atomic.Int64 // seals reserved in the store for this instance
	exhausted atomic.Bool  // the DEK reached MaxSeals (or is gone): rotate
}

// orgView is an org's DEK list as last read from the store.
type orgView struct {
	checked time.Time
	stale   atomic.Bool // set by Invalidate
	active  *WrappedDEK
	deks    map[DEKID]*WrappedDEK
}

// dekKey is an unwrapped DEK, kept only as its AES-GCM instance: the raw
// key bytes are cleared as soon as the cipher is built.
type dekKey struct {
	id   DEKID
	org  string
	aead cipher.AEAD
	// byDefault: the default master key (Options.Master) unwrapped or
	// generated it, so Watch drops it when that key is revoked.
	byDefault bool
	// master is the master key that unwrapped or generated it, so Watch
	// drops it when that key (an org's own) is revoked.
	master MasterKey
	// next (Unix nanoseconds, wall clock as the cache's expiry) is when a
	// use queues a background re-unwrap; queued is set while one is queued
	// or running.
	next   atomic.Int64
	queued atomic.Bool
}

type refusal struct {
	org string
	at  time.Time
	err error
}

// New returns a Keyring. It makes no master-key or store call, so start-up
// never depends on the master key being usable.
func New(o Options) (*Keyring, error) {
	if o.Store == nil || o.Master == nil {
		return nil, errors.New("keyring: Store and Master are required")
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.KeyLifetime <= 0 {
		o.KeyLifetime = DefaultKeyLifetime
	}
	if o.Revalidate <= 0 {
		o.Revalidate = DefaultRevalidate
	}
	if o.Revalidate > MaxRevalidate {
		return nil, fmt.Errorf("keyring: Revalidate %s exceeds %s", o.Revalidate, MaxRevalidate)
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ProbeInterval > MaxProbeInterval {
		return nil, fmt.Errorf("keyring: ProbeInterval %s exceeds %s", o.ProbeInterval, MaxProbeInterval)
	}
	if o.MaxSeals <= 0 {
		o.MaxSeals = DefaultMaxSeals
	}
	if o.MaxSeals > DefaultMaxSeals {
		return nil, fmt.Errorf("keyring: MaxSeals %d exceeds %d (AES-GCM with random nonces must stay well below 2^32 seals per key)", o.MaxSeals, int64(DefaultMaxSeals))
	}
	if o.SealLease <= 0 {
		o.SealLease = DefaultSealLease
	}
	o.SealLease = min(o.SealLease, o.MaxSeals)
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	views, err := lru.New[string, *orgView](o.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	refused, err := lru.New[DEKID, refusal](1024)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	noGen, err := lru.New[string, refusal](1024)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return &Keyring{
		store:      o.Store,
		master:     o.Master,
		orgMaster:  o.OrgMaster,
		orgMasters: o.OrgMasters,
		reloadOrgs: o.ReloadOrgMasters,
		onPurge:    o.OnPurge,
		revalidate: o.Revalidate,
		minReload:  o.Revalidate / 10,
		probeEvery: o.ProbeInterval,
		maxSeals:   o.MaxSeals,
		sealLease:  o.SealLease,
		maxAge:     o.MaxAge,
		refreshIn:  time.Duration(float64(o.KeyLifetime) * RefreshAt),
		log:        o.Logger,
		now:        o.Now,
		views:      views,
		keys:       expirable.NewLRU[DEKID, *dekKey](o.CacheSize, nil, o.KeyLifetime),
		refused:    refused,
		noGen:      noGen,
		refreshes:  make(chan *dekKey, RefreshQueue),
	}, nil
}

// Seal encrypts plaintext for (orgID, purpose, recordKey) under the org's
// active DEK, creating the org's first DEK on first use, and a new
// generation when the active one reached MaxSeals or MaxAge. The result
// opens only with the same three values.
func (k *Keyring) Seal(ctx context.Context, orgID string, purpose Purpose, recordKey string, plaintext []byte) ([]byte, error) {
	if err := checkBinding(orgID, purpose, recordKey); err != nil {
		return nil, err
	}
	v, err := k.view(ctx, orgID, false)
	if err != nil {
		return nil, err
	}
	if v.active == nil {
		if v, err = k.firstDEK(ctx, orgID); err != nil {
			return nil, err
		}
	}
	if k.now().Sub(v.active.CreatedAt) >= k.maxAge {
		v = k.replaceOld(ctx, v)
	}
	dk, err := k.key(ctx, v.active)
	if errors.Is(err, ErrUnreadable) {
		// The active DEK's master key version is gone (BYOK version removed,
		// org moved to another master key): what it protects is lost, but
		// new data must stay writable, so that a credential can be set again.
		if v, err = k.replaceActive(ctx, orgID, v.active.ID, replaceUnreadable); err != nil {
			return nil, err
		}
		dk, err = k.key(ctx, v.active)
	}
	if err != nil {
		return nil, err
	}
	// A new generation starts with no seals, so one replacement is
	// normally enough; more only when other instances use up the new one
	// at the same time (a tiny MaxSeals).
	for range 5 {
		if err = k.reserve(ctx, v.active); !errors.Is(err, errSealLimit) {
			break
		}
		if v, err = k.replaceActive(ctx, orgID, v.active.ID, replaceSeals); err != nil {
			return nil, err
		}
		if dk, err = k.key(ctx, v.active); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: org %s: %w", orgID, err)
	}
	return sealWith(dk.aead, v.active.ID, nil, orgID, purpose, recordKey, plaintext)
}

// errSealLimit: the DEK made MaxSeals seals (or is gone); Seal moves to a
// new generation.
var errSealLimit = errors.New("data key reached its seal limit (MaxSeals)")

// reserve takes one seal under d for this instance, reserving another
// block of SealLease in the store when the last one is used up. On the
// hot path it is a map read and two atomic operations.
func (k *Keyring) reserve(ctx context.Context, d *WrappedDEK) error {
	l := k.lease(d)
	if l == nil {
		return errSealLimit // a newer generation is in use here: reload
	}
	n := l.used.Add(1)
	for n > l.granted.Load() {
		if l.exhausted.Load() {
			return errSealLimit
		}
		_, err := k.shared(ctx, "seals\x00"+d.ID.String(), func(ctx context.Context) (any, error) {
			if n <= l.granted.Load() || l.exhausted.Load() {
				return nil, nil // another caller's block covers it, or it is over
			}
			total, err := k.store.AddSeals(ctx, d.OrgID, d.ID, k.sealLease)
			if errors.Is(err, edge.ErrNotFound) {
				l.exhausted.Store(true) // shredded elsewhere
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("keyring: reserve seals under data key %s of org %s: %w", d.ID, d.OrgID, err)
			}
			k.stats.sealReservations.Add(1)
			grant := k.sealLease
			if total > k.maxSeals {
				// Only what is left below the limit; the rest is wasted.
				grant = max(0, k.maxSeals-(total-k.sealLease))
				l.exhausted.Store(true)
			}
			l.granted.Add(grant)
			return nil, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// lease returns this instance's lease on d, the org's active DEK, or nil
// when the org has moved to a newer generation here already.
func (k *Keyring) lease(d *WrappedDEK) *sealLease {
	for {
		cur, ok := k.leases.Load(d.OrgID)
		if !ok {
			nl := &sealLease{id: d.ID, gen: d.Generation}
			if _, loaded := k.leases.LoadOrStore(d.OrgID, nl); !loaded {
				return nl
			}
			continue
		}
		l := cur.(*sealLease)
		if l.id == d.ID {
			return l
		}
		if l.gen > d.Generation {
			return nil
		}
		nl := &sealLease{id: d.ID, gen: d.Generation}
		if k.leases.CompareAndSwap(d.OrgID, l, nl) {
			return nl
		}
	}
}

// replaceReason says why replaceActive creates a new generation.
type replaceReason string

const (
	replaceUnreadable replaceReason = "unreadable"
	replaceSeals      replaceReason = "max_seals"
	replaceAge        replaceReason = "max_age"
)

// replaceOld moves the org to a new generation because its active DEK is
// MaxAge old. The age limit is a policy, not a cryptographic bound, so
// when the master key cannot make a new DEK, writes continue under the old
// one and it is tried again after Revalidate.
func (k *Keyring) replaceOld(ctx context.Context, v *orgView) *orgView {
	key := "age\x00" + v.active.OrgID
	if r, ok := k.noGen.Get(key); ok && k.now().Sub(r.at) < k.revalidate {
		return v
	}
	nv, err := k.replaceActive(ctx, v.active.OrgID, v.active.ID, replaceAge)
	if err != nil {
		k.noGen.Add(key, refusal{org: v.active.OrgID, at: k.now(), err: err})
		k.log.WarnContext(ctx, "keyring: data key past its maximum age and no new one could be made; writes continue under it",
			"org_id", v.active.OrgID, "dek_id", v.active.ID.String(), "age", k.now().Sub(v.active.CreatedAt).String(), "err", err)
		return v
	}
	return nv
}

// replaceActive creates a new generation for the org when its active DEK
// is still oldID (another instance, or a concurrent call, may have
// replaced it already), and returns the fresh view.
func (k *Keyring) replaceActive(ctx context.Context, orgID string, oldID DEKID, why replaceReason) (*orgView, error) {
	// A master key that refuses to unwrap usually refuses to generate too
	// (disabled KMS key); do not ask it again on every write.
	if r, ok := k.noGen.Get(orgID); ok && k.now().Sub(r.at) < k.revalidate {
		return nil, r.err
	}
	r, err := k.shared(ctx, "replace\x00"+orgID, func(ctx context.Context) (any, error) {
		v, err := k.loadView(ctx, orgID)
		if err != nil || v.active != nil && v.active.ID != oldID {
			return v, err
		}
		gen := 1 // every DEK shredded meanwhile
		if v.active != nil {
			gen = v.active.Generation + 1
		}
		d, err := k.createDEK(ctx, orgID, gen)
		if errors.Is(err, ErrUnreadable) {
			k.noGen.Add(orgID, refusal{org: orgID, at: k.now(), err: err})
		}
		if err != nil && !errors.Is(err, edge.ErrConflict) {
			return nil, err
		}
		if err == nil {
			switch why {
			case replaceUnreadable:
				k.log.WarnContext(ctx, "keyring: active data key unreadable, new generation created for new writes",
					"org_id", orgID, "unreadable_dek_id", oldID.String(), "dek_id", d.ID.String(), "generation", d.Generation)
			case replaceSeals:
				k.stats.sealRotations.Add(1)
				k.log.InfoContext(ctx, "keyring: data key reached its seal limit, new generation created for new writes",
					"org_id", orgID, "old_dek_id", oldID.String(), "dek_id", d.ID.String(), "generation", d.Generation, "max_seals", k.maxSeals)
			case replaceAge:
				k.stats.ageRotations.Add(1)
				k.log.InfoContext(ctx, "keyring: data key reached its maximum age, new generation created for new writes",
					"org_id", orgID, "old_dek_id", oldID.String(), "dek_id", d.ID.String(), "generation", d.Generation, "max_age", k.maxAge.String())
			}
		}
		return k.loadView(ctx, orgID)
	})
	if err != nil {
		return nil, err
	}
	v := r.(*orgView)
	if v.active == nil {
		return nil, fmt.Errorf("keyring: org %s has no active data key", orgID)
	}
	return v, nil
}

// Open decrypts a ciphertext made by Seal with the same org, purpose and
// record key. An error wrapping ErrUnreadable means the data is gone for
// good (shredded, key revoked, tampered, moved); other errors are
// infrastructure failures. The caller owns the returned plaintext and
// should clear it when done.
func (k *Keyring) Open(ctx context.Context, orgID string, purpose Purpose, recordKey string, ciphertext []byte) ([]byte, error) {
	if err := checkBinding(orgID, purpose, recordKey); err != nil {
		return nil, err
	}
	h, err := parseHeader(ciphertext)
	if err != nil {
		k.stats.unreadable.Add(1)
		return nil, err
	}
	v, err := k.view(ctx, orgID, false)
	if err != nil {
		return nil, err
	}
	d, ok := v.deks[h.id]
	if !ok && k.now().Sub(v.checked) >= k.minReload {
		// Maybe another instance rotated a moment ago.
		if v, err = k.view(ctx, orgID, true); err != nil {
			return nil, err
		}
		d, ok = v.deks[h.id]
	}
	if !ok {
		k.stats.unreadable.Add(1)
		return nil, fmt.Errorf("%w: data key %s is not a key of org %s (shredded, or data of another org)", ErrUnreadable, h.id, orgID)
	}
	dk, err := k.key(ctx, d)
	if err != nil {
		return nil, err
	}
	pt, err := openWith(dk.aead, h, orgID, purpose, recordKey)
	if err != nil {
		k.stats.unreadable.Add(1)
	}
	return pt, err
}

// view returns the org's DEK list, re-reading it when older than
// Revalidate, marked stale, or when force is set.
func (k *Keyring) view(ctx context.Context, orgID string, force bool) (*orgView, error) {
	if !force {
		if v, ok := k.views.Get(orgID); ok && !v.stale.Load() && k.now().Sub(v.checked) < k.revalidate {
			return v, nil
		}
	}
	r, err := k.shared(ctx, "view\x00"+orgID, func(ctx context.Context) (any, error) {
		return k.loadView(ctx, orgID)
	})
	if err != nil {
		return nil, err
	}
	return r.(*orgView), nil
}

// sharedTimeout bounds a store read, unwrap or key creation that several
// callers wait on.
const sharedTimeout = 30 * time.Second

// shared runs fn once for all concurrent callers with the same key (one
// store read or master-key call per org or DEK, however many requests
// arrive at once). fn runs detached from the first caller's cancellation,
// so that the others still get its result; each caller stops waiting when
// its own context ends.
func (k *Keyring) shared(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	ch := k.flight.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
		defer cancel()
		return fn(ctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("keyring: %w", ctx.Err())
	}
}

func (k *Keyring) loadView(ctx context.Context, orgID string) (*orgView, error) {
	e := k.epoch.Load()
	list, err := k.store.DEKs(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("keyring: load data keys of org %s: %w", orgID, err)
	}
	k.stats.reloads.Add(1)
	v := &orgView{checked: k.now(), deks: make(map[DEKID]*WrappedDEK, len(list))}
	for i := range list {
		d := &list[i]
		if d.OrgID != orgID {
			return nil, fmt.Errorf("keyring: store returned data key %s of org %s for org %s", d.ID, d.OrgID, orgID)
		}
		v.deks[d.ID] = d
		if v.active == nil || betterActive(d, v.active) {
			v.active = d
		}
	}
	// Drop unwrapped keys whose DEK vanished (shredded elsewhere): they are
	// unreachable already, since Open checks the view first, but they should
	// not linger in memory.
	if old, ok := k.views.Peek(orgID); ok {
		for id := range old.deks {
			if _, still := v.deks[id]; !still {
				k.keys.Remove(id)
			}
		}
	}
	// Likewise the seals reserved under a DEK that vanished: the org may
	// start again at generation 1.
	if l, ok := k.leases.Load(orgID); ok && v.deks[l.(*sealLease).id] == nil {
		k.leases.CompareAndDelete(orgID, l)
	}
	if k.epoch.Load() == e {
		k.views.Add(orgID, v)
	}
	return v, nil
}

// betterActive orders DEKs for new writes: an active one over a retired
// one (the store keeps exactly one active; this only guards against a
// store that does not), then the higher generation.
func betterActive(d, than *WrappedDEK) bool {
	if (d.State == DEKActive) != (than.State == DEKActive) {
		return d.State == DEKActive
	}
	return d.Generation > than.Generation
}

// key returns the unwrapped DEK of d from the cache or through its master key.
func (k *Keyring) key(ctx context.Context, d *WrappedDEK) (*dekKey, error) {
	if dk, ok := k.keys.Get(d.ID); ok && dk.org == d.OrgID {
		k.stats.hits.Add(1)
		if time.Now().UnixNano() >= dk.next.Load() {
			k.refreshAhead(dk)
		}
		return dk, nil
	}
	k.stats.misses.Add(1)
	if r, ok := k.refused.Get(d.ID); ok && k.now().Sub(r.at) < k.revalidate {
		k.stats.unreadable.Add(1)
		return nil, r.err
	}
	r, err := k.shared(ctx, "dek\x00"+d.ID.String(), func(ctx context.Context) (any, error) {
		return k.unwrap(ctx, d, k.epoch.Load())
	})
	if err != nil {
		return nil, err
	}
	return r.(*dekKey), nil
}

// unwrap unwraps d through its master key and caches it unless a purge
// happened since epoch e.
func (k *Keyring) unwrap(ctx context.Context, d *WrappedDEK, e uint64) (*dekKey, error) {
	b := Binding{OrgID: d.OrgID, DEKID: d.ID}
	m, byDefault := k.masterByRef(d.OrgID, d.MasterRef)
	var dek []byte
	var err error
	if m == nil {
		err = fmt.Errorf("%w: no master key %q is configured", ErrUnreadable, d.MasterRef)
	} else {
		k.stats.unwraps.Add(1)
		dek, err = m.Unwrap(ctx, b, d.wrap())
		if err == nil && len(dek) != DEKSize {
			clear(dek)
			err = fmt.Errorf("%w: unwrapped data key has %d bytes", ErrUnreadable, len(dek))
		}
	}
	if err != nil {
		err = fmt.Errorf("keyring: unwrap data key %s of org %s: %w", d.ID, d.OrgID, err)
		if errors.Is(err, ErrUnreadable) {
			k.stats.unreadable.Add(1)
			k.refused.Add(d.ID, refusal{org: d.OrgID, at: k.now(), err: err})
			k.log.WarnContext(ctx, "keyring: data key unreadable", "org_id", d.OrgID, "dek_id", d.ID.String(),
				"master_ref", d.MasterRef, "master_version", d.MasterVersion)
		}
		return nil, err
	}
	return k.cacheKey(d.OrgID, d.ID, dek, m, byDefault, e)
}

// cacheKey builds the cipher for dek, clears dek and caches the cipher
// unless a purge happened since epoch e.
func (k *Keyring) cacheKey(orgID string, id DEKID, dek []byte, m MasterKey, byDefault bool, e uint64) (*dekKey, error) {
	defer clear(dek)
	block, err := aes.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	dk := &dekKey{id: id, org: orgID, aead: aead, byDefault: byDefault, master: m}
	dk.next.Store(time.Now().Add(k.refreshIn).UnixNano())
	if k.epoch.Load() == e {
		k.keys.Add(id, dk)
	}
	return dk, nil
}

// masterFor is the master key new DEKs of the org are wrapped with, and
// whether it is the default one.
func (k *Keyring) masterFor(orgID string) (MasterKey, bool) {
	if k.orgMaster != nil {
		if m := k.orgMaster(orgID); m != nil {
			return m, false
		}
	}
	return k.master, true
}

// masterByRef is the configured master key that can unwrap a DEK wrapped by
// ref for the org, or nil, and whether it is the default one.
func (k *Keyring) masterByRef(orgID, ref string) (MasterKey, bool) {
	if m, byDefault := k.masterFor(orgID); m.Ref() == ref {
		return m, byDefault
	}
	if k.master.Ref() == ref {
		return k.master, true
	}
	return nil, false
}

// firstDEK creates generation 1 for an org that has no DEK yet. Two
// instances racing here both try; the store lets one win (ErrConflict) and
// the loser reads the winner's.
func (k *Keyring) firstDEK(ctx context.Context, orgID string) (*orgView, error) {
	r, err := k.shared(ctx, "create\x00"+orgID, func(ctx context.Context) (any, error) {
		v, err := k.loadView(ctx, orgID)
		if err != nil || v.active != nil {
			return v, err
		}
		if _, err := k.createDEK(ctx, orgID, 1); err != nil && !errors.Is(err, edge.ErrConflict) {
			return nil, err
		}
		v, err = k.loadView(ctx, orgID)
		if err == nil && v.active == nil {
			err = fmt.Errorf("keyring: org %s has no active data key after creating one", orgID)
		}
		return v, err
	})
	if err != nil {
		return nil, err
	}
	return r.(*orgView), nil
}

func (k *Keyring) createDEK(ctx context.Context, orgID string, gen int) (WrappedDEK, error) {
	e := k.epoch.Load()
	id, err := NewDEKID()
	if err != nil {
		return WrappedDEK{}, err
	}
	if k.reloadOrgs != nil {
		if err := k.reloadOrgs(ctx); err != nil {
			return WrappedDEK{}, fmt.Errorf("keyring: data key for org %s: which master key is the org's: %w", orgID, err)
		}
	}
	m, byDefault := k.masterFor(orgID)
	k.stats.generates.Add(1)
	dek, w, err := m.Generate(ctx, Binding{OrgID: orgID, DEKID: id})
	if err != nil {
		return WrappedDEK{}, fmt.Errorf("keyring: generate data key for org %s with %s: %w", orgID, m.Ref(), err)
	}
	defer clear(dek)
	if len(dek) != DEKSize {
		return WrappedDEK{}, fmt.Errorf("keyring: master key %s generated a %d-byte data key", m.Ref(), len(dek))
	}
	d := WrappedDEK{
		ID: id, OrgID: orgID, Generation: gen, State: DEKActive,
		MasterRef: w.Ref, MasterVersion: w.Version, Wrapped: w.Blob,
		CreatedAt: k.now().UTC(),
	}
	if err := k.store.CreateDEK(ctx, d); err != nil {
		return WrappedDEK{}, fmt.Errorf("keyring: store data key for org %s: %w", orgID, err)
	}
	k.log.InfoContext(ctx, "keyring: data key created", "dek", d)
	if _, err := k.cacheKey(orgID, id, dek, m, byDefault, e); err != nil {
		return WrappedDEK{}, err
	}
	return d, nil
}

// Rotate creates a new DEK generation for the org; new writes use it, and
// data under older generations still opens. It returns the new DEK's
// metadata.
func (k *Keyring) Rotate(ctx context.Context, orgID string) (KeyStatus, error) {
	if orgID == "" {
		return KeyStatus{}, fmt.Errorf("%w: empty org id", ErrInvalidInput)
	}
	list, err := k.store.DEKs(ctx, orgID)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("keyring: rotate org %s: %w", orgID, err)
	}
	gen := 1
	for _, d := range list {
		gen = max(gen, d.Generation+1)
	}
	d, err := k.createDEK(ctx, orgID, gen)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("keyring: rotate org %s: %w", orgID, err)
	}
	k.markStale(orgID)
	return k.status(d), nil
}

// RewrapEvent reports one DEK handled by Rewrap. From and To carry the
// master key reference and version only (no Blob).
type RewrapEvent struct {
	N, Total   int // 1-based position among all DEKs
	OrgID      string
	DEKID      DEKID
	Generation int
	From, To   Wrap
	Rewrapped  bool  // false: already under the current version, or Err
	Err        error // wraps ErrUnreadable when the old master key refused
}

// RewrapResult counts what Rewrap did.
type RewrapResult struct {
	Total     int // DEKs seen
	Rewrapped int // now under the current master key version
	Current   int // already were
	Failed    int // could not be unwrapped (ErrUnreadable); left as they were
}

// Rewrap re-wraps every DEK of every org that is not under its org's
// current master key version, without touching any ciphertext. progress,
// if not nil, is called once per DEK. DEKs the old master key refuses are
// counted in Failed and reported through progress; the returned error then
// wraps ErrUnreadable. Infrastructure errors stop the run.
func (k *Keyring) Rewrap(ctx context.Context, progress func(RewrapEvent)) (RewrapResult, error) {
	orgs, err := k.store.DEKOrgs(ctx)
	if err != nil {
		return RewrapResult{}, fmt.Errorf("keyring: rewrap: list orgs: %w", err)
	}
	return k.rewrap(ctx, orgs, nil, progress)
}

// RewrapOrg re-wraps the DEKs of one org under its current master key
// (Options.OrgMaster, or Options.Master when the org has none), as
// Rewrap does for every org. from, if not nil, supplies the master key
// that wrapped a DEK when neither of those is it (the org's previous own
// key, given the reference and version recorded with the DEK), so the
// move off an org's own key can be run again after an interruption: DEKs
// already moved are left alone.
func (k *Keyring) RewrapOrg(ctx context.Context, orgID string, from func(ref, version string) MasterKey, progress func(RewrapEvent)) (RewrapResult, error) {
	if orgID == "" {
		return RewrapResult{}, fmt.Errorf("%w: empty org id", ErrInvalidInput)
	}
	return k.rewrap(ctx, []string{orgID}, from, progress)
}

func (k *Keyring) rewrap(ctx context.Context, orgs []string, from func(ref, version string) MasterKey, progress func(RewrapEvent)) (RewrapResult, error) {
	var all []WrappedDEK
	for _, org := range orgs {
		list, err := k.store.DEKs(ctx, org)
		if err != nil {
			return RewrapResult{}, fmt.Errorf("keyring: rewrap: org %s: %w", org, err)
		}
		all = append(all, list...)
	}
	var res RewrapResult
	res.Total = len(all)
	for i, d := range all {
		ev := RewrapEvent{N: i + 1, Total: len(all), OrgID: d.OrgID, DEKID: d.ID, Generation: d.Generation,
			From: Wrap{Ref: d.MasterRef, Version: d.MasterVersion}}
		to, done, err := k.rewrapOne(ctx, d, from)
		switch {
		case err != nil && !errors.Is(err, ErrUnreadable):
			return res, fmt.Errorf("keyring: rewrap data key %s of org %s: %w", d.ID, d.OrgID, err)
		case err != nil:
			res.Failed++
			ev.Err = err
		case done:
			res.Rewrapped++
			ev.Rewrapped, ev.To = true, Wrap{Ref: to.Ref, Version: to.Version}
			k.markStale(d.OrgID)
		default:
			res.Current++
			ev.To = ev.From
		}
		if progress != nil {
			progress(ev)
		}
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("keyring: rewrap: %d of %d data keys could not be unwrapped: %w", res.Failed, res.Total, ErrUnreadable)
	}
	k.log.InfoContext(ctx, "keyring: rewrap done", "total", res.Total, "rewrapped", res.Rewrapped, "current", res.Current)
	return res, nil
}

func (k *Keyring) rewrapOne(ctx context.Context, d WrappedDEK, from func(ref, version string) MasterKey) (Wrap, bool, error) {
	m, _ := k.masterFor(d.OrgID)
	b := Binding{OrgID: d.OrgID, DEKID: d.ID}
	if d.MasterRef == m.Ref() {
		cur, err := m.Current(ctx, d.wrap())
		if err != nil || cur {
			return Wrap{}, false, err
		}
	}
	var nw Wrap
	if rw, ok := m.(Rewrapper); ok && d.MasterRef == m.Ref() {
		w, err := rw.Rewrap(ctx, b, d.wrap())
		if err != nil {
			return Wrap{}, false, err
		}
		nw = w
	} else {
		old, _ := k.masterByRef(d.OrgID, d.MasterRef)
		if old == nil && from != nil {
			old = from(d.MasterRef, d.MasterVersion)
		}
		if old == nil {
			return Wrap{}, false, fmt.Errorf("%w: no master key %q is configured", ErrUnreadable, d.MasterRef)
		}
		dek, err := old.Unwrap(ctx, b, d.wrap())
		if err != nil {
			return Wrap{}, false, err
		}
		nw, err = m.Wrap(ctx, b, dek)
		clear(dek)
		if err != nil {
			return Wrap{}, false, err
		}
	}
	if err := k.store.UpdateWrapped(ctx, d.OrgID, d.ID, nw, k.now().UTC()); err != nil {
		return Wrap{}, false, err
	}
	return nw, true, nil
}

// Shred deletes every DEK of the org and drops its cached keys: all of the
// org's sealed data becomes unreadable at once on this instance, and on
// others within Revalidate (or at once, when they call Invalidate from the
// change feed). It returns how many DEKs were destroyed.
func (k *Keyring) Shred(ctx context.Context, orgID string) (int, error) {
	if orgID == "" {
		return 0, fmt.Errorf("%w: empty org id", ErrInvalidInput)
	}
	n, err := k.store.DeleteDEKs(ctx, orgID)
	k.purge(orgID)
	if err != nil {
		return 0, fmt.Errorf("keyring: shred org %s: %w", orgID, err)
	}
	k.log.WarnContext(ctx, "keyring: org shredded", "org_id", orgID, "data_keys", n)
	return n, nil
}

// Invalidate makes the next use of the org re-read its DEK list from the
// store and forgets that its master key refused recently. Wire it to the
// store's change feed, so that another instance's shred or rotation
// applies here at once rather than within Revalidate, and call it when an
// org supplies its own key. It makes no master-key call.
func (k *Keyring) Invalidate(orgID string) {
	k.markStale(orgID)
	k.forgetRefusals(orgID)
}

func (k *Keyring) forgetRefusals(orgID string) {
	for _, id := range k.refused.Keys() {
		if r, ok := k.refused.Peek(id); ok && r.org == orgID {
			k.refused.Remove(id)
		}
	}
	k.noGen.Remove(orgID)
	k.noGen.Remove("age\x00" + orgID)
}

func (k *Keyring) markStale(orgID string) {
	if v, ok := k.views.Peek(orgID); ok {
		v.stale.Store(true)
	}
}

// purge forgets everything cached about the org.
func (k *Keyring) purge(orgID string) {
	k.epoch.Add(1)
	k.views.Remove(orgID)
	k.leases.Delete(orgID)
	for _, id := range k.keys.Keys() {
		if dk, ok := k.keys.Peek(id); ok && dk.org == orgID {
			k.keys.Remove(id)
		}
	}
	k.forgetRefusals(orgID)
}

// KeyStatus describes one DEK; it never holds key material.
type KeyStatus struct {
	OrgID         string
	DEKID         DEKID
	Generation    int
	State         DEKState
	MasterRef     string
	MasterVersion string
	CreatedAt     time.Time
	RewrappedAt   time.Time // zero if never rewrapped
	Age           time.Duration
	Seals         int64 // seals reserved under it so far (WrappedDEK.Seals)
}

func (k *Keyring) status(d WrappedDEK) KeyStatus {
	return KeyStatus{
		OrgID: d.OrgID, DEKID: d.ID, Generation: d.Generation, State: d.State,
		MasterRef: d.MasterRef, MasterVersion: d.MasterVersion,
		CreatedAt: d.CreatedAt, RewrappedAt: d.RewrappedAt, Age: k.now().Sub(d.CreatedAt), Seals: d.Seals,
	}
}

// Status lists the DEKs of the org, or of every org when orgID is empty,
// highest generation first within an org. It reads the store only.
func (k *Keyring) Status(ctx context.Context, orgID string) ([]KeyStatus, error) {
	orgs := []string{orgID}
	if orgID == "" {
		var err error
		if orgs, err = k.store.DEKOrgs(ctx); err != nil {
			return nil, fmt.Errorf("keyring: status: %w", err)
		}
	}
	var out []KeyStatus
	for _, org := range orgs {
		list, err := k.store.DEKs(ctx, org)
		if err != nil {
			return nil, fmt.Errorf("keyring: status of org %s: %w", org, err)
		}
		for _, d := range list {
			out = append(out, k.status(d))
		}
	}
	return out, nil
}

// Stats are counters since New, for metrics.
type Stats struct {
	CacheHits   uint64 // DEK found unwrapped in memory
	CacheMisses uint64
	Unwraps     uint64 // master-key unwrap calls
	Generates   uint64 // master-key generate calls
	Unreadable  uint64 // Open or unwrap failures that wrap ErrUnreadable
	Reloads     uint64 // DEK-list reads from the store
	CachedKeys  int    // unwrapped DEKs held now

	// Watch's probes of the default master key and the org master keys.
	Probes        uint64 // probes answered, whatever the answer
	ProbeRefusals uint64 // the provider refused: the key is revoked
	ProbeErrors   uint64 // the probe could not tell (network, throttling); cached keys kept
	ProbePurged   uint64 // unwrapped DEKs dropped because a probe was refused
	ProbesSkipped uint64 // org master keys not probed: no DEK they unwrapped is cached

	// Automatic rotations this instance made, and its seal reservations
	// (store writes, one per SealLease seals).
	SealLimitRotations uint64 // the active DEK reached MaxSeals
	AgeRotations       uint64 // the active DEK reached MaxAge
	SealReservations   uint64

	// Refresh's background re-unwraps of DEKs in use (counted in Unwraps
	// too).
	Refreshes       uint64 // re-unwrapped
	RefreshRefusals uint64 // the master key refused: the DEK was dropped
	RefreshErrors   uint64 // could not tell (network, store): the DEK kept until it expires
}

// Stats returns the counters.
func (k *Keyring) Stats() Stats {
	return Stats{
		CacheHits: k.stats.hits.Load(), CacheMisses: k.stats.misses.Load(),
		Unwraps: k.stats.unwraps.Load(), Generates: k.stats.generates.Load(),
		Unreadable: k.stats.unreadable.Load(), Reloads: k.stats.reloads.Load(),
		CachedKeys: k.keys.Len(),
		Probes:     k.stats.probes.Load(), ProbeRefusals: k.stats.probeRefusals.Load(),
		ProbeErrors: k.stats.probeErrors.Load(), ProbePurged: k.stats.probePurged.Load(),
		ProbesSkipped:      k.stats.probesSkipped.Load(),
		SealLimitRotations: k.stats.sealRotations.Load(), AgeRotations: k.stats.ageRotations.Load(),
		SealReservations: k.stats.sealReservations.Load(),
		Refreshes:        k.stats.refreshes.Load(), RefreshRefusals: k.stats.refreshRefusals.Load(),
		RefreshErrors: k.stats.refreshErrors.Load(),
	}
}
