// Package natsauth is the control plane's NATS authority in operator/JWT
// mode: it creates and keeps the operator, the system account and the
// ingest account, mints per-edge user JWTs and revokes them.
//
// Edges are minted with a per-org scoped signing key. The scope's template
// confines a user to publishing on codex.usage.v1.<org>.<its name> and to
// its own reply inbox, so a leaked org signing key can mint nothing
// outside that org, and a user JWT carries no permissions of its own.
//
// Seeds (operator, system and ingest account, per-org signing keys) are
// sealed at rest with the control plane's sealer (purpose "nats-seed",
// bound to the record's name) in <name>.nk.sealed files (0600). Plaintext
// <name>.nk seed files of earlier versions are sealed and removed when
// Open (or, for an org key, its first use) finds them.
package natsauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

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
}

// SeedPurpose is the sealer purpose of the seeds.
const SeedPurpose = "nats-seed"

// Authority holds the keys and the current ingest account JWT.
type Authority struct {
	dir    string
	sealer *sealer.Sealer
	limits jwt.JetStreamLimits

	operator, system, ingest nkeys.KeyPair
	operatorPub, systemPub   string
	ingestPub                string
	operatorJWT, systemJWT   string

	mu        sync.Mutex
	ingestJWT string
	claims    *jwt.AccountClaims
	orgKeys   map[string]nkeys.KeyPair
}

// Open loads the authority kept in dir, creating keys on first use. The
// ingest account JWT is brought to o's limits (pushed by the caller's next
// natsbus.Accounts.Sync, or preloaded by an embedded server).
func Open(ctx context.Context, dir string, o Options) (*Authority, error) {
	if o.Sealer == nil {
		return nil, errors.New("nats authority: no sealer for the seeds")
	}
	if err := os.MkdirAll(filepath.Join(dir, "orgs"), 0o700); err != nil {
		return nil, fmt.Errorf("nats authority dir: %w", err)
	}
	a := &Authority{dir: dir, sealer: o.Sealer, limits: o.Limits.jetStream(), orgKeys: map[string]nkeys.KeyPair{}}
	var err error
	if a.operator, err = a.loadOrCreate(ctx, "operator", "operator", nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = a.loadOrCreate(ctx, "system", "system", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.ingest, err = a.loadOrCreate(ctx, "ingest", "ingest", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if err := a.migrateOrgSeeds(ctx); err != nil {
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
	if err := a.loadIngest(); err != nil {
		return nil, err
	}
	return a, nil
}

// loadOrCreate returns the key pair kept sealed in <file>.nk.sealed as the
// record name, creating it on first use.
//
// A plaintext <file>.nk (an earlier version's) is migrated: sealed into
// place (written, synced, renamed), then removed. A migration interrupted
// before the rename is done again; one interrupted after it finds both
// files and removes the plaintext once it matches the sealed seed. A
// sealed file that does not open is refused, never replaced.
func (a *Authority) loadOrCreate(ctx context.Context, file, name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	sealedPath := filepath.Join(a.dir, file+".nk.sealed")
	plainPath := filepath.Join(a.dir, file+".nk")
	b := sealer.Binding{Purpose: SeedPurpose, Name: name}
	plain, err := os.ReadFile(plainPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		plain = nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", filepath.Base(plainPath), err)
	}
	defer clear(plain)
	plain = bytes.TrimSpace(plain)
	// An earlier version's temporary file may hold a plaintext seed.
	if err := os.Remove(plainPath + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove %s.tmp: %w", filepath.Base(plainPath), err)
	}

	sealed, err := os.ReadFile(sealedPath)
	if err == nil {
		seed, err := a.sealer.Open(ctx, b, sealed)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", filepath.Base(sealedPath), err)
		}
		defer clear(seed)
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", filepath.Base(sealedPath), err)
		}
		if plain != nil {
			if !bytes.Equal(plain, seed) {
				return nil, fmt.Errorf("%s and %s hold different seeds: remove the one that is wrong", filepath.Base(plainPath), filepath.Base(sealedPath))
			}
			if err := removeSynced(plainPath); err != nil {
				return nil, err
			}
		}
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(sealedPath), err)
	}

	var kp nkeys.KeyPair
	if plain != nil {
		if kp, err = nkeys.FromSeed(plain); err != nil {
			return nil, fmt.Errorf("load %s: %w", filepath.Base(plainPath), err)
		}
	} else if kp, err = create(); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	// The key pair's own seed, not a copy: never cleared here.
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("%s seed: %w", name, err)
	}
	if sealed, err = a.sealer.Seal(ctx, b, seed); err != nil {
		return nil, fmt.Errorf("seal %s: %w", name, err)
	}
	if err := writeFileAtomic(sealedPath, sealed, 0o600); err != nil {
		return nil, err
	}
	if plain != nil {
		if err := removeSynced(plainPath); err != nil {
			return nil, err
		}
	}
	return kp, nil
}

