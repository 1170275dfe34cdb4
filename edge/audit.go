package edge

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// AuditLevel is how much of a request's content its audit event keeps
// (DESIGN §10). It is set per org, and per key over its org's.
type AuditLevel string

const (
	// AuditNone keeps the request's metadata only (the default).
	AuditNone AuditLevel = "none"
	// AuditHash adds an HMAC-SHA-256 of the request body and of the
	// response, under the org's fingerprint secret.
	AuditHash AuditLevel = "hash"
	// AuditFull adds the request body and the response themselves, sealed
	// with the org's data key (purpose audit, record key the event id).
	AuditFull AuditLevel = "full"
)

// Valid reports whether l is one of the three levels.
func (l AuditLevel) Valid() bool { return l == AuditNone || l == AuditHash || l == AuditFull }

// ParseAuditLevel reads a level as the CLI and the admin API take it.
func ParseAuditLevel(s string) (AuditLevel, error) {
	if l := AuditLevel(s); l.Valid() {
		return l, nil
	}
	return "", fmt.Errorf("audit level %q: want none, hash or full: %w", s, ErrInvalid)
}

// AuditSetting is the audit level of an org (KeyID empty) or of one of
// its keys.
type AuditSetting struct {
	OrgID     string
	KeyID     string
	Level     AuditLevel
	UpdatedAt time.Time
}

// Prepare checks that s can be stored and sets a zero UpdatedAt to now.
func (s *AuditSetting) Prepare() error {
	if s.OrgID == "" || !s.Level.Valid() {
		return fmt.Errorf("audit setting: an org and a level (none, hash, full) are required: %w", ErrInvalid)
	}
	s.UpdatedAt = nowIfZero(s.UpdatedAt)
	return nil
}

// AuditKind tells admin changes from requests.
type AuditKind string

const (
	AuditAdmin   AuditKind = "admin"
	AuditRequest AuditKind = "request"
)

// Why an audit event's content is gone. The reason is outside the chain:
// removing content never breaks it.
const (
	ContentRemovedRetention = "retention" // older than CODEX_AUDIT_RETENTION
	ContentRemovedShred     = "shred"     // crypto shred of the org
)

// AuditEvent is one entry of an org's audit log as stored. The edge fills
// in everything above Seq; the store sets Seq, PrevHash and Hash as it
// appends the event to the org's chain.
type AuditEvent struct {
	OrgID string
	ID    string // the request id of a request; "adm_…" for an admin change
	Time  time.Time
	Kind  AuditKind
	// Meta is the event's metadata as JSON (package audit writes it): the
	// bytes the chain covers, stored and returned exactly as given, so
	// verification never depends on re-encoding.
	Meta []byte
	// RequestDigest and ResponseDigest are HMAC-SHA-256 digests of the
	// request body and of the response, at levels hash and full; nil at
	// level none and for admin changes. The chain covers them, so they
	// outlive the content they describe.
	RequestDigest, ResponseDigest []byte
	// Content is the request body and response sealed at level full; nil
	// otherwise, and once removed (ContentRemoved says why).
	Content        []byte
	ContentRemoved string

	Seq      int64  // 1, 2, … per org
	PrevHash []byte // Hash of the org's event Seq-1; zeros for the first
	Hash     []byte // ChainHash of this event
}

// Check reports whether e can be appended.
func (e *AuditEvent) Check() error {
	if e.ID == "" || e.OrgID == "" || e.Time.IsZero() || len(e.Meta) == 0 {
		return fmt.Errorf("audit event: id, org id, time and metadata are required: %w", ErrInvalid)
	}
	if e.Kind != AuditAdmin && e.Kind != AuditRequest {
		return fmt.Errorf("audit event %s: kind %q: %w", e.ID, e.Kind, ErrInvalid)
	}
	return nil
}

// chainDomain separates the chain's hashes from every other use of
// SHA-256 and names the layout's version.
const chainDomain = "codex-audit-chain-v1\x00"

// ChainHash is the hash of the event at seq in an org's chain, given the
// hash of the event before it (prev, 32 zero bytes for the first): SHA-256
// over the domain string, seq (8 bytes, big-endian), prev, then meta, the
// request digest and the response digest, each preceded by its length as
// a uvarint. It covers the metadata and the content's digests, never the
// ciphertext, so content removed by shred or retention leaves it intact.
func ChainHash(seq int64, prev, meta, reqDigest, respDigest []byte) []byte {
	h := sha256.New()
	var b [binary.MaxVarintLen64]byte
	h.Write([]byte(chainDomain))
	binary.BigEndian.PutUint64(b[:8], uint64(seq))
	h.Write(b[:8])
	h.Write(prev)
	for _, p := range [][]byte{meta, reqDigest, respDigest} {
		h.Write(b[:binary.PutUvarint(b[:], uint64(len(p)))])
		h.Write(p)
	}
	return h.Sum(nil)
}

// GenesisHash is the PrevHash of an org's first event.
func GenesisHash() []byte { return make([]byte, sha256.Size) }

// AuditQuery selects events of one org, in chain order.
type AuditQuery struct {
	Since    time.Time // events at or after; zero: from the start
	AfterSeq int64     // events after this seq
	Limit    int       // at most this many; must be positive
}

// AuditStore keeps the audit log: the levels, and each org's chain of
// events. Every method is scoped by org except AuditEventByID, which
// finds the event's org first.
type AuditStore interface {
	// SetAuditLevel sets an org's level (KeyID empty) or a key's, and
	// records a change-feed entry so running edges apply it.
	SetAuditLevel(ctx context.Context, s AuditSetting) error
	// AuditLevels lists the org's settings: the org's own first, if set.
	AuditLevels(ctx context.Context, orgID string) ([]AuditSetting, error)
	// AppendAudit appends events, which may mix orgs, to their orgs'
	// chains in one transaction: each gets its org's next Seq, PrevHash
	// and Hash. Writers of one org, on any number of edges, take turns on
	// the org's chain head, so the chain stays one line. An event whose
	// id is stored already is skipped (a batch retried after a commit
	// whose outcome was unknown).
	AppendAudit(ctx context.Context, events []AuditEvent) error
	// AuditEvents lists one org's events in chain order.
	AuditEvents(ctx context.Context, orgID string, q AuditQuery) ([]AuditEvent, error)
	// AuditEventByID returns one event of any org.
	AuditEventByID(ctx context.Context, id string) (AuditEvent, error)
	// RemoveAuditContent removes the sealed content of the org's events
	// older than before (zero: all of them), leaving metadata, digests
	// and chain, and returns how many it removed.
	RemoveAuditContent(ctx context.Context, orgID string, before time.Time, reason string) (int64, error)
}
