// Package enroll turns a one-time enrollment token and an edge's public
// NATS key into the edge's identity and credentials. The edge's private key
// never leaves the edge; the token is stored only as its SHA-256.
package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/shared/wire"
)

// TokenPrefix starts every enrollment token, so secret scanners and
// people can tell one from other secrets.
const TokenPrefix = "cpenroll_"

// tokenLen is the length of a token: the prefix and 52 base32 characters
// (256 random bits).
const tokenLen = len(TokenPrefix) + 52

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken returns a fresh token and its hash.
func NewToken() (string, [32]byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	tok := TokenPrefix + strings.ToLower(tokenEncoding.EncodeToString(b[:]))
	return tok, sha256.Sum256([]byte(tok))
}

// ErrBadToken is the one answer to a token that is unknown, used, expired
// or malformed: which of these it was is not revealed.
var ErrBadToken = fmt.Errorf("invalid or expired enrollment token: %w", controlplane.ErrUnauthorized)

// Accounts is what enrollment needs of the NATS authority.
type Accounts interface {
	EnsureOrg(ctx context.Context, orgID string) error
	MintEdge(ctx context.Context, orgID, edgeID, userPub string) (string, error)
	Revoke(ctx context.Context, userPub string, at time.Time) error
	// RemoveOrg revokes the edges' user keys and the org's signing key.
	RemoveOrg(ctx context.Context, orgID string, userPubs []string, at time.Time) error
}

// Streams is what enrollment needs of the ingest (ingest.Ingester): the
// stream an org's edges publish into.
type Streams interface {
	EnsureOrg(ctx context.Context, orgID string) error
	// DeleteOrg deletes the org's stream.
	DeleteOrg(ctx context.Context, orgID string) error
}

// Service enrolls and revokes edges.
type Service struct {
	Store    controlplane.Store
	Accounts Accounts
	// Streams sets up the org's stream before an edge gets credentials to
	// publish into it. Nil only where no edge publishes (some tests).
	Streams Streams
	// NATSURL is the URL edges are told to publish to.
	NATSURL string
	Now     func() time.Time // defaults to time.Now
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// MaxTTL bounds a token's lifetime.
const MaxTTL = 30 * 24 * time.Hour

// CreateToken stores a new token for org, valid for ttl, and returns it.
// It is shown once: only its hash is kept.
func (s *Service) CreateToken(ctx context.Context, orgID string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > MaxTTL {
		return "", fmt.Errorf("%w: ttl must be positive and at most %s", controlplane.ErrInvalid, MaxTTL)
	}
	if _, err := s.Store.Org(ctx, orgID); err != nil {
		return "", fmt.Errorf("create enroll token: %w", err)
	}
	tok, hash := NewToken()
	now := s.now()
	if err := s.Store.CreateEnrollToken(ctx, controlplane.EnrollToken{Hash: hash, OrgID: orgID, CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
		return "", err
	}
	return tok, nil
}

// validate checks the request's fields (not the token's validity).
func validate(r wire.EnrollRequest) error {
	switch {
	case !nkeys.IsValidPublicUserKey(r.PublicKey):
		return fmt.Errorf("%w: public_key is not a NATS user public key", controlplane.ErrInvalid)
	case !wire.LabelChars.Valid(r.Name):
		return fmt.Errorf("%w: name must match %s", controlplane.ErrInvalid, wire.LabelChars.Pattern())
	case !wire.ModelChars.Valid(r.Version) || len(r.Version) > 64:
		return fmt.Errorf("%w: version must be at most 64 characters of [A-Za-z0-9._:/@+-]", controlplane.ErrInvalid)
	}
	return nil
}

// Enroll redeems the token once and returns the new edge's credentials.
func (s *Service) Enroll(ctx context.Context, r wire.EnrollRequest) (wire.EnrollResponse, error) {
	if err := validate(r); err != nil {
		return wire.EnrollResponse{}, err
	}
	if len(r.Token) != tokenLen || !strings.HasPrefix(r.Token, TokenPrefix) {
		return wire.EnrollResponse{}, ErrBadToken
	}
	hash := sha256.Sum256([]byte(r.Token))
	e, err := s.Store.RedeemEnrollToken(ctx, hash, s.now(), controlplane.Edge{
		ID: controlplane.NewID("edge"), Name: r.Name, Version: r.Version, PublicKey: r.PublicKey,
	})
	if errors.Is(err, controlplane.ErrUnauthorized) {
		return wire.EnrollResponse{}, ErrBadToken
	}
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("enroll: %w", err)
	}
	if err := s.Accounts.EnsureOrg(ctx, e.OrgID); err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("enroll: org signing key: %w", err)
	}
	if s.Streams != nil {
		if err := s.Streams.EnsureOrg(ctx, e.OrgID); err != nil {
			return wire.EnrollResponse{}, fmt.Errorf("enroll: %w", err)
		}
	}
	userJWT, err := s.Accounts.MintEdge(ctx, e.OrgID, e.ID, e.PublicKey)
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("enroll: %w", err)
	}
	// The org may have been deleted since the token was redeemed: its
	// deletion's removal of the org's signing key and stream could have
	// run before EnsureOrg added them back. Undo them, so a deleted org
	// keeps no key its edges could sign in with.
	if _, err := s.Store.Org(ctx, e.OrgID); errors.Is(err, controlplane.ErrNotFound) {
		if err := s.removeOrg(ctx, e.OrgID, []string{e.PublicKey}, s.now()); err != nil {
			return wire.EnrollResponse{}, fmt.Errorf("enroll: the org was deleted meanwhile, and removing its key again failed: %w", err)
		}
		return wire.EnrollResponse{}, ErrBadToken
	} else if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("enroll: %w", err)
	}
	return wire.EnrollResponse{
		EdgeID: e.ID, OrgID: e.OrgID, UserJWT: userJWT, NATSURL: s.NATSURL,
		Subject: wire.Subject(e.OrgID, e.ID), InboxPrefix: natsauth.InboxPrefix(e.ID),
		SchemaVersions: wire.SchemaVersions,
	}, nil
}

