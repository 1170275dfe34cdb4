package main

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
)

// baseMemory is what the edge needs beside its in-process cache, with
// room to spare. 128 MiB once sufficed; with every stage on, after a long
// mixed load (a thousand stream connections left idle, queues, pools) the
// edge's memory besides the cache reached about 140 MiB, and a soft limit
// below what is live makes the collector run without pause: under attack
// the edge then answered in seconds instead of milliseconds (make bench,
// hostile phase). Too low a limit is worse than none.
const baseMemory = 256 << 20

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

func (e *env) serve(args []string) (err error) {
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
	defer closeStore(st, &err)
	if db, ok := st.(*postgres.DB); ok {
		err := db.WaitServe(e.ctx, postgres.ServeOptions{
			AppRole: cfg.DatabaseAppRole, Migrate: cfg.DatabaseMigrate, OwnerURL: cfg.DatabaseOwnerURL, Logger: log,
		})
		if err != nil {
			return err
		}
	}
	e.applyTelemetryConfig(cfg, st, log)
	srv, err := server.New(e.ctx, cfg, st, log, server.Options{Getenv: e.getenv, Enroll: e.enrollHook(cfg, st)})
	if err != nil {
		return err
	}
	if err := srv.Start(e.ctx); err != nil {
		return err
	}
	<-e.ctx.Done()
	log.Info("stopping: draining (readyz 503, connections closed after their answer)", "for", cfg.ShutdownDrain.String())
	srv.Drain(context.Background(), cfg.ShutdownDrain)
	log.Info("shutting down: finishing requests and writing queued metadata")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}
