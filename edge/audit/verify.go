package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/keyring"
)

// Opener opens the content of full events.
type Opener interface {
	Open(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, ciphertext []byte) ([]byte, error)
}

// Secrets returns an org's fingerprinter: the key of its content digests.
type Secrets func(ctx context.Context, orgID string) (*fingerprint.Fingerprinter, error)

// StoredSecrets reads an org's fingerprint secret from the store and opens
// it with keys, as the CLI must (serve holds them in its directory).
func StoredSecrets(st interface {
	FingerprintSecret(ctx context.Context, orgID string) ([]byte, error)
}, keys Opener) Secrets {
	return func(ctx context.Context, orgID string) (*fingerprint.Fingerprinter, error) {
		sealed, err := st.FingerprintSecret(ctx, orgID)
		if err != nil {
			return nil, err
		}
		if sealed == nil {
			return nil, fmt.Errorf("org %s has no fingerprint secret: %w", orgID, keyring.ErrUnreadable)
		}
		secret, err := keys.Open(ctx, orgID, keyring.PurposeSecret, edge.FingerprintRecord, sealed)
		if err != nil {
			return nil, fmt.Errorf("open the fingerprint secret of org %s: %w", orgID, err)
		}
		defer clear(secret)
		return fingerprint.New(secret), nil
	}
}

// ErrNoContent means an event holds no content: its level was not full,
// or the content was removed (edge.AuditEvent.ContentRemoved says why).
var ErrNoContent = errors.New("audit event has no content")

// OpenContent opens a full event's request and response. An error wrapping
// keyring.ErrUnreadable means the content cannot be read any more (its
// data key shredded or revoked) or was altered.
func OpenContent(ctx context.Context, keys Opener, e edge.AuditEvent) (Content, error) {
	if len(e.Content) == 0 {
		return Content{}, ErrNoContent
	}
	pt, err := keys.Open(ctx, e.OrgID, keyring.PurposeAudit, e.ID, e.Content)
	if err != nil {
		return Content{}, fmt.Errorf("open the content of audit event %s: %w", e.ID, err)
	}
	req, resp, err := decodeContent(pt)
	if err != nil {
		return Content{}, fmt.Errorf("audit event %s: %w", e.ID, err)
	}
	return Content{Request: req, Response: resp}, nil
}

// Break is where an org's chain stops holding.
type Break struct {
	Seq    int64
	ID     string
	Reason string
}

func (b *Break) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d (event %s): %s", b.Seq, b.ID, b.Reason)
}

// Report is what Verify found.
type Report struct {
	OrgID   string
	Events  int64  // events checked
	HeadSeq int64  // the last event's seq
	Head    []byte // the last event's hash: keep it elsewhere to detect a truncated chain later
	// ContentChecked counts full events whose content opened and matched
	// its digests; ContentRemoved those whose content was removed.
	ContentChecked, ContentRemoved int64
	Break                          *Break // nil: the chain holds
}

// MarshalJSON writes the report as `audit verify --json` prints it:
// {"org_id", "ok", "events", "head_seq", "head_hash" (hex),
// "content_checked", "content_removed", and "break": {"seq", "id",
// "reason"} when the chain does not hold}.
func (r Report) MarshalJSON() ([]byte, error) {
	type brk struct {
		Seq    int64  `json:"seq"`
		ID     string `json:"id"`
		Reason string `json:"reason"`
	}
	out := struct {
		OrgID          string `json:"org_id"`
		OK             bool   `json:"ok"`
		Events         int64  `json:"events"`
		HeadSeq        int64  `json:"head_seq"`
		HeadHash       string `json:"head_hash"`
		ContentChecked int64  `json:"content_checked"`
		ContentRemoved int64  `json:"content_removed"`
		Break          *brk   `json:"break,omitempty"`
	}{r.OrgID, r.Break == nil, r.Events, r.HeadSeq, hex.EncodeToString(r.Head), r.ContentChecked, r.ContentRemoved, nil}
	if r.Break != nil {
		out.Break = &brk{r.Break.Seq, r.Break.ID, r.Break.Reason}
	}
	return json.Marshal(out)
}

// verifyPage is how many events Verify reads at a time.
const verifyPage = 1000

// Verify walks the org's chain from its first event: each must have the
// next seq, link to the hash before it, hash to its stored hash, and agree
// with its metadata on id, org and kind. With keys and secrets it also
// opens each full event's content and checks it against the digests the
// chain covers. Removed content is no break. The first break is returned
// in the report; an error means the check could not be made.
func Verify(ctx context.Context, st edge.AuditStore, orgID string, keys Opener, secrets Secrets) (Report, error) {
	r := Report{OrgID: orgID, Head: edge.GenesisHash()}
	var fp *fingerprint.Fingerprinter
	for {
		evs, err := st.AuditEvents(ctx, orgID, edge.AuditQuery{AfterSeq: r.HeadSeq, Limit: verifyPage})
		if err != nil {
			return r, err
		}
		for _, e := range evs {
			if reason := link(&r, e); reason != "" {
				r.Break = &Break{Seq: e.Seq, ID: e.ID, Reason: reason}
				return r, nil
			}
			switch {
			case e.ContentRemoved != "":
				r.ContentRemoved++
			case len(e.Content) > 0 && keys != nil && secrets != nil:
				if fp == nil {
					if fp, err = secrets(ctx, orgID); err != nil {
						return r, fmt.Errorf("verify content: %w", err)
					}
				}
				reason, err := checkContent(ctx, keys, fp, e)
				if err != nil {
					return r, err
				}
				if reason != "" {
					r.Break = &Break{Seq: e.Seq, ID: e.ID, Reason: reason}
					return r, nil
				}
				r.ContentChecked++
			}
			r.Events++
			r.HeadSeq, r.Head = e.Seq, e.Hash
		}
		if len(evs) < verifyPage {
			return r, nil
		}
	}
}

// link checks e against the chain so far, and says what is wrong.
func link(r *Report, e edge.AuditEvent) string {
	if e.Seq != r.HeadSeq+1 {
		return fmt.Sprintf("seq %d follows seq %d: events are missing", e.Seq, r.HeadSeq)
	}
	if !bytes.Equal(e.PrevHash, r.Head) {
		return "it does not link to the event before it"
	}
	if !bytes.Equal(e.Hash, edge.ChainHash(e.Seq, e.PrevHash, e.Meta, e.RequestDigest, e.ResponseDigest)) {
		return "its metadata or digests were changed"
	}
	m, err := ParseMeta(e.Meta)
	if err != nil {
		return "its metadata does not parse"
	}
	if m.ID != e.ID || m.OrgID != e.OrgID || m.Kind != e.Kind {
		return "its stored id, org or kind differ from its metadata"
	}
	return ""
}

// checkContent opens a full event's content and compares its digests.
func checkContent(ctx context.Context, keys Opener, fp *fingerprint.Fingerprinter, e edge.AuditEvent) (string, error) {
	c, err := OpenContent(ctx, keys, e)
	if errors.Is(err, keyring.ErrUnreadable) || errors.Is(err, errContent) {
		return "its content does not open (altered, or its data key is gone)", nil
	}
	if err != nil {
		return "", err
	}
	req, resp := Digests(fp, c.Request, c.Response)
	if !sameDigest(req, e.RequestDigest) || !sameDigest(resp, e.ResponseDigest) {
		return "its content does not match its digests", nil
	}
	return "", nil
}
