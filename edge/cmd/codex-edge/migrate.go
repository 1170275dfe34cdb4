package main

import (
	"fmt"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
)

// migratePostgres applies the Postgres migrations as the owner role:
// CODEX_DATABASE_OWNER_URL, or else CODEX_DATABASE_URL (codex-edge migrate
// run with the owner's URL).
func (e *env) migratePostgres(cfg config.Config) error {
	url := cfg.DatabaseOwnerURL
	if url == "" {
		url = cfg.DatabaseURL
	}
	if err := postgres.Migrate(e.ctx, url, cfg.DatabaseAppRole); err != nil {
		return fmt.Errorf("migrate the Postgres database (as its owner role, granting %s): %w", cfg.DatabaseAppRole, err)
	}
	return nil
}

func (e *env) migrate(args []string) error {
	f := newFlags("migrate", false)
	if _, err := f.parse(args); err != nil {
		return err
	}
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL != "" || cfg.DatabaseOwnerURL != "" {
		if err := e.migratePostgres(cfg); err != nil {
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
