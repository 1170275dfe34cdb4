// Package directory resolves a gateway key to its org, the org's provider
// settings and the memories its requests carry, from memory, so the
// request path makes no database or master-key call once a key has been
// seen. It follows the store's change feed, so a
// key revoked or a setting changed by another process (the CLI, another
// instance) takes effect within one poll interval, and at once when the
// change is made through this instance.
//
// An org's loaded state is used for at most Options.Lifetime. While Run
// runs, a state past three quarters of it (or past UnreadableRetry, when
// something in it did not open) is still served and loaded again in the
// background, so a busy org's requests never wait for that reload; only a
// state past its Lifetime (the revocation bound) makes requests wait.
package directory

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/memory"
	"github.com/persiv/codex/edge/provider"
)

// Store is the part of edge.Store the directory reads.
type Store interface {
	KeyByHash(ctx context.Context, hash [32]byte) (edge.APIKey, error)
	FingerprintSecret(ctx context.Context, orgID string) ([]byte, error)
	SwapFingerprintSecret(ctx context.Context, orgID string, prev, next []byte) ([]byte, error)
	Providers(ctx context.Context, orgID string) ([]edge.ProviderConfig, error)
	AuditLevels(ctx context.Context, orgID string) ([]edge.AuditSetting, error)
	Memories(ctx context.Context, orgID string) ([]edge.Memory, error)
	RevokeKey(ctx context.Context, orgID, id string, at time.Time) error
	Changes(ctx context.Context, after int64) ([]edge.Change, error)
}

// Sealer seals and opens an org's secrets (the keyring).
type Sealer interface {
	Seal(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, ciphertext []byte) ([]byte, error)
}

// ErrUnknownKey means the key does not exist or was revoked. Callers answer
// 401 without saying which.
var ErrUnknownKey = errors.New("unknown or revoked gateway key")

// Key is what the request path needs to know about a resolved key.
type Key struct {
	ID    string
	OrgID string
	Org   *Org
	// Memory is what the key's requests carry: nil when neither the org
	// nor the key has a memory.
	Memory *Memory
}

// Org is an org's request-path state, shared by all its keys.
type Org struct {
	ID            string
	Fingerprinter *fingerprint.Fingerprinter
	upstreams     map[edge.Provider]Upstream
	audit         edge.AuditLevel            // the org's own audit level; "" for none set
	keyAudit      map[string]edge.AuditLevel // keys' levels over the org's
	// memories holds, by key id, what a key's requests carry: "" the
	// org's own memories alone, for keys with none of their own.
	memories map[string]*Memory
	// refresh is when the state is loaded again in the background (at
	// three quarters of Options.Lifetime, or after Options.UnreadableRetry
	// when a sealed value did not open, so that a master key that accepts
	// again is noticed); expires, Options.Lifetime after the load, is when
	// it is no longer served at all, so that what it holds opened never
	// outlives its master key by much.
	refresh, expires time.Time
	// refreshing is set while a background reload of this state is queued
	// or running: one per org at a time.
	refreshing atomic.Bool
	// retryAt (Unix nanoseconds) holds the next background reload back
	// after one failed, so a store that is down is not asked in a loop.
	retryAt atomic.Int64
}

func (o *Org) expired(now time.Time) bool { return now.After(o.expires) }

func (o *Org) stale(now time.Time) bool { return now.After(o.refresh) }

// AuditLevel is the audit level of a request made with the key: the key's
// own, else its org's, else edge.AuditNone.
func (o *Org) AuditLevel(keyID string) edge.AuditLevel {
	if l, ok := o.keyAudit[keyID]; ok {
		return l
	}
	if o.audit != "" {
		return o.audit
	}
	return edge.AuditNone
}

// Memory is the memories one key's requests carry, held opened and ready
// to inject (DESIGN §10): the org's, by name, then the key's own, as one
// text, each part from the next by a blank line.
type Memory struct {
	System provider.System
	// Label names them as the x-codex-memory header does:
	// name@version[,…].
	Label string
	// Header is Label as the x-codex-memory header's value, made once:
	// shared by every response that carries the memories, never changed.
	Header []string
	// Tokens is the sum of their token estimates.
	Tokens int64
	// Uses are the memories one by one, for telemetry.
	Uses []edge.MemoryUse
	// Digest is the SHA-256 of the text: what the request fingerprint
	// authenticates in its place (fingerprint.SumWith).
	Digest [sha256.Size]byte
}

