// Package natsauth is the control plane's NATS authority in operator/JWT
// mode: it creates and keeps the operator, the system account and the
// ingest account, mints per-edge user JWTs and revokes them.
//
// Edges are minted with a per-org scoped signing key. The scope's template
// confines a user to publishing on codex.usage.v1.<org>.<its name> and to
// its own reply inbox, so a leaked org signing key can mint nothing
// outside that org, and a user JWT carries no permissions of its own.
//
// Every instance of the control plane shares one authority, kept in the
// store (Options.Store): the seeds (operator, system and ingest account,
// per-org signing keys), sealed with the control plane's sealer (purpose
// "nats-seed", bound to the record's name: "operator", "system", "ingest",
// "org/<org id>"), and the ingest account's claims. A seed is written
// once: instances creating one at once all end up with the first one's.
// Each change of the claims is read, modified and written under the
// store's lock, so no instance writes over another's change.
//
// Without a store (tests and tools of a single instance), the authority
// is kept in files under the directory given to Open: <name>.nk.sealed
// (0600), orgs/<org>.nk.sealed and ingest.jwt. That is also the layout of
// earlier versions, which Open takes over into an empty store. Plaintext
// <name>.nk seed files of still earlier versions are sealed and removed
// when Open finds them.
package natsauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/shared/wire"
)

// IngestAccountName is the name of the account edges publish into.
const IngestAccountName = "CODEX_INGEST"

// InboxPrefix returns the reply inbox prefix an edge must use
// (nats.CustomInboxPrefix): its user may subscribe only below it, so no
// edge can read another's replies or the control plane's deliveries.
func InboxPrefix(edgeID string) string { return "_INBOX." + edgeID }

// EdgeSubsLimit bounds an edge's subscriptions: it needs one for replies.
const EdgeSubsLimit = 8

// DefaultMaxStorage is Limits.MaxStorage's default.
const DefaultMaxStorage = 16 << 30

// Limits bound the ingest account's JetStream use. Zero fields take their
// defaults.
type Limits struct {
	// MaxStorage bounds the account's JetStream file storage. A stream's
	// MaxBytes is reserved against it when the stream is made, so it also
	// bounds how many per-org streams can exist. Default
	// DefaultMaxStorage (16 GiB).
	MaxStorage int64
}

// jetStream is the account's JetStream limits. MaxBytes is not required
// of streams (only the control plane can make streams, and it always sets
// it): a server refuses to load, at start-up, a stream that breaks that
// requirement, such as the legacy shared stream the ingest must retire.
func (l Limits) jetStream() jwt.JetStreamLimits {
	if l.MaxStorage <= 0 {
		l.MaxStorage = DefaultMaxStorage
	}
	return jwt.JetStreamLimits{
		MemoryStorage: 0, // no memory streams
		DiskStorage:   l.MaxStorage,
		Streams:       jwt.NoLimit, // bounded by MaxStorage's reservations
		Consumer:      jwt.NoLimit,
		MaxAckPending: jwt.NoLimit,
	}
}

// Options configure Open.
type Options struct {
	// Sealer seals the seeds at rest. Required.
	Sealer *sealer.Sealer
	Limits Limits
	// Store keeps the authority that every instance shares. Nil keeps it
	// in files under Open's directory, for a single instance.
	Store Store
}

// Store keeps the authority: the account seeds are deployment secrets
// named "nats/operator", "nats/system" and "nats/ingest". A
// controlplane.Store is one.
type Store interface {
	DeploymentSecret(ctx context.Context, name string) ([]byte, error)
	AddDeploymentSecret(ctx context.Context, name string, sealed []byte) ([]byte, error)
	controlplane.NATSStore
}

// SeedPurpose is the sealer purpose of the seeds.
const SeedPurpose = "nats-seed"

// secretName is the deployment secret holding the seed of record name.
func secretName(name string) string { return "nats/" + name }

