// Package audit is the edge's tamper-evident audit log (DESIGN §10): an
// event for every admin change and every request, each org's events one
// hash chain in the store (see edge.ChainHash), with the request's content
// kept at the capture level of its org or key:
//
//	none  metadata only (the default)
//	hash  HMAC-SHA-256 of the request body and of the response, under the
//	      org's fingerprint secret
//	full  the request body and the response, sealed with the org's data
//	      key (purpose audit, record key the event id)
//
// The request body is what the client sent; the response is what the
// client received (a stream's events, assembled), whichever stage
// answered: the provider, the cache, an identical request in flight, or
// the edge's own error.
//
// The Stage records requests. At none and hash it hands the event to the
// Writer's queue, which stores events in batches off the request path. At
// full the event is stored before the answer completes, and the answer is
// replaced by 503 audit_unavailable when it cannot be (see Stage). Admin
// changes are recorded by Admin, synchronously, by the CLI and the admin
// API.
package audit

import (
	"context"
	"crypto/hmac"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/keyring"
)

// Meta is an event's metadata: the JSON stored as edge.AuditEvent.Meta,
// which the chain covers. Never content, never a secret.
type Meta struct {
	ID    string          `json:"id"`
	OrgID string          `json:"org_id"`
	Time  time.Time       `json:"time"`
	Kind  edge.AuditKind  `json:"kind"`
	Level edge.AuditLevel `json:"level,omitempty"` // of a request

	// A request.
	KeyID       string  `json:"key_id,omitempty"`
	Provider    string  `json:"provider,omitempty"`
	Endpoint    string  `json:"endpoint,omitempty"`
	Model       string  `json:"model,omitempty"`
	Stream      bool    `json:"stream,omitempty"`
	Status      int     `json:"status,omitempty"`
	Tokens      *Tokens `json:"tokens,omitempty"`
	CostNanoUSD *int64  `json:"cost_nano_usd,omitempty"` // absent when unknown
	Cache       string  `json:"cache,omitempty"`
	Memory      string  `json:"memory,omitempty"` // name@version[,…] injected

	// An admin change.
	Action  string            `json:"action,omitempty"` // e.g. "keys.create"
	Actor   string            `json:"actor,omitempty"`  // who: an OS user, a client address
	Via     string            `json:"via,omitempty"`    // which interface: "cli", "admin-api"
	Target  string            `json:"target,omitempty"` // what: a key id, a provider, …
	Details map[string]string `json:"details,omitempty"`
}

// Tokens are a request's token counts; nil when the provider did not
// report one.
type Tokens struct {
	Input       *int64 `json:"input"`
	CachedInput *int64 `json:"cached_input"`
	CacheWrite  *int64 `json:"cache_write"`
	Output      *int64 `json:"output"`
	Reasoning   *int64 `json:"reasoning"`
}

func count(c edge.Count) *int64 {
	if !c.Known {
		return nil
	}
	return &c.N
}

// requestMeta is the metadata of a request's event.
func requestMeta(r *edge.RequestRecord, level edge.AuditLevel) Meta {
	m := Meta{
		ID: r.ID, OrgID: r.OrgID, Time: r.Time.UTC(), Kind: edge.AuditRequest, Level: level,
		KeyID: r.KeyID, Provider: string(r.Provider), Endpoint: r.Endpoint, Model: r.Model, Stream: r.Stream,
		Status: r.Status, Cache: string(r.Cache), Memory: r.MemoryID,
		Tokens: &Tokens{count(r.Usage.Input), count(r.Usage.CachedInput), count(r.Usage.CacheWrite), count(r.Usage.Output), count(r.Usage.Reasoning)},
	}
	if r.CostKnown {
		m.CostNanoUSD = &r.CostNanoUSD
	}
	return m
}

// ParseMeta reads an event's metadata.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("audit metadata: %w", err)
	}
	return m, nil
}

// event builds the stored form of m.
func event(m Meta, reqDigest, respDigest, content []byte) (edge.AuditEvent, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return edge.AuditEvent{}, fmt.Errorf("audit metadata: %w", err)
	}
	return edge.AuditEvent{
		OrgID: m.OrgID, ID: m.ID, Time: m.Time, Kind: m.Kind, Meta: b,
		RequestDigest: reqDigest, ResponseDigest: respDigest, Content: content,
	}, nil
}

// The domains of the two content digests: each MAC input starts with its
// own, so a request digest never equals a response digest or a request
// fingerprint of the same bytes.
const (
	requestDomain  = "codex-audit-request-v1\x00"
	responseDomain = "codex-audit-response-v1\x00"
)

// newDigest starts a content digest under the org's fingerprint secret;
// give it back with f.PutMAC.
func newDigest(f *fingerprint.Fingerprinter, domain string) hash.Hash {
	h := f.MAC()
	h.Write([]byte(domain))
	return h
}

// Digests returns the request and response digests of content, as the
// stage computes them at levels hash and full.
func Digests(f *fingerprint.Fingerprinter, request, response []byte) (req, resp []byte) {
	h := newDigest(f, requestDomain)
	h.Write(request)
	req = h.Sum(nil)
	f.PutMAC(h)
	h = newDigest(f, responseDomain)
	h.Write(response)
	resp = h.Sum(nil)
	f.PutMAC(h)
	return req, resp
}

// contentVersion is the first byte of a full event's plaintext.
const contentVersion = 1

// encodeContent lays out a full event's plaintext: the version byte, the
// request's length as a uvarint, the request, then the response.
func encodeContent(request, response []byte) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(request)+len(response))
	out = append(out, contentVersion)
	out = binary.AppendUvarint(out, uint64(len(request)))
	out = append(out, request...)
	return append(out, response...)
}

var errContent = errors.New("audit content: malformed")

// decodeContent is the inverse of encodeContent.
func decodeContent(b []byte) (request, response []byte, err error) {
	if len(b) == 0 || b[0] != contentVersion {
		return nil, nil, errContent
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return nil, nil, errContent
	}
	rest := b[1+k:]
	return rest[:n], rest[n:], nil
}

// sameDigest compares digests in constant time.
func sameDigest(a, b []byte) bool { return hmac.Equal(a, b) && len(a) > 0 }

// Content is a full event's request and response, opened.
type Content struct {
	Request, Response []byte
}

// Sealer seals and opens content with the org's data keys (the keyring).
type Sealer interface {
	Opener
	Seal(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, plaintext []byte) ([]byte, error)
}

// sealContent seals a full event's request and response under the org's
// data key, purpose audit, bound to the event's id.
func sealContent(ctx context.Context, keys Sealer, orgID, id string, request, response []byte) ([]byte, error) {
	pt := encodeContent(request, response)
	defer clear(pt)
	ct, err := keys.Seal(ctx, orgID, keyring.PurposeAudit, id, pt)
	if err != nil {
		return nil, fmt.Errorf("seal audit content: %w", err)
	}
	return ct, nil
}
