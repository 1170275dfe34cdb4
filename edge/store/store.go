// Package store holds what the edge's two stores (store/postgres,
// store/sqlite) share beyond their SQL dialect: the request and audit
// tables' columns, how audit events are linked into their org's chain,
// and how a driver error is reported.
package store

import (
	"errors"
	"fmt"
	"slices"

	"github.com/persiv/codex/edge"
)

// RequestColumns are the requests table's columns, in the order both
// stores insert and scan them.
const RequestColumns = `id, org_id, at, key_id, provider, endpoint, model, stream,
	input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
	cost_nano_usd, saved_nano_usd, latency_ns, upstream_latency_ns,
	status, cache, fingerprint, memory_id, memory_tokens_estimate`

// Wrap adds the operation to err and, when kind (the edge error kind the
// driver's error means, e.g. edge.ErrConflict; nil for none) is not
// already in it, kind too, so callers can test with errors.Is.
func Wrap(op string, err, kind error) error {
	if err == nil {
		return nil
	}
	if kind != nil && !errors.Is(err, kind) {
		return fmt.Errorf("%s: %w: %w", op, kind, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// AuditColumns are the audit_events table's columns, in the order both
// stores insert and scan them.
const AuditColumns = `org_id, seq, id, at, kind, meta, request_digest, response_digest,
	content, content_removed, prev_hash, hash`

// GroupAudit checks events and returns their orgs in sorted order, with
// the indexes of each org's events in their given order. Appenders lock
// the orgs' chain heads in this order, so two edges appending batches of
// the same orgs never wait for each other in a cycle.
func GroupAudit(events []edge.AuditEvent) (orgs []string, byOrg map[string][]int, err error) {
	byOrg = map[string][]int{}
	for i := range events {
		if err := events[i].Check(); err != nil {
			return nil, nil, err
		}
		org := events[i].OrgID
		if _, ok := byOrg[org]; !ok {
			orgs = append(orgs, org)
		}
		byOrg[org] = append(byOrg[org], i)
	}
	slices.Sort(orgs)
	return orgs, byOrg, nil
}

// LinkAudit appends events, in order, to a chain whose head is (seq,
// hash): it sets each one's Seq, PrevHash and Hash, and returns the new
// head.
func LinkAudit(seq int64, hash []byte, events []*edge.AuditEvent) (int64, []byte) {
	for _, e := range events {
		seq++
		e.Seq, e.PrevHash = seq, hash
		e.Hash = edge.ChainHash(seq, hash, e.Meta, e.RequestDigest, e.ResponseDigest)
		hash = e.Hash
	}
	return seq, hash
}