// Authority holds the keys and the ingest account's claims as last read
// from the store.
type Authority struct {
	dir    string // files of an earlier version, or the store's
	store  Store
	sealer *sealer.Sealer
	limits jwt.JetStreamLimits

	operator, system, ingest nkeys.KeyPair
	operatorPub, systemPub   string
	ingestPub                string
	operatorJWT, systemJWT   string

	// change serialises this instance's round trips to the store that
	// read or write the claims, so an older read never replaces a newer
	// one in memory.
	change sync.Mutex

	mu        sync.Mutex
	ingestJWT string
	claims    *jwt.AccountClaims
	orgKeys   map[string]orgKey
}

// orgKey is an org's signing key with the sealed seed it was opened from:
// the key is opened again only when the stored seed is another.
type orgKey struct {
	sealed []byte
	kp     nkeys.KeyPair
}

// Open loads the authority from o.Store (or, without one, from the files
// in dir), creating keys on first use. With a store, the files an earlier
// version kept in dir are taken over when the store holds no operator yet
// (see importFiles); they are left in place, and ignored afterwards. The
// ingest account JWT is brought to o's limits (pushed by the caller's
// next natsbus.Accounts.Sync, or preloaded by an embedded server).
func Open(ctx context.Context, dir string, o Options) (*Authority, error) {
	if o.Sealer == nil {
		return nil, errors.New("nats authority: no sealer for the seeds")
	}
	a := &Authority{dir: dir, store: o.Store, sealer: o.Sealer, limits: o.Limits.jetStream(), orgKeys: map[string]orgKey{}}
	if a.store == nil {
		if err := os.MkdirAll(filepath.Join(dir, "orgs"), 0o700); err != nil {
			return nil, fmt.Errorf("nats authority dir: %w", err)
		}
		a.store = &dirStore{dir: dir}
	}
	if err := sealPlaintext(ctx, dir, o.Sealer); err != nil {
		return nil, err
	}
	if o.Store != nil {
		if err := importFiles(ctx, o.Store, dir, o.Sealer); err != nil {
			return nil, err
		}
	}
	var err error
	if a.operator, err = a.accountKey(ctx, "operator", nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = a.accountKey(ctx, "system", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.ingest, err = a.accountKey(ctx, "ingest", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	a.operatorPub, _ = a.operator.PublicKey()
	a.systemPub, _ = a.system.PublicKey()
	a.ingestPub, _ = a.ingest.PublicKey()

	oc := jwt.NewOperatorClaims(a.operatorPub)
	oc.Name = "codex"
	oc.SystemAccount = a.systemPub
	if a.operatorJWT, err = oc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("encode operator jwt: %w", err)
	}
	sc := jwt.NewAccountClaims(a.systemPub)
	sc.Name = "SYS"
	if a.systemJWT, err = sc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("encode system account jwt: %w", err)
	}
	// Made on first use, brought to this instance's limits otherwise.
	if _, err := a.update(ctx, func(c *jwt.AccountClaims) bool {
		if c.Limits.JetStreamLimits == a.limits {
			return false
		}
		c.Limits.JetStreamLimits = a.limits
		return true
	}); err != nil {
		return nil, err
	}
	return a, nil
}

// accountKey returns the key pair of record name ("operator", "system",
// "ingest"), creating it when the store holds none.
func (a *Authority) accountKey(ctx context.Context, name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	sealed, err := a.store.DeploymentSecret(ctx, secretName(name))
	if errors.Is(err, controlplane.ErrNotFound) {
		var fresh []byte
		if fresh, err = a.sealNew(ctx, name, create); err != nil {
			return nil, err
		}
		sealed, err = a.store.AddDeploymentSecret(ctx, secretName(name), fresh)
	}
	if err != nil {
		return nil, fmt.Errorf("nats %s key: %w", name, err)
	}
	return openSeed(ctx, a.sealer, name, sealed)
}

// sealNew creates a key pair and returns its seed sealed as record name.
func (a *Authority) sealNew(ctx context.Context, name string, create func() (nkeys.KeyPair, error)) ([]byte, error) {
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	// The key pair's own seed, not a copy: never cleared here.
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("%s seed: %w", name, err)
	}
	sealed, err := a.sealer.Seal(ctx, binding(name), seed)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", name, err)
	}
	return sealed, nil
}

