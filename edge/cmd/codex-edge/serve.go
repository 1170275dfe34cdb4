package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
)

// The waits between start-up attempts to reach Postgres: the first, then
// doubling up to the longest.
var postgresRetryFirst, postgresRetryMax = time.Second, 30 * time.Second

// waitPostgres runs serve's start-up check of a Postgres store until
// Postgres can be reached: a database that is down or still starting is
// not a reason to exit (an orchestrator would only restart the edge in a
// loop), while a refusal (bad credentials, a role that could bypass
// row-level security, an unmigrated schema) stops start-up at once.
func (e *env) waitPostgres(cfg config.Config, db *postgres.DB, log *slog.Logger) error {
	wait := postgresRetryFirst
	for attempt := 1; ; attempt++ {
		err := e.checkPostgresServe(cfg, db)
		if err == nil || !postgres.Unreachable(err) {
			if err == nil && attempt > 1 {
				log.Info("Postgres reachable; starting", "attempts", attempt)
			}
			return err
		}
		log.Warn("Postgres unreachable; waiting for it before serving", "attempt", attempt, "retry_in", wait.String(), "err", err,
			"hint", "check that the database runs and that CODEX_DATABASE_URL names its host and port")
		select {
		case <-e.ctx.Done():
			return fmt.Errorf("stopped while waiting for Postgres: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, postgresRetryMax)
	}
}

// checkPostgresServe is serve's start-up check of a Postgres store: it
// migrates first when the operator allows it (CODEX_DATABASE_MIGRATE=true,
// with the owner's URL in CODEX_DATABASE_OWNER_URL), then refuses a role
// that could bypass row-level security and a schema not migrated yet.
func (e *env) checkPostgresServe(cfg config.Config, db *postgres.DB) error {
	if cfg.DatabaseMigrate {
		if cfg.DatabaseOwnerURL == "" {
			return errors.New("CODEX_DATABASE_MIGRATE=true needs the owner role's URL in CODEX_DATABASE_OWNER_URL (serve itself connects as the application role, which may not change the schema)")
		}
		if err := e.migratePostgres(cfg); err != nil {
			return err
		}
	}
	if err := db.CheckServeRole(e.ctx, cfg.DatabaseAppRole); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	if err := db.CheckSchema(e.ctx); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	return nil
}

// baseMemory is what the edge needs beside its in-process cache with a
// thousand streams open (DESIGN §9), with room to spare.
const baseMemory = 128 << 20

// memoryLimit sets the Go runtime's soft memory limit, unless GOMEMLIMIT
// chose one, to the in-process cache budget plus baseMemory. Without it the
// collector lets the heap grow to twice the live data, and the cache alone
// is live data up to its whole budget; with it the collector works harder
// near the limit instead. It is soft: a heap that needs more gets it.
func (e *env) memoryLimit(cfg config.Config) (int64, bool) {
	if e.getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit := int64(baseMemory)
	if cfg.CacheEnabled && cfg.RedisURL == "" {
		limit += cfg.CacheBudgetBytes
	}
	debug.SetMemoryLimit(limit)
	return limit, true
}

func (e *env) serve(args []string) error {
	f := newFlags("serve", false)
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	log := e.logger(cfg)
	if limit, set := e.memoryLimit(cfg); set {
		log.Info("Go soft memory limit set", "bytes", limit, "hint", "set GOMEMLIMIT to choose another")
	}
	st, err := e.openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if db, ok := st.(*postgres.DB); ok {
		if err := e.waitPostgres(cfg, db, log); err != nil {
			return err
		}
	}
	e.applyTelemetryConfig(cfg, log)
	srv, err := server.New(e.ctx, cfg, st, log, server.Options{Getenv: e.getenv})
	if err != nil {
		return err
	}
	if err := srv.Start(e.ctx); err != nil {
		return err
	}
	<-e.ctx.Done()
	log.Info("shutting down: finishing requests and writing queued metadata")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}