// migrateOrgSeeds seals the plaintext org seeds an earlier version left.
func (a *Authority) migrateOrgSeeds(ctx context.Context) error {
	des, err := os.ReadDir(filepath.Join(a.dir, "orgs"))
	if err != nil {
		return fmt.Errorf("nats authority: %w", err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".nk.tmp") {
			// An earlier version's interrupted write: a plaintext seed.
			if err := os.Remove(filepath.Join(a.dir, "orgs", de.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("nats authority: %w", err)
			}
			continue
		}
		org, ok := strings.CutSuffix(de.Name(), ".nk")
		if !ok || !wire.IDChars.Valid(org) {
			continue
		}
		if _, err := a.orgKeyLocked(ctx, org); err != nil {
			return err
		}
	}
	return nil
}

// removeSynced removes path and syncs its directory, so the removal
// outlives a crash.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer func() { _ = d.Close() }() // a directory opened to sync it
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a synced temporary file
// and a rename, then syncs the directory: path holds the old content or
// all of the new, never part of it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}

// loadIngest reads the persisted ingest account claims (its scoped keys
// and revocations) or creates them.
func (a *Authority) loadIngest() error {
	path := filepath.Join(a.dir, "ingest.jwt")
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		c, err := jwt.DecodeAccountClaims(string(raw))
		if err != nil {
			return fmt.Errorf("decode ingest account jwt: %w", err)
		}
		if c.Subject != a.ingestPub || c.Issuer != a.operatorPub {
			return errors.New("ingest account jwt does not match the stored keys")
		}
		a.claims, a.ingestJWT = c, string(raw)
		if c.Limits.JetStreamLimits == a.limits {
			return nil
		}
		c.Limits.JetStreamLimits = a.limits
	case errors.Is(err, fs.ErrNotExist):
		c := jwt.NewAccountClaims(a.ingestPub)
		c.Name = IngestAccountName
		c.Limits.JetStreamLimits = a.limits
		a.claims = c
	default:
		return fmt.Errorf("read ingest account jwt: %w", err)
	}
	return a.saveIngestLocked()
}