func binding(name string) sealer.Binding { return sealer.Binding{Purpose: SeedPurpose, Name: name} }

// openSeed returns the key pair sealed as record name.
func openSeed(ctx context.Context, s *sealer.Sealer, name string, sealed []byte) (nkeys.KeyPair, error) {
	seed, err := s.Open(ctx, binding(name), sealed)
	if err != nil {
		return nil, fmt.Errorf("open nats %s seed: %w", name, err)
	}
	defer clear(seed)
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("load nats %s seed: %w", name, err)
	}
	return kp, nil
}

// decodeIngest returns the claims of a stored ingest account JWT, checked
// to be signed by the operator for the ingest account; fresh claims when
// none is stored.
func (a *Authority) decodeIngest(s string) (*jwt.AccountClaims, error) {
	if s == "" {
		c := jwt.NewAccountClaims(a.ingestPub)
		c.Name = IngestAccountName
		c.Limits.JetStreamLimits = a.limits
		return c, nil
	}
	// Decoding checks the signature against the issuer.
	c, err := jwt.DecodeAccountClaims(s)
	if err != nil {
		return nil, fmt.Errorf("decode ingest account jwt: %w", err)
	}
	if c.Subject != a.ingestPub || c.Issuer != a.operatorPub {
		return nil, errors.New("ingest account jwt does not match the stored keys")
	}
	return c, nil
}

// update applies change to the stored ingest account claims under the
// store's lock, so that it applies to the latest claims, whichever
// instance wrote them, and reports whether it changed them. The claims in
// memory become the stored ones either way.
func (a *Authority) update(ctx context.Context, change func(c *jwt.AccountClaims) bool) (changed bool, err error) {
	a.change.Lock()
	defer a.change.Unlock()
	var claims *jwt.AccountClaims
	s, _, err := a.store.UpdateNATSAccount(ctx, a.ingestPub, func(cur string, _ int64) (string, error) {
		c, err := a.decodeIngest(cur)
		if err != nil {
			return "", err
		}
		if changed = change(c) || cur == ""; !changed {
			claims = c
			return cur, nil
		}
		next, err := c.Encode(a.operator)
		if err != nil {
			return "", fmt.Errorf("encode ingest account jwt: %w", err)
		}
		claims = c
		return next, nil
	})
	if err != nil {
		return false, fmt.Errorf("ingest account: %w", err)
	}
	a.mu.Lock()
	a.claims, a.ingestJWT = claims, s
	a.mu.Unlock()
	return changed, nil
}

// Refresh reads the ingest account's claims from the store: changes
// another instance made since this one last read or wrote them.
func (a *Authority) Refresh(ctx context.Context) error {
	a.change.Lock()
	defer a.change.Unlock()
	s, _, err := a.store.NATSAccount(ctx, a.ingestPub)
	if err != nil {
		return fmt.Errorf("refresh ingest account: %w", err)
	}
	if s == a.IngestJWT() {
		return nil
	}
	c, err := a.decodeIngest(s)
	if err != nil {
		return fmt.Errorf("refresh ingest account: %w", err)
	}
	a.mu.Lock()
	a.claims, a.ingestJWT = c, s
	a.mu.Unlock()
	return nil
}

// OperatorJWT returns the operator JWT a server must trust.
func (a *Authority) OperatorJWT() string { return a.operatorJWT }

// SystemAccount returns the system account's public key.
func (a *Authority) SystemAccount() string { return a.systemPub }

// IngestAccount returns the ingest account's public key.
func (a *Authority) IngestAccount() string { return a.ingestPub }

// SystemJWT returns the system account JWT.
func (a *Authority) SystemJWT() string { return a.systemJWT }

// IngestJWT returns the current ingest account JWT.
func (a *Authority) IngestJWT() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ingestJWT
}

