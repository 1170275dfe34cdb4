package proxy

import (
	"time"

	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
)

// DefaultOptions returns the defaults New fills in for zero fields, so
// that the edge's configuration (config.Default) builds on them instead of
// restating them. Logger, Metrics and Transport are left nil: New makes
// them (the transport from the connect and header timeouts). Caching stays
// off: Cache.Cache is nil.
func DefaultOptions() Options {
	return Options{
		ConnectTimeout:       10 * time.Second,
		HeaderTimeout:        10 * time.Minute,
		IdleTimeout:          5 * time.Minute,
		MaxBodyBytes:         32 << 20,
		BodyTimeout:          30 * time.Second,
		MaxInflightBodyBytes: 256 << 20,
		AuthFailureLimit:     20,
		AuthFailureWindow:    time.Minute,
		AuthFailureClients:   65536,
		AuthRejectQuantum:    5 * time.Millisecond,
		MaxCaptureBytes:      64 << 20,
		MaxEventBytes:        DefaultMaxEventBytes,
		Formats:              provider.Formats{openai.Format{}, anthropic.Format{}},
		Cache: CacheOptions{
			TTL:           time.Hour,
			MaxTTL:        7 * 24 * time.Hour,
			MaxEntryBytes: 4 << 20,
		},
	}
}