// MemoryFor returns the memories a key of the org carries: its own after
// the org's; nil when there are none.
func (o *Org) MemoryFor(keyID string) *Memory {
	if m, ok := o.memories[keyID]; ok {
		return m
	}
	return o.memories[""]
}

// Upstream is how an org reaches one provider. Credential is held in
// memory only.
type Upstream struct {
	Provider   edge.Provider
	BaseURL    string // no trailing slash; empty: the provider format's DefaultBaseURL
	Credential string
	// CredentialSource names where the credential comes from (an
	// environment variable, or "sealed"), for logs; never the secret.
	CredentialSource string
}

// Upstream returns the org's settings for p; ok is false when the org has
// not configured p.
func (o *Org) Upstream(p edge.Provider) (Upstream, bool) {
	u, ok := o.upstreams[p]
	return u, ok
}

// Options configure a Directory.
type Options struct {
	Keys        Sealer        // opens sealed credentials and fingerprint secrets; required
	MaxKeys     int           // resolved keys kept
	NegativeTTL time.Duration // how long an unknown key is remembered
	Getenv      func(string) string
	// APIKeyEnvDeny is the operator's deny list of provider key variables
	// (config.Config.APIKeyEnvDenyList), checked on top of
	// edge.DeniedAPIKeyEnvPrefixes every time an org's settings load.
	APIKeyEnvDeny []string
	Logger        *slog.Logger
	// OrgChanged, if set, is told about every org whose keys or settings
	// changed in the change feed (the keyring drops its cached data keys).
	OrgChanged func(orgID string)
	// Changed, if set, is told about every change-feed entry applied
	// (settings held elsewhere, such as limits and budgets, reload).
	Changed func(c edge.Change)
	// Lifetime bounds how long an org's loaded state (its credentials and
	// memories, held opened) is used before it is loaded again: no longer
	// than the keyring keeps the data keys that opened them
	// (keyring.DefaultKeyLifetime), so a revoked master key takes effect
	// here too. While Run runs, the state is loaded again in the
	// background from three quarters of Lifetime on (RefreshAt), and
	// requests wait for a reload only once it is Lifetime old.
	Lifetime time.Duration
	// UnreadableRetry is how soon an org whose credential, memory or
	// fingerprint secret did not open is loaded again, so that a master key
	// that accepts again (a KMS key re-enabled, an ephemeral key sent
	// again) takes effect without a restart. While Run runs, that reload
	// is made in the background and requests keep the unreadable state
	// meanwhile; without Run they wait for it.
	UnreadableRetry time.Duration
}

// Background reloads of orgs' states (see Options.Lifetime). The queue
// and the workers that empty it are bounded; a state whose reload does not
// fit in the queue is served as it is and queued by its next request.
const (
	// RefreshAt is the fraction of Options.Lifetime after which a state is
	// loaded again in the background.
	RefreshAt = 0.75
	// RefreshWorkers is how many orgs are loaded again at once.
	RefreshWorkers = 2
	// RefreshQueue is how many orgs may wait for a background reload.
	RefreshQueue = 1024
	// RefreshTimeout bounds one background reload (store reads and the
	// keyring's opens, which may call the master key).
	RefreshTimeout = 30 * time.Second
)

// DefaultOptions returns the defaults New fills in for zero fields: 100000
// resolved keys kept, an unknown key remembered for 30s, an org's state
// loaded again after 10 minutes, or 5 s when something in it did not open.
func DefaultOptions() Options {
	return Options{MaxKeys: 100000, NegativeTTL: 30 * time.Second, Lifetime: keyring.DefaultKeyLifetime, UnreadableRetry: 5 * time.Second}
}

