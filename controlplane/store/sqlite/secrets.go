package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/controlplane"
)

// writeOnce is a table of sealed values written once each, by key: two
// instances storing one at the same time both end up with the first.
type writeOnce struct {
	get, add string // the statements, on the table's key column
	what     string // what a value is, for errors
}

var (
	deploymentSecrets = writeOnce{
		get:  `SELECT sealed FROM deployment_secrets WHERE name = ?`,
		add:  `INSERT INTO deployment_secrets (name, sealed, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		what: "deployment secret",
	}
	natsOrgKeys = writeOnce{
		get:  `SELECT sealed FROM nats_org_keys WHERE org = ?`,
		add:  `INSERT INTO nats_org_keys (org, sealed, created_at) VALUES (?, ?, ?) ON CONFLICT (org) DO NOTHING`,
		what: "nats key of org",
	}
)

// sealed returns the value stored under key (controlplane.ErrNotFound
// when there is none).
func (s *Store) sealed(ctx context.Context, t writeOnce, key string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, t.get, key).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s %q: %w", t.what, key, controlplane.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", t.what, key, err)
	}
	return sealed, nil
}

// addSealed stores sealed under key unless a value is stored there
// already, and returns the one stored.
func (s *Store) addSealed(ctx context.Context, t writeOnce, key string, sealed []byte) ([]byte, error) {
	res, err := s.db.ExecContext(ctx, t.add, key, sealed, time.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("add %s %q: %w", t.what, key, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return sealed, nil
	}
	return s.sealed(ctx, t, key)
}

// DeploymentSecret returns the sealed secret stored under name
// (controlplane.ErrNotFound when there is none).
func (s *Store) DeploymentSecret(ctx context.Context, name string) ([]byte, error) {
	return s.sealed(ctx, deploymentSecrets, name)
}

// AddDeploymentSecret stores sealed under name unless a secret is stored
// there already, and returns the one stored.
func (s *Store) AddDeploymentSecret(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	return s.addSealed(ctx, deploymentSecrets, name, sealed)
}