func (a *Authority) saveIngestLocked() error {
	s, err := a.claims.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("encode ingest account jwt: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(a.dir, "ingest.jwt"), []byte(s), 0o600); err != nil {
		return err
	}
	a.ingestJWT = s
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
	a.mu.Lock()
	defer a.mu.Unlock()
	kp, err := a.orgKeyLocked(ctx, orgID)
	if err != nil {
		return false, err
	}
	pub, _ := kp.PublicKey()
	if a.claims.SigningKeys.Contains(pub) {
		return false, nil
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
	a.claims.SigningKeys.AddScopedSigner(scope)
	if err := a.saveIngestLocked(); err != nil {
		a.claims.SigningKeys.Remove(pub)
		return false, err
	}
	return true, nil
}

// Orgs lists the orgs that have a signing key in the ingest account: those
// whose edges may publish.
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

func (a *Authority) orgKeyLocked(ctx context.Context, orgID string) (nkeys.KeyPair, error) {
	if kp, ok := a.orgKeys[orgID]; ok {
		return kp, nil
	}
	kp, err := a.loadOrCreate(ctx, filepath.Join("orgs", orgID), "org/"+orgID, nkeys.CreateAccount)
	if err != nil {
		return nil, err
	}
	a.orgKeys[orgID] = kp
	return kp, nil
}

// MintEdge returns the user JWT of an edge whose nkey is userPub, signed by
// its org's scoped key; EnsureOrg must have run for the org. The JWT
// carries no permissions: the scope's template supplies them.
func (a *Authority) MintEdge(ctx context.Context, orgID, edgeID, userPub string) (string, error) {
	if !wire.IDChars.Valid(orgID) || !wire.IDChars.Valid(edgeID) {
		return "", errors.New("org or edge id is not a valid subject token")
	}
	if !nkeys.IsValidPublicUserKey(userPub) {
		return "", errors.New("not a NATS user public key")
	}
	a.mu.Lock()
	kp, err := a.orgKeyLocked(ctx, orgID)
	var scoped bool
	if err == nil {
		pub, _ := kp.PublicKey()
		scoped = a.claims.SigningKeys.Contains(pub)
	}
	a.mu.Unlock()
	if err != nil {
		return "", err
	}
	if !scoped {
		return "", fmt.Errorf("org %s has no signing key in the ingest account", orgID)
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
func (a *Authority) Revoke(userPub string, at time.Time) error {
	if !nkeys.IsValidPublicUserKey(userPub) {
		return errors.New("not a NATS user public key")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.claims.RevokeAt(userPub, at)
	return a.saveIngestLocked()
}

// RemoveOrg takes org's scoped signing key out of the ingest account, so
// the servers refuse every user JWT it signed (the org's edges cannot
// connect or publish), and deletes the org's seed. It reports whether the
// account JWT changed and must be pushed. The caller revokes the org's
// edges first, so they stay refused even were the key added again.
func (a *Authority) RemoveOrg(orgID string) (changed bool, err error) {
	if !wire.IDChars.Valid(orgID) {
		return false, fmt.Errorf("org id %q is not a valid subject token", orgID)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for key := range a.claims.SigningKeys {
		scope, ok := a.claims.SigningKeys.GetScope(key)
		if us, isUser := scope.(*jwt.UserScope); ok && isUser && us.Role == "edge:"+orgID {
			a.claims.SigningKeys.Remove(key)
			changed = true
		}
	}
	if changed {
		if err := a.saveIngestLocked(); err != nil {
			return false, err
		}
	}
	delete(a.orgKeys, orgID)
	for _, f := range []string{orgID + ".nk.sealed", orgID + ".nk"} {
		if err := removeSynced(filepath.Join(a.dir, "orgs", f)); err != nil {
			return changed, fmt.Errorf("remove the seed of org %s: %w", orgID, err)
		}
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

// ServerConfig returns a nats-server configuration block trusting this
// operator with a full (directory) resolver preloaded with both accounts,
// for running an external NATS that accepts at most maxConnections
// clients.
func (a *Authority) ServerConfig(resolverDir string, maxConnections int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# persiv codex: NATS operator/JWT configuration.\n")
	fmt.Fprintf(&b, "operator: %s\n", a.operatorJWT)
	fmt.Fprintf(&b, "system_account: %s\n", a.systemPub)
	fmt.Fprintf(&b, "jetstream: enabled\n")
	fmt.Fprintf(&b, "max_payload: %d\n", wire.MaxBatchBytes)
	fmt.Fprintf(&b, "max_connections: %d\n", maxConnections)
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: false\n  interval: \"2m\"\n}\n", resolverDir)
	fmt.Fprintf(&b, "resolver_preload: {\n")
	fmt.Fprintf(&b, "  # SYS\n  %s: %s\n", a.systemPub, a.systemJWT)
	fmt.Fprintf(&b, "  # %s\n  %s: %s\n", IngestAccountName, a.ingestPub, a.IngestJWT())
	fmt.Fprintf(&b, "}\n")
	return b.String()
}
