package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/persiv/codex/edge"
)

// SweepInterval is how often a running edge removes content past
// CODEX_AUDIT_RETENTION. Every edge sweeps; a sweep that finds nothing
// to remove changes nothing, so several edges sweeping is harmless.
const SweepInterval = time.Hour

// Sweeper is the part of the store a retention sweep needs.
type Sweeper interface {
	Orgs(ctx context.Context) ([]edge.Org, error)
	RemoveAuditContent(ctx context.Context, orgID string, before time.Time, reason string) (int64, error)
}

// Sweep removes the content of every org's events older than retention
// before now, never their metadata or chain, and returns how many events
// lost their content.
func Sweep(ctx context.Context, st Sweeper, retention time.Duration, now time.Time) (int64, error) {
	orgs, err := st.Orgs(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit retention: %w", err)
	}
	var total int64
	for _, o := range orgs {
		n, err := st.RemoveAuditContent(ctx, o.ID, now.Add(-retention), edge.ContentRemovedRetention)
		if err != nil {
			return total, fmt.Errorf("audit retention: %w", err)
		}
		total += n
	}
	return total, nil
}

// RunRetention sweeps at once and then every SweepInterval until ctx
// ends; retention 0 keeps content for ever.
func RunRetention(ctx context.Context, st Sweeper, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		n, err := Sweep(ctx, st, retention, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("audit retention sweep failed; tried again later", "err", err)
		case n > 0:
			log.Info("audit content past CODEX_AUDIT_RETENTION removed", "events", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