// Revoke revokes an edge: stored first, so ingest refuses its batches even
// if pushing the revocation to NATS fails, then pushed, so NATS refuses its
// connections.
func (s *Service) Revoke(ctx context.Context, orgID, edgeID string) error {
	e, err := s.Store.Edge(ctx, orgID, edgeID)
	if err != nil {
		return fmt.Errorf("revoke edge: %w", err)
	}
	at := s.now()
	if err := s.Store.RevokeEdge(ctx, orgID, edgeID, at); err != nil {
		return err
	}
	if err := s.Accounts.Revoke(ctx, e.PublicKey, at); err != nil {
		return fmt.Errorf("revoke edge: push revocation: %w", err)
	}
	return nil
}

// DeleteOrg deletes an org for good, by userID (its owner). NATS first:
// the org's edges are revoked and its signing key removed, so the servers
// refuse their connections and publishes, and its usage stream is deleted.
// Then the store removes every row of the org and records the deletion.
// Should the store fail, the org is still there with its edges cut off,
// and deleting again finishes the work.
//
// An enrollment that redeemed a token before the store's deletion may have
// added the org's key and stream back after the first removal: a second
// removal after the store's deletion takes them out again, and an
// enrollment later than that finds the org gone and undoes its own (see
// Enroll).
func (s *Service) DeleteOrg(ctx context.Context, orgID, userID string) (controlplane.OrgDeletion, error) {
	edges, err := s.Store.Edges(ctx, orgID)
	if err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	at := s.now()
	pubs := make([]string, 0, len(edges))
	for _, e := range edges {
		pubs = append(pubs, e.PublicKey)
	}
	if err := s.removeOrg(ctx, orgID, pubs, at); err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	d, err := s.Store.DeleteOrg(ctx, controlplane.OrgDeletion{OrgID: orgID, Time: at, UserID: userID})
	if err != nil {
		return controlplane.OrgDeletion{}, fmt.Errorf("delete org: %w", err)
	}
	if err := s.removeOrg(ctx, orgID, nil, at); err != nil {
		return d, fmt.Errorf("org deleted, but removing its NATS key and stream a second time (after a concurrent enrollment) failed: %w", err)
	}
	return d, nil
}

// removeOrg revokes the user keys pubs, removes the org's signing key from
// the account and deletes its stream.
func (s *Service) removeOrg(ctx context.Context, orgID string, pubs []string, at time.Time) error {
	if s.Accounts != nil {
		if err := s.Accounts.RemoveOrg(ctx, orgID, pubs, at); err != nil {
			return fmt.Errorf("revoke its edges: %w", err)
		}
	}
	if s.Streams != nil {
		if err := s.Streams.DeleteOrg(ctx, orgID); err != nil {
			return err
		}
	}
	return nil
}
