// Package edge holds the domain types and service interfaces of codex-edge,
// the customer-run gateway between AI clients and AI providers.
//
// Implementations live in packages named after their dependency
// (store/sqlite, store/postgres, cache/redis); the request path lives in
// package proxy; cmd/codex-edge wires them together.
package edge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Error kinds shared by every store. Callers test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)

// Provider names an upstream AI provider.
type Provider string

const (
	OpenAI    Provider = "openai"
	Anthropic Provider = "anthropic"
)

// Valid reports whether p is a provider the edge can talk to.
func (p Provider) Valid() bool { return p == OpenAI || p == Anthropic }

// Org is a tenant of the edge: every key, setting and record belongs to one.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// The stores' write methods call the Prepare and Check methods below, so
// every store refuses the same records (ErrInvalid) and fills in the same
// defaults.

// Prepare checks that o can be stored and sets a zero CreatedAt to now.
func (o *Org) Prepare() error {
	if o.ID == "" || o.Name == "" {
		return fmt.Errorf("id and name are required: %w", ErrInvalid)
	}
	o.CreatedAt = nowIfZero(o.CreatedAt)
	return nil
}

// KeyState is the life-cycle state of a gateway key.
type KeyState string

const (
	KeyActive  KeyState = "active"
	KeyRevoked KeyState = "revoked"
)

// APIKey is a gateway key as stored: never the secret, only its SHA-256.
type APIKey struct {
	ID        string
	OrgID     string
	Name      string
	Prefix    string // non-secret display prefix, e.g. "pk_live_Ab3x"
	Hash      [32]byte
	State     KeyState
	CreatedAt time.Time
	RevokedAt time.Time // zero while active
}

// Prepare checks that k can be stored: an empty State means active, a
// zero CreatedAt now.
func (k *APIKey) Prepare() error {
	if k.ID == "" || k.OrgID == "" {
		return fmt.Errorf("id and org id are required: %w", ErrInvalid)
	}
	if k.State == "" {
		k.State = KeyActive
	}
	if k.State != KeyActive && k.State != KeyRevoked {
		return fmt.Errorf("key %q: state %q: %w", k.ID, k.State, ErrInvalid)
	}
	k.CreatedAt = nowIfZero(k.CreatedAt)
	return nil
}

// ProviderConfig is how one org reaches one provider. The credential is
// never held here in plaintext: either APIKeyEnv names an environment
// variable of the edge process, or SealedKey holds the key sealed by the
// org's data key (purpose "credential", record key CredentialRecord).
type ProviderConfig struct {
	OrgID     string
	Provider  Provider
	BaseURL   string // empty means the format's DefaultBaseURL (package provider)
	APIKeyEnv string
	SealedKey []byte
	// AllowInsecureHTTP lets BaseURL be plain http to a host other than
	// loopback (see CheckBaseURL): the operator's explicit choice.
	AllowInsecureHTTP bool
	UpdatedAt         time.Time
}

// Check applies the rules of every provider setting, when it is set and
// when it is loaded: CheckAPIKeyEnv (with the operator's deny list) when
// the key comes from the environment, and CheckBaseURL.
func (p ProviderConfig) Check(denyEnv []string) error {
	if p.APIKeyEnv != "" {
		if err := CheckAPIKeyEnv(p.APIKeyEnv, denyEnv); err != nil {
			return fmt.Errorf("provider %q: %w", p.Provider, err)
		}
	}
	if err := CheckBaseURL(p.BaseURL, p.AllowInsecureHTTP); err != nil {
		return fmt.Errorf("provider %q: %w", p.Provider, err)
	}
	return nil
}

// Prepare checks that p can be stored (an org, a known provider, exactly
// one credential source, and Check without an operator deny list, which
// the store does not know) and sets a zero UpdatedAt to now.
func (p *ProviderConfig) Prepare() error {
	if p.OrgID == "" || !p.Provider.Valid() || (p.APIKeyEnv == "") == (len(p.SealedKey) == 0) {
		return fmt.Errorf("provider %q: org id, a known provider and one credential source are required: %w", p.Provider, ErrInvalid)
	}
	if err := p.Check(nil); err != nil {
		return err
	}
	p.UpdatedAt = nowIfZero(p.UpdatedAt)
	return nil
}

func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// CredentialRecord is the record key a provider credential is sealed under.
func CredentialRecord(p Provider) string { return "provider/" + string(p) }

// FingerprintRecord is the record key of an org's fingerprint secret.
const FingerprintRecord = "fingerprint"

