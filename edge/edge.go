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
	"strconv"
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
	// MasterKey is the org's own master key in CODEX_KEK form
	// ("awskms:<arn>"), or "" for the edge's default master key. It is a
	// reference, not a secret.
	MasterKey string
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

// Memory is a memory as stored: the latest version of a named text block
// of an org, or of one of its keys, that the edge injects into requests as
// the provider's system instruction (DESIGN §10). Its text is held only
// sealed; its length and token estimate are metadata.
type Memory struct {
	OrgID string
	KeyID string // empty: the org's memory, injected for every key
	Name  string
	// Version is 1 for the first set and one more on every set after,
	// a removal in between included, so name@version names one text.
	Version int64
	// Sealed is the text sealed by the org's data key (purpose memory,
	// record key MemoryRecord); nil when the memory was removed.
	Sealed    []byte
	Bytes     int64 // length of the text
	Tokens    int64 // estimated tokens of the text (see package memory)
	UpdatedAt time.Time
}

// MaxMemoryBytes bounds one memory's text: it is sent with every request
// of its org or key.
const MaxMemoryBytes = 64 << 10

// CheckMemoryName accepts 1 to 64 letters, digits, '.', '_' and '-': a
// name is shown in the x-codex-memory header as name@version.
func CheckMemoryName(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("memory name %q: 1 to 64 characters: %w", name, ErrInvalid)
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("memory name %q: letters, digits, '.', '_' and '-' only: %w", name, ErrInvalid)
		}
	}
	return nil
}

// Prepare checks that m can be stored as a new version (it has text) and
// sets a zero UpdatedAt to now.
func (m *Memory) Prepare() error {
	if m.OrgID == "" || m.Version < 1 || len(m.Sealed) == 0 || m.Bytes < 0 || m.Tokens < 0 {
		return fmt.Errorf("memory %q: org id, a version from 1, sealed text and sizes are required: %w", m.Name, ErrInvalid)
	}
	if err := CheckMemoryName(m.Name); err != nil {
		return err
	}
	m.UpdatedAt = nowIfZero(m.UpdatedAt)
	return nil
}

// Label is name@version, as the x-codex-memory header shows it.
func (m Memory) Label() string { return m.Name + "@" + strconv.FormatInt(m.Version, 10) }

// MemoryUse is one memory injected into a request.
type MemoryUse struct {
	KeyID   string // empty: the org's memory
	Name    string
	Version int64
	Tokens  int64 // estimated when the memory was set (package memory)
}

// MemoryRecord is the record key a memory's text is sealed under: it binds
// the ciphertext to its key, name and version, so that no stored text can
// stand in for another.
func MemoryRecord(keyID, name string, version int64) string {
	v := strconv.FormatInt(version, 10)
	if keyID == "" {
		return "memory/" + name + "@" + v
	}
	return "memory/" + keyID + "/" + name + "@" + v
}

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
	// MemoryID names the memories injected into the request as the
	// x-codex-memory header does (name@version[,…]); empty for none.
	MemoryID string
	// MemoryTokensEstimate is their size in tokens, as estimated when they
	// were set (package memory), not counted by the provider: the
	// provider reports only the request's total.
	MemoryTokensEstimate int64
	// Memories are the memories of MemoryID one by one, for telemetry:
	// names, versions and token estimates, never their text. Shared
	// between requests: read only. Not stored with the request.
	Memories []MemoryUse
	// Audit is the capture level of the audit record written for the
	// request; empty when none was (no org, or the record was lost).
	// Counted in telemetry, not stored with the request.
	Audit AuditLevel
	// Refused says why the edge itself refused the request, if a limit
	// did: RefusedRateLimit or RefusedBudget. Counted in telemetry, not
	// stored with the request.
	Refused string
}

// Why the edge refused a request (RequestRecord.Refused).
const (
	RefusedRateLimit = "rate_limit"
	RefusedBudget    = "budget"
)

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
	Kind  string // "key", "provider", "org", "dek", "memory", "limit", "budget"
	Ref   string
}

// Shredded counts what Store.ShredSealed removed.
type Shredded struct {
	Credentials       int64 // sealed provider credentials
	FingerprintSecret bool
	Memories          int64 // memories whose text was set
}

