// Package store holds what the edge's two stores (store/postgres,
// store/sqlite) share beyond their SQL dialect: the request table's
// columns and how a driver error is reported.
package store

import (
	"errors"
	"fmt"
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
