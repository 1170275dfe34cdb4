package postgres

import (
	"context"
	"fmt"
)

// DeploymentSecret returns the sealed secret stored under name
// (controlplane.ErrNotFound when there is none).
func (s *Store) DeploymentSecret(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := s.pool.QueryRow(ctx, `SELECT sealed FROM deployment_secrets WHERE name = $1`, name).Scan(&sealed)
	return sealed, mapErr(fmt.Sprintf("deployment secret %q", name), err)
}

// AddDeploymentSecret stores sealed under name unless a secret is stored
// there already, and returns the one stored: of instances starting at
// once, every one ends up with the first one's.
func (s *Store) AddDeploymentSecret(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	op := fmt.Sprintf("add deployment secret %q", name)
	tag, err := s.pool.Exec(ctx, `INSERT INTO deployment_secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, sealed)
	if err != nil {
		return nil, mapErr(op, err)
	}
	if tag.RowsAffected() == 1 {
		return sealed, nil
	}
	// Another instance's row: read in a statement of its own, whose
	// snapshot sees that instance's commit (the INSERT's did not).
	return s.DeploymentSecret(ctx, name)
}
