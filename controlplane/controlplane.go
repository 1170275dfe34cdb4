// Package controlplane holds the domain types of codex-controlplane, the
// multi-tenant SaaS that receives aggregated usage metadata from edges.
//
// Implementations live in packages named after their dependency
// (store/sqlite, store/postgres, natsauth); ingest consumes the NATS
// stream; cmd/codex-controlplane wires them together.
package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/persiv/codex/shared/wire"
)

// Error kinds shared by every store and service. Callers test with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrInvalid      = errors.New("invalid")
	ErrUnauthorized = errors.New("unauthorized")
	// ErrLastOwner refuses removing or demoting an org's last owner; it
	// is an ErrConflict.
	ErrLastOwner = fmt.Errorf("the org's last owner: %w", ErrConflict)
)

// Org is a tenant of the control plane.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
	// Plan is set by staff; PlanFree when created without one.
	Plan Plan
	// BreakGlass is the owner's choice whether staff may ask for
	// break-glass access; nil leaves it to the plan (BreakGlassAllowed).
	BreakGlass *bool
}

// Role is what a user may do within its org.
type Role string

const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleViewer Role = "viewer"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleAdmin || r == RoleViewer }

// User is a member of one org. PasswordHash is a PHC-format argon2id hash.
type User struct {
	ID           string
	OrgID        string
	Email        string
	Role         Role
	PasswordHash string
	CreatedAt    time.Time
	// SessionEpoch is carried by every dashboard session of the user;
	// bumping it (logout, password change) ends them all at once.
	SessionEpoch int64
}

// Edge is an enrolled codex-edge. PublicKey is its NATS user nkey; the
// private half never leaves the edge.
type Edge struct {
	ID        string
	OrgID     string
	Name      string
	Version   string
	PublicKey string
	CreatedAt time.Time
	LastSeen  time.Time // zero until its first batch
	Sharing   bool      // whether batches arrived recently; the edge decides
	RevokedAt time.Time // zero while enrolled
	// Settings are the edge's metadata minimization settings as its
	// latest batch carried them; nil if none did (an earlier edge).
	Settings *wire.Settings
}

// InstanceWindow is how far back the fleet page looks for the instances
// of an edge that reported: twice the edge's default heartbeat (15m), so
// an idle replica, which sends only a heartbeat that often, still counts.
const InstanceWindow = 30 * time.Minute

// Instances are the edge processes that reported for one edge id: replicas
// of a deployment share the edge id, and each process draws a random
// instance id at start (wire.UsageBatch.Instance).
type Instances struct {
	// Known counts the distinct instance ids of the batches received.
	Known int
	// Unknown: some batch carried no instance id (an edge before the
	// field), so how many processes sent it cannot be told.
	Unknown bool
}

// Revoked reports whether the edge was revoked.
func (e Edge) Revoked() bool { return !e.RevokedAt.IsZero() }

// EnrollToken is a one-time enrollment token as stored: its SHA-256 only.
type EnrollToken struct {
	Hash      [32]byte
	OrgID     string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
	EdgeID    string    // the edge it enrolled, once used
}

