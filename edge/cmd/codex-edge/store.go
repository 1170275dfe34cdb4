package main

import (
	"errors"
	"fmt"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/sqlite"
)

// openStore opens the store the configuration selects: Postgres when
// CODEX_DATABASE_URL is set, else SQLite in CODEX_DATA_DIR.
func (e *env) openStore(cfg config.Config) (server.Store, error) {
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(e.ctx, cfg.DatabaseURL, postgres.Options{Logger: e.logger(cfg)})
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	db, err := sqlite.Open(e.ctx, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	return db, nil
}

func (e *env) withStore(f *flags, fn func(config.Config, server.Store) error) (err error) {
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	st, err := e.openStore(cfg)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	return fn(cfg, st)
}

// closeStore closes st, and reports its error unless *err already holds
// the first one.
func closeStore(st server.Store, err *error) {
	if cerr := st.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("close store: %w", cerr)
	}
}

// withOrg runs fn with the store and the org that ref (an id or a name)
// names.
func (e *env) withOrg(f *flags, ref string, fn func(config.Config, server.Store, edge.Org) error) error {
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		o, err := e.findOrg(st, ref)
		if err != nil {
			return err
		}
		return fn(cfg, st, o)
	})
}

// findOrg accepts an org id or name.
func (e *env) findOrg(st edge.Store, ref string) (edge.Org, error) {
	if ref == "" {
		return edge.Org{}, usagef("--org is required")
	}
	if o, err := st.Org(e.ctx, ref); err == nil {
		return o, nil
	} else if !errors.Is(err, edge.ErrNotFound) {
		return edge.Org{}, err
	}
	orgs, err := st.Orgs(e.ctx)
	if err != nil {
		return edge.Org{}, err
	}
	for _, o := range orgs {
		if o.Name == ref {
			return o, nil
		}
	}
	return edge.Org{}, fmt.Errorf("no org %q (list them with 'codex-edge orgs list')", ref)
}