// Directory caches keys and orgs.
type Directory struct {
	store  Store
	opts   Options
	keys   *lru.Cache[[32]byte, Key]
	absent *expirable.LRU[[32]byte, struct{}]
	group  singleflight.Group

	mu   sync.RWMutex
	orgs map[string]*Org
	// local holds, by org, the process-local fingerprint secret of an
	// org whose secret could not be sealed (see fingerprintSecret).
	local map[string][]byte
	// gen counts the changes applied (under mu): a store read that
	// straddles one may have read what the change replaced, so its result
	// serves the request that made it but is not cached.
	gen uint64
	seq atomic.Int64 // last change-feed entry applied (read by Applied)

	// refreshes queues orgs' states for a background reload; running says
	// Run's workers take them (without Run, requests reload a stale state
	// themselves).
	refreshes chan *Org
	running   atomic.Bool
	// failing holds, under mu, the orgs whose last background reload
	// failed, so a failure streak is logged once.
	failing map[string]bool
	stats   struct{ refreshes, failures atomic.Uint64 }
}

// New returns an empty directory over store.
func New(store Store, opts Options) *Directory {
	def := DefaultOptions()
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = def.MaxKeys
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = def.NegativeTTL
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = def.Lifetime
	}
	if opts.UnreadableRetry <= 0 {
		opts.UnreadableRetry = def.UnreadableRetry
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	keys, _ := lru.New[[32]byte, Key](opts.MaxKeys) // size is positive
	return &Directory{
		store:  store,
		opts:   opts,
		keys:   keys,
		absent: expirable.NewLRU[[32]byte, struct{}](opts.MaxKeys, nil, opts.NegativeTTL),
		orgs:   make(map[string]*Org),
		local:  make(map[string][]byte),

		refreshes: make(chan *Org, RefreshQueue),
		failing:   make(map[string]bool),
	}
}

// Resolve returns the key whose SHA-256 is hash. Only the first use of a
// key reads the store; concurrent first uses share one read.
func (d *Directory) Resolve(ctx context.Context, hash [32]byte) (Key, error) {
	if k, ok := d.keys.Get(hash); ok {
		if !k.Org.stale(time.Now()) {
			return k, nil
		}
		// The org's state is due for a reload (nothing changed): ask for
		// the org's current state, which waits only when none is fresh
		// enough to serve, and point this key at it, leaving the org's
		// other keys to do the same on their next use, rather than
		// dropping them all with a scan.
		gen := d.generation()
		org, err := d.Org(ctx, k.OrgID)
		if err != nil {
			return Key{}, err
		}
		if org != k.Org {
			k.Org, k.Memory = org, org.MemoryFor(k.ID)
			d.cacheIf(gen, func() { d.keys.Add(hash, k) })
		}
		return k, nil
	}
	if d.absent.Contains(hash) {
		return Key{}, ErrUnknownKey
	}
	v, err, _ := d.group.Do(string(hash[:]), func() (any, error) {
		gen := d.generation()
		ak, err := d.store.KeyByHash(ctx, hash)
		if errors.Is(err, edge.ErrNotFound) {
			d.cacheIf(gen, func() { d.absent.Add(hash, struct{}{}) })
			return Key{}, ErrUnknownKey
		}
		if err != nil {
			return Key{}, fmt.Errorf("look up gateway key: %w", err)
		}
		if ak.State != edge.KeyActive {
			d.cacheIf(gen, func() { d.absent.Add(hash, struct{}{}) })
			return Key{}, ErrUnknownKey
		}
		org, err := d.Org(ctx, ak.OrgID)
		if err != nil {
			return Key{}, err
		}
		k := Key{ID: ak.ID, OrgID: ak.OrgID, Org: org, Memory: org.MemoryFor(ak.ID)}
		d.cacheIf(gen, func() { d.keys.Add(hash, k) })
		return k, nil
	})
	if err != nil {
		return Key{}, err
	}
	return v.(Key), nil
}

// Cached returns the key whose SHA-256 is hash when it is held in memory
// as valid and its org's state is not due for a reload; it never reads the
// store. A key it does not return goes to Resolve.
func (d *Directory) Cached(hash [32]byte) (Key, bool) {
	k, ok := d.keys.Get(hash)
	if !ok || k.Org.stale(time.Now()) {
		return Key{}, false
	}
	return k, true
}

