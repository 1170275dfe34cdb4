package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Plan is what an org pays for. It sets defaults (break-glass access is
// off by default on enterprise), nothing is billed here.
type Plan string

const (
	PlanFree       Plan = "free"
	PlanPro        Plan = "pro"
	PlanEnterprise Plan = "enterprise"
)

// Plans lists every Plan.
var Plans = []Plan{PlanFree, PlanPro, PlanEnterprise}

// Valid reports whether p is a known plan.
func (p Plan) Valid() bool { return p == PlanFree || p == PlanPro || p == PlanEnterprise }

// BreakGlassAllowed reports whether staff may ask for break-glass access
// to the org: the owner's choice when they made one, else the plan's
// default (off on enterprise, on otherwise).
func (o Org) BreakGlassAllowed() bool {
	if o.BreakGlass != nil {
		return *o.BreakGlass
	}
	return o.Plan != PlanEnterprise
}

// OrgHealth is what staff see of an org without a grant: the org's name,
// plan and creation, and the health of its edge fleet. Never its usage
// rows, members or invitations.
type OrgHealth struct {
	Org
	Edges    int       // enrolled, not revoked
	Sharing  int       // of those, sending batches recently
	Revoked  int       // revoked edges
	LastSeen time.Time // the latest batch of any edge; zero if none
}

// Staff is one of our own staff: not a customer user, member of no org.
// TOTPSecret is the RFC 6238 secret, sealed (controlplane/sealer, purpose
// StaffTOTPPurpose, name "staff/<id>").
type Staff struct {
	ID           string
	Email        string
	PasswordHash string
	TOTPSecret   []byte
	// TOTPStep is the time step of the last code accepted: a code of that
	// step or an earlier one is refused, so a code works once.
	TOTPStep     int64
	SessionEpoch int64
	CreatedAt    time.Time
	DisabledAt   time.Time // zero while enabled
}

// StaffTOTPPurpose is the sealer purpose of staff TOTP secrets.
const StaffTOTPPurpose = "staff-totp"

// Disabled reports whether the account was disabled.
func (s Staff) Disabled() bool { return !s.DisabledAt.IsZero() }

// Break-glass limits.
const (
	// DefaultGrantDuration is how long a grant lasts when the request
	// names no duration.
	DefaultGrantDuration = time.Hour
	// MaxGrantDuration is the longest grant a request may ask for.
	MaxGrantDuration = 8 * time.Hour
	// MinGrantDuration is the shortest.
	MinGrantDuration = time.Minute
	// ApprovalsRequired is how many staff other than the requester must
	// approve before a request grants access.
	ApprovalsRequired = 2
	// RequestTTL is how long a request may wait for its approvals; it
	// expires unapproved after that.
	RequestTTL = 24 * time.Hour
	// MaxReasonBytes bounds a request's reason.
	MaxReasonBytes = 500
)

// AccessState is where a break-glass request stands.
type AccessState string

const (
	AccessPending AccessState = "pending" // waiting for approvals
	AccessActive  AccessState = "active"  // granted, until ExpiresAt
	AccessDenied  AccessState = "denied"
	AccessRevoked AccessState = "revoked"
	AccessExpired AccessState = "expired"
)

// Open reports whether the request is pending or active.
func (s AccessState) Open() bool { return s == AccessPending || s == AccessActive }

// AccessRequest is a staff member's break-glass request for read-only
// access to one org's dashboard, and, once approved, its grant.
type AccessRequest struct {
	ID          string
	OrgID       string
	StaffID     string
	StaffEmail  string // read from the staff table
	Reason      string
	Duration    time.Duration
	State       AccessState
	RequestedAt time.Time
	GrantedAt   time.Time // zero until granted
	ExpiresAt   time.Time // GrantedAt + Duration
	EndedAt     time.Time // denied, revoked or expired at
	Approvals   []Approval
}

// Approval is one staff member's approval of a request.
type Approval struct {
	StaffID    string
	StaffEmail string
	At         time.Time
}

// Break-glass refusals. Each wraps the error kind it is.
var (
	ErrBreakGlassOff = fmt.Errorf("break-glass access is switched off for this organization: %w", ErrConflict)
	ErrSelfApproval  = fmt.Errorf("a request cannot be approved by the staff member who made it: %w", ErrConflict)
	ErrStaffDisabled = fmt.Errorf("the staff account is disabled: %w", ErrUnauthorized)
	// ErrCodeUsed refuses a TOTP code of a time step already used.
	ErrCodeUsed = fmt.Errorf("this code was used already: %w", ErrConflict)
)

// ValidateRequest checks a new request's fields and fills in the default
// duration.
func ValidateRequest(r *AccessRequest) error {
	if r.Duration == 0 {
		r.Duration = DefaultGrantDuration
	}
	switch {
	case r.OrgID == "" || r.StaffID == "":
		return fmt.Errorf("access request: org and staff member are required: %w", ErrInvalid)
	case len(r.Reason) == 0 || len(r.Reason) > MaxReasonBytes:
		return fmt.Errorf("access request: give a reason of at most %d bytes: %w", MaxReasonBytes, ErrInvalid)
	case r.Duration < MinGrantDuration || r.Duration > MaxGrantDuration:
		return fmt.Errorf("access request: duration must be from %s to %s: %w", MinGrantDuration, MaxGrantDuration, ErrInvalid)
	}
	return nil
}

// AccessKind is what an access-log event records.
type AccessKind string

const (
	EventSignIn          AccessKind = "sign_in"          // a staff member signed in
	EventSignInRefused   AccessKind = "sign_in_refused"  // a staff account's password or code was wrong or replayed
	EventStaffDisabled   AccessKind = "staff_disabled"   // a staff account was disabled
	EventPlan            AccessKind = "plan"             // staff set the org's plan
	EventRequest         AccessKind = "request"          // break-glass access requested
	EventApprove         AccessKind = "approve"          // one approval
	EventApprovalRefused AccessKind = "approval_refused" // a self-approval, refused
	EventDeny            AccessKind = "deny"             // denied by staff, or refused by the org's setting
	EventGrant           AccessKind = "grant"            // enough approvals: access granted until its expiry
	EventUse             AccessKind = "use"              // a page or API read under a grant
	EventRevoke          AccessKind = "revoke"           // a request or grant ended early
	EventExpire          AccessKind = "expire"           // a grant or an unapproved request ran out
)

// AccessEvent is one row of the append-only access log. Events of one org
// form a hash chain (OrgID "" is the chain of staff events about no org,
// such as sign-ins): Seq counts from 1, Prev is the previous event's Hash
// (zero for the first), and Hash covers Prev and every field (see
// ChainHash), so a changed, removed or reordered row breaks the chain.
type AccessEvent struct {
	OrgID      string
	Seq        int64
	At         time.Time // whole seconds
	Kind       AccessKind
	StaffID    string
	StaffEmail string
	RequestID  string
	Detail     string // the reason of a request, the page read, …
	Prev, Hash [32]byte
}

// ChainHash is the hash of e after prev: SHA-256 over a version tag,
// prev and each field, every string and number length-prefixed.
func (e AccessEvent) ChainHash(prev [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("codex-access-log-v1"))
	h.Write(prev[:])
	var n [8]byte
	num := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	str := func(s string) {
		num(int64(len(s)))
		h.Write([]byte(s))
	}
	str(e.OrgID)
	num(e.Seq)
	num(e.At.Unix())
	str(string(e.Kind))
	str(e.StaffID)
	str(e.StaffEmail)
	str(e.RequestID)
	str(e.Detail)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Chain sets e's Seq, Prev and Hash to follow last (the chain's last
// event; nil for the first) and truncates At to whole seconds, as stored.
func (e *AccessEvent) Chain(last *AccessEvent) {
	e.At = e.At.UTC().Truncate(time.Second)
	e.Seq, e.Prev = 1, [32]byte{}
	if last != nil {
		e.Seq, e.Prev = last.Seq+1, last.Hash
	}
	e.Hash = e.ChainHash(e.Prev)
}

// ErrChainBroken means an access log's rows do not form an intact chain.
var ErrChainBroken = errors.New("access log chain broken")

// VerifyChain checks that events, in order, are one org's whole chain:
// numbered from 1 without gaps, each linked to the one before and hashed
// as ChainHash says.
func VerifyChain(events []AccessEvent) error {
	var prev [32]byte
	for i, e := range events {
		switch {
		case e.Seq != int64(i+1):
			return fmt.Errorf("%w: event %d has number %d", ErrChainBroken, i+1, e.Seq)
		case e.Prev != prev:
			return fmt.Errorf("%w: event %d does not follow event %d", ErrChainBroken, e.Seq, e.Seq-1)
		case e.Hash != e.ChainHash(prev):
			return fmt.Errorf("%w: event %d was altered", ErrChainBroken, e.Seq)
		}
		prev = e.Hash
	}
	return nil
}

// StaffStore persists staff accounts, break-glass requests and the access
// log. Every change to a request appends its event to the org's access
// log in the same transaction: there is no grant, approval or read
// without its row.
type StaffStore interface {
	// OrgsByName lists the orgs with this exact name (names are not
	// unique), oldest first.
	OrgsByName(ctx context.Context, name string) ([]Org, error)
	// StaffOrgs lists every org with its fleet's health, by name.
	StaffOrgs(ctx context.Context) ([]OrgHealth, error)
	// SetPlan sets an org's plan and logs it as by's act.
	SetPlan(ctx context.Context, orgID string, plan Plan, by Staff, now time.Time) error
	// SetBreakGlass records the owner's choice; switching it off denies
	// the org's pending requests and revokes its grants at once.
	SetBreakGlass(ctx context.Context, orgID string, on bool, now time.Time) error

	CreateStaff(ctx context.Context, s Staff) error
	StaffByEmail(ctx context.Context, email string) (Staff, error)
	StaffMember(ctx context.Context, id string) (Staff, error)
	// UseTOTPStep records step as the staff member's last used code,
	// refusing (ErrCodeUsed) a step not later than the last.
	UseTOTPStep(ctx context.Context, id string, step int64) error
	// EndStaffSessions bumps the staff member's session epoch.
	EndStaffSessions(ctx context.Context, id string) error
	// DisableStaff disables the account, ends its sessions, and revokes
	// its pending requests and grants, at once.
	DisableStaff(ctx context.Context, id string, now time.Time) error

	// RequestAccess stores a pending request (see ValidateRequest). An
	// org that switched break-glass off refuses it (ErrBreakGlassOff),
	// and the refusal is logged. A staff member has at most one open
	// request per org (ErrConflict).
	RequestAccess(ctx context.Context, r AccessRequest) error
	// ApproveAccess adds staffID's approval to a pending request; the
	// ApprovalsRequired-th approval by enabled staff other than the
	// requester grants it from now for its duration. A self-approval
	// is refused (ErrSelfApproval) and logged.
	ApproveAccess(ctx context.Context, id, staffID string, now time.Time) (AccessRequest, error)
	// DenyAccess denies a pending request; the requester cannot (they
	// revoke it instead).
	DenyAccess(ctx context.Context, id, staffID string, now time.Time) error
	// RevokeAccess ends a pending request or an active grant.
	RevokeAccess(ctx context.Context, id, staffID string, now time.Time) error
	// AccessRequests lists the open requests, newest first.
	AccessRequests(ctx context.Context) ([]AccessRequest, error)
	// UseGrant returns staffID's active grant to orgID and logs the read
	// of what; without one (none, pending, ended, or expired by now, which
	// it logs) it gives ErrNotFound.
	UseGrant(ctx context.Context, staffID, orgID, what string, now time.Time) (AccessRequest, error)
	// ExpireAccess ends grants past their expiry and requests unapproved
	// for RequestTTL, logging each; it returns how many it ended.
	ExpireAccess(ctx context.Context, now time.Time) (int, error)

	// AppendAccessEvent appends e to its org's chain (OrgID "" for staff
	// events about no org), setting Seq, Prev and Hash.
	AppendAccessEvent(ctx context.Context, e AccessEvent) error
	// AccessLog returns an org's whole chain, oldest first.
	AccessLog(ctx context.Context, orgID string) ([]AccessEvent, error)
}
