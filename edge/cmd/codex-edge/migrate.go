package main

import (
	"cmp"
	"fmt"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
)

func (e *env) migrate(args []string) error {
	f := newFlags("migrate", false)
	if _, err := f.parse(args); err != nil {
		return err
	}
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	// Postgres is migrated as the owner role: CODEX_DATABASE_OWNER_URL, or
	// else CODEX_DATABASE_URL (migrate run with the owner's URL).
	if owner := cmp.Or(cfg.DatabaseOwnerURL, cfg.DatabaseURL); owner != "" {
		if err := postgres.Migrate(e.ctx, owner, cfg.DatabaseAppRole); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "migrations applied")
		return nil
	}
	// Opening the SQLite store applies its migrations.
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		fmt.Fprintln(e.stdout, "migrations applied")
		return nil
	})
}