// CacheStatus is what the response cache did for a request.
type CacheStatus string

const (
	CacheHit    CacheStatus = "hit"
	CacheMiss   CacheStatus = "miss"
	CacheBypass CacheStatus = "bypass"
)

// Count is a token count that may be unknown: a figure the provider did not
// report is stored as unknown, never as zero and never estimated.
type Count struct {
	N     int64
	Known bool
}

// Known returns a known count of n.
func Known(n int64) Count { return Count{N: n, Known: true} }

// Usage holds a response's token counters in disjoint buckets, each priced
// at its own rate. Counters are kept as the provider defines them:
//
//	Input        OpenAI prompt_tokens minus cached; Anthropic input_tokens
//	CachedInput  OpenAI prompt_tokens_details.cached_tokens; Anthropic cache_read_input_tokens
//	CacheWrite   Anthropic cache_creation_input_tokens (OpenAI has none: unknown)
//	Output       OpenAI completion_tokens; Anthropic output_tokens
//	Reasoning    OpenAI reasoning tokens, a part of Output (priced within it)
type Usage struct {
	Input       Count
	CachedInput Count
	CacheWrite  Count
	Output      Count
	Reasoning   Count
}

// RequestRecord is the metadata kept for one request. It never holds
// prompt or response content.
type RequestRecord struct {
	ID              string
	Time            time.Time
	OrgID           string
	KeyID           string
	Provider        Provider
	Endpoint        string // e.g. "chat.completions", "messages"
	Model           string
	Stream          bool
	Usage           Usage
	CostNanoUSD     int64 // 1e-9 USD
	CostKnown       bool
	SavedNanoUSD    int64 // what a cache hit saved
	Latency         time.Duration
	UpstreamLatency time.Duration // zero when no provider call was made
	Status          int
	Cache           CacheStatus
	Fingerprint     string // hex HMAC; reveals repetition, not content
	MemoryID        string
}

// Check reports whether r can be stored: it needs an id, an org and a time.
func (r *RequestRecord) Check() error {
	if r.ID == "" || r.OrgID == "" || r.Time.IsZero() {
		return fmt.Errorf("id, org id and time are required: %w", ErrInvalid)
	}
	return nil
}

// Change is an entry of the store's change feed: running instances poll it
// to drop cached keys and settings that another process changed.
type Change struct {
	Seq   int64
	OrgID string
	Kind  string // "key", "provider", "org"
	Ref   string
}

// Store persists orgs, keys, provider settings and request metadata.
// Every method but KeyByHash and KeyByID is scoped by org.
type Store interface {
	CreateOrg(ctx context.Context, o Org) error
	Org(ctx context.Context, id string) (Org, error)
	Orgs(ctx context.Context) ([]Org, error)
	// FingerprintSecret returns the org's sealed fingerprint secret, or nil
	// when none is set yet (the edge makes one on the org's first request).
	FingerprintSecret(ctx context.Context, orgID string) ([]byte, error)
	// SwapFingerprintSecret stores next if the stored secret still equals
	// prev (nil: unset), and returns the secret stored afterwards, so two
	// instances creating the first secret at once agree on one.
	SwapFingerprintSecret(ctx context.Context, orgID string, prev, next []byte) ([]byte, error)

	CreateKey(ctx context.Context, k APIKey) error
	// KeyByHash is the one lookup that runs before the org is known.
	KeyByHash(ctx context.Context, hash [32]byte) (APIKey, error)
	KeyByID(ctx context.Context, id string) (APIKey, error)
	Keys(ctx context.Context, orgID string) ([]APIKey, error)
	RevokeKey(ctx context.Context, orgID, id string, at time.Time) error

	SetProvider(ctx context.Context, p ProviderConfig) error
	Providers(ctx context.Context, orgID string) ([]ProviderConfig, error)

	InsertRequests(ctx context.Context, recs []RequestRecord) error
	Requests(ctx context.Context, orgID string, since time.Time, limit int) ([]RequestRecord, error)
	// DeleteRequestsBefore deletes at most limit of the org's oldest
	// request records from before before, and returns how many it
	// deleted: retention deletes in batches, so no statement holds the
	// table long.
	DeleteRequestsBefore(ctx context.Context, orgID string, before time.Time, limit int) (int64, error)

	// Changes returns change-feed entries after seq, oldest first.
	Changes(ctx context.Context, after int64) ([]Change, error)

	Ping(ctx context.Context) error
	Close() error
}