// OrgDeletion is the record of an org deleted (orgs delete). It is kept at
// the deployment's level, since the org's own audit chain goes with it: the
// org's id (a random reference; not its name), when, who, and how many rows
// of each table were removed.
type OrgDeletion struct {
	OrgID string
	Time  time.Time
	Actor string
	Via   string
	Rows  map[string]int64 // table → rows deleted
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
	// SetOrgMasterKey sets the org's own master key reference ("" for the
	// edge's default) and records a change, so running edges reload it.
	SetOrgMasterKey(ctx context.Context, orgID, ref string) error
	// OrgMasterKeys returns, for every org with its own master key, the
	// org id and its reference. It runs before any org is chosen.
	OrgMasterKeys(ctx context.Context) (map[string]string, error)
	// ShredSealed is the store's part of a crypto shred beside the data
	// keys and the audit log: in one transaction it removes every value
	// sealed for the org — its sealed provider credentials (the setting
	// stays, with no credential, so requests get 503 until one is set
	// again), its fingerprint secret, and its memories' text (each memory
	// keeps its version, so the next set follows on) — and records a
	// "provider" change.
	ShredSealed(ctx context.Context, orgID string, at time.Time) (Shredded, error)

	CreateKey(ctx context.Context, k APIKey) error
	// KeyByHash is the one lookup that runs before the org is known.
	KeyByHash(ctx context.Context, hash [32]byte) (APIKey, error)
	KeyByID(ctx context.Context, id string) (APIKey, error)
	Keys(ctx context.Context, orgID string) ([]APIKey, error)
	RevokeKey(ctx context.Context, orgID, id string, at time.Time) error

	SetProvider(ctx context.Context, p ProviderConfig) error
	Providers(ctx context.Context, orgID string) ([]ProviderConfig, error)

	// PutMemory stores m as the next version of its memory: m.Version
	// must be one more than the stored version (1 when there is none),
	// else ErrConflict (another set came first). A key that is not the
	// org's is ErrNotFound.
	PutMemory(ctx context.Context, m Memory) error
	// Memory returns the latest version of one memory of the org (keyID
	// empty: the org's own), with nil Sealed when it was removed; a
	// memory never set is ErrNotFound.
	Memory(ctx context.Context, orgID, keyID, name string) (Memory, error)
	// Memories returns the org's memories that are set (not removed),
	// its own and its keys', by key id (the org's first), then name.
	Memories(ctx context.Context, orgID string) ([]Memory, error)
	// RemoveMemory removes a memory's text, keeping its version so the
	// next set follows on. A memory not set is ErrNotFound.
	RemoveMemory(ctx context.Context, orgID, keyID, name string, at time.Time) error

	InsertRequests(ctx context.Context, recs []RequestRecord) error
	Requests(ctx context.Context, orgID string, since time.Time, limit int) ([]RequestRecord, error)
	// DeleteRequestsBefore deletes at most limit of the org's oldest
	// request records from before before, and returns how many it
	// deleted: retention deletes in batches, so no statement holds the
	// table long.
	DeleteRequestsBefore(ctx context.Context, orgID string, before time.Time, limit int) (int64, error)

	// SetLimit creates, replaces or (when it limits nothing) removes the
	// rate limit of an org or of one of its keys; a key of another org is
	// ErrNotFound. It records a "limit" change.
	SetLimit(ctx context.Context, l Limit) error
	// Limits returns the org's limits: its own first, then by key id.
	Limits(ctx context.Context, orgID string) ([]Limit, error)
	// SetBudget creates, replaces or (with a zero cap) removes the budget of
	// an org or of one of its keys for one period; a key of another org is
	// ErrNotFound. It records a "budget" change.
	SetBudget(ctx context.Context, b Budget) error
	// Budgets returns the org's budgets: its own first, then by key id,
	// each day before month.
	Budgets(ctx context.Context, orgID string) ([]Budget, error)
	// AddSpend adds each amount to the settled spend of its org or key and
	// period, atomically.
	AddSpend(ctx context.Context, s []Spend) error
	// Spent returns the settled spend of an org (keyID empty) or key in
	// the period starting at start; zero when nothing was recorded.
	Spent(ctx context.Context, orgID, keyID string, p Period, start time.Time) (int64, error)

	// Changes returns change-feed entries after seq, oldest first.
	Changes(ctx context.Context, after int64) ([]Change, error)

	// DeleteOrg removes the org d.OrgID and every row that names it, in
	// every table with an org_id column (found in the schema, so a table
	// added later is covered), in one transaction. It records d, with
	// Rows filled in, among the deployment's org deletions, and a "key"
	// change for each of the org's keys (with no org id: the org is gone)
	// so that running instances drop them. An unknown org is ErrNotFound.
	DeleteOrg(ctx context.Context, d OrgDeletion) (OrgDeletion, error)
	// OrgDeletions returns the recorded org deletions, oldest first.
	OrgDeletions(ctx context.Context) ([]OrgDeletion, error)

	Ping(ctx context.Context) error
	Close() error
}