// Invite is a one-time invitation into an org as stored: the SHA-256 of
// the link's token only.
type Invite struct {
	Hash      [32]byte
	OrgID     string
	Email     string
	Role      Role
	CreatedBy string // user id
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Dimension is a key field of usage rows that queries group or filter by.
type Dimension string

const (
	DimEdge        Dimension = "edge_id"
	DimWorkspace   Dimension = "workspace"
	DimProvider    Dimension = "provider"
	DimModel       Dimension = "model"
	DimKeyRef      Dimension = "key_ref"
	DimCacheStatus Dimension = "cache_status"
	DimStatusClass Dimension = "status_class"
)

// Dimensions lists every Dimension.
var Dimensions = []Dimension{DimEdge, DimWorkspace, DimProvider, DimModel, DimKeyRef, DimCacheStatus, DimStatusClass}

// Valid reports whether d is a known dimension.
func (d Dimension) Valid() bool {
	for _, v := range Dimensions {
		if d == v {
			return true
		}
	}
	return false
}

// Resolutions of stored usage: minute rows are kept for MinuteRetention,
// hour rows for HourRetention, day rows for DayRetention.
const (
	Minute = time.Minute
	Hour   = time.Hour
	Day    = 24 * time.Hour
)

// UsageQuery selects usage of one org in [From, To), bucketed by Step
// (Minute, Hour or Day; zero picks by span), grouped by GroupBy and
// filtered by Where (dimension = value).
type UsageQuery struct {
	OrgID   string
	From    time.Time
	To      time.Time
	Step    time.Duration
	GroupBy []Dimension
	Where   map[Dimension]string
	// Whole sums the range into one row per group, read from the table of
	// Step; its Time is the group's earliest bucket.
	Whole bool
}

// AutoStep picks the resolution of a query spanning d: minutes up to six
// hours, hours up to 31 days, days beyond.
func AutoStep(d time.Duration) time.Duration {
	switch {
	case d <= 6*time.Hour:
		return Minute
	case d <= 31*Day:
		return Hour
	}
	return Day
}

// Totals are usage counters summed over rows; see wire.UsageRow.
type Totals struct {
	Requests                               int64
	Input, CachedInput, CacheWrite, Output wire.Tokens
	Reasoning                              wire.Tokens
	CostNanoUSD, CostUnknown, SavedNanoUSD int64
	// Limited and BudgetRefused count requests the edge refused because
	// of a rate limit or a budget (batches of schema version 2 on).
	Limited, BudgetRefused int64
	LatencyMS              [wire.LatencyBuckets]int64
}

// Add adds o's counts to t.
func (t *Totals) Add(o *Totals) {
	t.Requests += o.Requests
	for _, p := range [...][2]*wire.Tokens{
		{&t.Input, &o.Input}, {&t.CachedInput, &o.CachedInput}, {&t.CacheWrite, &o.CacheWrite},
		{&t.Output, &o.Output}, {&t.Reasoning, &o.Reasoning},
	} {
		p[0].Sum += p[1].Sum
		p[0].Unknown += p[1].Unknown
	}
	t.CostNanoUSD += o.CostNanoUSD
	t.CostUnknown += o.CostUnknown
	t.SavedNanoUSD += o.SavedNanoUSD
	t.Limited += o.Limited
	t.BudgetRefused += o.BudgetRefused
	for i, n := range o.LatencyMS {
		t.LatencyMS[i] += n
	}
}

// UsageRow is one bucket of a query result: Time is the bucket's start and
// Key holds the grouped dimensions (others are empty).
type UsageRow struct {
	Time time.Time
	Key  map[Dimension]string
	Totals
}

// BudgetUse is a budget of a workspace (KeyRef "none") or key, as an edge
// last reported it.
type BudgetUse struct {
	wire.BudgetUse
	EdgeID string
	AsOf   time.Time // the end of the window of the batch that reported it
}

// Retention says how long each resolution is kept.
type Retention struct {
	Minute, Hour, Day time.Duration
}

// DefaultRetention keeps minutes for 35 days, hours for 13 months and days
// for 5 years: a year of hours stays fast to scan for one org.
var DefaultRetention = Retention{Minute: 35 * Day, Hour: 400 * Day, Day: 5 * 365 * Day}

// OrgDeletion is the record of an org deleted by its owner, kept at the
// deployment's level since the org's own rows are gone: the org's random
// id (not its name), when, who (the owner's user id), and how many rows of
// each table were removed.
type OrgDeletion struct {
	OrgID  string
	Time   time.Time
	UserID string
	Rows   map[string]int64 // table → rows deleted
}

// NATSStore keeps the NATS authority that every instance shares (package
// natsauth): the orgs' sealed signing key seeds and the account JWTs.
type NATSStore interface {
	// NATSOrgKey returns the sealed signing key seed of an org,
	// ErrNotFound when there is none.
	NATSOrgKey(ctx context.Context, orgID string) ([]byte, error)
	// AddNATSOrgKey stores sealed as the org's key unless one is stored
	// already, and returns the one stored: of instances adding at once,
	// every one ends up with the first one's.
	AddNATSOrgKey(ctx context.Context, orgID string, sealed []byte) ([]byte, error)
	// DeleteNATSOrgKey deletes the org's key; none is not an error.
	DeleteNATSOrgKey(ctx context.Context, orgID string) error
	// NATSAccount returns the stored JWT of the account whose public key
	// is account, with its version (bumped on each change), ErrNotFound
	// when there is none.
	NATSAccount(ctx context.Context, account string) (jwt string, version int64, err error)
	// UpdateNATSAccount reads the account's JWT ("" and 0 when there is
	// none), gives it to fn and stores what fn returns, bumping the
	// version unless fn returned the JWT unchanged; it returns the JWT and
	// version stored. The read and the write hold a lock that excludes
	// every other instance's update of the account, so no change is lost.
	// An error of fn changes nothing and is returned.
	UpdateNATSAccount(ctx context.Context, account string, fn func(jwt string, version int64) (string, error)) (string, int64, error)
}

// Store persists accounts, edges and usage, and staff access
// (StaffStore). Every method but RedeemEnrollToken and the staff ones is
// scoped by org.
type Store interface {
	StaffStore

	// DeploymentSecret returns the sealed secret of the deployment (not
	// of an org) stored under name, ErrNotFound when there is none.
	DeploymentSecret(ctx context.Context, name string) ([]byte, error)
	// AddDeploymentSecret stores sealed under name unless one is stored
	// there already, and returns the one stored: instances starting at
	// once all end up with the first one's.
	AddDeploymentSecret(ctx context.Context, name string, sealed []byte) ([]byte, error)

	NATSStore

	CreateOrg(ctx context.Context, o Org) error
	Org(ctx context.Context, id string) (Org, error)

	CreateUser(ctx context.Context, u User) error
	Users(ctx context.Context, orgID string) ([]User, error)
	User(ctx context.Context, orgID, id string) (User, error)
	// UsersByEmail finds the accounts of an email across orgs, oldest
	// first: login happens before the org is known.
	UsersByEmail(ctx context.Context, email string) ([]User, error)
	// SetPassword replaces a user's hash and ends all its sessions.
	SetPassword(ctx context.Context, orgID, id, hash string) error
	// EndSessions bumps the user's session epoch.
	EndSessions(ctx context.Context, orgID, id string) error
	// RemoveUser deletes a member who still has role, the role the
	// remover saw (checked in the write's transaction, so a member promoted
	// meanwhile is not removed by someone no longer allowed to: that gives
	// ErrConflict); removing the org's last owner gives ErrLastOwner.
	RemoveUser(ctx context.Context, orgID, id string, role Role) error
	// SetRole changes a member's role from `from` to `to`, checking both
	// in the write's transaction: a member whose role is no longer `from`
	// gives ErrConflict, demoting the org's last owner ErrLastOwner, so
	// that neither a stale form nor two concurrent changes can slip past
	// a check made before. The session epoch stays: sessions read the
	// role from the store on every request.
	SetRole(ctx context.Context, orgID, id string, from, to Role) error

	CreateInvite(ctx context.Context, inv Invite) error
	// Invites lists an org's pending (unused, unrevoked, unexpired)
	// invitations.
	Invites(ctx context.Context, orgID string, now time.Time) ([]Invite, error)
	// Invite returns the pending invitation with this hash (ErrNotFound
	// otherwise), whatever its org.
	Invite(ctx context.Context, hash [32]byte, now time.Time) (Invite, error)
	// RedeemInvite atomically marks the invitation used and creates u in
	// its org with its email and role. An unknown, used, revoked or
	// expired invitation gives ErrNotFound.
	RedeemInvite(ctx context.Context, hash [32]byte, now time.Time, u User) (User, error)
	// RevokeInvite ends the org's pending invitation with this hash: it
	// is no longer listed, found or redeemable. Anything else (unknown,
	// another org's, used, expired or revoked) gives ErrNotFound. Of a
	// revocation and a redemption racing, exactly one succeeds.
	RevokeInvite(ctx context.Context, orgID string, hash [32]byte, now time.Time) error

	CreateEnrollToken(ctx context.Context, t EnrollToken) error
	// EnrollTokens lists an org's tokens, newest first.
	EnrollTokens(ctx context.Context, orgID string) ([]EnrollToken, error)
	// RedeemEnrollToken atomically marks the unused, unexpired token with
	// this hash used and creates e in the token's org, returning the edge
	// as stored. A token that is unknown, used or expired gives
	// ErrUnauthorized, whichever it is.
	RedeemEnrollToken(ctx context.Context, hash [32]byte, now time.Time, e Edge) (Edge, error)

	Edge(ctx context.Context, orgID, id string) (Edge, error)
	Edges(ctx context.Context, orgID string) ([]Edge, error)
	// EdgeInstances counts, per edge id of the org, the instances of the
	// batches received at or after since; edges without such a batch are
	// absent.
	EdgeInstances(ctx context.Context, orgID string, since time.Time) (map[string]Instances, error)
	RevokeEdge(ctx context.Context, orgID, id string, at time.Time) error

	// IngestBatch stores a validated batch exactly once: it reports false
	// when (edge_id, seq) was stored before. It also updates the edge's
	// last-seen time and the hour and day roll-ups in the same transaction.
	// A batch's budgets replace what was stored of the same budgets
	// (org, workspace, key reference, period) when the batch's window is
	// the later one; its memory uses and audit counts are added to those
	// of the hour its window starts in.
	IngestBatch(ctx context.Context, b *wire.UsageBatch, receivedAt time.Time) (stored bool, err error)
	Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
	// BudgetUses lists the org's budgets as its edges last reported them,
	// by workspace, key reference and period.
	BudgetUses(ctx context.Context, orgID string) ([]BudgetUse, error)
	// MemoryUses sums the memory uses the org's edges reported (batches
	// of schema version 3 on) for windows starting in [from, to), kept by
	// the hour: by workspace, key reference, name and version, each
	// workspace's most used first.
	MemoryUses(ctx context.Context, orgID string, from, to time.Time) ([]wire.MemoryUse, error)
	// AuditCounts sums the audit record counts the org's edges reported
	// for windows starting in [from, to), kept by the hour: by workspace
	// and capture level.
	AuditCounts(ctx context.Context, orgID string, from, to time.Time) ([]wire.AuditCount, error)
	// Prune deletes usage older than the retention of its resolution.
	Prune(ctx context.Context, r Retention, now time.Time) error

	// DeleteOrg removes the org d.OrgID and every row that names it, in
	// every table with an org_id column (found in the schema, so a table
	// added later is covered; the access log included), in one
	// transaction, and records d, with Rows filled in, among the
	// deployment's org deletions. An unknown org is ErrNotFound.
	DeleteOrg(ctx context.Context, d OrgDeletion) (OrgDeletion, error)
	// OrgDeletions returns the recorded org deletions, oldest first.
	OrgDeletions(ctx context.Context) ([]OrgDeletion, error)

	Ping(ctx context.Context) error
	Close() error
}

// NewID returns a random id such as "org_5k2x…": a lowercase prefix, an
// underscore and 26 base32 characters (130 bits), valid as a NATS subject
// token and as a wire id.
func NewID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return prefix + "_" + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)