// EnsureOrg gives org its scoped signing key, adding it to the ingest
// account. It reports whether the account JWT changed and must be pushed.
func (a *Authority) EnsureOrg(ctx context.Context, orgID string) (changed bool, err error) {
	if !wire.IDChars.Valid(orgID) {
		return false, fmt.Errorf("org id %q is not a valid subject token", orgID)
	}
	kp, err := a.orgKey(ctx, orgID, true)
	if err != nil {
		return false, err
	}
	pub, _ := kp.PublicKey()
	if a.scoped(pub) {
		// Known to the claims held (every enrollment but an org's first):
		// no locked read-modify-write of the store. A key another
		// instance replaced would be a new key, not this one.
		return false, nil
	}
	return a.update(ctx, func(c *jwt.AccountClaims) bool {
		if c.SigningKeys.Contains(pub) {
			return false
		}
		scope := jwt.NewUserScope()
		scope.Key = pub
		scope.Role = "edge:" + orgID
		scope.Description = "edges of org " + orgID
		scope.Template = jwt.UserPermissionLimits{
			Permissions: jwt.Permissions{
				Pub: jwt.Permission{Allow: jwt.StringList{wire.SubjectPrefix + "." + orgID + ".{{name()}}"}},
				Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX.{{name()}}.>"}},
			},
			Limits: jwt.Limits{
				UserLimits: jwt.UserLimits{},
				NatsLimits: jwt.NatsLimits{Subs: EdgeSubsLimit, Data: jwt.NoLimit, Payload: wire.MaxBatchBytes},
			},
		}
		c.SigningKeys.AddScopedSigner(scope)
		return true
	})
}

// Orgs lists the orgs that have a signing key in the ingest account: those
// whose edges may publish. It reads the claims in memory: as this instance
// last changed or refreshed them (see Refresh).
func (a *Authority) Orgs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var orgs []string
	for key := range a.claims.SigningKeys {
		scope, ok := a.claims.SigningKeys.GetScope(key)
		if us, isUser := scope.(*jwt.UserScope); ok && isUser {
			if org, found := strings.CutPrefix(us.Role, "edge:"); found {
				orgs = append(orgs, org)
			}
		}
	}
	slices.Sort(orgs)
	return orgs
}

// orgKey returns org's signing key as stored, creating it when none is and
// create is set (controlplane.ErrNotFound otherwise). The stored seed is
// read each time, so a key another instance deleted is not used; it is
// opened again only when it changed.
func (a *Authority) orgKey(ctx context.Context, orgID string, create bool) (nkeys.KeyPair, error) {
	name := "org/" + orgID
	sealed, err := a.store.NATSOrgKey(ctx, orgID)
	if errors.Is(err, controlplane.ErrNotFound) && create {
		var fresh []byte
		if fresh, err = a.sealNew(ctx, name, nkeys.CreateAccount); err != nil {
			return nil, err
		}
		sealed, err = a.store.AddNATSOrgKey(ctx, orgID, fresh)
	}
	if err != nil {
		return nil, fmt.Errorf("nats key of org %s: %w", orgID, err)
	}
	a.mu.Lock()
	k, ok := a.orgKeys[orgID]
	a.mu.Unlock()
	if ok && bytes.Equal(k.sealed, sealed) {
		return k.kp, nil
	}
	kp, err := openSeed(ctx, a.sealer, name, sealed)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.orgKeys[orgID] = orgKey{sealed: sealed, kp: kp}
	a.mu.Unlock()
	return kp, nil
}

// scoped reports whether pub is a signing key of the ingest account in
// the claims in memory.
func (a *Authority) scoped(pub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.claims.SigningKeys.Contains(pub)
}

