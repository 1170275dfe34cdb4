package postgres

import (
	"context"
	"fmt"
)

// writeOnce is a table of sealed values written once each, by key: of
// instances storing one at the same time, every one ends up with the
// first one's.
type writeOnce struct {
	get, add string // the statements, on the table's key column
	what     string // what a value is, for errors
}

var (
	deploymentSecrets = writeOnce{
		get:  `SELECT sealed FROM deployment_secrets WHERE name = $1`,
		add:  `INSERT INTO deployment_secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		what: "deployment secret",
	}
	natsOrgKeys = writeOnce{
		get:  `SELECT sealed FROM nats_org_keys WHERE org = $1`,
		add:  `INSERT INTO nats_org_keys (org, sealed) VALUES ($1, $2) ON CONFLICT (org) DO NOTHING`,
		what: "nats key of org",
	}
)

// sealed returns the value stored under key (controlplane.ErrNotFound
// when there is none).
func (s *Store) sealed(ctx context.Context, t writeOnce, key string) ([]byte, error) {
	var sealed []byte
	err := s.pool.QueryRow(ctx, t.get, key).Scan(&sealed)
	return sealed, mapErr(fmt.Sprintf("%s %q", t.what, key), err)
}

// addSealed stores sealed under key unless a value is stored there
// already, and returns the one stored.
func (s *Store) addSealed(ctx context.Context, t writeOnce, key string, sealed []byte) ([]byte, error) {
	tag, err := s.pool.Exec(ctx, t.add, key, sealed)
	if err != nil {
		return nil, mapErr(fmt.Sprintf("add %s %q", t.what, key), err)
	}
	if tag.RowsAffected() == 1 {
		return sealed, nil
	}
	// Another instance's row: read in a statement of its own, whose
	// snapshot sees that instance's commit (the INSERT's did not).
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