// Org returns the org's request-path state, loading it on first use. A
// state due for a reload is returned as it is while Run's workers load it
// again; a state past its Lifetime, or any stale one without Run, is
// loaded again first.
func (d *Directory) Org(ctx context.Context, id string) (*Org, error) {
	d.mu.RLock()
	o := d.orgs[id]
	d.mu.RUnlock()
	if o != nil {
		now := time.Now()
		if !o.stale(now) || !o.expired(now) && d.refreshAhead(o, now) {
			return o, nil
		}
	}
	// An expired state stays in the map until its reload (one, shared by
	// the org's requests, which wait for it) replaces it: expiry is no
	// change, so nothing cached is dropped.
	v, err, _ := d.group.Do("org:"+id, func() (any, error) {
		gen := d.generation()
		o, err := d.loadOrg(ctx, id)
		if err != nil {
			return nil, err
		}
		d.cacheIf(gen, func() { d.orgs[id] = o })
		return o, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Org), nil
}

func (d *Directory) loadOrg(ctx context.Context, id string) (*Org, error) {
	secret, unreadable, err := d.fingerprintSecret(ctx, id)
	if err != nil {
		return nil, err
	}
	pcs, err := d.store.Providers(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load providers of org %s: %w", id, err)
	}
	levels, err := d.store.AuditLevels(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load audit levels of org %s: %w", id, err)
	}
	o := &Org{ID: id, Fingerprinter: fingerprint.New(secret), upstreams: make(map[edge.Provider]Upstream, len(pcs))}
	clear(secret)
	for _, l := range levels {
		if l.KeyID == "" {
			o.audit = l.Level
			continue
		}
		if o.keyAudit == nil {
			o.keyAudit = map[string]edge.AuditLevel{}
		}
		o.keyAudit[l.KeyID] = l.Level
	}
	for _, pc := range pcs {
		// Empty: the provider's public API (the forwarder asks the
		// provider's format).
		base := strings.TrimSuffix(strings.TrimRight(pc.BaseURL, "/"), "/v1")
		u := Upstream{Provider: pc.Provider, BaseURL: base, CredentialSource: pc.APIKeyEnv}
		if err := pc.Check(d.opts.APIKeyEnvDeny); err != nil {
			// Stored before these rules, or by hand: read no credential
			// and send nothing, so requests get 503 until it is set again.
			d.opts.Logger.Warn("provider setting refused; set it again with 'codex-edge providers set'",
				"org", id, "provider", pc.Provider, "err", err)
			o.upstreams[pc.Provider] = u
			continue
		}
		if len(pc.SealedKey) > 0 {
			u.CredentialSource = "sealed"
			key, err := d.opts.Keys.Open(ctx, id, keyring.PurposeCredential, edge.CredentialRecord(pc.Provider), pc.SealedKey)
			switch {
			case errors.Is(err, keyring.ErrUnreadable):
				// Shredded, or the master key was revoked: the credential
				// is gone until it is set again; requests get 503.
				unreadable = true
				d.opts.Logger.Warn("provider credential unreadable; set it again with 'codex-edge providers set'",
					"org", id, "provider", pc.Provider)
			case err != nil:
				return nil, fmt.Errorf("open %s credential of org %s: %w", pc.Provider, id, err)
			default:
				u.Credential = string(key)
				clear(key)
			}
		} else {
			u.Credential = d.opts.Getenv(pc.APIKeyEnv)
		}
		o.upstreams[pc.Provider] = u
	}
	var memUnreadable bool
	if o.memories, memUnreadable, err = d.loadMemories(ctx, id); err != nil {
		return nil, err
	}
	now := time.Now()
	o.expires = now.Add(d.opts.Lifetime)
	o.refresh = now.Add(time.Duration(float64(d.opts.Lifetime) * RefreshAt))
	if unreadable || memUnreadable {
		o.refresh = now.Add(min(d.opts.UnreadableRetry, d.opts.Lifetime))
	}
	return o, nil
}

// refreshAhead queues a background reload of o, a stale state that has
// not expired, unless one is queued or running already, and reports
// whether o may be served meanwhile: only while Run's workers run.
func (d *Directory) refreshAhead(o *Org, now time.Time) bool {
	if !d.running.Load() {
		return false
	}
	if now.UnixNano() < o.retryAt.Load() || !o.refreshing.CompareAndSwap(false, true) {
		return true
	}
	select {
	case d.refreshes <- o:
	default:
		o.refreshing.Store(false) // queue full: the next request queues it
	}
	return true
}

// refreshOrgs runs background reloads until ctx ends.
func (d *Directory) refreshOrgs(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-d.refreshes:
			d.refreshOrg(ctx, o)
		}
	}
}

