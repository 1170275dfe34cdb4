package server

import (
	"context"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	cacheredis "github.com/persiv/codex/edge/cache/redis"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
)

// ShredCacheTimeout bounds a running edge's removal of a shredded org's
// cache entries (one pass over the in-process cache, or SCAN and UNLINK
// over Redis), which runs off the request path when the change feed
// reports the shred.
const ShredCacheTimeout = time.Minute

// ShredResult says what Shred removed.
type ShredResult struct {
	DataKeys      int
	Sealed        edge.Shredded
	AuditContents int64
	// CacheEntries were deleted from Redis (CODEX_REDIS_URL); an
	// in-process cache lives in the running edge, which empties the org's
	// share of it when the change feed reports the shred.
	CacheEntries int64
	// Compacted: the embedded store's WAL was checkpointed and truncated
	// and the file vacuumed.
	Compacted bool
}

// compacter is the embedded store's Compact.
type compacter interface {
	Compact(ctx context.Context) error
}

// Shred destroys the org's data keys and removes every value sealed for
// it (DESIGN §11, "Shred is complete"): sealed credentials, fingerprint
// secret and memories' text, the audit log's content (its events and chain
// stay), the org's entries in Redis; then it compacts the embedded store so
// that none of the old ciphertext stays in the file, its WAL or its freed
// pages. The data keys go first, so the content is unreadable even if a
// later step fails; every step can run again, so a failed shred is
// finished by running it again. Running edges drop the org's keys and
// cache entries when their change feed reports the shred.
func Shred(ctx context.Context, cfg config.Config, st Store, kr *keyring.Keyring, orgID string) (ShredResult, error) {
	var r ShredResult
	var err error
	if r.DataKeys, err = kr.Shred(ctx, orgID); err != nil {
		return r, err
	}
	if r.Sealed, err = st.ShredSealed(ctx, orgID, time.Now()); err != nil {
		return r, fmt.Errorf("data keys destroyed, but: %w", err)
	}
	if r.AuditContents, err = st.RemoveAuditContent(ctx, orgID, time.Time{}, edge.ContentRemovedShred); err != nil {
		return r, fmt.Errorf("data keys destroyed, but removing the audit log's content failed: %w", err)
	}
	if cfg.RedisURL != "" {
		c, err := cacheredis.NewClient(cfg.RedisURL, cacheredis.Options{DialTimeout: 5 * time.Second, Timeout: 5 * time.Second})
		if err != nil {
			return r, err
		}
		r.CacheEntries, err = cacheredis.DeleteMatching(ctx, c, cache.OrgPrefix(orgID))
		_ = c.Close() // a one-off client: the deletion's own error is what counts
		if err != nil {
			return r, fmt.Errorf("data keys destroyed, but removing the org's cache entries from Redis failed: %w", err)
		}
	}
	if c, ok := st.(compacter); ok {
		if err := c.Compact(ctx); err != nil {
			return r, fmt.Errorf("data keys destroyed and sealed values deleted, but: %w", err)
		}
		r.Compacted = true
	}
	return r, nil
}

// shredded removes a shredded org's cache entries from this edge's cache
// backend, off the request path: in process, no other process could; in
// Redis, the shred removed them already, but an entry this edge sealed
// with the org's old key while the shred ran would stay until it expired.
func (s *Server) shredded(orgID string) {
	if s.cache == nil {
		return
	}
	s.cache.Background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShredCacheTimeout)
		defer cancel()
		n, err := s.cache.DeleteOrg(ctx, orgID)
		if err != nil {
			s.log.Warn("shred: the org's cache entries were not all removed; they are unreadable and expire", "org", orgID, "err", err)
			return
		}
		s.log.Info("shred: the org's cache entries removed", "org", orgID, "entries", n)
	})
}
