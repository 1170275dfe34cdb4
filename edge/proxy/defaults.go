package proxy

import (
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/auth"
	"github.com/persiv/codex/edge/caching"
	"github.com/persiv/codex/edge/forward"
	"github.com/persiv/codex/edge/intake"
)

// DefaultOptions returns the defaults the stages fill in for zero fields,
// gathered from each stage's DefaultOptions, so that the edge's
// configuration (config.Default) builds on them instead of restating
// them. Logger, Metrics and Transport are left nil: New makes them.
// Caching and the audit log stay off: Cache.Cache and Audit.Writer are
// nil.
func DefaultOptions() Options {
	a, in, fw := auth.DefaultOptions(), intake.DefaultOptions(), forward.DefaultOptions()
	return Options{
		ConnectTimeout:       fw.ConnectTimeout,
		HeaderTimeout:        fw.HeaderTimeout,
		IdleTimeout:          fw.IdleTimeout,
		MaxBodyBytes:         in.MaxBodyBytes,
		BodyTimeout:          in.BodyTimeout,
		MaxInflightBodyBytes: in.MaxInflightBodyBytes,
		AuthFailureLimit:     a.FailureLimit,
		AuthFailureWindow:    a.FailureWindow,
		AuthFailureClients:   a.FailureClients,
		AuthRejectQuantum:    a.RejectQuantum,
		MaxCaptureBytes:      fw.MaxCaptureBytes,
		MaxEventBytes:        fw.MaxEventBytes,
		Formats:              DefaultFormats(),
		Cache:                caching.DefaultOptions(),
		Audit:                audit.DefaultOptions(),
	}
}