// refreshOrg loads o's org again and puts the result in o's place, unless
// o was replaced or dropped meanwhile or a change-feed entry was applied
// since the load began (the load may have read what it replaced).
func (d *Directory) refreshOrg(ctx context.Context, o *Org) {
	d.mu.RLock()
	cur, gen := d.orgs[o.ID], d.gen
	d.mu.RUnlock()
	if cur != o {
		return // reloaded by a request, or forgotten: nothing to do
	}
	lctx, cancel := context.WithTimeout(ctx, RefreshTimeout)
	n, err := d.loadOrg(lctx, o.ID)
	cancel()
	if err != nil && ctx.Err() != nil {
		o.refreshing.Store(false) // stopping: no failure
		return
	}
	if err != nil {
		d.stats.failures.Add(1)
		o.retryAt.Store(time.Now().Add(d.opts.UnreadableRetry).UnixNano())
		o.refreshing.Store(false)
		d.mu.Lock()
		first := !d.failing[o.ID]
		d.failing[o.ID] = true
		d.mu.Unlock()
		if first {
			d.opts.Logger.Warn("background reload of an org failed; its loaded state is served until it expires",
				"org", o.ID, "expires", o.expires, "err", err)
		}
		return
	}
	d.stats.refreshes.Add(1)
	d.mu.Lock()
	if d.gen == gen && d.orgs[o.ID] == o {
		d.orgs[o.ID] = n
	} else {
		// Discarded: a change may have been applied after the load read
		// the store. o's next request (if o is still in use) queues
		// another.
		o.refreshing.Store(false)
	}
	recovered := d.failing[o.ID]
	delete(d.failing, o.ID)
	d.mu.Unlock()
	if recovered {
		d.opts.Logger.Info("background reload of an org succeeds again", "org", o.ID)
	}
}

// Stats are counters since New, for metrics.
type Stats struct {
	Refreshes       uint64 // orgs' states loaded again in the background
	RefreshFailures uint64 // background reloads that failed (the state is kept until it expires)
}

// Stats returns the counters.
func (d *Directory) Stats() Stats {
	return Stats{Refreshes: d.stats.refreshes.Load(), RefreshFailures: d.stats.failures.Load()}
}

