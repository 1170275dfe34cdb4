package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The waits between start-up attempts to reach Postgres (WaitServe): the
// first, then doubling up to the longest.
const (
	DefaultRetryFirst = time.Second
	DefaultRetryMax   = 30 * time.Second
)

// ServeOptions are serve's start-up decisions about a Postgres store.
type ServeOptions struct {
	// AppRole is the role serve must connect as (CODEX_DATABASE_APP_ROLE).
	AppRole string
	// Migrate migrates the database first, as the owner role at OwnerURL
	// (CODEX_DATABASE_MIGRATE, CODEX_DATABASE_OWNER_URL); serve itself
	// connects as the application role, which may not change the schema.
	Migrate  bool
	OwnerURL string
	// RetryFirst and RetryMax are the waits between attempts to reach
	// Postgres; default DefaultRetryFirst and DefaultRetryMax.
	RetryFirst, RetryMax time.Duration
	// Logger is told about every attempt that found Postgres unreachable;
	// default: discard.
	Logger *slog.Logger
}

// CheckServe is serve's start-up check of the store: it migrates first
// when the operator allows it, then refuses a role that could bypass
// row-level security and a schema not migrated yet.
func (db *DB) CheckServe(ctx context.Context, o ServeOptions) error {
	if o.Migrate {
		if o.OwnerURL == "" {
			return errors.New("CODEX_DATABASE_MIGRATE=true needs the owner role's URL in CODEX_DATABASE_OWNER_URL (serve itself connects as the application role, which may not change the schema)")
		}
		if err := Migrate(ctx, o.OwnerURL, o.AppRole); err != nil {
			return err
		}
	}
	if err := db.CheckServeRole(ctx, o.AppRole); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	if err := db.CheckSchema(ctx); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	return nil
}

// WaitServe runs CheckServe until Postgres can be reached: a database that
// is down or still starting is not a reason to exit (an orchestrator would
// only restart the edge in a loop), while a refusal (bad credentials, a
// role that could bypass row-level security, an unmigrated schema) stops
// start-up at once. It returns when ctx ends.
func (db *DB) WaitServe(ctx context.Context, o ServeOptions) error {
	if o.RetryFirst <= 0 {
		o.RetryFirst = DefaultRetryFirst
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	wait := o.RetryFirst
	for attempt := 1; ; attempt++ {
		err := db.CheckServe(ctx, o)
		if err == nil || !Unreachable(err) {
			if err == nil && attempt > 1 {
				o.Logger.Info("Postgres reachable; starting", "attempts", attempt)
			}
			return err
		}
		o.Logger.Warn("Postgres unreachable; waiting for it before serving", "attempt", attempt, "retry_in", wait.String(), "err", err,
			"hint", "check that the database runs and that CODEX_DATABASE_URL names its host and port")
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for Postgres: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, o.RetryMax)
	}
}