// MintEdge returns the user JWT of an edge whose nkey is userPub, signed by
// its org's scoped key; EnsureOrg must have run for the org, on any
// instance. The JWT carries no permissions: the scope's template supplies
// them.
func (a *Authority) MintEdge(ctx context.Context, orgID, edgeID, userPub string) (string, error) {
	if !wire.IDChars.Valid(orgID) || !wire.IDChars.Valid(edgeID) {
		return "", errors.New("org or edge id is not a valid subject token")
	}
	if !nkeys.IsValidPublicUserKey(userPub) {
		return "", errors.New("not a NATS user public key")
	}
	kp, err := a.orgKey(ctx, orgID, false)
	if errors.Is(err, controlplane.ErrNotFound) {
		return "", fmt.Errorf("org %s has no signing key in the ingest account", orgID)
	}
	if err != nil {
		return "", err
	}
	pub, _ := kp.PublicKey()
	if !a.scoped(pub) {
		// Added by another instance since this one read the claims?
		if err := a.Refresh(ctx); err != nil {
			return "", err
		}
		if !a.scoped(pub) {
			return "", fmt.Errorf("org %s has no signing key in the ingest account", orgID)
		}
	}
	uc := jwt.NewUserClaims(userPub)
	uc.Name = edgeID
	uc.IssuerAccount = a.ingestPub
	uc.Tags.Add("org:" + orgID)
	// Scoped users must carry empty permissions and limits; NewUserClaims
	// sets unlimited limits, which the server refuses for a scoped signer.
	uc.UserPermissionLimits = jwt.UserPermissionLimits{}
	s, err := uc.Encode(kp)
	if err != nil {
		return "", fmt.Errorf("encode edge jwt: %w", err)
	}
	return s, nil
}

// Revoke revokes every user JWT of userPub issued at or before at. The
// caller pushes the changed account JWT.
func (a *Authority) Revoke(ctx context.Context, userPub string, at time.Time) error {
	if !nkeys.IsValidPublicUserKey(userPub) {
		return errors.New("not a NATS user public key")
	}
	_, err := a.update(ctx, func(c *jwt.AccountClaims) bool {
		c.RevokeAt(userPub, at)
		return true
	})
	return err
}

// RemoveOrg revokes the user keys revoke (the org's edges) at at, so
// they stay refused even were the org's key added again, and takes org's
// scoped signing key out of the ingest account, so the servers refuse
// every user JWT it signed (the org's edges cannot connect or publish),
// all in one change of the account; then it deletes the org's seed. It
// reports whether the account JWT changed and must be pushed.
func (a *Authority) RemoveOrg(ctx context.Context, orgID string, revoke []string, at time.Time) (changed bool, err error) {
	if !wire.IDChars.Valid(orgID) {
		return false, fmt.Errorf("org id %q is not a valid subject token", orgID)
	}
	for _, pub := range revoke {
		if !nkeys.IsValidPublicUserKey(pub) {
			return false, errors.New("not a NATS user public key")
		}
	}
	changed, err = a.update(ctx, func(c *jwt.AccountClaims) bool {
		touched := false
		for _, pub := range revoke {
			if !c.Revocations.IsRevoked(pub, at) {
				c.RevokeAt(pub, at)
				touched = true
			}
		}
		for key := range c.SigningKeys {
			scope, ok := c.SigningKeys.GetScope(key)
			if us, isUser := scope.(*jwt.UserScope); ok && isUser && us.Role == "edge:"+orgID {
				c.SigningKeys.Remove(key)
				touched = true
			}
		}
		return touched
	})
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	delete(a.orgKeys, orgID)
	a.mu.Unlock()
	if err := a.store.DeleteNATSOrgKey(ctx, orgID); err != nil {
		return changed, fmt.Errorf("remove the seed of org %s: %w", orgID, err)
	}
	// An earlier version's files, taken over into the store, may still
	// hold the seed.
	if err := removeOrgFiles(a.dir, orgID); err != nil {
		return changed, fmt.Errorf("remove the seed of org %s: %w", orgID, err)
	}
	return changed, nil
}

// ServiceCreds returns a creds file for the control plane's own user in the
// ingest account, signed by the account key: it consumes the stream.
func (a *Authority) ServiceCreds() ([]byte, error) {
	return creds(a.ingest, "codex-controlplane")
}

// SystemCreds returns a creds file for a system account user, used to push
// account JWT updates to the servers.
func (a *Authority) SystemCreds() ([]byte, error) {
	return creds(a.system, "codex-controlplane-sys")
}

func creds(signer nkeys.KeyPair, name string) ([]byte, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create user key: %w", err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	s, err := uc.Encode(signer)
	if err != nil {
		return nil, fmt.Errorf("encode %s jwt: %w", name, err)
	}
	return jwt.FormatUserConfig(s, seed)
}