// loadMemories opens the org's memories and joins them, per key, into
// what its requests carry. A memory whose text is unreadable (shredded,
// or its master key revoked) is left out, as every unreadable record is.
// It also reports whether some memory did not open.
func (d *Directory) loadMemories(ctx context.Context, orgID string) (out map[string]*Memory, unreadable bool, err error) {
	ms, err := d.store.Memories(ctx, orgID)
	if err != nil {
		return nil, false, fmt.Errorf("load memories of org %s: %w", orgID, err)
	}
	if len(ms) == 0 {
		return nil, false, nil
	}
	type part struct {
		text  string
		label string
		tok   int64
		use   edge.MemoryUse
	}
	var own []part
	perKey := map[string][]part{}
	var keys []string // in the store's order: the org's first, then by key
	for _, m := range ms {
		text, err := memory.Open(ctx, d.opts.Keys, m)
		if errors.Is(err, memory.ErrUnreadable) {
			unreadable = true
			d.opts.Logger.Warn("memory unreadable; it is not injected until set again", "org", orgID, "key", m.KeyID, "memory", m.Name)
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("org %s: %w", orgID, err)
		}
		p := part{string(text), m.Label(), m.Tokens, edge.MemoryUse{KeyID: m.KeyID, Name: m.Name, Version: m.Version, Tokens: m.Tokens}}
		clear(text)
		if m.KeyID == "" {
			own = append(own, p)
			continue
		}
		if _, ok := perKey[m.KeyID]; !ok {
			keys = append(keys, m.KeyID)
		}
		perKey[m.KeyID] = append(perKey[m.KeyID], p)
	}
	join := func(ps []part) *Memory {
		if len(ps) == 0 {
			return nil
		}
		texts, labels := make([]string, len(ps)), make([]string, len(ps))
		uses := make([]edge.MemoryUse, len(ps))
		var tok int64
		for i, p := range ps {
			texts[i], labels[i], uses[i] = p.text, p.label, p.use
			tok += p.tok
		}
		text := strings.Join(texts, "\n\n")
		label := strings.Join(labels, ",")
		return &Memory{System: provider.NewSystem(text), Label: label, Header: []string{label}, Tokens: tok, Uses: uses, Digest: sha256.Sum256([]byte(text))}
	}
	out = map[string]*Memory{}
	if m := join(own); m != nil {
		out[""] = m
	}
	for _, k := range keys {
		out[k] = join(append(own[:len(own):len(own)], perKey[k]...))
	}
	return out, unreadable, nil
}

// fingerprintSecret opens the org's fingerprint secret, making one on the
// org's first use, or a new one when the old one became unreadable (after
// a shred its fingerprints described content that is gone anyway); local
// says the secret lives in this process only, since none could be sealed.
func (d *Directory) fingerprintSecret(ctx context.Context, id string) (secret []byte, local bool, err error) {
	sealed, err := d.store.FingerprintSecret(ctx, id)
	if err != nil {
		return nil, false, fmt.Errorf("load org %s: %w", id, err)
	}
	for range 3 {
		if sealed != nil {
			secret, err := d.opts.Keys.Open(ctx, id, keyring.PurposeSecret, edge.FingerprintRecord, sealed)
			if err == nil {
				d.dropLocal(id)
				return secret, false, nil
			}
			if !errors.Is(err, keyring.ErrUnreadable) {
				return nil, false, fmt.Errorf("open fingerprint secret of org %s: %w", id, err)
			}
		}
		fresh := make([]byte, 32)
		rand.Read(fresh)
		next, err := d.opts.Keys.Seal(ctx, id, keyring.PurposeSecret, edge.FingerprintRecord, fresh)
		if err != nil {
			// The master key cannot make a data key (revoked, or an org's
			// own key not supplied yet): fingerprint with a secret that
			// lives only in this process, so requests still flow. It is
			// kept across the org's reloads (every UnreadableRetry until
			// the key is back): a new one each time would change every
			// fingerprint, and nothing would hit the cache.
			d.mu.Lock()
			local, ok := d.local[id]
			if !ok {
				local = fresh
				d.local[id] = local
				d.opts.Logger.Warn("fingerprint secret cannot be sealed; using a process-local one", "org", id, "err", err)
			}
			d.mu.Unlock()
			return bytes.Clone(local), true, nil
		}
		stored, err := d.store.SwapFingerprintSecret(ctx, id, sealed, next)
		if err != nil {
			return nil, false, fmt.Errorf("store fingerprint secret of org %s: %w", id, err)
		}
		if bytes.Equal(stored, next) {
			d.dropLocal(id)
			return fresh, false, nil
		}
		sealed = stored // another instance won the race: use its secret
	}
	return nil, false, fmt.Errorf("fingerprint secret of org %s keeps changing", id)
}

// Revoke revokes a key through this instance: it stops working here at
// once, and on other instances at their next poll of the change feed.
func (d *Directory) Revoke(ctx context.Context, orgID, keyID string) error {
	if err := d.store.RevokeKey(ctx, orgID, keyID, time.Now().UTC()); err != nil {
		return err
	}
	d.forgetKey(keyID)
	return nil
}

// dropLocal forgets the org's process-local fingerprint secret.
func (d *Directory) dropLocal(id string) {
	d.mu.Lock()
	if k, ok := d.local[id]; ok {
		clear(k)
		delete(d.local, id)
	}
	d.mu.Unlock()
}

func (d *Directory) generation() uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.gen
}

// cacheIf runs add, which caches what a store read returned, unless a
// change was applied since gen was taken before that read.
func (d *Directory) cacheIf(gen uint64, add func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen == gen {
		add()
	}
}

// changed marks a change as applied, before its cached effects are
// forgotten: a read that began earlier will not cache its result.
func (d *Directory) changed() {
	d.mu.Lock()
	d.gen++
	d.mu.Unlock()
}

func (d *Directory) forgetKey(keyID string) {
	d.changed()
	for _, h := range d.keys.Keys() {
		if k, ok := d.keys.Peek(h); ok && k.ID == keyID {
			d.keys.Remove(h)
		}
	}
}

// ForgetOrg drops what is held of an org (its settings, memories and
// resolved keys), so that a change made through this instance applies to
// its next request; other instances follow the change feed.
func (d *Directory) ForgetOrg(orgID string) { d.forgetOrg(orgID) }

func (d *Directory) forgetOrg(orgID string) {
	d.mu.Lock()
	d.gen++
	delete(d.orgs, orgID)
	delete(d.failing, orgID)
	d.mu.Unlock()
	// A change (a shred among them) also ends a process-local secret.
	d.dropLocal(orgID)
	// Keys hold a pointer to their org's state: drop them so they reload.
	for _, h := range d.keys.Keys() {
		if k, ok := d.keys.Peek(h); ok && k.OrgID == orgID {
			d.keys.Remove(h)
		}
	}
}

// Applied is the sequence number of the last change-feed entry applied.
func (d *Directory) Applied() int64 { return d.seq.Load() }

// Sync applies every change-feed entry not yet applied. At start-up
// nothing is cached, so the first call only finds where the feed stands.
func (d *Directory) Sync(ctx context.Context) error {
	for {
		changes, err := d.store.Changes(ctx, d.seq.Load())
		if err != nil {
			return fmt.Errorf("read change feed: %w", err)
		}
		if len(changes) == 0 {
			return nil
		}
		for _, c := range changes {
			switch c.Kind {
			case "key":
				// A key of a deleted org comes without its org (orgs
				// delete); the deletion's "dek" entry drops the org.
				d.forgetKey(c.Ref)
				// A key created elsewhere may be one remembered as absent.
				d.absent.Purge()
			case "provider", "org", "dek":
				d.forgetOrg(c.OrgID)
				if d.opts.OrgChanged != nil {
					d.opts.OrgChanged(c.OrgID)
				}
			case "memory":
				d.forgetOrg(c.OrgID)
			}
			if d.opts.Changed != nil {
				d.opts.Changed(c)
			}
			d.seq.Store(c.Seq)
		}
	}
}

// Run applies the change feed every interval, and at once whenever notify
// (which may be nil) signals a new entry, and loads orgs' states again in
// the background before they expire (RefreshWorkers at a time), until ctx
// ends. It returns once its workers have stopped.
func (d *Directory) Run(ctx context.Context, interval time.Duration, notify <-chan struct{}) {
	var wg sync.WaitGroup
	for range RefreshWorkers {
		wg.Go(func() { d.refreshOrgs(ctx) })
	}
	d.running.Store(true)
	defer func() {
		d.running.Store(false)
		wg.Wait()
		// Forget what is still queued: a request reloads those itself now.
		for {
			select {
			case o := <-d.refreshes:
				o.refreshing.Store(false)
			default:
				return
			}
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-notify:
		}
		err := d.Sync(ctx)
		if err != nil && !failing && ctx.Err() == nil {
			d.opts.Logger.Warn("change feed unreadable; cached keys keep working", "err", err)
		}
		if err == nil && failing {
			d.opts.Logger.Info("change feed readable again")
		}
		failing = err != nil
	}
}
